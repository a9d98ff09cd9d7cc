//! Reading a body the host delivers (a request's, or a fetched response's) piece by piece as it
//! arrives, waiting on the stream's pollable between pieces.

use bytes::Bytes;
use wasip2::http::types::{ErrorCode, IncomingBody as WasiIncomingBody, IncomingRequest};
use wasip2::io::streams::StreamError;

use super::fields::{Stage, fetch_error};
use super::streams::{Failure, Input, Output};
use crate::{Error, Result};

/// The most one read asks of the host; its own buffers are of this order.
const READ_CHUNK: u64 = 64 * 1024;

/// A body from the host: a request's (consumed on first read, so a handler that never reads it
/// costs no host call) or a fetched response's.
pub(crate) struct IncomingBody {
    state: State,
    source: Source,
}

enum State {
    Unread(IncomingRequest),
    /// Field order matters: the stream is a child of the body and drops first.
    Open(Input, WasiIncomingBody),
    Done,
}

enum Source {
    Request,
    Fetch { authority: String },
}

fn open(body: WasiIncomingBody) -> Result<State> {
    let stream = body
        .stream()
        .map_err(|()| Error::internal("the body stream was already taken"))?;
    Ok(State::Open(Input::new(stream), body))
}

impl IncomingBody {
    pub(super) fn request(request: IncomingRequest) -> Self {
        IncomingBody {
            state: State::Unread(request),
            source: Source::Request,
        }
    }

    pub(super) fn fetched(body: WasiIncomingBody, authority: &str) -> Result<Self> {
        Ok(IncomingBody {
            state: open(body)?,
            source: Source::Fetch {
                authority: authority.to_string(),
            },
        })
    }

    fn input(&mut self) -> Result<Option<&mut Input>> {
        if let State::Unread(request) = &self.state {
            let body = request
                .consume()
                .map_err(|()| Error::internal("the request body was already taken"))?;
            self.state = open(body)?;
        }
        Ok(match &mut self.state {
            State::Open(input, _) => Some(input),
            _ => None,
        })
    }

    /// The next piece, `None` at the end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let Some(input) = self.input()? else {
            return Ok(None);
        };
        match input.read(READ_CHUNK).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(StreamError::Closed) => {
                self.finish();
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(err)) => {
                self.state = State::Done;
                Err(self.failed(&Failure::Failed(err)))
            }
        }
    }

    /// Move the rest of the body into `out` without passing it through the guest's memory.
    pub(crate) async fn splice_into(mut self, out: &mut Output) -> Result<()> {
        let Some(input) = self.input()? else {
            return Ok(());
        };
        let moved = out.splice_all(input).await;
        self.finish();
        moved.map(drop).map_err(|failure| self.failed(&failure))
    }

    /// As [`IncomingBody::splice_into`], blocking: no pollable is waited on.
    pub(crate) fn blocking_splice_into(mut self, out: &Output) -> Result<()> {
        let Some(input) = self.input()? else {
            return Ok(());
        };
        let moved = out.blocking_splice_all(input);
        self.finish();
        moved.map(drop).map_err(|failure| self.failed(&failure))
    }

    fn finish(&mut self) {
        if let State::Open(input, body) = std::mem::replace(&mut self.state, State::Done) {
            drop(input);
            // Trailers are not passed on; finishing tells the host the body was read whole.
            drop(WasiIncomingBody::finish(body));
        }
    }

    fn failed(&self, failure: &Failure) -> Error {
        let code = match failure {
            Failure::Failed(err) => {
                wasip2::http::types::http_error_code(err).or_else(|| code_from_message(err))
            }
            Failure::Closed => None,
        };
        match (&self.source, code) {
            (Source::Fetch { authority }, Some(code)) => fetch_error(authority, &code, Stage::Body),
            (Source::Fetch { authority }, None) => Error::bad_gateway(format!(
                "reading the body of {authority} failed: {}",
                failure.describe()
            )),
            (Source::Request, _) => Error::bad_request(format!(
                "reading the request body failed: {}",
                failure.describe()
            )),
        }
    }
}

/// The error code a body error stands for when `http-error-code` does not say: wasmtime 48
/// passes a fetched body's failure as a plain error whose message is the code's name, so the
/// timeouts are recognised by that.
fn code_from_message(err: &wasip2::io::error::Error) -> Option<ErrorCode> {
    let message = err.to_debug_string();
    match message.lines().next()?.trim() {
        "connection read timeout" => Some(ErrorCode::ConnectionReadTimeout),
        "HTTP response timeout" => Some(ErrorCode::HttpResponseTimeout),
        "connection timeout" => Some(ErrorCode::ConnectionTimeout),
        "connection terminated" => Some(ErrorCode::ConnectionTerminated),
        _ => None,
    }
}
