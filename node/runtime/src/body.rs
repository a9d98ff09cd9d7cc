//! Bodies on the HTTP edge: the request-size cap, and the responses the host itself writes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// What the edge sends: the guest's streamed body or one of the host's own.
pub type ResponseBody = HyperOutgoingBody;

/// A request body that fails once more than `limit` bytes have arrived, and records that it
/// did, so the edge can answer 413 whatever the guest made of the error.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    tripped: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Cap `inner` at `limit` bytes; the flag returned turns true once the cap is passed.
    pub fn new(inner: B, limit: u64) -> (Self, Arc<AtomicBool>) {
        let tripped = Arc::new(AtomicBool::new(false));
        (
            LimitedBody {
                inner,
                remaining: limit,
                limit,
                tripped: tripped.clone(),
            },
            tripped,
        )
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.tripped.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(self.limit)),
                        )));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A small `text/plain` response written by the host (errors, redirects).
pub fn host_response(status: u16, message: &str) -> http::Response<ResponseBody> {
    full_response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

/// A whole response from bytes in memory.
pub fn full_response(
    status: u16,
    content_type: &'static str,
    body: Bytes,
) -> http::Response<ResponseBody> {
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trips_past_the_limit_only() {
        let (body, tripped) = LimitedBody::new(Full::new(Bytes::from_static(b"12345")), 5);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "12345");
        assert!(!tripped.load(Ordering::Acquire));

        let (body, tripped) = LimitedBody::new(Full::new(Bytes::from_static(b"123456")), 5);
        assert!(body.collect().await.is_err());
        assert!(tripped.load(Ordering::Acquire));
    }
}
