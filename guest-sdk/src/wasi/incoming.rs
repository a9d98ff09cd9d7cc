//! The request the host hands the handler, as an `http::Request` whose body is read from the
//! host only when the handler reads it.

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use wasip2::http::types::{IncomingRequest, Scheme as WasiScheme};

use super::IncomingBody;
use super::fields::{from_entries, from_wasi_method};
use crate::{Body, Error, Request, Result};

/// Method, URI and headers from the host (one call each); the body stays with the host until
/// read. A URI the `http` crate refuses is the client's fault: 400.
pub(crate) fn request_from(incoming: IncomingRequest) -> Result<Request> {
    let method = from_wasi_method(incoming.method())?;
    let headers = from_entries(incoming.headers().entries());
    let uri = uri(&incoming)?;
    let mut request = Request::new(Body::from_wasi(IncomingBody::request(incoming)));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

fn uri(incoming: &IncomingRequest) -> Result<Uri> {
    let bad = |what: &str, value: &str| Error::bad_request(format!("invalid {what} {value:?}"));
    let path = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let path = PathAndQuery::try_from(path.as_str()).map_err(|_| bad("path", &path))?;
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path);
    if let Some(authority) = incoming.authority() {
        parts.authority = Some(
            Authority::try_from(authority.as_str()).map_err(|_| bad("authority", &authority))?,
        );
        parts.scheme = Some(match incoming.scheme() {
            Some(WasiScheme::Http) => Scheme::HTTP,
            Some(WasiScheme::Other(other)) => {
                Scheme::try_from(other.as_str()).map_err(|_| bad("scheme", &other))?
            }
            Some(WasiScheme::Https) | None => Scheme::HTTPS,
        });
    }
    Uri::from_parts(parts).map_err(|err| Error::bad_request(format!("invalid URI: {err}")))
}
