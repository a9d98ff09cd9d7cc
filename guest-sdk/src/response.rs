//! The response type: built by handlers, and returned by [`crate::fetch`].

use wasip2::http::types::{OutgoingBody, OutgoingResponse, ResponseOutparam};

use crate::{Error, Headers, Result};

/// An HTTP response with its whole body in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with a body of the given content type.
    pub fn bytes(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200)
            .with_header("content-type", content_type)
            .with_body(body)
    }

    /// 200 with `value` serialized as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value).map_err(|err| {
            Error::internal(format!("serializing the JSON response failed: {err}"))
        })?;
        Ok(Self::bytes("application/json", body))
    }

    /// A redirect (301, 302, 303, 307 or 308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(status).with_header("location", location)
    }

    /// Change the status code, keeping the headers and body.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Set a header, replacing earlier values of the same name.
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Replace the body. Unless you set `content-length`, it is added from the body's length when
    /// the response is sent (except for 204 and 304).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change in place.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Take the body, consuming the response.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text_body(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|err| Error::bad_gateway(format!("response body is not UTF-8: {err}")))
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|err| {
            Error::bad_gateway(format!("response body is not the JSON expected: {err}"))
        })
    }

    pub(crate) fn from_parts(status: u16, headers: Headers, body: Vec<u8>) -> Self {
        Response {
            status,
            headers,
            body,
        }
    }

    /// Send this response through the handler's out-parameter. A response WASI refuses (a
    /// forbidden header such as `connection`, a bad status) becomes a 500 that says why.
    pub(crate) fn send(self, out: ResponseOutparam) {
        match self.to_outgoing() {
            Ok((response, body)) => {
                ResponseOutparam::set(out, Ok(response));
                if let Err(err) = crate::streams::write_all(body, &self.body) {
                    // Headers are gone already; all that is left is to say so in the log.
                    crate::log::error(format_args!("writing the response body failed: {err}"));
                }
            }
            Err(err) => {
                crate::log::error(format_args!("the response was refused: {err}"));
                let fallback = Error::internal(format!(
                    "handler built an invalid response: {}",
                    err.message()
                ))
                .into_response();
                match fallback.to_outgoing() {
                    Ok((response, body)) => {
                        ResponseOutparam::set(out, Ok(response));
                        let _ = crate::streams::write_all(body, &fallback.body);
                    }
                    Err(_) => ResponseOutparam::set(
                        out,
                        Err(wasip2::http::types::ErrorCode::InternalError(Some(
                            err.to_string(),
                        ))),
                    ),
                }
            }
        }
    }

    fn to_outgoing(&self) -> Result<(OutgoingResponse, OutgoingBody)> {
        let mut entries = self.headers.clone().into_entries();
        // A known length lets the node send the body without chunking. 204 and 304 have none.
        if !self.headers.contains("content-length") && !matches!(self.status, 204 | 304) {
            entries.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let response = OutgoingResponse::new(crate::streams::to_fields(&entries)?);
        response
            .set_status_code(self.status)
            .map_err(|()| Error::internal(format!("{} is not a valid HTTP status", self.status)))?;
        let body = response
            .body()
            .map_err(|()| Error::internal("the response body was already taken"))?;
        Ok((response, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_status_type_and_body() {
        let r = Response::text("hi");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(r.text_body().unwrap(), "hi");

        let r = Response::redirect(308, "/new").with_header("cache-control", "no-store");
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers().get("location"), Some("/new"));
        assert!(r.body().is_empty());

        let r = Response::bytes("text/csv", "a,b\n").with_status(201);
        assert_eq!((r.status(), r.body()), (201, b"a,b\n".as_slice()));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trip() {
        let r = Response::json(&serde_json::json!({"ok": true})).unwrap();
        assert_eq!(r.headers().get("content-type"), Some("application/json"));
        let back: serde_json::Value = r.json_body().unwrap();
        assert_eq!(back["ok"], true);
    }
}
