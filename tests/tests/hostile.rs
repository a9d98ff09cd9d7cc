//! The hostile-load suite: the attacks of `containment.rs`, all at once, for a bounded time,
//! against a node that also serves a well-behaved app (`hello`). The well-behaved app's
//! latency is measured quiet and then under the attacks, in the same way (a fresh TLS
//! connection and one request per sample, from a client address of its own), and reported
//! with its errors and the node's peak RSS.
//!
//! The goal on a 2-core machine is hello's p99 within 2x its quiet baseline with no errors; the
//! assertions are looser than the goal (this machine is shared and the load generator runs on
//! the same cores), the figures printed are what to read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_tests::client::{get, request};
use outpost_tests::{Client, NodeDir, Proto};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Samples of hello's latency, quiet and under attack.
const SAMPLES: usize = 300;
/// The longest the attacks run, whatever happens.
const ATTACK_LIMIT: Duration = Duration::from_secs(30);

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {}",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

/// `SAMPLES` requests to hello, two at a time, each on a fresh connection, from a thread and a
/// runtime of their own: the well-behaved app's clients are not the attackers, and must not
/// wait behind the attackers' tasks in this process.
async fn measure(client: &Client) -> Stats {
    let client = client.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(measure_here(&client))
    })
    .await
    .unwrap()
}

async fn measure_here(client: &Client) -> Stats {
    let mut seen = Vec::with_capacity(SAMPLES);
    let mut errors = 0;
    for _ in 0..SAMPLES / 2 {
        let one = || async {
            let started = Instant::now();
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                client.send("a.test", Proto::H1, get("/")),
            )
            .await;
            let ok = matches!(&reply, Ok(Ok(r)) if r.status == 200);
            (started.elapsed(), ok)
        };
        let (a, b) = tokio::join!(one(), one());
        for (took, ok) in [a, b] {
            seen.push(took);
            errors += usize::from(!ok);
        }
    }
    seen.sort();
    let at = |q: f64| seen[((seen.len() as f64 * q) as usize).min(seen.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: *seen.last().unwrap(),
        errors,
    }
}

/// Runs `attack` again and again until `stop`, counting the rounds begun.
fn keep_attacking<F, Fut>(stop: &Arc<AtomicBool>, rounds: &Arc<AtomicU64>, mut attack: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (stop, rounds) = (stop.clone(), rounds.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            rounds.fetch_add(1, Ordering::Relaxed);
            attack().await;
        }
    });
}

/// `copies` tasks each sending `GET path` to the attacker's app from `client`, again and again.
fn keep_getting(
    stop: &Arc<AtomicBool>,
    rounds: &Arc<AtomicU64>,
    client: &Client,
    copies: usize,
    path: &'static str,
) {
    for _ in 0..copies {
        let c = client.clone();
        keep_attacking(stop, rounds, move || {
            let c = c.clone();
            async move {
                let _ = c.send("b.test", Proto::H1, get(path)).await;
            }
        });
    }
}

/// A TCP connection to `addr` from the source address `from`.
async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// Whether the attack called `name` runs: all of them, or those named (comma-separated) in
/// `OUTPOST_HOSTILE_ATTACKS`, to see what one attack does alone.
fn chosen(name: &str) -> bool {
    match std::env::var("OUTPOST_HOSTILE_ATTACKS") {
        Ok(list) => list.split(',').any(|n| n.trim() == name),
        Err(_) => true,
    }
}

/// The node's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attack_at_once_leaves_a_well_behaved_app_fast() {
    let origin = outpost_tests::Origin::start().await;
    let node_dir = NodeDir::new("hostile");
    let apps = [
        node_dir.app("hello", "hello", &["a.test"], ""),
        node_dir.app(
            "attacker",
            "probe",
            &["b.test"],
            &format!(
                "[limits]\ncpu_ms = 1000\ntimeout_ms = 5000\nmemory_mb = 64\nbody_kb = 64\n\
                 [outbound]\nallow = [\"http://169.254.169.254\", \"http://{}\"]\n",
                origin.addr
            ),
        ),
    ];
    let config = node_dir.config_listening(
        "node.toml",
        &apps,
        "plain = \"127.0.0.1:0\"",
        "[pool]\ninstances = 32\n[http]\nheader_timeout_ms = 2000\n",
    );
    let (node, client) = node_dir.start(&config);
    let plain = node.plain.expect("a plain listener");
    let hello = client.from_source("127.0.0.10".parse().unwrap());
    // Warm up (compiled code paged in, TLS session machinery), then the quiet baseline.
    let _ = measure(&hello).await;
    let quiet = measure(&hello).await;

    let stop = Arc::new(AtomicBool::new(false));
    let source = |n: u8| -> std::net::IpAddr { format!("127.0.0.{}", 20 + n).parse().unwrap() };
    let attacker = |n: u8| client.from_source(source(n));
    let mut counts = Vec::new();
    let mut attack = |name: &'static str| {
        let rounds = Arc::new(AtomicU64::new(0));
        counts.push((name, rounds.clone()));
        rounds
    };

    if chosen("cpu") {
        // CPU: requests that compute until stopped at their 1 s CPU budget.
        let rounds = attack("spinning guests (3 at once)");
        keep_getting(&stop, &rounds, &attacker(0), 3, "/loop");
    }
    if chosen("memory") {
        // Memory: requests that grow until stopped at 64 MiB.
        let rounds = attack("memory hogs (2 at once)");
        keep_getting(&stop, &rounds, &attacker(1), 2, "/oom");
    }
    if chosen("pool") {
        // The pool: sleeping requests holding the attacker's whole share.
        let rounds = attack("pool holders (10 sleeping at once)");
        keep_getting(&stop, &rounds, &attacker(2), 10, "/sleep?ms=2000");
    }
    if chosen("silent") {
        // Connections: TLS connections that agree to h2 and say nothing, plain TCP connections
        // that say nothing, 150 of each, reopened when the node closes them.
        let rounds = attack("silent connections (300 open)");
        for i in 0..300 {
            let (c, from) = (attacker(3 + (i % 2) as u8), source(3 + (i % 2) as u8));
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    use tokio::io::AsyncReadExt;
                    let mut rest = Vec::new();
                    if i % 2 == 0 {
                        if let Ok(mut tls) = c.tls_alpn("a.test", b"h2").await {
                            let _ = tls.read_to_end(&mut rest).await;
                        }
                    } else if let Ok(mut tcp) = connect_from(from, plain).await {
                        let _ = tcp.read_to_end(&mut rest).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    }
    if chosen("dribble") {
        // Bodies sent a byte every 100 ms.
        let rounds = attack("dribbled request bodies (16 at once)");
        for _ in 0..16 {
            let c = attacker(5);
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    let Ok(mut tls) = c.tls("b.test").await else {
                        return;
                    };
                    let head =
                        b"POST /echo HTTP/1.1\r\nhost: b.test\r\ncontent-length: 1000\r\n\r\n";
                    if tls.write_all(head).await.is_err() {
                        return;
                    }
                    for _ in 0..50 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if tls.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    if chosen("unread") {
        // Responses nobody reads: 400 KiB each behind a 64 KiB HTTP/2 window.
        let rounds = attack("unread responses (4 connections x 2)");
        for _ in 0..4 {
            let c = attacker(6);
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    use hyper_util::rt::{TokioExecutor, TokioIo};
                    let Ok(tls) = c.tls_alpn("b.test", b"h2").await else {
                        return;
                    };
                    let Ok((mut sender, connection)) =
                        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                            .initial_stream_window_size(65_535)
                            .handshake(TokioIo::new(tls))
                            .await
                    else {
                        return;
                    };
                    tokio::spawn(connection);
                    let mut unread = Vec::new();
                    for _ in 0..2 {
                        let request = http::Request::builder()
                            .uri("https://b.test/bytes?kb=400")
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                            .unwrap();
                        if let Ok(response) = sender.send_request(request).await {
                            unread.push(response);
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            });
        }
    }
    if chosen("logs") {
        // Logs: 5,000 lines of 1 KiB per request.
        let rounds = attack("log floods (2 at once)");
        keep_getting(
            &stop,
            &rounds,
            &attacker(7),
            2,
            "/log-flood?n=5000&size=1024",
        );
    }
    if chosen("outbound") {
        // Outbound: the metadata service, and a burst of subrequests past the cap.
        let rounds = attack("outbound to internal addresses and past the subrequest cap");
        {
            let c = attacker(8);
            let origin = origin.addr;
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    let _ = c
                        .send(
                            "b.test",
                            Proto::H1,
                            get("/fetch?url=http://169.254.169.254/"),
                        )
                        .await;
                    let many = format!("/fetch-many?url=http://{origin}/&n=60");
                    let _ = c.send("b.test", Proto::H1, get(&many)).await;
                }
            });
        }
    }
    if chosen("garbage") {
        // Garbage: random bytes on TLS and on the plain listener, then gone.
        let rounds = attack("garbage on sockets");
        {
            let (c, from) = (attacker(9), source(9));
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    let noise: Vec<u8> = (0..4096u32)
                        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                        .collect();
                    if let Ok(mut tcp) = c.tcp().await {
                        let _ = tcp.write_all(&noise).await;
                    }
                    if let Ok(mut tcp) = connect_from(from, plain).await {
                        let _ = tcp.write_all(&noise).await;
                    }
                    if let Ok(mut tls) = c.tls("b.test").await {
                        let _ = tls.write_all(&noise).await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    }
    if chosen("oversized") {
        // Oversized bodies, refused at the declared length and at the limit.
        let rounds = attack("oversized bodies");
        {
            let c = attacker(10);
            keep_attacking(&stop, &rounds, move || {
                let c = c.clone();
                async move {
                    let _ = c
                        .send(
                            "b.test",
                            Proto::H1,
                            request("POST", "/echo", vec![b'x'; 1 << 20]),
                        )
                        .await;
                }
            });
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attacked = tokio::time::timeout(ATTACK_LIMIT, measure(&hello))
        .await
        .expect("hello's samples finished within the attack's time limit");
    let attacked_for = started.elapsed();
    stop.store(true, Ordering::Relaxed);

    let rss = peak_rss_mib(node.pid());
    eprintln!("hostile-load suite, {SAMPLES} hello requests each (fresh TLS connection each):");
    eprintln!("  quiet:         {quiet}");
    eprintln!("  under attack:  {attacked}");
    eprintln!(
        "  p99 ratio {:.2}x, p50 ratio {:.2}x; node peak RSS {rss:.0} MiB; attacks ran {:.1} s:",
        attacked.p99.as_secs_f64() / quiet.p99.as_secs_f64(),
        attacked.p50.as_secs_f64() / quiet.p50.as_secs_f64(),
        attacked_for.as_secs_f64()
    );
    for (name, rounds) in &counts {
        eprintln!("    {:>6} rounds of {name}", rounds.load(Ordering::Relaxed));
    }

    assert_eq!(quiet.errors, 0, "hello failed while quiet");
    assert_eq!(attacked.errors, 0, "hello failed under attack");
    assert!(
        attacked.p99 < quiet.p99 * 10 + Duration::from_millis(100),
        "hello's p99 went from {:?} to {:?}",
        quiet.p99,
        attacked.p99
    );
    assert!(rss < 1024.0, "the node's peak RSS was {rss:.0} MiB");
    for (name, rounds) in &counts {
        assert!(
            rounds.load(Ordering::Relaxed) > 0,
            "{name} never began a round"
        );
    }
    // Alive, and serving the attacker's app again once the attacks stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = client
        .from_source("127.0.0.11".parse().unwrap())
        .send("b.test", Proto::H1, get("/ok"))
        .await
        .unwrap_or_else(|e| panic!("the attacker's app after the attacks: {e:#}"));
    assert_eq!(after.status, 200, "{}", after.text());
}
