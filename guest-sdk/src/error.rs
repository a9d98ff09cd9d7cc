//! The handler error: an HTTP status with a message, so `?` turns failures into responses.

use std::fmt;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::{Body, Response};

/// A failure that becomes an HTTP response: `status`, a `text/plain` body with the message, and
/// any extra headers (such as `Allow` on a 405).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The result of a handler or SDK call; the error defaults to [`Error`], so `?` turns a failure
/// into the response it stands for.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with any status and message; the named constructors below cover the common codes.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing here.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405 with the `Allow` header listing the accepted methods.
    pub fn method_not_allowed(allowed: &[Method]) -> Self {
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("method not allowed; use {allow}");
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message).with_header(http::header::ALLOW, allow)
    }

    /// 413: the body is larger than the handler accepts.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 500: the handler failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 502: an upstream fetch failed.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 504: an upstream fetch timed out.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// Add a header to send with the error response, such as `retry-after` on a 503. A name or
    /// value that is not valid HTTP is dropped (the error still goes out).
    pub fn with_header<N, V>(mut self, name: N, value: V) -> Self
    where
        N: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        if let (Ok(name), Ok(value)) = (name.try_into(), value.try_into()) {
            self.headers.push((name, value));
        }
        self
    }

    /// The HTTP status the error is sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message, sent as the `text/plain` body (with a trailing newline).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response this error is sent as.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(format!("{}\n", self.message)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
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

/// A response the handler built with `http`'s builder that does not hold together (a bad header
/// name, say) is the handler's fault: 500 with the builder's reason.
impl From<http::Error> for Error {
    fn from(err: http::Error) -> Self {
        Error::internal(format!("invalid response or request: {err}"))
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

    #[test]
    fn method_not_allowed_lists_methods_in_allow_header() {
        let response = Error::method_not_allowed(&[Method::POST, Method::OPTIONS]).into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST, OPTIONS");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        let body = crate::testing::block_on(response.into_body().bytes()).unwrap();
        assert_eq!(body, "method not allowed; use POST, OPTIONS\n");
    }

    #[test]
    fn invalid_extra_headers_are_dropped_not_fatal() {
        let response = Error::internal("x")
            .with_header("retry-after", "1")
            .with_header("bad header", "v")
            .into_response();
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers().len(), 2);
    }
}
