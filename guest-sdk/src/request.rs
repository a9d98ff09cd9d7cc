//! The request type: what the handler receives, and what it sends with [`crate::fetch`].
//!
//! An incoming request asks the host only for what the handler uses: the path, the headers,
//! the body and so on are each fetched on first use, so a handler that looks at one thing pays
//! for one host call.

use std::cell::OnceCell;

use wasip2::http::types::{IncomingBody, IncomingRequest, Scheme};

use crate::url::{query_pairs, split_url};
use crate::{Error, Headers, Method, Result};

/// The default cap on a body read into memory by [`Request::body`]. The node enforces the app's
/// own `limits.body_kb` before this; use [`Request::body_limited`] to accept more or less.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// An HTTP request.
pub struct Request {
    method: OnceCell<Method>,
    scheme: OnceCell<Option<String>>,
    authority: OnceCell<Option<String>>,
    path_with_query: OnceCell<String>,
    headers: OnceCell<Headers>,
    // Field order matters: the body must drop before the request it came from.
    body: Body,
    incoming: Option<IncomingRequest>,
}

enum Body {
    Bytes(Vec<u8>),
    /// Not read yet (the incoming body is consumed on first use).
    Unread,
    Incoming(IncomingBody),
    Taken,
}

fn filled<T>(value: T) -> OnceCell<T> {
    let cell = OnceCell::new();
    let _ = cell.set(value);
    cell
}

impl Request {
    /// A request to send with [`crate::fetch`], to an absolute `http(s)://` URL.
    pub fn new(method: Method, url: &str) -> Result<Self> {
        let parts = split_url(url)?;
        Ok(Request {
            method: filled(method),
            scheme: filled(Some(parts.scheme)),
            authority: filled(Some(parts.authority)),
            path_with_query: filled(parts.path_with_query),
            headers: filled(Headers::new()),
            body: Body::Bytes(Vec::new()),
            incoming: None,
        })
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Self> {
        Self::new(Method::Get, url)
    }

    /// `POST url` with a body.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Result<Self> {
        Ok(Self::new(Method::Post, url)?.with_body(body))
    }

    pub(crate) fn from_incoming(incoming: IncomingRequest) -> Result<Self> {
        Ok(Request {
            method: OnceCell::new(),
            scheme: OnceCell::new(),
            authority: OnceCell::new(),
            path_with_query: OnceCell::new(),
            headers: OnceCell::new(),
            body: Body::Unread,
            incoming: Some(incoming),
        })
    }

    fn incoming(&self) -> &IncomingRequest {
        self.incoming
            .as_ref()
            .expect("lazy request parts come from an incoming request")
    }

    /// The request method; asked of the host on first use.
    pub fn method(&self) -> &Method {
        self.method.get_or_init(|| self.incoming().method().into())
    }

    /// `http` or `https`, when known.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme
            .get_or_init(|| {
                self.incoming().scheme().map(|s| match s {
                    Scheme::Http => "http".to_string(),
                    Scheme::Https => "https".to_string(),
                    Scheme::Other(other) => other,
                })
            })
            .as_deref()
    }

    /// The host (and port, if given) the request was addressed to.
    pub fn authority(&self) -> Option<&str> {
        self.authority
            .get_or_init(|| self.incoming().authority())
            .as_deref()
    }

    /// Path and query as sent: `/a/b?x=1`.
    pub fn path_with_query(&self) -> &str {
        self.path_with_query.get_or_init(|| {
            self.incoming()
                .path_with_query()
                .unwrap_or_else(|| "/".into())
        })
    }

    /// The path, without the query: `/a/b`.
    pub fn path(&self) -> &str {
        let full = self.path_with_query();
        full.split_once('?').map_or(full, |(path, _)| path)
    }

    /// The raw query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query().split_once('?').map(|(_, q)| q)
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(self.query()?)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The full URL, when scheme and authority are known.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme().unwrap_or("https"),
            self.authority().unwrap_or_default(),
            self.path_with_query()
        )
    }

    /// The request headers; for an incoming request, asked of the host on first use.
    pub fn headers(&self) -> &Headers {
        self.headers
            .get_or_init(|| Headers::from_entries(self.incoming().headers().entries()))
    }

    /// The headers, to change before sending the request with [`crate::fetch`].
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.headers();
        self.headers.get_mut().expect("headers loaded just above")
    }

    /// Shorthand for `headers().get(name)`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }

    /// The client's address, as the node saw it (behind the operator's trusted proxies, the
    /// address they forwarded). The node sets it on every request it receives, replacing any
    /// the client sent (`outpost-client-ip`); `None` on a request built to fetch.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.header("outpost-client-ip")?.parse().ok()
    }

    /// The HTTP version the client spoke: `HTTP/1.1`, `HTTP/2` or `HTTP/3`
    /// (`outpost-protocol`).
    pub fn protocol(&self) -> Option<&str> {
        self.header("outpost-protocol")
    }

    /// The TLS version of the client's connection (`TLSv1.3`), `None` over plain HTTP
    /// (`outpost-tls-version`).
    pub fn tls_version(&self) -> Option<&str> {
        self.header("outpost-tls-version")
    }

    /// The name of the node serving the request (`outpost-node`).
    pub fn node(&self) -> Option<&str> {
        self.header("outpost-node")
    }

    /// The region the operator gave the node serving the request, if any (`outpost-region`).
    pub fn region(&self) -> Option<&str> {
        self.header("outpost-region")
    }

    /// The request's id, as the node's access log and `outpost tail` show it
    /// (`outpost-request-id`).
    pub fn request_id(&self) -> Option<&str> {
        self.header("outpost-request-id")
    }

    /// For a request one of the app's cron triggers sent, the trigger's schedule
    /// (`*/5 * * * *`); `None` for a client's request (`outpost-trigger`: the node removes any
    /// a client sends).
    pub fn trigger(&self) -> Option<&str> {
        self.header("outpost-trigger")
    }

    /// For a trigger's request, the time its tick was due, in milliseconds since the Unix
    /// epoch (`outpost-scheduled-time`), as Workers' `scheduledTime`.
    pub fn scheduled_time(&self) -> Option<u64> {
        self.header("outpost-scheduled-time")?.parse().ok()
    }

    /// Set a header, replacing earlier values of the same name; for building a request to fetch.
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<Vec<u8>>) -> Self {
        self.headers_mut().insert(name, value);
        self
    }

    /// Replace the body with these bytes; for building a request to fetch.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    /// The whole body, read into memory on first use (up to `DEFAULT_BODY_LIMIT`, 32 MiB).
    pub fn body(&mut self) -> Result<&[u8]> {
        self.body_limited(DEFAULT_BODY_LIMIT)
    }

    /// The whole body, failing with 413 if it is longer than `limit` bytes.
    pub fn body_limited(&mut self, limit: usize) -> Result<&[u8]> {
        if let Body::Unread = self.body {
            let consumed = self
                .incoming()
                .consume()
                .map_err(|()| Error::internal("the request body was already consumed"))?;
            self.body = Body::Incoming(consumed);
        }
        if let Body::Incoming(_) = self.body {
            let Body::Incoming(incoming) = std::mem::replace(&mut self.body, Body::Taken) else {
                unreachable!("checked just above")
            };
            self.body = Body::Bytes(crate::streams::read_to_end(incoming, limit)?);
        }
        match &self.body {
            Body::Bytes(bytes) if bytes.len() > limit => Err(Error::payload_too_large(format!(
                "body is larger than {limit} bytes"
            ))),
            Body::Bytes(bytes) => Ok(bytes),
            Body::Taken => Err(Error::internal("the request body was already taken")),
            Body::Unread | Body::Incoming(_) => unreachable!("read just above"),
        }
    }

    /// Move the body out, reading it first if needed.
    pub fn take_body(&mut self) -> Result<Vec<u8>> {
        self.body()?;
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Bytes(bytes) => Ok(bytes),
            _ => unreachable!("body() left bytes"),
        }
    }

    /// The body as UTF-8 text; 400 if it is not.
    pub fn text(&mut self) -> Result<String> {
        Ok(String::from_utf8(self.take_body()?)?)
    }

    /// The body parsed as JSON; 400 with serde's message if it does not parse.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        serde_json::from_slice(self.body()?)
            .map_err(|err| Error::bad_request(format!("invalid JSON body: {err}")))
    }

    pub(crate) fn into_outgoing_parts(mut self) -> Result<OutgoingParts> {
        let body = self.take_body()?;
        let scheme = self
            .scheme()
            .map(str::to_string)
            .ok_or_else(|| Error::internal("an outgoing request needs a scheme"))?;
        let authority = self
            .authority()
            .map(str::to_string)
            .ok_or_else(|| Error::internal("an outgoing request needs a host"))?;
        Ok(OutgoingParts {
            method: self.method().clone(),
            scheme,
            authority,
            path_with_query: self.path_with_query().to_string(),
            headers: self.headers().clone(),
            body,
        })
    }
}

/// What [`crate::fetch`] needs of a request.
pub(crate) struct OutgoingParts {
    pub method: Method,
    pub scheme: String,
    pub authority: String,
    pub path_with_query: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_request_parts() {
        let mut req = Request::post("https://origin.test/api/items?page=2&q=a+b", "payload")
            .unwrap()
            .with_header("X-Trace", "1");
        assert_eq!(req.path(), "/api/items");
        assert_eq!(req.query(), Some("page=2&q=a+b"));
        assert_eq!(req.query_param("q").as_deref(), Some("a b"));
        assert_eq!(req.query_param("missing"), None);
        assert_eq!(req.header("x-trace"), Some("1"));
        assert_eq!(req.url(), "https://origin.test/api/items?page=2&q=a+b");
        assert_eq!(req.body().unwrap(), b"payload");
        assert!(matches!(
            req.body_limited(3),
            Err(e) if e.status() == 413
        ));
        assert_eq!(req.text().unwrap(), "payload");
        assert_eq!(req.take_body().unwrap_err().status(), 500);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_body_errors_are_400() {
        #[derive(serde::Deserialize, Debug)]
        struct Item {
            #[allow(dead_code)]
            name: String,
        }
        let mut req = Request::post("https://o.test/", "{\"nam\":1}").unwrap();
        let err = req.json::<Item>().unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().contains("missing field `name`"), "{err}");
    }
}
