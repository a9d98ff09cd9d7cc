//! Outbound HTTP through `wasi:http/outgoing-handler`. On Outpost only the app's allow-listed
//! origins can be reached; any other host fails with 502 and the host's reason.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, OutgoingRequest, Scheme};

use crate::request::OutgoingParts;
use crate::{Error, Headers, Request, Response, Result};

/// The largest response body `fetch` reads into memory.
const MAX_RESPONSE_BODY: usize = 32 * 1024 * 1024;

/// Send `request` and wait for the whole response.
pub fn fetch(request: Request) -> Result<Response> {
    let OutgoingParts {
        method,
        scheme,
        authority,
        path_with_query,
        mut headers,
        body,
    } = request.into_outgoing_parts()?;
    headers.remove_hop_by_hop();
    let outgoing = OutgoingRequest::new(crate::streams::to_fields(&headers.into_entries())?);
    let invalid = |what: &str| Error::internal(format!("invalid outgoing request {what}"));
    outgoing
        .set_method(&(&method).into())
        .map_err(|()| invalid("method"))?;
    let scheme = match scheme.as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&path_with_query))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing
        .body()
        .map_err(|()| Error::internal("the outgoing body was already taken"))?;

    // Hand the request over first: the host consumes the body while we write it.
    let future =
        outgoing_handler::handle(outgoing, None).map_err(|code| fetch_failed(&authority, &code))?;
    crate::streams::write_all(outgoing_body, &body)?;

    let incoming = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let incoming = incoming
        .map_err(|()| Error::internal("the fetch response was already taken"))?
        .map_err(|code| fetch_failed(&authority, &code))?;
    let status = incoming.status();
    let mut headers = Headers::from_entries(incoming.headers().entries());
    // So the response can be returned from a handler as it is.
    headers.remove_hop_by_hop();
    let body = incoming
        .consume()
        .map_err(|()| Error::internal("the fetch response body was already taken"))?;
    let body = crate::streams::read_to_end(body, MAX_RESPONSE_BODY).map_err(|err| {
        Error::bad_gateway(format!(
            "reading the response of {authority} failed: {}",
            err.message()
        ))
    })?;
    drop(incoming);
    Ok(Response::from_parts(status, headers, body))
}

fn fetch_failed(authority: &str, code: &ErrorCode) -> Error {
    let reason = match code {
        ErrorCode::HttpRequestDenied => {
            "denied: the host is not in this app's outbound allow-list".to_string()
        }
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    };
    Error::bad_gateway(format!("fetch to {authority} failed: {reason}"))
}
