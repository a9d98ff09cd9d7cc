//! The optional plain-HTTP listener: every request is answered with a permanent redirect to the
//! same host and path over HTTPS.

use hyper::body::Incoming;

use outpost_net::listener::{Connection, Handler};
use outpost_runtime::body::{ResponseBody, host_response};

/// The plain-HTTP listener's handler: a 308 to HTTPS for every request.
pub struct RedirectToHttps {
    /// The HTTPS port to send clients to; left out of the URL when it is 443.
    pub https_port: u16,
}

impl RedirectToHttps {
    /// The HTTPS URL for `host` (its port dropped) and `path_and_query`.
    pub fn location(&self, host: &str, path_and_query: &str) -> String {
        let host = strip_port(host);
        match self.https_port {
            443 => format!("https://{host}{path_and_query}"),
            port => format!("https://{host}:{port}{path_and_query}"),
        }
    }
}

impl Handler for RedirectToHttps {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        _connection: Connection,
    ) -> http::Response<ResponseBody> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        let Some(host) = host.filter(|h| !h.is_empty() && !h.contains(['/', '\\', '@'])) else {
            return host_response(
                400,
                "outpost: this listener redirects to HTTPS and needs a Host header",
            );
        };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = self.location(host, path);
        let mut response = host_response(308, &format!("moved to {location}"));
        if let Ok(value) = http::HeaderValue::from_str(&location) {
            response.headers_mut().insert(http::header::LOCATION, value);
        }
        response
    }
}

/// A Host header without its port, if it has one.
pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_keeps_host_path_and_query() {
        let r = RedirectToHttps { https_port: 8443 };
        assert_eq!(
            r.location("example.com:8080", "/a?b=1"),
            "https://example.com:8443/a?b=1"
        );
        assert_eq!(r.location("[::1]:8080", "/"), "https://[::1]:8443/");
        let r = RedirectToHttps { https_port: 443 };
        assert_eq!(r.location("example.com", "/x"), "https://example.com/x");
    }
}
