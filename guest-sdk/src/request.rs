//! The request type: what the handler receives, and what it sends with [`crate::fetch`].

use wasip2::http::types::{IncomingBody, IncomingRequest, Scheme};

use crate::url::{query_pairs, split_url};
use crate::{Error, Headers, Method, Result};

/// The default cap on a body read into memory by [`Request::body`]. The node enforces the app's
/// own `limits.body_kb` before this; use [`Request::body_limited`] to accept more or less.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// An HTTP request. An incoming request reads its body lazily, on the first call that needs it.
pub struct Request {
    method: Method,
    scheme: Option<String>,
    authority: Option<String>,
    path_with_query: String,
    headers: Headers,
    // Field order matters: the body must drop before the request it came from.
    body: Body,
    _incoming: Option<IncomingRequest>,
}

enum Body {
    Bytes(Vec<u8>),
    Incoming(IncomingBody),
    Taken,
}

impl Request {
    /// A request to send with [`crate::fetch`], to an absolute `http(s)://` URL.
    pub fn new(method: Method, url: &str) -> Result<Self> {
        let parts = split_url(url)?;
        Ok(Request {
            method,
            scheme: Some(parts.scheme),
            authority: Some(parts.authority),
            path_with_query: parts.path_with_query,
            headers: Headers::new(),
            body: Body::Bytes(Vec::new()),
            _incoming: None,
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
        let headers = Headers::from_entries(incoming.headers().entries());
        let body = incoming
            .consume()
            .map_err(|()| Error::internal("the request body was already consumed"))?;
        Ok(Request {
            method: incoming.method().into(),
            scheme: incoming.scheme().map(|s| match s {
                Scheme::Http => "http".to_string(),
                Scheme::Https => "https".to_string(),
                Scheme::Other(other) => other,
            }),
            authority: incoming.authority(),
            path_with_query: incoming.path_with_query().unwrap_or_else(|| "/".into()),
            headers,
            body: Body::Incoming(body),
            _incoming: Some(incoming),
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// `http` or `https`, when known.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// The host (and port, if given) the request was addressed to.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The path, without the query: `/a/b`.
    pub fn path(&self) -> &str {
        self.path_with_query
            .split_once('?')
            .map_or(self.path_with_query.as_str(), |(path, _)| path)
    }

    /// The raw query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(self.query()?)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Path and query as sent: `/a/b?x=1`.
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The full URL, when scheme and authority are known.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme().unwrap_or("https"),
            self.authority().unwrap_or_default(),
            self.path_with_query
        )
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Shorthand for `headers().get(name)`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    /// The whole body, read into memory on first use (up to [`DEFAULT_BODY_LIMIT`]).
    pub fn body(&mut self) -> Result<&[u8]> {
        self.body_limited(DEFAULT_BODY_LIMIT)
    }

    /// The whole body, failing with 413 if it is longer than `limit` bytes.
    pub fn body_limited(&mut self, limit: usize) -> Result<&[u8]> {
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
            Body::Incoming(_) => unreachable!("read just above"),
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

    pub(crate) fn into_outgoing_parts(
        mut self,
    ) -> Result<(Method, String, String, String, Headers, Vec<u8>)> {
        let body = self.take_body()?;
        let scheme = self
            .scheme
            .take()
            .ok_or_else(|| Error::internal("an outgoing request needs a scheme"))?;
        let authority = self
            .authority
            .take()
            .ok_or_else(|| Error::internal("an outgoing request needs a host"))?;
        Ok((
            self.method.clone(),
            scheme,
            authority,
            std::mem::take(&mut self.path_with_query),
            std::mem::take(&mut self.headers),
            body,
        ))
    }
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
