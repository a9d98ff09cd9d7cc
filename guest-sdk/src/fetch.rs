//! Outbound HTTP through `wasi:http/outgoing-handler`, async: several fetches can be in flight
//! at once ([`crate::join_all`], [`crate::spawn`]), the request body is sent as it is produced,
//! and the response comes back as soon as its head arrives, its body streamed.
//!
//! On Outpost only the app's allow-listed origins can be reached; any other host fails with 502
//! and the host's reason. Off wasm (a handler's unit tests) requests go to the stub set with
//! [`crate::testing::on_fetch`].

use std::time::Duration;

use http::header::{self, HeaderName};

use crate::{Error, Request, Response, Result};

/// Timeouts for one fetch, passed to the host as `wasi:http`'s `request-options`. Unset ones
/// take the node's defaults (connect 10 s, first byte 30 s, between bytes 30 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long to wait for the connection (DNS, TCP and TLS) to the origin.
    pub connect_timeout: Option<Duration>,
    /// How long to wait, once connected, for the head of the response.
    pub first_byte_timeout: Option<Duration>,
    /// How long the response body may pause between two pieces.
    pub between_bytes_timeout: Option<Duration>,
}

impl FetchOptions {
    /// Wait at most `timeout` for the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Wait at most `timeout` for the response head once connected.
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    /// Let the response body pause at most `timeout` between pieces.
    pub fn between_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.between_bytes_timeout = Some(timeout);
        self
    }
}

/// Send `request` (an absolute `http(s)://` URI) and return the response once its head
/// arrives; read its body as a stream or whole. Failures are errors that say what failed: 502
/// for a refused or broken exchange, 504 for a timeout, naming which one.
pub async fn fetch(request: Request) -> Result<Response> {
    fetch_with(request, FetchOptions::default()).await
}

/// [`fetch`] with timeouts.
pub async fn fetch_with(request: Request, options: FetchOptions) -> Result<Response> {
    let mut request = request;
    let authority = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| {
            Error::internal(format!(
                "fetch needs an absolute http(s):// URL, not {:?}",
                request.uri().to_string()
            ))
        })?;
    remove_hop_by_hop(request.headers_mut());
    #[cfg(target_arch = "wasm32")]
    let mut response = crate::wasi::fetch(request, options, &authority).await?;
    #[cfg(not(target_arch = "wasm32"))]
    let mut response = crate::testing::fetch_stub(request, options, &authority).await?;
    // So a fetched response can be returned from a handler as it is.
    remove_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn remove_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What a timeout while waiting for `stage` says.
pub(crate) fn timed_out(authority: &str, stage: &str) -> Error {
    Error::gateway_timeout(format!("fetch to {authority} timed out: {stage}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use crate::prelude::*;
    use crate::testing::{block_on, on_fetch};

    #[test]
    fn fetch_goes_to_the_stub_without_hop_by_hop_headers() {
        on_fetch(|request| async move {
            assert!(request.headers().get("connection").is_none());
            let name = request.uri().path().to_string();
            Ok(Response::text(format!("stub saw {name}"))
                .with_header("connection", "close")
                .unwrap())
        });
        let request = Request::get("https://api.test/thing")
            .header("connection", "keep-alive")
            .body(Body::empty())
            .unwrap();
        let response = block_on(fetch(request)).unwrap();
        assert!(response.headers().get("connection").is_none());
        assert_eq!(
            block_on(response.into_body().text()).unwrap(),
            "stub saw /thing"
        );
    }

    #[test]
    fn a_relative_url_is_refused() {
        let request = Request::get("/relative").body(Body::empty()).unwrap();
        let err = block_on(fetch(request)).unwrap_err();
        assert!(err.message().contains("absolute"), "{err}");
    }
}
