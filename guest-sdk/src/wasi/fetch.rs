//! A fetch through `wasi:http/outgoing-handler`: the request head goes to the host, the body is
//! written while the host sends it, and the response comes back when its head arrives.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{OutgoingRequest, RequestOptions, Scheme};

use super::IncomingBody;
use super::executor::wait_once;
use super::fields::{Stage, fetch_error, from_entries, to_fields, to_wasi_method};
use super::outgoing::send_body;
use crate::fetch::FetchOptions;
use crate::{Body, Error, Request, Response, Result};

pub(crate) async fn fetch(
    request: Request,
    options: FetchOptions,
    authority: &str,
) -> Result<Response> {
    // A fetch waits on pollables, and its bodies stream both ways.
    super::enable_async_sending();
    let (parts, body) = request.into_parts();
    let outgoing = OutgoingRequest::new(to_fields(&parts.headers, None)?);
    let invalid = |what: &str| Error::internal(format!("invalid outgoing request {what}"));
    outgoing
        .set_method(&to_wasi_method(&parts.method))
        .map_err(|()| invalid("method"))?;
    let scheme = match parts.uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") | None => Scheme::Https,
        Some(other) => Scheme::Other(other.to_string()),
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing
        .body()
        .map_err(|()| Error::internal("the outgoing body was already taken"))?;

    let pending = outgoing_handler::handle(outgoing, request_options(options)?)
        .map_err(|code| fetch_error(authority, &code, Stage::Head))?;
    let send = async {
        send_body(body, outgoing_body).await.map_err(|err| {
            Error::bad_gateway(format!(
                "sending the request body to {authority} failed: {}",
                err.message()
            ))
        })
    };
    let receive = async {
        wait_once(pending.subscribe()).await;
        let incoming = pending
            .get()
            .ok_or_else(|| Error::internal("the fetch response was not ready"))?
            .map_err(|()| Error::internal("the fetch response was already taken"))?
            .map_err(|code| fetch_error(authority, &code, Stage::Head))?;
        let status = incoming.status();
        let headers = from_entries(incoming.headers().entries());
        let body = incoming
            .consume()
            .map_err(|()| Error::internal("the fetch response body was already taken"))?;
        let body = IncomingBody::fetched(body, authority)?;
        let mut response = Response::new(Body::from_wasi(body));
        *response.status_mut() = http::StatusCode::from_u16(status).map_err(|_| {
            Error::bad_gateway(format!("{authority} answered with status {status}"))
        })?;
        *response.headers_mut() = headers;
        Ok::<_, Error>(response)
    };
    // Both at once: a large body is sent while the response may already be on its way. An
    // origin that answers without reading the whole body (a 413, say) still has its answer
    // returned.
    let (sent, received) = futures_lite::future::zip(send, receive).await;
    let response = received?;
    if let Err(err) = sent {
        crate::log::warn(format_args!("{err} (the response came anyway)"));
    }
    Ok(response)
}

/// The timeouts as `wasi:http` request options; `None` when all are the host's defaults.
fn request_options(options: FetchOptions) -> Result<Option<RequestOptions>> {
    if options == FetchOptions::default() {
        return Ok(None);
    }
    let wasi = RequestOptions::new();
    let nanos = |d: std::time::Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    let unsupported =
        |which: &str| Error::internal(format!("this host does not support a {which} timeout"));
    if let Some(timeout) = options.connect_timeout {
        wasi.set_connect_timeout(Some(nanos(timeout)))
            .map_err(|()| unsupported("connect"))?;
    }
    if let Some(timeout) = options.first_byte_timeout {
        wasi.set_first_byte_timeout(Some(nanos(timeout)))
            .map_err(|()| unsupported("first-byte"))?;
    }
    if let Some(timeout) = options.between_bytes_timeout {
        wasi.set_between_bytes_timeout(Some(nanos(timeout)))
            .map_err(|()| unsupported("between-bytes"))?;
    }
    Ok(Some(wasi))
}
