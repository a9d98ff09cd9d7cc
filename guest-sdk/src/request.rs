//! What a handler asks of a request beyond the `http` crate's own accessors: query parameters,
//! path parameters from the [`crate::Router`], and what the node tells the handler about the
//! request in its `outpost-*` headers.

use std::net::IpAddr;

use crate::Request;
use crate::router::Params;

/// Helpers on [`Request`] (`http::Request<Body>`); in scope with `use outpost_sdk::prelude::*`.
pub trait RequestExt {
    /// A request builder (`http::Request::builder`, for a [`Request`] with a [`crate::Body`]):
    /// `Request::builder().method(Method::PUT).uri(url).body(body)?`.
    fn builder() -> http::request::Builder {
        http::Request::builder()
    }

    /// A `GET` request builder: `Request::get(url).body(Body::empty())?`.
    fn get(uri: &str) -> http::request::Builder {
        http::Request::get(uri)
    }

    /// A `POST` request builder: `Request::post(url).body(body)?`.
    fn post(uri: &str) -> http::request::Builder {
        http::Request::post(uri)
    }

    /// A `PUT` request builder.
    fn put(uri: &str) -> http::request::Builder {
        http::Request::put(uri)
    }

    /// A `DELETE` request builder.
    fn delete(uri: &str) -> http::request::Builder {
        http::Request::delete(uri)
    }

    /// The value of a header as text; `None` if absent or not visible ASCII.
    fn header_str(&self, name: &str) -> Option<&str>;

    /// Every `name=value` pair of the query string, percent-decoded (`+` is a space), in order.
    fn query_pairs(&self) -> Vec<(String, String)>;

    /// The first value of a query parameter, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String>;

    /// A path parameter the [`crate::Router`] matched (`{name}` in the route), percent-decoded.
    fn param(&self, name: &str) -> Option<&str>;

    /// The client's address, as the node saw it (behind the operator's trusted proxies, the
    /// address they forwarded). The node sets it on every request it receives, replacing any the
    /// client sent (`outpost-client-ip`).
    fn client_ip(&self) -> Option<IpAddr>;

    /// The HTTP version the client spoke: `HTTP/1.1`, `HTTP/2` or `HTTP/3` (`outpost-protocol`).
    fn protocol(&self) -> Option<&str>;

    /// The TLS version of the client's connection (`TLSv1.3`), `None` over plain HTTP
    /// (`outpost-tls-version`).
    fn tls_version(&self) -> Option<&str>;

    /// The name of the node serving the request (`outpost-node`).
    fn node(&self) -> Option<&str>;

    /// The region the operator gave the node serving the request, if any (`outpost-region`).
    fn region(&self) -> Option<&str>;

    /// The request's id, as the node's access log and `outpost tail` show it
    /// (`outpost-request-id`).
    fn request_id(&self) -> Option<&str>;

    /// For a request one of the app's cron triggers sent, the trigger's schedule
    /// (`*/5 * * * *`); `None` for a client's request (`outpost-trigger`: the node removes any a
    /// client sends).
    fn trigger(&self) -> Option<&str>;

    /// For a trigger's request, the time its tick was due, in milliseconds since the Unix epoch
    /// (`outpost-scheduled-time`), as Workers' `scheduledTime`.
    fn scheduled_time(&self) -> Option<u64>;
}

impl RequestExt for Request {
    fn header_str(&self, name: &str) -> Option<&str> {
        self.headers().get(name)?.to_str().ok()
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.uri().query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.uri().query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.extensions().get::<Params>()?.get(name)
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.header_str("outpost-client-ip")?.parse().ok()
    }

    fn protocol(&self) -> Option<&str> {
        self.header_str("outpost-protocol")
    }

    fn tls_version(&self) -> Option<&str> {
        self.header_str("outpost-tls-version")
    }

    fn node(&self) -> Option<&str> {
        self.header_str("outpost-node")
    }

    fn region(&self) -> Option<&str> {
        self.header_str("outpost-region")
    }

    fn request_id(&self) -> Option<&str> {
        self.header_str("outpost-request-id")
    }

    fn trigger(&self) -> Option<&str> {
        self.header_str("outpost-trigger")
    }

    fn scheduled_time(&self) -> Option<u64> {
        self.header_str("outpost-scheduled-time")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let request = Request::get("https://edge.test/search?q=caf%C3%A9+au+lait&page=2&q=second")
            .body(Body::empty())
            .unwrap();
        assert_eq!(request.query_param("q").as_deref(), Some("café au lait"));
        assert_eq!(request.query_param("page").as_deref(), Some("2"));
        assert_eq!(request.query_param("missing"), None);
        assert_eq!(request.query_pairs().len(), 3);
    }

    #[test]
    fn node_metadata_comes_from_outpost_headers() {
        let request = Request::get("/")
            .header("outpost-client-ip", "2001:db8::7")
            .header("outpost-scheduled-time", "1700000000000")
            .header("outpost-protocol", "HTTP/2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(request.client_ip(), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(request.scheduled_time(), Some(1_700_000_000_000));
        assert_eq!(request.protocol(), Some("HTTP/2"));
        assert_eq!(request.trigger(), None);
    }
}
