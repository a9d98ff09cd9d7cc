//! Guests that misbehave and input that is wrong: each gets a clear error for that request or
//! command, and the node keeps serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outpost_tests::client::request;
use outpost_tests::{Client, Origin, Outpost, Proto, TempDir, wasm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CPU_MS: u64 = 200;

/// The probe app with tight limits, allowed to fetch from `allow` only.
fn probe_app(dir: &TempDir, allow: &[String]) -> PathBuf {
    probe_app_with(dir, allow, "")
}

/// As [`probe_app`], with `extra` appended to its outpost.toml.
fn probe_app_with(dir: &TempDir, allow: &[String], extra: &str) -> PathBuf {
    let allow = allow
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    dir.write(
        "probe/outpost.toml",
        format!(
            "name = \"probe\"\ncomponent = \"{}\"\n\
             [limits]\ncpu_ms = {CPU_MS}\ntimeout_ms = 1500\nmemory_mb = 32\nbody_kb = 64\n\
             [outbound]\nallow = [{allow}]\n\
             [config]\nGREETING = \"hi there\"\n{extra}",
            wasm("probe").display()
        ),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

fn start(app: &Path, data: &TempDir) -> (Outpost, Client) {
    let node = Outpost::dev(&[app.to_str().unwrap()], data.path())
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let client = Client::new(node.addr, &node.ca_pem());
    (node, client)
}

fn probe(label: &str) -> (TempDir, Outpost, Client) {
    let data = TempDir::new(label);
    let app = probe_app(&data, &[]);
    let (node, client) = start(&app, &data);
    (data, node, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_a_500_and_the_next_request_is_fine() {
    let (_data, node, client) = probe("trap");
    let trapped = client.get("/panic").await.unwrap();
    assert_eq!(trapped.status, 500);
    assert!(
        trapped.text().contains("handler trapped"),
        "{}",
        trapped.text()
    );
    assert!(
        trapped.text().contains("request id: "),
        "{}",
        trapped.text()
    );
    assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
    assert!(
        node.wait_for_log("kind=\"trap\"", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );
}

/// The host links files, sockets, name lookup and stdin (real toolchains import them) but grants
/// none of them: the guest gets WASI's own answers, and the node keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn files_sockets_and_stdin_are_linked_but_not_granted() {
    let (_data, _node, client) = probe("withheld");
    let reply = client.get("/wasi").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    for expected in [
        "preopens: 0",
        "stdin: closed",
        "tcp-create: access-denied",
        "udp-create: access-denied",
        "lookup: permanent-resolver-failure",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "expected {expected:?} in:\n{text}"
        );
    }
    assert!(
        !text.contains("tcp-connect"),
        "a socket was created:\n{text}"
    );
    assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
}

/// With `[instance] reuse`, one instance serves request after request (its globals live on),
/// up to `max_requests`, and never again after a trap, a CPU or memory breach.
#[tokio::test(flavor = "multi_thread")]
async fn a_reused_instance_keeps_its_state_until_it_fails_or_is_worn() {
    let data = TempDir::new("reuse");
    let app = probe_app_with(&data, &[], "[instance]\nreuse = true\nmax_requests = 4\n");
    let (node, client) = start(&app, &data);
    let count = || async { client.get("/count").await.unwrap().text() };
    assert_eq!(count().await, "1");
    assert_eq!(count().await, "2");
    assert_eq!(count().await, "3");
    assert_eq!(count().await, "4");
    // Worn out after four requests: a fresh one.
    assert_eq!(count().await, "1");
    for (breach, status) in [("/panic", 500), ("/loop", 503), ("/oom", 503)] {
        assert_eq!(count().await, "2", "before {breach}");
        assert_eq!(client.get(breach).await.unwrap().status, status, "{breach}");
        // The instance that failed is gone: the next request starts from a fresh one.
        assert_eq!(count().await, "1", "after {breach}");
    }
    // Each request's log lines carry its own request id, on a reused instance too.
    for _ in 0..2 {
        assert_eq!(client.get("/log").await.unwrap().text(), "logged");
    }
    let started = Instant::now();
    let ids = loop {
        let ids: std::collections::BTreeSet<String> = node
            .stderr()
            .lines()
            .filter(|l| l.contains("line to stdout"))
            .filter_map(|l| {
                l.split("request_id=")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .collect();
        if ids.len() >= 2 || started.elapsed() > Duration::from_secs(5) {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ids.len(), 2, "{}", node.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance() {
    let (_data, _node, client) = probe("fresh");
    for _ in 0..3 {
        assert_eq!(client.get("/count").await.unwrap().text(), "1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_ends_within_twice_the_cpu_limit_while_others_succeed() {
    let (_data, _node, client) = probe("loop");
    let looping = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = client.get("/loop").await.unwrap();
            (reply, started.elapsed())
        })
    };
    // Meanwhile the node keeps answering.
    let mut served = 0;
    while !looping.is_finished() {
        assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
        served += 1;
    }
    let (reply, elapsed) = looping.await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("CPU time limit of 200 ms"),
        "{}",
        reply.text()
    );
    assert!(
        elapsed < Duration::from_millis(2 * CPU_MS),
        "the loop ran {elapsed:?}, more than twice the {CPU_MS} ms limit"
    );
    assert!(
        served > 0,
        "no other request was served while the guest looped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_is_not_cpu_but_spinning_is() {
    let (_data, _node, client) = probe("cpu");
    // 400 ms of waiting on a clock is fine with a 200 ms CPU budget...
    let slept = client.get("/sleep?ms=400").await.unwrap();
    assert_eq!((slept.status, slept.text().as_str()), (200, "slept"));
    // ...so is a little CPU...
    assert_eq!(client.get("/spin?ms=20").await.unwrap().status, 200);
    // ...but not more CPU than the budget.
    let spun = client.get("/spin?ms=1000").await.unwrap();
    assert_eq!(spun.status, 503, "{}", spun.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_its_wall_clock_timeout_gets_504() {
    let (_data, _node, client) = probe("timeout");
    let started = Instant::now();
    let reply = client.get("/sleep?ms=5000").await.unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_is_stopped_at_the_limit() {
    let (_data, node, client) = probe("oom");
    let reply = client.get("/oom").await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("memory limit of 32 MiB"),
        "{}",
        reply.text()
    );
    assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
    assert!(node.wait_for_log("kind=\"memory_limit\"", Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_413() {
    let (_data, _node, client) = probe("body");
    let limit = 64 * 1024;
    let fits = client
        .send(
            "localhost",
            Proto::H1,
            request("POST", "/echo", vec![b'x'; limit]),
        )
        .await
        .unwrap();
    assert_eq!((fits.status, fits.body.len()), (200, limit));

    // Declared too large: refused from the headers alone, before any body
    // is sent or the guest runs. (Sending the body too would race the
    // server closing the connection after its 413, as with any HTTP server.)
    let mut tls = client.tls("localhost").await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        limit + 1
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut declared = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut declared))
        .await
        .expect("413 arrives without the body being sent")
        .unwrap();
    let declared = String::from_utf8_lossy(&declared[..read]);
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");

    // Streamed without a length: cut off once it passes the limit.
    let mut tls = client.tls("localhost").await.unwrap();
    tls.write_all(b"POST /echo HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'y'; 16 * 1024];
    for _ in 0..5 {
        let _ = tls
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = tls.write_all(&chunk).await;
        let _ = tls.write_all(b"\r\n").await;
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_becomes_tagged_log_lines() {
    let (_data, node, client) = probe("logs");
    assert_eq!(client.get("/log").await.unwrap().text(), "logged");
    // Log lines are written by their own thread: wait for each before reading them all.
    for needle in ["line to stdout", "line to stderr", "leveled error line"] {
        assert!(
            node.wait_for_log(needle, Duration::from_secs(5)),
            "{needle}: {}",
            node.stderr()
        );
    }
    let logs = node.stderr();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {logs}"))
            .to_string()
    };
    let stdout = line("line to stdout");
    assert!(
        stdout.contains("INFO")
            && stdout.contains("app=\"probe\"")
            && stdout.contains("request_id="),
        "{stdout}"
    );
    assert!(line("line to stderr").contains("WARN"));
    let leveled = line("leveled error line");
    assert!(
        leveled.contains("ERROR") && !leveled.contains("[error]"),
        "{leveled}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_values_reach_wasi_config_and_the_environment() {
    let (_data, _node, client) = probe("config");
    let reply = client.get("/config?key=GREETING").await.unwrap();
    assert_eq!(reply.text(), "config=hi there env=hi there");
    let missing = client.get("/config?key=NOPE").await.unwrap();
    assert_eq!(missing.text(), "config=(unset) env=(unset)");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_reach_only_allow_listed_origins() {
    let allowed = Origin::start().await;
    let other = Origin::start().await;
    let data = TempDir::new("outbound");
    let app = probe_app(&data, &[allowed.url()]);
    let (node, client) = start(&app, &data);

    let ok = client
        .get(&format!("/fetch?url={}/x", allowed.url()))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(
        ok.text().starts_with("200 origin saw GET /x"),
        "{}",
        ok.text()
    );

    let denied = client
        .get(&format!("/fetch?url={}/x", other.url()))
        .await
        .unwrap();
    assert_eq!(denied.status, 502, "{}", denied.text());
    assert!(
        denied
            .text()
            .contains("not in this app's outbound allow-list"),
        "{}",
        denied.text()
    );
    assert!(node.wait_for_log("denied: not in [outbound] allow", Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_socket_closes_that_connection_only() {
    let (_data, _node, client) = probe("garbage");
    for garbage in [
        b"\x16\x03\x01\x00\x05hello-not-a-client-hello".to_vec(),
        b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n".to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(client.addr()).await.unwrap();
        let _ = tcp.write_all(&garbage).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the connection stayed open after garbage");
    }
    // Inside TLS, a request line that is not HTTP.
    let response = client
        .exchange("localhost", b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    assert_eq!(client.get("/ok").await.unwrap().text(), "ok");
}

/// A handler in WAT: a component that exports `wasi:http/incoming-handler` and traps at once.
const TRAPPING_COMPONENT: &str = r#"
(component
  (import "wasi:http/types@0.2.0" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $request))
  (alias export $types "response-outparam" (type $outparam))
  (core module $m
    (func (export "handle") (param i32 i32) unreachable))
  (core instance $i (instantiate $m))
  (func $handle (param "request" (own $request)) (param "response-out" (own $outparam))
    (canon lift (core func $i "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_wat_guest_that_traps_is_a_500() {
    let data = TempDir::new("wat-trap");
    let wasm = wat::parse_str(TRAPPING_COMPONENT).unwrap();
    let path = data.write("trap.wasm", wasm);
    let (_node, client) = start(&path, &data);
    for _ in 0..3 {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, 500, "{}", reply.text());
        assert!(reply.text().contains("wasm trap"), "{}", reply.text());
    }
}

#[test]
fn bad_components_are_refused_with_a_clear_message() {
    let data = TempDir::new("bad-wasm");
    // An interface that exists but at a major version nothing here implements.
    let future_wasi = TRAPPING_COMPONENT.replacen(
        "(component",
        "(component (import \"wasi:filesystem/preopens@1.0.0\" (instance (export \"get-directories\" (func))))",
        1,
    );
    let unknown = TRAPPING_COMPONENT.replacen(
        "(component",
        "(component (import \"acme:thing/api@1.0.0\" (instance (export \"f\" (func))))",
        1,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage.wasm",
            b"this is not wasm at all".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            wat::parse_str("(module)").unwrap(),
            "core WebAssembly module, not a component",
        ),
        (
            "truncated.wasm",
            std::fs::read(wasm("hello")).unwrap()[..5000].to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "empty.wasm",
            wat::parse_str("(component)").unwrap(),
            "does not export wasi:http/incoming-handler",
        ),
        (
            "future.wasm",
            wat::parse_str(&future_wasi).unwrap(),
            "wasi:filesystem/preopens@1.0.0",
        ),
        (
            "unknown.wasm",
            wat::parse_str(&unknown).unwrap(),
            "acme:thing/api@1.0.0",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = data.write(name, bytes);
        let exited = Outpost::dev(&[path.to_str().unwrap()], data.path())
            .map(|_| ())
            .expect_err(name);
        assert!(!exited.status.success(), "{name} exited successfully");
        assert!(
            exited.stderr.contains(needle),
            "{name}: expected {needle:?} in:\n{}",
            exited.stderr
        );
        assert!(
            exited.stderr.contains(name),
            "{name}: the message should name the file:\n{}",
            exited.stderr
        );
    }
}
