//! Sending: the handler's response through its out-parameter, and any body (a response's or a
//! fetched request's) into a WASI outgoing body, streamed as it is produced.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_lite::StreamExt;
use http::StatusCode;
use wasip2::http::types::{OutgoingBody, OutgoingResponse, ResponseOutparam};

use super::IncomingBody;
use super::fields::to_fields;
use super::streams::{Failure, Output};
use crate::body::{BoxStream, Kind};
use crate::{Body, Error, Response, Result};

/// The most one `blocking-write-and-flush` takes.
const ONE_CALL: usize = 4096;

/// Send `response`: the head as soon as it is known, then the body as it is produced. A
/// response WASI refuses (a forbidden header such as `connection`, a bad status) becomes a 500
/// that says why; a body that fails after the head left ends the response abruptly, so the
/// client sees it truncated, and the reason goes to the log.
pub(crate) async fn respond(response: Response, out: ResponseOutparam) {
    let (parts, body) = response.into_parts();
    let head = response_head(parts.status, &parts.headers, &body);
    let (head, body) = match head {
        Ok(head) => (head, body),
        Err(err) => {
            crate::log::error(format_args!("the response was refused: {err}"));
            let fallback = Error::internal(format!(
                "handler built an invalid response: {}",
                err.message()
            ))
            .into_response();
            let (parts, body) = fallback.into_parts();
            match response_head(parts.status, &parts.headers, &body) {
                Ok(head) => (head, body),
                Err(_) => {
                    let code = wasip2::http::types::ErrorCode::InternalError(Some(err.to_string()));
                    ResponseOutparam::set(out, Err(code));
                    return;
                }
            }
        }
    };
    let Ok(outgoing_body) = head.body() else {
        ResponseOutparam::set(
            out,
            Err(wasip2::http::types::ErrorCode::InternalError(None)),
        );
        return;
    };
    ResponseOutparam::set(out, Ok(head));
    if let Err(err) = send_body(body, outgoing_body).await {
        crate::log::error(format_args!("sending the response body failed: {err}"));
    }
}

fn response_head(
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &Body,
) -> Result<OutgoingResponse> {
    // A known length lets the node send the body without chunking; 1xx, 204 and 304 have none.
    let length = body
        .exact_len()
        .filter(|_| {
            !headers.contains_key(http::header::CONTENT_LENGTH)
                && !status.is_informational()
                && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        })
        .map(|len| ("content-length", len.to_string()));
    let response = OutgoingResponse::new(to_fields(headers, length)?);
    response
        .set_status_code(status.as_u16())
        .map_err(|()| Error::internal(format!("{status} is not a status WASI sends")))?;
    Ok(response)
}

/// Write `body` into `out` and finish it. On an error `out` is dropped unfinished, which the
/// host treats as a broken body.
///
/// A body in memory goes out with blocking writes of up to 4 KiB, which the host takes at once.
/// Streamed bodies and splicing wait on pollables; that code is reached through
/// [`ASYNC_SENDING`], set by what makes such a body ([`crate::Body::from_stream`] and the like,
/// [`crate::fetch`]), so a handler that makes none (most) links none of it: each WASI import a
/// component links costs every request at instantiation.
pub(super) async fn send_body(body: Body, out: OutgoingBody) -> Result<()> {
    let stream = out
        .write()
        .map_err(|()| Error::internal("the outgoing body was already taken"))?;
    let mut stream = Output::new(stream);
    match body.into_kind() {
        Kind::Full(bytes) => {
            for piece in bytes.chunks(ONE_CALL) {
                stream.write_small(piece).map_err(write_failed)?;
            }
        }
        Kind::Stream(chunks) => {
            let sending = ASYNC_SENDING
                .get()
                .expect("a streamed body enables async sending when it is made");
            (sending.stream)(chunks, &mut stream).await?;
        }
        Kind::Wasi(incoming) => match ASYNC_SENDING.get() {
            Some(sending) => (sending.splice)(incoming, &mut stream).await?,
            // The request's own body, returned unread: pass it on without waiting on pollables.
            None => incoming.blocking_splice_into(&stream)?,
        },
    }
    drop(stream);
    OutgoingBody::finish(out, None)
        .map_err(|code| Error::internal(format!("finishing the body failed: {code:?}")))
}

type Sending<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// The ways of sending that wait on pollables.
struct AsyncSending {
    stream: for<'a> fn(BoxStream, &'a mut Output) -> Sending<'a>,
    splice: for<'a> fn(IncomingBody, &'a mut Output) -> Sending<'a>,
}

std::thread_local! {
    static ASYNC_SENDING: Cell<Option<&'static AsyncSending>> = const { Cell::new(None) };
}

static ASYNC: AsyncSending = AsyncSending {
    stream: |chunks, out| Box::pin(send_stream(chunks, out)),
    splice: |incoming, out| {
        Box::pin(async move {
            incoming.splice_into(out).await?;
            out.flush().await.map_err(write_failed)
        })
    },
};

/// Link and turn on the sending that waits on pollables (see [`send_body`]).
pub(crate) fn enable_async_sending() {
    ASYNC_SENDING.set(Some(&ASYNC));
}

async fn send_stream(mut chunks: BoxStream, out: &mut Output) -> Result<()> {
    while let Some(chunk) = chunks.next().await {
        let chunk: Bytes = chunk?;
        out.write_all(&chunk).await.map_err(write_failed)?;
        // Each piece leaves now: an event stream must not wait for the next one.
        out.flush().await.map_err(write_failed)?;
    }
    Ok(())
}

fn write_failed(failure: Failure) -> Error {
    Error::internal(format!("writing the body failed: {}", failure.describe()))
}
