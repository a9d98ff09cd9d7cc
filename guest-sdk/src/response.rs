//! Building responses in one line: `Response::text("hi")`, `Response::json(&value)?`,
//! `Response::redirect(StatusCode::FOUND, "/login")`, on top of `http`'s own builder.

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::{Body, Response};

/// Constructors and builders on [`Response`] (`http::Response<Body>`); in scope with
/// `use outpost_sdk::prelude::*`.
pub trait ResponseExt: Sized {
    /// 200 with a `text/plain; charset=utf-8` body.
    fn text(body: impl Into<String>) -> Self;

    /// 200 with a `text/html; charset=utf-8` body.
    fn html(body: impl Into<String>) -> Self;

    /// 200 with a body of the given content type.
    fn bytes(content_type: &'static str, body: impl Into<Body>) -> Self;

    /// 200 with `value` serialized as JSON (`application/json`).
    #[cfg(feature = "json")]
    fn json<T: serde::Serialize + ?Sized>(value: &T) -> crate::Result<Self>;

    /// A redirect (301, 302, 303, 307 or 308) to `location`.
    fn redirect(status: StatusCode, location: &str) -> crate::Result<Self>;

    /// An empty response with this status.
    fn empty(status: StatusCode) -> Self;

    /// Change the status, keeping headers and body.
    fn with_status(self, status: StatusCode) -> Self;

    /// Set a header, replacing earlier values of the same name. A name or value that is not
    /// valid HTTP is a 500 that names it, when the handler returns.
    fn with_header<N, V>(self, name: N, value: V) -> crate::Result<Self>
    where
        N: TryInto<HeaderName>,
        N::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>;
}

impl ResponseExt for Response {
    fn text(body: impl Into<String>) -> Self {
        typed("text/plain; charset=utf-8", body.into().into())
    }

    fn html(body: impl Into<String>) -> Self {
        typed("text/html; charset=utf-8", body.into().into())
    }

    fn bytes(content_type: &'static str, body: impl Into<Body>) -> Self {
        typed(content_type, body.into())
    }

    #[cfg(feature = "json")]
    fn json<T: serde::Serialize + ?Sized>(value: &T) -> crate::Result<Self> {
        Ok(typed("application/json", Body::from_json(value)?))
    }

    fn redirect(status: StatusCode, location: &str) -> crate::Result<Self> {
        if !status.is_redirection() {
            return Err(crate::Error::internal(format!(
                "{status} is not a redirect status"
            )));
        }
        Response::empty(status).with_header(LOCATION, location)
    }

    fn empty(status: StatusCode) -> Self {
        Response::new(Body::empty()).with_status(status)
    }

    fn with_status(mut self, status: StatusCode) -> Self {
        *self.status_mut() = status;
        self
    }

    fn with_header<N, V>(mut self, name: N, value: V) -> crate::Result<Self>
    where
        N: TryInto<HeaderName>,
        N::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        let name = name.try_into().map_err(Into::into)?;
        let value = value.try_into().map_err(Into::into)?;
        self.headers_mut().insert(name, value);
        Ok(self)
    }
}

fn typed(content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    #[test]
    fn builders_set_status_type_and_body() {
        let r = Response::text("hi");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(block_on(r.into_body().text()).unwrap(), "hi");

        let r = Response::redirect(StatusCode::PERMANENT_REDIRECT, "/new")
            .unwrap()
            .with_header("cache-control", "no-store")
            .unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[LOCATION], "/new");
        assert_eq!(r.body().exact_len(), Some(0));
        assert!(Response::redirect(StatusCode::OK, "/").is_err());

        let r = Response::bytes("text/csv", "a,b\n").with_status(StatusCode::CREATED);
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(block_on(r.into_body().bytes()).unwrap(), "a,b\n");

        let err = Response::text("x")
            .with_header("bad name", "v")
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trip() {
        let r = Response::json(&serde_json::json!({"ok": true})).unwrap();
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let back: serde_json::Value = block_on(r.into_body().json()).unwrap();
        assert_eq!(back["ok"], true);
    }
}
