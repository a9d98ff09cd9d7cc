//! `outpost node --config node.toml` end to end: several apps, host and path routes, real PEM
//! certificates picked by SNI, HTTP limits, pool admission, graceful shutdown, config errors.

use std::time::{Duration, Instant};

use outpost_tests::client::request;
use outpost_tests::{NodeDir, Outpost, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_path_with_a_certificate_per_host() {
    let fleet = NodeDir::new("routes");
    let apps = [
        fleet.app("hello", "hello", &["a.test", "*.a.test"], ""),
        fleet.app("csv", "json-to-csv", &["a.test/convert"], ""),
        fleet.app("probe", "probe", &["b.test/api/*"], ""),
    ];
    let (_node, client) = fleet.start(&fleet.config(&apps, ""));

    let hello = client
        .send("a.test", Proto::H2, outpost_tests::client::get("/x"))
        .await
        .unwrap();
    assert!(
        hello.text().starts_with("hello from outpost\npath: /x\n"),
        "{}",
        hello.text()
    );
    assert_eq!(
        hello.peer_cert,
        fleet.cert_der("a"),
        "a.test gets a.test's certificate"
    );

    let sub = client
        .send("shop.a.test", Proto::H1, outpost_tests::client::get("/y"))
        .await
        .unwrap();
    assert!(sub.text().contains("path: /y"), "{}", sub.text());
    assert_eq!(
        sub.peer_cert,
        fleet.cert_der("a"),
        "the wildcard covers shop.a.test"
    );

    let csv = client
        .send("a.test", Proto::H1, request("POST", "/convert", "[]"))
        .await
        .unwrap();
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));

    let probe = client
        .send("b.test", Proto::H1, outpost_tests::client::get("/api/x"))
        .await
        .unwrap();
    assert_eq!(
        probe.status, 404,
        "the probe answers its own 404 for /api/x"
    );
    assert!(
        probe.text().contains("the probe has no /api/x"),
        "{}",
        probe.text()
    );
    assert_eq!(
        probe.peer_cert,
        fleet.cert_der("b"),
        "b.test gets b.test's certificate"
    );

    let unrouted = client
        .send("b.test", Proto::H1, outpost_tests::client::get("/other"))
        .await
        .unwrap();
    assert_eq!(unrouted.status, 404);
    assert!(
        unrouted.text().contains("no app is routed at b.test/other"),
        "{}",
        unrouted.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_failures_do_not_leak_details_outside_dev() {
    let fleet = NodeDir::new("opaque");
    let apps = [fleet.app("probe", "probe", &["*"], "")];
    let (node, client) = fleet.start(&fleet.config(&apps, ""));
    let reply = client
        .send("a.test", Proto::H1, outpost_tests::client::get("/panic"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    assert!(
        reply.text().contains("the handler failed"),
        "{}",
        reply.text()
    );
    assert!(!reply.text().contains("panic"), "{}", reply.text());
    assert!(
        node.wait_for_log("the probe was asked to panic", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_silent_clients_are_disconnected() {
    let fleet = NodeDir::new("slow");
    let apps = [fleet.app("hello", "hello", &["*"], "")];
    let (_node, client) = fleet.start(&fleet.config(&apps, "[http]\nheader_timeout_ms = 500\n"));

    // Half a request line, then nothing.
    let mut tls = client.tls("a.test").await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // A TCP connection that never starts TLS.
    let mut tcp = tokio::net::TcpStream::connect(client.addr()).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a silent connection was not closed");

    assert_eq!(
        client
            .send("a.test", Proto::H1, outpost_tests::client::get("/"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_refused() {
    let fleet = NodeDir::new("headers");
    let apps = [fleet.app("hello", "hello", &["*"], "")];
    let (_node, client) = fleet.start(&fleet.config(&apps, "[http]\nmax_header_kb = 8\n"));

    let huge = "x".repeat(16 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: a.test\r\nx-big: {huge}\r\n\r\n");
    let response = client.exchange("a.test", request.as_bytes()).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    let fits = http::Request::builder()
        .uri("/")
        .header("x-small", "x".repeat(1024))
        .body(Default::default())
        .unwrap();
    assert_eq!(
        client.send("a.test", Proto::H1, fits).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_answers_503_with_retry_after() {
    let fleet = NodeDir::new("busy");
    let apps = [fleet.app("probe", "probe", &["*"], "[limits]\ntimeout_ms = 5000\n")];
    let config = fleet.config(
        &apps,
        "[pool]\ninstances = 2\nqueue_timeout_ms = 100\nmax_queued = 10\napp_share_percent = 100\n",
    );
    let (_node, client) = fleet.start(&config);

    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .send(
                        "a.test",
                        Proto::H1,
                        outpost_tests::client::get("/sleep?ms=1500"),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let busy = client
        .send("a.test", Proto::H1, outpost_tests::client::get("/ok"))
        .await
        .unwrap();
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "it should have waited in the queue first"
    );
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap().status, 200);
    }
    assert_eq!(
        client
            .send("a.test", Proto::H1, outpost_tests::client::get("/ok"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_then_exits() {
    let fleet = NodeDir::new("drain");
    let apps = [fleet.app("probe", "probe", &["*"], "")];
    let (node, client) = fleet.start(&fleet.config(&apps, ""));

    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .send(
                    "a.test",
                    Proto::H1,
                    outpost_tests::client::get("/sleep?ms=800"),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.signal_terminate();
    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was cut off");
    assert_eq!((reply.status, reply.text().as_str()), (200, "slept"));

    let status = node.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        tokio::net::TcpStream::connect(client.addr()).await.is_err(),
        "the listener is still accepting after shutdown"
    );
}

#[test]
fn config_errors_name_the_file_and_the_field() {
    let fleet = NodeDir::new("config-errors");
    let good_app = fleet.app("hello", "hello", &["*"], "");
    let configs = [
        (
            vec![good_app.clone()],
            "[pool]\ninstances = 0\n",
            "node-0.toml: `pool.instances`: is 0",
        ),
        (
            vec![good_app.clone()],
            "[pool]\nbogus = 1\n",
            "unknown field `bogus`",
        ),
        (
            vec![fleet.app("bad", "hello", &["https://a.test/"], "")],
            "",
            "outpost.toml: `routes[0]`",
        ),
        (
            vec![fleet.app("greedy", "hello", &["*"], "[limits]\nmemory_mb = 4096\n")],
            "",
            "raise pool.memory_mb",
        ),
        (
            vec![good_app.clone(), fleet.app("twin", "probe", &["*"], "")],
            "",
            "route */* of app twin",
        ),
        (
            vec![good_app.clone()],
            "[pool]\ninstances = 100000\nmemory_mb = 4096\nmemory_reservation_mb = 8192\n",
            "lower pool.instances to at most",
        ),
    ];
    let cases = configs
        .iter()
        .enumerate()
        .map(|(i, (apps, extra, needle))| {
            (
                fleet.config_named(&format!("node-{i}.toml"), apps, extra),
                *needle,
            )
        });
    for (config, needle) in cases {
        let exited = Outpost::node(&config).map(|_| ()).expect_err(needle);
        assert!(!exited.status.success());
        assert!(
            exited.stderr.contains(needle),
            "expected {needle:?} in:\n{}",
            exited.stderr
        );
    }
    let missing = Outpost::run(&["node", "--config", "/nonexistent/node.toml"]);
    assert!(!missing.status.success());
    assert!(
        missing
            .stderr
            .contains("/nonexistent/node.toml: cannot read"),
        "{}",
        missing.stderr
    );
}

/// The lines of the probe's `/meta` answer, as `(key, value)`.
fn meta(reply: &outpost_tests::Reply) -> std::collections::HashMap<String, String> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .text()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_is_told_the_client_protocol_and_node_and_a_client_cannot_forge_them() {
    let node = NodeDir::new("metadata");
    let apps = [node.app("probe", "probe", &["a.test"], "")];
    let config = node.config_listening("node.toml", &apps, "plain = \"127.0.0.1:0\"", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "name = \"test-node\"",
            "name = \"test-node\"\nregion = \"fra\"",
            1,
        ),
    )
    .unwrap();
    let (server, client) = node.start(&config);

    // Forged metadata and a forwarded chain from a client that is no trusted proxy.
    let forged = || {
        http::Request::builder()
            .uri("/meta")
            .header("outpost-client-ip", "6.6.6.6")
            .header("outpost-node", "forged")
            .header("Outpost-Region", "nowhere")
            .header("x-forwarded-for", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let h2 = meta(&client.send("a.test", Proto::H2, forged()).await.unwrap());
    assert_eq!(h2["client"], "127.0.0.1");
    assert_eq!(h2["protocol"], "HTTP/2");
    assert_eq!(h2["tls"], "TLSv1.3");
    assert_eq!(h2["node"], "test-node");
    assert_eq!(h2["region"], "fra");
    assert_ne!(h2["id"], "-");

    let h1 = meta(&client.send("a.test", Proto::H1, forged()).await.unwrap());
    assert_eq!(h1["protocol"], "HTTP/1.1");
    assert_ne!(h1["id"], h2["id"], "each request has its own id");

    let plain = meta(
        &outpost_tests::client::plain_connection(server.plain.unwrap())
            .await
            .unwrap()
            .send("a.test", forged())
            .await
            .unwrap(),
    );
    assert_eq!(plain["client"], "127.0.0.1");
    assert_eq!(plain["tls"], "-", "plain HTTP has no TLS version");
    assert!(
        server.wait_for_log("client=127.0.0.1", Duration::from_secs(5)),
        "the access log records the client: {}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_client_is_the_address_it_forwarded() {
    let node = NodeDir::new("trusted-proxy");
    let apps = [node.app("probe", "probe", &["a.test"], "")];
    // This test, on loopback, is the balancer.
    let config = node.config(
        &apps,
        "[http]\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
    );
    let (_server, client) = node.start(&config);
    let with = |name: &'static str, value: &'static str| {
        http::Request::builder()
            .uri("/meta")
            .header(name, value)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let cases = [
        // The client wrote 6.6.6.6; the balancer saw 198.51.100.7; an inner proxy is trusted.
        (
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.7, 10.0.0.5",
            "198.51.100.7",
        ),
        (
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::17]:4711\"",
            "2001:db8::17",
        ),
        // Garbage in the chain: only the proxy can be believed.
        ("x-forwarded-for", "nonsense", "127.0.0.1"),
    ];
    for (name, value, client_ip) in cases {
        let reply = client
            .send("a.test", Proto::H1, with(name, value))
            .await
            .unwrap();
        assert_eq!(meta(&reply)["client"], client_ip, "{name}: {value}");
    }
}

/// One request through ngtcp2's HTTP/3 client (Debian's `ngtcp2-client`, not this project's
/// code) to `path` on `host` at `port`, with `body` as the request body if given: its status
/// and the body it downloaded.
fn http3_request(port: u16, host: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let dir = outpost_tests::TempDir::new("h3-client");
    let mut args = vec![
        "--exit-on-all-streams-close".to_string(),
        "--no-quic-dump".to_string(),
        "--no-http-dump".to_string(),
        "--timeout=5s".to_string(),
        format!("--sni={host}"),
        format!("--download={}", dir.path().display()),
    ];
    if let Some(body) = body {
        let file = dir.write("request-body", body);
        args.push(format!("--data={}", file.display()));
    }
    args.extend([
        "127.0.0.1".to_string(),
        port.to_string(),
        format!("https://{host}:{port}{path}"),
    ]);
    let out = std::process::Command::new("gtlsclient")
        .args(&args)
        .output()
        .expect("gtlsclient (Debian's ngtcp2-client; .ci/run installs it)");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let status = log
        .lines()
        .find_map(|line| line.split("[:status: ").nth(1))
        .and_then(|s| s.trim_end().trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/3 response from the node:\n{log}"));
    let name = path
        .trim_start_matches('/')
        .split('?')
        .next()
        .unwrap_or_default();
    let name = if name.is_empty() { "index.html" } else { name };
    let downloaded = std::fs::read(dir.path().join(name)).unwrap_or_default();
    (status, downloaded)
}

/// HTTP/3 on the HTTPS port, through a real HTTP/3 client that is not this project's: the
/// same routes and limits, the handler told the protocol, bodies both ways, and `alt-svc` on
/// HTTP/1.1 and HTTP/2 responses.
#[tokio::test(flavor = "multi_thread")]
async fn http3_serves_the_same_routes_and_limits_to_a_real_http3_client() {
    let node = NodeDir::new("http3");
    let apps = [node.app("probe", "probe", &["a.test"], "[limits]\nbody_kb = 256\n")];
    let config = node.config_listening("node.toml", &apps, "http3 = true", "");
    let (server, client) = node.start(&config);
    let port = server.addr.port();

    let advertised = format!("h3=\":{port}\"; ma=86400");
    for proto in [Proto::H1, Proto::H2] {
        let reply = client
            .send("a.test", proto, outpost_tests::client::get("/ok"))
            .await
            .unwrap();
        assert_eq!(
            reply.header("alt-svc"),
            Some(advertised.as_str()),
            "{proto:?}"
        );
    }

    let (status, body) =
        tokio::task::spawn_blocking(move || http3_request(port, "a.test", "/meta", None))
            .await
            .unwrap();
    assert_eq!(status, 200);
    let meta = String::from_utf8(body).unwrap();
    for line in [
        "protocol=HTTP/3",
        "tls=TLSv1.3",
        "client=127.0.0.1",
        "node=test-node",
    ] {
        assert!(meta.contains(line), "{line} in {meta}");
    }

    // A body in and out, under the app's limit; over it, 413.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = sent.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || http3_request(port, "a.test", "/echo", Some(&echoed)))
            .await
            .unwrap();
    assert_eq!((status, body.len()), (200, sent.len()));
    assert!(body == sent, "the echoed body differs");
    let (status, _) = tokio::task::spawn_blocking(move || {
        http3_request(port, "a.test", "/echo", Some(&vec![b'x'; 300 << 10]))
    })
    .await
    .unwrap();
    assert_eq!(status, 413);

    // Routing is the same: no app at b.test.
    let (status, body) =
        tokio::task::spawn_blocking(move || http3_request(port, "b.test", "/ok", None))
            .await
            .unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}
