//! HTTP methods, convertible to and from the WASI representation.

use std::fmt;

use wasip2::http::types::Method as WasiMethod;

/// An HTTP request method. The standard methods have a variant each; any other name is kept as
/// [`Method::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: read a resource.
    Get,
    /// `HEAD`: like `GET`, but the response has no body.
    Head,
    /// `POST`: send data for the resource to process.
    Post,
    /// `PUT`: replace the resource with the request body.
    Put,
    /// `DELETE`: remove the resource.
    Delete,
    /// `CONNECT`: open a tunnel to the target.
    Connect,
    /// `OPTIONS`: ask what the resource supports; also the CORS preflight.
    Options,
    /// `TRACE`: echo the request back, for diagnostics.
    Trace,
    /// `PATCH`: change part of the resource.
    Patch,
    /// Any other method name, kept exactly as sent (case included), such as `PURGE`.
    Other(String),
}

impl Method {
    /// The method name as sent on the wire, such as `"GET"`; for `Other`, its name unchanged.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(other) => other,
        }
    }

    /// Parse a method name; standard names are matched case-sensitively, as HTTP requires.
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<WasiMethod> for Method {
    fn from(method: WasiMethod) -> Self {
        match method {
            WasiMethod::Get => Method::Get,
            WasiMethod::Head => Method::Head,
            WasiMethod::Post => Method::Post,
            WasiMethod::Put => Method::Put,
            WasiMethod::Delete => Method::Delete,
            WasiMethod::Connect => Method::Connect,
            WasiMethod::Options => Method::Options,
            WasiMethod::Trace => Method::Trace,
            WasiMethod::Patch => Method::Patch,
            WasiMethod::Other(other) => Method::parse(&other),
        }
    }
}

impl From<&Method> for WasiMethod {
    fn from(method: &Method) -> Self {
        match method {
            Method::Get => WasiMethod::Get,
            Method::Head => WasiMethod::Head,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
            Method::Connect => WasiMethod::Connect,
            Method::Options => WasiMethod::Options,
            Method::Trace => WasiMethod::Trace,
            Method::Patch => WasiMethod::Patch,
            Method::Other(other) => WasiMethod::Other(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_keeps_unknown_methods() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE",
        ] {
            assert_eq!(Method::parse(name).as_str(), name);
        }
        assert_eq!(Method::parse("get"), Method::Other("get".into()));
    }
}
