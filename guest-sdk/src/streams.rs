//! Moving whole bodies through WASI streams: read an incoming body to the end, write an outgoing
//! body out. Both block the (single-threaded) guest on the stream's pollable, which is how a
//! WASI 0.2 guest waits.

use wasip2::http::types::{Fields, IncomingBody, OutgoingBody};
use wasip2::io::streams::StreamError;

use crate::{Error, Result};

/// Read chunks of at most this size; the host's own buffers are of this order.
const READ_CHUNK: u64 = 64 * 1024;
/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

/// Read an incoming body to its end, refusing more than `limit` bytes.
pub(crate) fn read_to_end(body: IncomingBody, limit: usize) -> Result<Vec<u8>> {
    let stream = body
        .stream()
        .map_err(|()| Error::internal("the body stream was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(Error::payload_too_large(format!(
                        "body is larger than {limit} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(Error::bad_request(format!(
                    "reading the body failed: {}",
                    err.to_debug_string()
                )));
            }
        }
    }
    // The stream is a child of the body: it must go before the body is finished.
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Write `bytes` as the whole of `body`, then finish it.
pub(crate) fn write_all(body: OutgoingBody, bytes: &[u8]) -> Result<()> {
    let stream = body
        .write()
        .map_err(|()| Error::internal("the body stream was already taken"))?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream.blocking_write_and_flush(chunk).map_err(|err| {
            Error::internal(match err {
                StreamError::Closed => "the peer closed the body stream".to_string(),
                StreamError::LastOperationFailed(e) => e.to_debug_string(),
            })
        })?;
    }
    drop(stream);
    OutgoingBody::finish(body, None)
        .map_err(|code| Error::internal(format!("finishing the body failed: {code:?}")))
}

/// Build a WASI `fields` resource from header entries in one host call; if WASI refuses the
/// list, find and name the header it refused.
pub(crate) fn to_fields(entries: &[(String, Vec<u8>)]) -> Result<Fields> {
    Fields::from_list(entries).map_err(|err| {
        let culprit = entries
            .iter()
            .find(|(name, value)| Fields::from_list(&[(name.clone(), value.clone())]).is_err())
            .map_or_else(
                || "a header".to_string(),
                |(name, _)| format!("header {name:?}"),
            );
        Error::internal(format!("{culprit} refused: {err:?}"))
    })
}
