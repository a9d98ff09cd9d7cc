//! `outpost-load`: a load generator for HTTP/1.1 and HTTP/2, plain or over TLS, aimed at
//! loopback only.
//!
//! Two modes:
//! * **closed loop**: N connections, each sending its next request when the last one is
//!   answered (what wrk does);
//! * **open loop**: a constant total rate. Every request has an intended send time, and its
//!   latency is measured from that time, not from when it was actually sent, so a slow server
//!   cannot hide its stalls by slowing the generator down (no coordinated omission).
//!
//! Latencies go into HDR histograms (per thread, merged at the end). Requests finished during
//! the warm-up are not counted. The run ends at the duration or the request bound, whichever
//! comes first.

mod connect;
mod report;
pub mod server;
mod target;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::sync::mpsc;

pub use connect::Protocol;
use connect::{Sender, connect, tls_config};
pub use report::{Latency, Report};
pub use target::{Scheme, Target, check_loopback};

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The URL to load, already checked to be on loopback.
    pub target: Target,
    /// HTTP/1.1 or HTTP/2; over TLS it is the one protocol offered in ALPN.
    pub protocol: Protocol,
    /// Connections kept open at once; each reconnects after an error.
    pub connections: usize,
    /// Requests in flight per HTTP/2 connection (closed loop).
    pub streams: usize,
    /// Generator threads, each on its own single-threaded runtime; clamped to 1..=`connections`.
    pub threads: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to send before measuring; responses finished in it are not counted.
    pub warmup: Duration,
    /// Stop after this many requests in total (warm-up included); `None` runs for the duration.
    pub max_requests: Option<u64>,
    /// Open loop: total requests per second. `None` is closed loop.
    pub rate: Option<f64>,
    /// How long to wait for one response; a timeout counts as an error and reconnects.
    pub timeout: Duration,
    /// CA to verify the server with; without one, any certificate is accepted (loopback only).
    pub ca: Option<PathBuf>,
}

struct Shared {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    max_requests: Option<u64>,
    issued: AtomicU64,
}

impl Shared {
    fn may_send(&self) -> bool {
        if Instant::now() >= self.end {
            return false;
        }
        match self.max_requests {
            Some(max) => self.issued.fetch_add(1, Ordering::Relaxed) < max,
            None => true,
        }
    }
}

/// Run the load and return what was measured.
pub fn run(spec: &LoadSpec) -> anyhow::Result<Report> {
    let tls = tls_config(spec.ca.as_deref(), spec.protocol)?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        measure_from: start + spec.warmup,
        end: start + spec.warmup + spec.duration,
        max_requests: spec.max_requests,
        issued: AtomicU64::new(0),
    });
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    // Open loop: a pacer thread hands out send times; each generator thread has a queue.
    let mut queues: Vec<Option<mpsc::UnboundedReceiver<Instant>>> = Vec::new();
    let mut pacer = None;
    if let Some(rate) = spec.rate {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        queues = receivers.into_iter().map(Some).collect();
        let (start, end) = (shared.start, shared.end);
        pacer = Some(std::thread::spawn(move || pace(rate, start, end, senders)));
    }
    queues.resize_with(threads, || None);
    let handles: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(t, queue)| {
            let (spec, shared, tls) = (spec.clone(), shared.clone(), tls.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                let stats = Rc::new(RefCell::new(report::Stats::new()));
                let tickets: Option<Tickets> = queue.map(|q| Rc::new(tokio::sync::Mutex::new(q)));
                local.block_on(&runtime, async {
                    let mut tasks = Vec::new();
                    for _ in (t..spec.connections).step_by(threads) {
                        let (spec, shared, tls, stats, tickets) = (
                            spec.clone(),
                            shared.clone(),
                            tls.clone(),
                            stats.clone(),
                            tickets.clone(),
                        );
                        tasks.push(tokio::task::spawn_local(async move {
                            connection(&spec, &shared, &tls, &stats, tickets.as_ref()).await
                        }));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
                anyhow::Ok(
                    Rc::try_unwrap(stats)
                        .map(RefCell::into_inner)
                        .unwrap_or_else(|rc| rc.borrow().clone()),
                )
            })
        })
        .collect();
    if let Some(pacer) = pacer {
        let _ = pacer.join();
    }
    let mut total = report::Stats::new();
    for handle in handles {
        let stats = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.merge(&stats);
    }
    let measured = Instant::now()
        .min(shared.end)
        .saturating_duration_since(shared.measure_from);
    Ok(Report::new(spec, &total, measured))
}

/// Send times handed out by the pacer, shared by the lanes of one generator thread.
type Tickets = Rc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>>;

/// Release one send time every 1/rate seconds. Waking every 100 µs and releasing every time
/// that is due keeps the pacer cheap; each request still carries its exact intended time, so
/// a release up to ~150 µs late only shifts when it is sent, not what latency it is charged.
fn pace(rate: f64, start: Instant, end: Instant, queues: Vec<mpsc::UnboundedSender<Instant>>) {
    let mut next: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        loop {
            let at = start + Duration::from_secs_f64(next as f64 / rate);
            if at > now || at >= end {
                break;
            }
            if queues[next as usize % queues.len()].send(at).is_err() {
                return;
            }
            next += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn request(target: &Target, protocol: Protocol) -> http::Request<Empty<Bytes>> {
    let uri = match protocol {
        Protocol::Http1 => target.path_and_query.clone(),
        Protocol::Http2 | Protocol::Http3 => {
            let scheme = match target.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            format!(
                "{scheme}://{}:{}{}",
                target.host,
                target.addr.port(),
                target.path_and_query
            )
        }
    };
    let mut builder = http::Request::builder()
        .uri(uri)
        .header("user-agent", "outpost-load");
    if protocol == Protocol::Http1 {
        builder = builder.header(
            http::header::HOST,
            format!("{}:{}", target.host, target.addr.port()),
        );
    }
    builder.body(Empty::new()).expect("valid request")
}

/// One connection's share of the load: its lanes (one on HTTP/1.1, `streams` on HTTP/2),
/// reconnecting after errors.
async fn connection(
    spec: &LoadSpec,
    shared: &Shared,
    tls: &Arc<rustls::ClientConfig>,
    stats: &Rc<RefCell<report::Stats>>,
    tickets: Option<&Tickets>,
) {
    let streams = if spec.protocol.multiplexed() && spec.rate.is_none() {
        spec.streams.max(1)
    } else {
        1
    };
    while Instant::now() < shared.end {
        let sender = match connect(&spec.target, spec.protocol, tls).await {
            Ok(sender) => sender,
            Err(err) => {
                stats.borrow_mut().error(error_kind(&err));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let broken = match sender.share() {
            None => lane_loop(spec, shared, sender, stats, tickets).await,
            Some(_) => {
                let lane_futures = (0..streams)
                    .filter_map(|_| sender.share())
                    .map(|lane| lane_loop(spec, shared, lane, stats, tickets));
                futures::future::join_all(lane_futures)
                    .await
                    .into_iter()
                    .any(|broken| broken)
            }
        };
        if !broken {
            return;
        }
    }
}

/// Send requests on one lane until the run ends; true if the connection broke.
async fn lane_loop(
    spec: &LoadSpec,
    shared: &Shared,
    mut sender: Sender,
    stats: &Rc<RefCell<report::Stats>>,
    tickets: Option<&Tickets>,
) -> bool {
    loop {
        let intended = match tickets {
            Some(tickets) => match tickets.lock().await.recv().await {
                Some(at) => at,
                None => return false,
            },
            None => Instant::now(),
        };
        if !shared.may_send() {
            return false;
        }
        let outcome = tokio::time::timeout(
            spec.timeout,
            send(&mut sender, request(&spec.target, spec.protocol)),
        )
        .await;
        let done = Instant::now();
        let counted = done >= shared.measure_from && done <= shared.end;
        let mut stats = stats.borrow_mut();
        match outcome {
            Ok(Ok(status)) => {
                if counted {
                    stats.record(status, done - intended);
                }
                if !(200..400).contains(&status) {
                    stats.error(&format!("status_{status}"));
                }
            }
            Ok(Err(err)) => {
                stats.error(error_kind(&err));
                return true;
            }
            Err(_) => {
                stats.error("timeout");
                return true;
            }
        }
    }
}

async fn send(sender: &mut Sender, request: http::Request<Empty<Bytes>>) -> anyhow::Result<u16> {
    let response = match sender {
        Sender::H1(sender) => {
            sender.ready().await?;
            sender.send_request(request).await?
        }
        Sender::H2(sender) => {
            sender.ready().await?;
            sender.send_request(request).await?
        }
        Sender::H3(sender) => {
            let mut stream = sender.send_request(request.map(|_| ())).await?;
            stream.finish().await?;
            let status = stream.recv_response().await?.status().as_u16();
            while stream.recv_data().await?.is_some() {}
            return Ok(status);
        }
    };
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

fn error_kind(err: &anyhow::Error) -> &'static str {
    let text = format!("{err:#}");
    if text.starts_with("connect") {
        "connect"
    } else if text.starts_with("tls") {
        "tls"
    } else {
        "io"
    }
}

/// One keep-alive HTTP/1.1 connection sending GET requests one after another: what the
/// instruction gauge drives (the same requests as a load run's, on one connection whose
/// handshake is behind it).
pub struct Session {
    target: Target,
    sender: Sender,
}

impl Session {
    /// Connect to `target` (TLS verified with `ca` if given); runs on a Tokio runtime.
    pub async fn open(target: Target, ca: Option<&std::path::Path>) -> anyhow::Result<Session> {
        let tls = tls_config(ca, Protocol::Http1)?;
        let sender = connect(&target, Protocol::Http1, &tls).await?;
        Ok(Session { target, sender })
    }

    /// Send one request and read its whole response; its status.
    pub async fn get(&mut self) -> anyhow::Result<u16> {
        send(&mut self.sender, request(&self.target, Protocol::Http1)).await
    }
}
