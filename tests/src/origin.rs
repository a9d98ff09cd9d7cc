//! A plain-HTTP origin server on loopback for the fetch tests: it says what it received.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A plain HTTP/1.1 origin that answers with what it received (see [`Origin::start`]); it stops
/// serving when dropped.
pub struct Origin {
    /// Where it listens: 127.0.0.1 on an ephemeral port.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Origin {
    /// Serve on 127.0.0.1 on an ephemeral port, in the current tokio runtime.
    ///
    /// `GET /redirect` answers 302 to `http://ADDR/moved`; `/slow` answers after a second;
    /// anything else answers 200 with `origin saw METHOD PATH_AND_QUERY host=HOST
    /// forwarded=X-FORWARDED-HOST body=BODY` (with its `cdn-loop` header as `loop=...` before `body=`).
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the origin");
        let addr = listener.local_addr().expect("origin address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(addr, request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, task }
    }

    /// `http://ADDR` with no trailing slash, for a test to append a path to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    addr: SocketAddr,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if parts.uri.path() == "/slow" {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let mut response = http::Response::builder().header("server", "test-origin");
    if path == "/redirect" {
        response = response
            .status(302)
            .header("location", format!("http://{addr}/moved"));
    }
    let looped = if parts.headers.contains_key("cdn-loop") {
        format!(" loop={}", header("cdn-loop"))
    } else {
        String::new()
    };
    let text = format!(
        "origin saw {} {path} host={} forwarded={}{looped} body={}",
        parts.method,
        header("host"),
        header("x-forwarded-host"),
        String::from_utf8_lossy(&body)
    );
    Ok(response
        .body(Full::new(Bytes::from(text)))
        .expect("valid response"))
}
