//! The handler error: an HTTP status with a message, so `?` turns failures into responses.

use std::fmt;

use crate::Response;

/// A failure that becomes an HTTP response: `status`, a `text/plain` body with the message, and
/// any extra headers (such as `Allow` on a 405).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: u16,
    message: String,
    headers: Vec<(String, String)>,
}

/// The result of a handler or SDK call; the error defaults to [`Error`], so `?` turns a failure
/// into the response it stands for.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with any status and message; the named constructors below cover the common codes.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404: nothing here.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 405 with the `Allow` header listing the accepted methods.
    pub fn method_not_allowed(allowed: &[crate::Method]) -> Self {
        let allow = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(405, format!("method not allowed; use {allow}")).with_header("allow", allow)
    }

    /// 413: the request body is larger than the handler accepts.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }

    /// 500: the handler failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// 502: an upstream fetch failed.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, message)
    }

    /// Add a header to send with the error response, such as `retry-after` on a 503.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The HTTP status code the error is sent with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message, sent as the `text/plain` body (with a trailing newline).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response this error is sent as.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(format!("{}\n", self.message));
        for (name, value) in self.headers {
            response = response.with_header(name, value);
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::internal(format!("i/o error: {err}"))
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(err: std::string::FromUtf8Error) -> Self {
        Error::bad_request(format!("body is not valid UTF-8: {err}"))
    }
}

impl From<Error> for Response {
    fn from(err: Error) -> Self {
        err.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    #[test]
    fn method_not_allowed_lists_methods_in_allow_header() {
        let response = Error::method_not_allowed(&[Method::Post, Method::Options]).into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers().get("allow"), Some("POST, OPTIONS"));
        assert_eq!(
            response.headers().get("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.body(), b"method not allowed; use POST, OPTIONS\n");
    }
}
