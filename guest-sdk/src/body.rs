//! The body of a request or response: bytes in memory, a stream the handler produces, or (on
//! wasm) a stream the host delivers, read as it arrives.
//!
//! Nothing is buffered unless asked: [`Body::chunk`] and [`Body::into_stream`] read a piece at a
//! time, so a handler can pass a body of any size through in constant memory; [`Body::bytes`]
//! and friends gather the whole body when that is what the handler wants.

use std::fmt;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_lite::{Stream, StreamExt};

use crate::{Error, Result};

/// A request or response body. Build one from bytes or text (`Body::from("hi")`), from a stream
/// ([`Body::from_stream`]), or as a channel to write into while the response goes out
/// ([`Body::channel`]).
pub struct Body(Inner);

pub(crate) type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes>>>>;

enum Inner {
    Full(Bytes),
    Stream(BoxStream),
    #[cfg(target_arch = "wasm32")]
    Wasi(crate::wasi::IncomingBody),
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Body(Inner::Full(Bytes::new()))
    }

    /// A body sent as `stream` yields it: each item goes out as soon as it is produced
    /// (`transfer-encoding: chunked` on HTTP/1.1), so the response head leaves before the body
    /// is known. For server-sent events, a proxied download or anything too large to hold.
    pub fn from_stream<S, T>(stream: S) -> Self
    where
        S: Stream<Item = T> + 'static,
        T: Into<Bytes>,
    {
        Body::streamed(Box::pin(stream.map(|item| Ok(item.into()))))
    }

    /// As [`Body::from_stream`], for a stream that can fail: an error ends the body abruptly,
    /// so the client sees a truncated response, not a complete one (the error is logged).
    pub fn from_try_stream<S, T, E>(stream: S) -> Self
    where
        S: Stream<Item = std::result::Result<T, E>> + 'static,
        T: Into<Bytes>,
        E: Into<Error>,
    {
        Body::streamed(Box::pin(
            stream.map(|item| item.map(Into::into).map_err(Into::into)),
        ))
    }

    /// A body to write into after the response is returned: return the `Body` in the response
    /// and hand the [`BodySender`] to a task ([`crate::spawn`]) that writes the chunks. At most
    /// `capacity` chunks wait unsent; `send` waits for room, so a slow client slows the writer
    /// instead of filling memory.
    pub fn channel(capacity: usize) -> (BodySender, Body) {
        let (sender, receiver) = async_channel::bounded(capacity.max(1));
        (BodySender { sender }, Body::streamed(Box::pin(receiver)))
    }

    fn streamed(stream: BoxStream) -> Self {
        // Only a program that makes a streamed body links the code that sends one.
        #[cfg(target_arch = "wasm32")]
        crate::wasi::enable_async_sending();
        Body(Inner::Stream(stream))
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_wasi(body: crate::wasi::IncomingBody) -> Self {
        Body(Inner::Wasi(body))
    }

    /// The body's length, when it is in memory.
    pub fn exact_len(&self) -> Option<u64> {
        match &self.0 {
            Inner::Full(bytes) => Some(bytes.len() as u64),
            _ => None,
        }
    }

    /// The next piece of the body as it arrives, `None` at its end. Pieces are as the sender
    /// or the network cut them (up to 64 KiB from the host).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match &mut self.0 {
            Inner::Full(bytes) if bytes.is_empty() => Ok(None),
            Inner::Full(bytes) => Ok(Some(std::mem::take(bytes))),
            Inner::Stream(stream) => stream.next().await.transpose(),
            #[cfg(target_arch = "wasm32")]
            Inner::Wasi(body) => body.chunk().await,
        }
    }

    /// The body as a stream of chunks, read as they arrive.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> {
        futures_lite::stream::unfold(Some(self), |body| async move {
            let mut body = body?;
            match body.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }

    /// The whole body in memory. The node has already refused a request body over the app's
    /// `limits.body_kb`; for a fetched response, [`Body::bytes_limited`] bounds what is read.
    pub async fn bytes(self) -> Result<Bytes> {
        self.bytes_limited(usize::MAX).await
    }

    /// The whole body, failing with 413 as soon as it passes `limit` bytes (without reading
    /// the rest).
    pub async fn bytes_limited(mut self, limit: usize) -> Result<Bytes> {
        if let Inner::Full(bytes) = &mut self.0 {
            return check_limit(std::mem::take(bytes), limit);
        }
        let first = match self.chunk().await? {
            Some(chunk) => check_limit(chunk, limit)?,
            None => return Ok(Bytes::new()),
        };
        let Some(second) = self.chunk().await? else {
            return Ok(first);
        };
        let mut all = BytesMut::from(first);
        let mut next = Some(second);
        while let Some(chunk) = next {
            if all.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            all.extend_from_slice(&chunk);
            next = self.chunk().await?;
        }
        Ok(all.freeze())
    }

    /// The whole body as UTF-8 text; 400 if it is not.
    pub async fn text(self) -> Result<String> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8(bytes.into())?)
    }

    /// The whole body parsed as JSON; 400 with serde's reason if it does not parse.
    #[cfg(feature = "json")]
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|err| Error::bad_request(format!("invalid JSON body: {err}")))
    }

    /// A body holding `value` as JSON.
    #[cfg(feature = "json")]
    pub fn from_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_vec(value)
            .map(Body::from)
            .map_err(|err| Error::internal(format!("serializing JSON failed: {err}")))
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn into_kind(self) -> Kind {
        match self.0 {
            Inner::Full(bytes) => Kind::Full(bytes),
            Inner::Stream(stream) => Kind::Stream(stream),
            Inner::Wasi(body) => Kind::Wasi(body),
        }
    }
}

/// What a body is made of, for the code that sends it.
#[cfg(target_arch = "wasm32")]
pub(crate) enum Kind {
    Full(Bytes),
    Stream(BoxStream),
    Wasi(crate::wasi::IncomingBody),
}

fn check_limit(bytes: Bytes, limit: usize) -> Result<Bytes> {
    if bytes.len() > limit {
        Err(too_large(limit))
    } else {
        Ok(bytes)
    }
}

fn too_large(limit: usize) -> Error {
    Error::payload_too_large(format!("body is larger than {limit} bytes"))
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Full(bytes) => f.debug_tuple("Body").field(bytes).finish(),
            Inner::Stream(_) => f.write_str("Body(<stream>)"),
            #[cfg(target_arch = "wasm32")]
            Inner::Wasi(_) => f.write_str("Body(<incoming>)"),
        }
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body(Inner::Full(bytes))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(Inner::Full(bytes.into()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body(Inner::Full(text.into()))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body(Inner::Full(Bytes::from_static(text.as_bytes())))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body(Inner::Full(Bytes::from_static(bytes)))
    }
}

/// The writing end of [`Body::channel`]. Dropping it ends the body.
#[derive(Clone)]
pub struct BodySender {
    sender: async_channel::Sender<Result<Bytes>>,
}

impl BodySender {
    /// Send the next chunk; waits while the channel is full. Fails once the body is no longer
    /// read (the client went away), so a writer loop can stop.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<()> {
        self.sender
            .send(Ok(chunk.into()))
            .await
            .map_err(|_| Error::internal("the body is no longer being read"))
    }

    /// End the body with an error: the client sees a truncated response, not a complete one.
    pub async fn fail(self, error: Error) {
        let _ = self.sender.send(Err(error)).await;
    }
}

impl fmt::Debug for BodySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodySender")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    #[test]
    fn bytes_body_reads_once_then_ends() {
        let mut body = Body::from("hello");
        assert_eq!(body.exact_len(), Some(5));
        block_on(async {
            assert_eq!(body.chunk().await.unwrap().unwrap(), "hello");
            assert!(body.chunk().await.unwrap().is_none());
        });
    }

    #[test]
    fn stream_bodies_are_gathered_and_limited() {
        let chunks = || futures_lite::stream::iter(["ab", "cd", "ef"]);
        assert_eq!(
            block_on(Body::from_stream(chunks()).bytes()).unwrap(),
            "abcdef"
        );
        let err = block_on(Body::from_stream(chunks()).bytes_limited(5)).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            block_on(Body::from("abcdef").bytes_limited(5))
                .unwrap_err()
                .status(),
            http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn a_failing_stream_fails_the_read() {
        let stream = futures_lite::stream::iter([Ok("a"), Err(Error::bad_gateway("upstream cut"))]);
        let err = block_on(Body::from_try_stream(stream).text()).unwrap_err();
        assert_eq!(err.message(), "upstream cut");
    }

    #[test]
    fn a_channel_body_carries_what_a_task_writes() {
        let text = block_on(async {
            let (sender, body) = Body::channel(1);
            let writer = crate::spawn(async move {
                for n in 0..3 {
                    sender.send(format!("data: {n}\n\n")).await.unwrap();
                }
            });
            let text = body.text().await.unwrap();
            writer.await;
            text
        });
        assert_eq!(text, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
    }

    #[test]
    fn a_sender_learns_the_reader_is_gone() {
        block_on(async {
            let (sender, body) = Body::channel(1);
            drop(body);
            assert!(sender.send("x").await.is_err());
        });
    }
}
