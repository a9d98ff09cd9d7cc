//! Between `http`'s types and `wasi:http`'s: header lists, methods and error codes.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use wasip2::http::types::{ErrorCode, Fields, Method as WasiMethod};

use crate::{Error, Result};

/// A WASI `fields` resource from a header map in one host call; `extra` is added after (the
/// content length the SDK computed). If WASI refuses the list, find and name the header.
pub(super) fn to_fields(headers: &HeaderMap, extra: Option<(&str, String)>) -> Result<Fields> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        entries.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    if let Some((name, value)) = extra {
        entries.push((name.to_string(), value.into_bytes()));
    }
    Fields::from_list(&entries).map_err(|err| {
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

/// A header map from WASI's list; the host has checked every name and value already.
pub(super) fn from_entries(entries: Vec<(String, Vec<u8>)>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(entries.len());
    for (name, value) in entries {
        // The value's bytes are kept as they came, not copied.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(bytes::Bytes::from(value)),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

pub(super) fn to_wasi_method(method: &Method) -> WasiMethod {
    match *method {
        Method::GET => WasiMethod::Get,
        Method::HEAD => WasiMethod::Head,
        Method::POST => WasiMethod::Post,
        Method::PUT => WasiMethod::Put,
        Method::DELETE => WasiMethod::Delete,
        Method::CONNECT => WasiMethod::Connect,
        Method::OPTIONS => WasiMethod::Options,
        Method::TRACE => WasiMethod::Trace,
        Method::PATCH => WasiMethod::Patch,
        ref other => WasiMethod::Other(other.as_str().to_string()),
    }
}

pub(super) fn from_wasi_method(method: WasiMethod) -> Result<Method> {
    Ok(match method {
        WasiMethod::Get => Method::GET,
        WasiMethod::Head => Method::HEAD,
        WasiMethod::Post => Method::POST,
        WasiMethod::Put => Method::PUT,
        WasiMethod::Delete => Method::DELETE,
        WasiMethod::Connect => Method::CONNECT,
        WasiMethod::Options => Method::OPTIONS,
        WasiMethod::Trace => Method::TRACE,
        WasiMethod::Patch => Method::PATCH,
        WasiMethod::Other(other) => Method::from_bytes(other.as_bytes())
            .map_err(|_| Error::bad_request(format!("invalid method {other:?}")))?,
    })
}

/// Where in a fetch a failure happened, so its error can say which timeout ran out.
#[derive(Clone, Copy)]
pub(super) enum Stage {
    Head,
    Body,
}

/// The error a fetch to `authority` failing with `code` becomes: 504 for a timeout (naming
/// which), 502 otherwise.
pub(super) fn fetch_error(authority: &str, code: &ErrorCode, stage: Stage) -> Error {
    let timed_out = |what: &str| crate::fetch::timed_out(authority, what);
    match (code, stage) {
        (ErrorCode::DnsTimeout, _) => {
            timed_out("resolving the name took longer than the connect timeout")
        }
        (ErrorCode::ConnectionTimeout, _) => {
            timed_out("connecting took longer than the connect timeout")
        }
        (ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout, Stage::Head) => {
            timed_out("no response within the first-byte timeout")
        }
        (ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout, Stage::Body) => {
            timed_out("the body paused longer than the between-bytes timeout")
        }
        (ErrorCode::HttpRequestDenied, _) => Error::bad_gateway(format!(
            "fetch to {authority} denied: the host is not in this app's outbound allow-list"
        )),
        (ErrorCode::DestinationIpProhibited, _) => Error::bad_gateway(format!(
            "fetch to {authority} denied: its address is not one apps may reach"
        )),
        (ErrorCode::InternalError(Some(message)), _) => {
            Error::bad_gateway(format!("fetch to {authority} failed: {message}"))
        }
        (other, _) => Error::bad_gateway(format!("fetch to {authority} failed: {other:?}")),
    }
}
