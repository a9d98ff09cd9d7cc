//! The Rust SDK end to end, on a real node: bodies that stream (a download and an upload far
//! above the 32 MiB the SDK once read whole, through the streaming proxy example, with the
//! node's memory flat and the guest's capped at 16 MiB), server-sent events written one at a
//! time after the head, several fetches in flight at once, and fetch timeouts that say which.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use outpost_tests::client::{get, request};
use outpost_tests::origin::{FNV_START, fnv1a, pattern};
use outpost_tests::{Client, Origin, Outpost, Proto, TempDir, wasm};

/// Well above the 32 MiB the SDK used to hold in memory, and under the node's 100 MiB ceiling
/// for a request body.
const UPLOAD_MIB: u64 = 80;
const DOWNLOAD_MIB: u64 = 200;
/// What the node may grow by while a body passes through: buffers, not the body.
const RSS_GROWTH_LIMIT_MIB: u64 = 48;

fn app(data: &TempDir, name: &str, guest: &str, extra: &str) -> PathBuf {
    data.write(
        &format!("{name}/outpost.toml"),
        format!(
            "name = \"{name}\"\ncomponent = \"{}\"\n{extra}",
            wasm(guest).display()
        ),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

fn dev(app: &Path, data: &TempDir) -> (Outpost, Client) {
    let node = Outpost::dev(&[app.to_str().unwrap(), "--no-build"], data.path())
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let client = Client::new(node.addr, &node.ca_pem());
    (node, client)
}

/// The streaming proxy example in front of `origin`, its guest held to 16 MiB of memory.
fn proxy(data: &TempDir, origin: &Origin) -> (Outpost, Client) {
    let url = origin.url();
    // CPU time counts the host's copying done inside the guest's calls (each `splice`), which a
    // debug build of the node does slowly: a generous budget, so only memory is at stake.
    let extra = format!(
        "[limits]\nmemory_mb = 16\ncpu_ms = 60000\nbody_kb = {}\ntimeout_ms = 120000\n\
         [outbound]\nallow = [\"{url}\"]\n[config]\nORIGIN_URL = \"{url}\"\n",
        (UPLOAD_MIB + 1) << 10
    );
    dev(&app(data, "fetch-origin", "fetch-origin", &extra), data)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The largest RSS of `pid` seen while it runs, sampled every 20 ms on a thread of its own.
struct PeakRss {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    fn watch(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(rss_kib(pid))
        });
        PeakRss { stop, sampler }
    }

    fn peak_kib(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("sampler thread")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_and_an_upload_far_above_the_old_cap_stream_through_the_proxy() {
    let origin = Origin::start().await;
    let data = TempDir::new("sdk-stream");
    let (node, client) = proxy(&data, &origin);
    // Warm up so the pool, the TLS and the compiled component are all in place before the
    // baseline is taken.
    for _ in 0..3 {
        let warm = client.get("/warm").await.unwrap();
        assert_eq!(warm.status, 200, "{}", warm.text());
    }
    let baseline = rss_kib(node.pid());

    // Download: counted and checked as it arrives, never held by the test either.
    let watch = PeakRss::watch(node.pid());
    let (mut conn, _) = client.connect("localhost", Proto::H1).await.unwrap();
    let response = conn
        .open("localhost", get(&format!("/big?mb={DOWNLOAD_MIB}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-served-by"], "outpost");
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the download broke off");
        if let Some(data) = frame.data_ref() {
            for (i, byte) in data.iter().enumerate() {
                assert_eq!(
                    *byte,
                    pattern(offset + i as u64),
                    "byte {} differs",
                    offset + i as u64
                );
            }
            offset += data.len() as u64;
        }
    }
    assert_eq!(offset, DOWNLOAD_MIB << 20);

    // Upload: the origin hashes what reaches it.
    let upload: Vec<u8> = (0..UPLOAD_MIB << 20).map(pattern).collect();
    let expected = format!(
        "received {} bytes fnv={:016x}",
        upload.len(),
        fnv1a(FNV_START, &upload)
    );
    let reply = client
        .send("localhost", Proto::H2, request("POST", "/count", upload))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), expected);

    let growth_mib = watch.peak_kib().saturating_sub(baseline) >> 10;
    println!(
        "the node grew by {growth_mib} MiB from {} MiB",
        baseline >> 10
    );
    assert!(
        growth_mib < RSS_GROWTH_LIMIT_MIB,
        "the node grew by {growth_mib} MiB while {DOWNLOAD_MIB} + {UPLOAD_MIB} MiB passed through"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_arrive_one_at_a_time_after_the_head() {
    let data = TempDir::new("sdk-sse");
    let (_node, client) = dev(
        &app(
            &data,
            "events",
            "server-sent-events",
            "[limits]\ntimeout_ms = 60000\n",
        ),
        &data,
    );
    let (mut conn, _) = client.connect("localhost", Proto::H1).await.unwrap();
    let opened = Instant::now();
    let response = conn
        .open("localhost", get("/events?count=4&every_ms=300"))
        .await
        .unwrap();
    let head_after = opened.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let mut first_tick = None;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            text.push_str(std::str::from_utf8(data).unwrap());
            if first_tick.is_none() && text.contains("event: tick") {
                first_tick = Some(opened.elapsed());
            }
        }
    }
    let ended = opened.elapsed();
    assert_eq!(text.matches("event: tick").count(), 4, "{text}");
    assert!(text.ends_with("event: done\ndata: {}\n\n"), "{text}");
    let first_tick = first_tick.expect("a tick");
    // Three pauses of 300 ms separate the four events: a buffered body would arrive in one
    // piece at the end, with the head.
    assert!(
        ended - first_tick >= Duration::from_millis(600),
        "head after {head_after:?}, first event after {first_tick:?}, end after {ended:?}"
    );
    assert!(head_after < ended - Duration::from_millis(600));
}

fn probe(data: &TempDir, allow: &[String]) -> (Outpost, Client) {
    let allow: Vec<String> = allow.iter().map(|url| format!("{url:?}")).collect();
    let extra = format!(
        "[limits]\ncpu_ms = 2000\ntimeout_ms = 20000\n[outbound]\nallow = [{}]\n",
        allow.join(", ")
    );
    dev(&app(data, "probe", "probe", &extra), data)
}

#[tokio::test(flavor = "multi_thread")]
async fn fetches_run_at_once_and_timeouts_say_which_ran_out() {
    let origin = Origin::start().await;
    // A listener whose accept queue is full and never drained: the kernel drops further SYNs,
    // so connecting to it hangs until the connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let unanswering = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(unanswering),
    )
    .await
    {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let data = TempDir::new("sdk-fetch");
    let (_node, client) = probe(&data, &[origin.url(), format!("http://{unanswering}")]);
    let url = origin.url();

    let connect = client
        .get(&format!(
            "/fetch-timed?url=http://{unanswering}/&connect_ms=300"
        ))
        .await
        .unwrap();
    assert_eq!(
        connect.text(),
        format!(
            "error: 504 fetch to {unanswering} timed out: connecting took longer than the connect timeout"
        )
    );

    // The origin answers /gate only when four requests for it are in flight together.
    let together = client
        .get(&format!(
            "/fetch-all?url={url}/gate&n={}",
            outpost_tests::origin::GATE
        ))
        .await
        .unwrap();
    assert_eq!(together.text(), ["200"; 4].join("\n"));

    let head = client
        .get(&format!(
            "/fetch-timed?url={url}/stall-head&first_byte_ms=300"
        ))
        .await
        .unwrap();
    assert_eq!(
        head.text(),
        format!(
            "error: 504 fetch to {} timed out: no response within the first-byte timeout",
            origin.addr
        )
    );
    let body = client
        .get(&format!("/fetch-timed?url={url}/stall-body&between_ms=300"))
        .await
        .unwrap();
    assert_eq!(
        body.text(),
        format!(
            "error: 504 fetch to {} timed out: the body paused longer than the between-bytes timeout",
            origin.addr
        )
    );
    // With room to spare, the same fetches succeed.
    let patient = client
        .get(&format!(
            "/fetch-timed?url={url}/big?mb=1&first_byte_ms=5000&between_ms=5000"
        ))
        .await
        .unwrap();
    assert_eq!(patient.text(), format!("200 {}", 1 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_fails_mid_body_breaks_the_response_instead_of_ending_it() {
    let origin = Origin::start().await;
    let data = TempDir::new("sdk-mid-body");
    let (_node, client) = probe(&data, &[origin.url()]);
    for proto in [Proto::H1, Proto::H2] {
        let (mut conn, _) = client.connect("localhost", proto).await.unwrap();
        let response = conn
            .open("localhost", get("/panic-mid-body"))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{proto:?}: the head went out before the panic"
        );
        let read = response.into_body().collect().await;
        assert!(
            read.is_err(),
            "{proto:?}: a truncated body read as complete"
        );
    }
    // The node is fine.
    assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
}
