//! A plain-HTTP origin server on loopback for the fetch tests: it says what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// A plain HTTP/1.1 origin that answers with what it received (see [`Origin::start`]); it stops
/// serving when dropped.
pub struct Origin {
    /// Where it listens: 127.0.0.1 on an ephemeral port.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

/// How many `/gate` requests must be in flight together before any is answered.
pub const GATE: usize = 4;

impl Origin {
    /// Serve on 127.0.0.1 on an ephemeral port, in the current tokio runtime.
    ///
    /// `GET /redirect` answers 302 to `http://ADDR/moved`; `/slow` answers after a second;
    /// `/big?mb=N` streams N MiB of [`pattern`] bytes, produced as they are sent; `/count` reads
    /// the request body as it arrives and answers `received N bytes fnv=H` (see [`fnv1a`]);
    /// `/gate` answers 200 once [`GATE`] requests for it are in flight together (504 if they do
    /// not come within 10 s); `/stall-head` answers after 5 s; `/stall-body` sends its head and 1 KiB, then waits 5 s
    /// before the rest; anything else answers 200 with `origin saw METHOD PATH_AND_QUERY host=HOST
    /// forwarded=X-FORWARDED-HOST body=BODY` (with its `cdn-loop` header as `loop=...` before `body=`).
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the origin");
        let addr = listener.local_addr().expect("origin address");
        let gate = Arc::new(Barrier::new(GATE));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(addr, gate.clone(), request));
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

/// The byte at `offset` of every `/big` body: a pattern with a long period, so a chunk lost,
/// repeated or reordered shows.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8 ^ (offset >> 16) as u8
}

/// 64-bit FNV-1a over `bytes`, continuing from `hash` (start with [`FNV_START`]).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where an FNV-1a hash starts.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    addr: SocketAddr,
    gate: Arc<Barrier>,
    request: http::Request<Incoming>,
) -> Result<http::Response<OriginBody>, Infallible> {
    let full = |text: String| Full::new(Bytes::from(text)).boxed();
    match request.uri().path() {
        "/big" => {
            let mb: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("mb="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let chunk = 64u64 << 10;
            let chunks = futures::stream::iter(0..(mb << 20) / chunk).map(move |n| {
                let bytes: Vec<u8> = (n * chunk..(n + 1) * chunk).map(pattern).collect();
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(bytes)))
            });
            return Ok(http::Response::builder()
                .header("content-length", (mb << 20).to_string())
                .body(BodyExt::boxed(http_body_util::StreamBody::new(chunks)))
                .expect("valid response"));
        }
        "/count" => {
            let mut body = request.into_body();
            let (mut length, mut hash) = (0u64, FNV_START);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    length += data.len() as u64;
                    hash = fnv1a(hash, data);
                }
            }
            return Ok(http::Response::new(full(format!(
                "received {length} bytes fnv={hash:016x}"
            ))));
        }
        "/gate" => {
            let opened =
                tokio::time::timeout(std::time::Duration::from_secs(10), gate.wait()).await;
            let (status, text) = match opened {
                Ok(_) => (200, format!("{GATE} in flight together")),
                Err(_) => (504, format!("fewer than {GATE} requests came at once")),
            };
            return Ok(http::Response::builder()
                .status(status)
                .body(full(text))
                .expect("valid response"));
        }
        "/stall-head" => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            return Ok(http::Response::new(full("late".into())));
        }
        "/stall-body" => {
            let pieces = futures::stream::iter([0u8, 1]).then(|n| async move {
                if n == 1 {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(vec![b'x'; 1024])))
            });
            return Ok(http::Response::new(BodyExt::boxed(
                http_body_util::StreamBody::new(pieces),
            )));
        }
        _ => {}
    }
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
    Ok(response.body(full(text)).expect("valid response"))
}
