//! One tenant's misbehaviour stays that tenant's: a node serving a misbehaving app and a
//! well-behaved one (`hello`), attacked from loopback, keeps the well-behaved app fast.

use std::time::{Duration, Instant};

use outpost_tests::client::get;
use outpost_tests::{Client, NodeDir, Proto};

/// node.toml lines for an admin listener (metrics) on a free port.
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Latencies of `count` requests to `host`, one after another.
async fn latencies(client: &Client, host: &str, path: &str, count: usize) -> Vec<Duration> {
    let mut seen = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let reply = client.send(host, Proto::H1, get(path)).await.unwrap();
        assert_eq!(reply.status, 200, "{host}{path}: {}", reply.text());
        seen.push(started.elapsed());
    }
    seen
}

/// The value of counter `name` for `app` in a Prometheus scrape, 0 if absent.
fn app_counter(metrics: &str, name: &str, app: &str) -> f64 {
    sample(metrics, &format!("{name}{{app=\"{app}\"}}"))
}

/// The value of one series (`name{labels}`, exactly as scraped) in a Prometheus scrape, 0 if
/// absent.
fn sample(metrics: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The node's metrics, from its admin listener.
async fn scrape(node: &outpost_tests::Outpost) -> String {
    let admin = node.admin.expect("the node logs its admin address");
    outpost_tests::client::plain(admin, get("/metrics"))
        .await
        .unwrap()
        .text()
}

/// Guest code that computes for seconds gives its worker thread back every few milliseconds:
/// another app's requests are not held behind it, several spinners share the cores (their
/// app's share of them, taking turns), and each is still charged (and stopped) for all the
/// CPU it uses.
#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_does_not_hold_a_worker_thread() {
    let node_dir = NodeDir::new("spinners");
    let apps = [
        node_dir.app("hello", "hello", &["a.test"], ""),
        node_dir.app(
            "spinner",
            "probe",
            &["b.test"],
            "[limits]\ncpu_ms = 3000\ntimeout_ms = 20000\n",
        ),
    ];
    let (node, client) = node_dir.start(&node_dir.config(&apps, ADMIN));
    let quiet = latencies(&client, "a.test", "/", 20).await;

    // Four requests each computing for 1.5 s of CPU, on a node with two cores.
    let started = Instant::now();
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let reply = client
                    .send("b.test", Proto::H1, get("/spin?ms=1500"))
                    .await
                    .unwrap();
                (reply.status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = latencies(&client, "a.test", "/", 20).await;
    let slowest = busy.iter().max().unwrap();
    let quiet_slowest = quiet.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(500),
        "hello's slowest request took {slowest:?} beside the spinners ({quiet_slowest:?} quiet)"
    );

    // The spinners (each computing until 1.5 s have passed) ran side by side, sharing the two
    // cores: all four are done at about 1.5 s, not two of them at 1.5 s and the others at 3.
    let mut finished = Vec::new();
    for spinner in spinners {
        let (status, at) = spinner.await.unwrap();
        assert_eq!(status, 200);
        finished.push(at);
    }
    let last = finished.iter().max().unwrap();
    eprintln!(
        "hello's slowest: {quiet_slowest:?} quiet, {slowest:?} beside the spinners; \
         the spinners finished at {finished:?}"
    );
    assert!(
        *last < Duration::from_millis(2500),
        "the spinners finished at {finished:?}: they waited for one another"
    );

    // Past 10 ms of CPU the spinners took turns on their app's share of the threads; hello's
    // quick requests never waited for one. (The time charged is time inside the guest's
    // polls, so on a loaded machine the OS can hold a hello request's thread past 10 ms: such
    // a request is a long runner by then and may take a turn like one; none other may.)
    let metrics = scrape(&node).await;
    let waited = |app| app_counter(&metrics, "outpost_guest_cpu_turns_waited_total", app);
    let hello_past_long_running =
        sample(&metrics, "outpost_guest_cpu_seconds_count{app=\"hello\"}")
            - sample(
                &metrics,
                "outpost_guest_cpu_seconds_bucket{app=\"hello\",le=\"0.01\"}",
            );
    assert!(waited("spinner") > 0.0, "{metrics}");
    assert!(
        waited("hello") == 0.0 || hello_past_long_running > 0.0,
        "a quick hello request took a turn: {metrics}"
    );

    // Still charged for every slice: past its CPU budget a spinner is stopped.
    let stopped = client
        .send("b.test", Proto::H1, get("/loop"))
        .await
        .unwrap();
    assert_eq!(stopped.status, 503, "{}", stopped.text());
}

/// Connections that negotiate HTTP/2 (or reach the plain listener) and never send anything are
/// closed at the first-request deadline, so they cannot hold every connection slot.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_of_any_protocol_cannot_lock_clients_out() {
    let node_dir = NodeDir::new("silent-h2");
    let apps = [node_dir.app("hello", "hello", &["*"], "")];
    let config = node_dir.config_listening(
        "node.toml",
        &apps,
        "plain = \"127.0.0.1:0\"",
        "[http]\nmax_connections = 8\nheader_timeout_ms = 1000\nmax_connections_per_client = 0\n",
    );
    let (node, client) = node_dir.start(&config);
    let plain = node.plain.expect("a plain listener");

    // Take every slot: TLS connections that agree to h2 and send no preface, and plain TCP
    // connections that send nothing for the protocol sniffing to see.
    let mut silent = Vec::new();
    for i in 0..8 {
        if i % 2 == 0 {
            silent.push(Box::new(client.tls_alpn("a.test", b"h2").await.unwrap())
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
        } else {
            silent.push(Box::new(
                tokio::net::TcpStream::connect(plain).await.unwrap(),
            ));
        }
    }
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.send("a.test", Proto::H2, get("/")),
    )
    .await
    .expect("locked out behind silent connections")
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for mut connection in silent {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a silent connection was left open");
    }
}

/// An HTTP/2 connection that has had no request in flight for the idle timeout is closed, its
/// keep-alive pings notwithstanding.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed() {
    let node_dir = NodeDir::new("idle-h2");
    let apps = [node_dir.app("hello", "hello", &["*"], "")];
    let (node, client) =
        node_dir.start(&node_dir.config(&apps, "[http]\nidle_timeout_ms = 1000\n"));
    let (mut conn, _) = client.connect("a.test", Proto::H2).await.unwrap();
    assert_eq!(conn.send("a.test", get("/")).await.unwrap().status, 200);
    assert_eq!(conn.send("a.test", get("/")).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        conn.send("a.test", get("/")).await.is_err(),
        "the idle connection still carried a request\n{}",
        node.stderr()
    );
}

/// One client address holds at most `max_connections_per_client` connections; other clients
/// are still served.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_take_every_connection() {
    let node_dir = NodeDir::new("per-client");
    let apps = [node_dir.app("hello", "hello", &["*"], "")];
    let (_node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[http]\nmax_connections_per_client = 4\nheader_timeout_ms = 10000\n",
    ));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(client.tcp().await.unwrap());
    }
    // The fifth from the same address is closed at once.
    let mut fifth = client.tcp().await.unwrap();
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt;
    let closed = tokio::time::timeout(Duration::from_secs(2), fifth.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a fifth connection from one client was kept"
    );
    // Another client (another loopback address) is served.
    let other = client.from_source("127.0.0.2".parse().unwrap());
    let reply = other.send("a.test", Proto::H1, get("/")).await.unwrap();
    assert_eq!(reply.status, 200);
    drop(held);
    // Places come back when connections close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client
            .send("a.test", Proto::H1, get("/"))
            .await
            .unwrap()
            .status,
        200
    );
}

/// Hello's requests all succeed, fast, while `attack` runs.
async fn hello_stays_fast(client: &Client, label: &str) {
    let seen = latencies(client, "a.test", "/", 10).await;
    let slowest = seen.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(800),
        "{label}: hello's slowest request took {slowest:?}"
    );
}

/// Clients that send their bodies a byte at a time hold their connections, not instances: the
/// body is read ahead before the request takes one. (Every app may use the whole pool here,
/// so only the read-ahead protects hello.)
#[tokio::test(flavor = "multi_thread")]
async fn slow_request_bodies_hold_no_instance() {
    use tokio::io::AsyncWriteExt;
    let node_dir = NodeDir::new("slow-bodies");
    let apps = [
        node_dir.app("hello", "hello", &["a.test"], ""),
        node_dir.app("probe", "probe", &["b.test"], "[limits]\nbody_kb = 64\n"),
    ];
    let (_node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[pool]\ninstances = 16\napp_share_percent = 100\n[http]\nmax_connections_per_client = 0\n",
    ));
    let mut dribblers = Vec::new();
    for _ in 0..16 {
        let mut tls = client.tls("b.test").await.unwrap();
        tls.write_all(b"POST /echo HTTP/1.1\r\nhost: b.test\r\ncontent-length: 1000\r\n\r\nx")
            .await
            .unwrap();
        dribblers.push(tls);
    }
    let dribbling = tokio::spawn(async move {
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for tls in dribblers.iter_mut() {
                let _ = tls.write_all(b"x").await;
            }
        }
        dribblers
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    hello_stays_fast(&client, "beside 16 dribbled bodies").await;
    drop(dribbling.await);
}

/// One app with every request of its own busy cannot take the pool from another: it has its
/// share (`app_share_percent`), and past it its requests wait and then get 503.
#[tokio::test(flavor = "multi_thread")]
async fn one_app_cannot_take_the_whole_pool() {
    let node_dir = NodeDir::new("app-share");
    let apps = [
        node_dir.app("hello", "hello", &["a.test"], ""),
        node_dir.app(
            "probe",
            "probe",
            &["b.test"],
            "[limits]\ntimeout_ms = 10000\n",
        ),
    ];
    let (_node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[pool]\ninstances = 8\napp_share_percent = 50\nqueue_timeout_ms = 500\n",
    ));
    let sleepers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .send("b.test", Proto::H1, get("/sleep?ms=2000"))
                    .await
                    .map(|r| r.status)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hello_stays_fast(&client, "beside an app holding its whole share").await;
    let mut statuses = Vec::new();
    for sleeper in sleepers {
        statuses.push(sleeper.await.unwrap().unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 503, 503, 503, 503],
        "four ran (the share), four waited past the queue timeout"
    );
}

/// An HTTP/2 client that reads its responses slowly (it gives the server no more flow-control
/// window than the first 64 KiB) does not hold the guests that write them: a guest finishes into
/// a bounded buffer on the node (about 576 KiB) and gives its instance back.
#[tokio::test(flavor = "multi_thread")]
async fn slow_readers_hold_no_instance() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let node_dir = NodeDir::new("slow-readers");
    let apps = [
        node_dir.app("hello", "hello", &["a.test"], ""),
        node_dir.app(
            "probe",
            "probe",
            &["b.test"],
            "[limits]\ntimeout_ms = 20000\n",
        ),
    ];
    let (_node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[pool]\ninstances = 2\napp_share_percent = 100\nqueue_timeout_ms = 500\n",
    ));
    let tls = client.tls_alpn("b.test", b"h2").await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(1 << 20)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    // Two responses of 400 KiB, on a pool of two instances, whose bodies nobody reads.
    let mut unread = Vec::new();
    for _ in 0..2 {
        let request = http::Request::builder()
            .uri("https://b.test/bytes?kb=400")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        unread.push(response);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    hello_stays_fast(&client, "beside two responses nobody reads").await;
    drop(unread);
}

/// Every KV host call is bounded: a bulk read takes at most 100 keys and returns at most
/// 32 MiB of values (the same large key asked for again and again is refused, not copied
/// a hundred times), and one request makes at most 1,000 KV operations.
#[tokio::test(flavor = "multi_thread")]
async fn kv_host_calls_are_bounded() {
    use outpost_tests::client::request;
    let data = outpost_tests::TempDir::new("kv-bounds");
    let app = data
        .write(
            "probe/outpost.toml",
            format!(
                "name = \"probe\"\ncomponent = {:?}\n[limits]\nbody_kb = 2048\ncpu_ms = 5000\n\
                 [kv]\nnamespaces = [\"data\"]\n",
                outpost_tests::wasm("probe").display().to_string()
            ),
        )
        .parent()
        .unwrap()
        .to_path_buf();
    let node = outpost_tests::Outpost::dev(&[app.to_str().unwrap()], &data.path().join("dev"))
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let client = Client::new(node.addr, &node.ca_pem());
    let send = |method: &str, path: String, body: Vec<u8>| {
        let client = client.clone();
        let request = request(method, &path, body);
        async move { client.send("localhost", Proto::H1, request).await.unwrap() }
    };

    let stored = send(
        "POST",
        "/kv/set?ns=data&key=big".into(),
        vec![b'v'; 1 << 20],
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text());

    let many_keys: Vec<String> = (0..150).map(|i| format!("k{i}")).collect();
    let refused = send(
        "GET",
        format!("/kv/get-many?ns=data&keys={}", many_keys.join(",")),
        vec![],
    )
    .await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(
        refused.text().contains("at most 100 keys"),
        "{}",
        refused.text()
    );

    let same = vec!["big"; 100].join(",");
    let refused = send("GET", format!("/kv/get-many?ns=data&keys={same}"), vec![]).await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(
        refused.text().contains("MiB of values"),
        "{}",
        refused.text()
    );
    let fine = send("GET", "/kv/get-many?ns=data&keys=big,big".into(), vec![]).await;
    assert_eq!(fine.status, 200);

    let refused = send(
        "GET",
        "/kv/time-get?ns=data&key=small&n=1500".into(),
        vec![],
    )
    .await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(
        refused.text().contains("1000 KV operations"),
        "{}",
        refused.text()
    );
    let fine = send("GET", "/kv/time-get?ns=data&key=small&n=900".into(), vec![]).await;
    assert_eq!(fine.status, 200, "{}", fine.text());
}

/// Outbound requests are checked on the address they resolve to, against the node's policy,
/// whatever the app's allow-list says: loopback, private and link-local addresses (the cloud
/// metadata service) and the node's own listeners are refused unless the operator opens them;
/// each request makes a bounded number of subrequests, each app holds a bounded number of
/// outbound connections, and a request that has looped through Outpost is stopped.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_reach_only_what_the_operator_allows() {
    let origin = outpost_tests::Origin::start().await;
    let port = origin.addr.port();
    // The node's admin listener, on a port the app is allowed to name.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node_dir = NodeDir::new("egress");
    let allow = format!(
        "[outbound]\nallow = [\"http://127.0.0.1:{port}\", \"http://localhost:{port}\", \
         \"http://169.254.169.254\", \"http://10.0.0.1\", \"http://127.0.0.1:{admin}\"]\n"
    );
    let apps = [node_dir.app("probe", "probe", &["*"], &allow)];
    let fetch = |client: Client, url: String| async move {
        client
            .send("a.test", Proto::H1, get(&format!("/fetch?url={url}")))
            .await
            .unwrap()
    };

    // The default policy: none of these reach anything.
    let (node, client) = node_dir.start(&node_dir.config(&apps, ""));
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
    ] {
        let reply = fetch(client.clone(), url.clone()).await;
        assert_eq!(reply.status, 502, "{url}: {}", reply.text());
        assert!(!reply.text().contains("origin saw"), "{url} was reached");
    }
    assert!(
        node.wait_for_log(
            "169.254.169.254 is a link-local address",
            Duration::from_secs(5)
        ),
        "{}",
        node.stderr()
    );
    assert!(node.wait_for_log("127.0.0.1 is a loopback address", Duration::from_secs(5)));
    drop(node);

    // Loopback opened for one address: the origin is reached, the node's own listener is not;
    // subrequests and concurrent connections are capped; a looping request is stopped.
    let config = node_dir.config_named(
        "open.toml",
        &apps,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [outbound]\nallow = [\"127.0.0.1\"]\nmax_subrequests = 3\nmax_concurrent_per_app = 1\n"
        ),
    );
    let (node, client) = node_dir.start(&config);
    let reached = fetch(client.clone(), format!("http://127.0.0.1:{port}/hello")).await;
    assert_eq!(reached.status, 200, "{}", reached.text());
    assert!(
        reached.text().contains("origin saw GET /hello"),
        "{}",
        reached.text()
    );
    assert!(
        reached.text().contains("loop=outpost"),
        "the subrequest carries its hop: {}",
        reached.text()
    );
    let own = fetch(client.clone(), format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(own.status, 502, "{}", own.text());
    assert!(node.wait_for_log("one of this node's own listeners", Duration::from_secs(5)));

    let many = client
        .send(
            "a.test",
            Proto::H1,
            get(&format!("/fetch-many?url=http://127.0.0.1:{port}/&n=5")),
        )
        .await
        .unwrap();
    let text = many.text();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(&lines[..3], &["200", "200", "200"], "{}", many.text());
    assert!(
        lines[3].starts_with("error") && lines[4].starts_with("error"),
        "{}",
        many.text()
    );

    // With one outbound connection for the app, a second fetch waits for the first (each takes
    // a second at the origin).
    let slow = format!("http://127.0.0.1:{port}/slow");
    let started = Instant::now();
    let (first, second) = tokio::join!(fetch(client.clone(), slow.clone()), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fetch(client.clone(), slow.clone()).await
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "the fetches ran side by side: {:?}",
        started.elapsed()
    );
    let statuses = [first.status, second.status];
    assert_eq!(
        statuses,
        [200, 200],
        "one connection at a time: {} / {}",
        first.text(),
        second.text()
    );

    let mut looping = get(&format!("/fetch?url=http://127.0.0.1:{port}/"));
    looping
        .headers_mut()
        .insert("cdn-loop", ["outpost"; 7].join(", ").parse().unwrap());
    let stopped = client.send("a.test", Proto::H1, looping).await.unwrap();
    assert_eq!(stopped.status, 502, "{}", stopped.text());
    let mut looped = get("/ok");
    looped
        .headers_mut()
        .insert("cdn-loop", ["outpost"; 8].join(", ").parse().unwrap());
    assert_eq!(
        client
            .send("a.test", Proto::H1, looped)
            .await
            .unwrap()
            .status,
        508
    );
}

/// A guest that floods stdout and stderr runs out its app's log budget: its extra lines are
/// dropped and counted, not queued, and another app's lines and the node's own still get out.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_dropped_and_counted_not_queued() {
    let node_dir = NodeDir::new("log-flood");
    let apps = [
        node_dir.app("noisy", "probe", &["a.test"], "[limits]\ncpu_ms = 2000\n"),
        node_dir.app("quiet", "probe", &["b.test"], ""),
    ];
    let config = node_dir.config(
        &apps,
        &format!("{ADMIN}[log]\nguest_lines_per_second = 20\n"),
    );
    let (node, client) = node_dir.start(&config);

    // 20,000 lines of 40 bytes in one request (within the 1 MiB a request may write); the
    // app's budget is ten seconds of 20 lines a second.
    let flood = client
        .send("a.test", Proto::H1, get("/log-flood?n=20000&size=40"))
        .await
        .unwrap();
    assert_eq!(flood.status, 200, "{}", flood.text());
    let quiet = client.send("b.test", Proto::H1, get("/log")).await.unwrap();
    assert_eq!(quiet.status, 200);
    assert!(
        node.wait_for_log("leveled error line", Duration::from_secs(5)),
        "the quiet app's lines are written"
    );
    assert!(node.wait_for_log("guest log lines dropped", Duration::from_secs(5)));

    let written = node.stderr().matches("flood line").count();
    assert!(
        (150..=260).contains(&written),
        "{written} flood lines written; the budget is about 200"
    );
    let metrics = scrape(&node).await;
    let dropped = |app| app_counter(&metrics, "outpost_guest_log_dropped_total", app);
    assert!(dropped("noisy") >= 19_000.0, "{metrics}");
    assert_eq!(dropped("quiet"), 0.0, "the quiet app lost nothing");
}

/// The operator's `[limits]` in node.toml are ceilings over what an app's own limits ask for:
/// an app asking for more runs with the ceiling, and the node says so.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_cannot_ask_for_more_than_the_node_allows() {
    use outpost_tests::client::request;
    let node_dir = NodeDir::new("ceilings");
    let apps = [node_dir.app(
        "greedy",
        "probe",
        &["a.test"],
        "[limits]\ncpu_ms = 20000\ntimeout_ms = 60000\nbody_kb = 8192\n",
    )];
    let (node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[limits]\nmax_cpu_ms = 200\nmax_timeout_ms = 1500\nmax_body_mb = 1\n",
    ));
    assert!(
        node.wait_for_log("run lowered", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );
    assert!(
        node.stderr()
            .contains("cpu_ms 20000 ms > node ceiling 200 ms"),
        "{}",
        node.stderr()
    );

    let started = Instant::now();
    let spun = client
        .send("a.test", Proto::H1, get("/loop"))
        .await
        .unwrap();
    assert_eq!(spun.status, 503, "{}", spun.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let slept = client
        .send("a.test", Proto::H1, get("/sleep?ms=5000"))
        .await
        .unwrap();
    assert_eq!(slept.status, 504, "{}", slept.text());

    // 2 MiB declared, over the 1 MiB ceiling: refused before any of it is read.
    let big = client
        .exchange(
            "a.test",
            b"POST /echo HTTP/1.1\r\nhost: a.test\r\ncontent-length: 2097152\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    let fits = client
        .send(
            "a.test",
            Proto::H1,
            request("POST", "/echo", vec![b'x'; 512 << 10]),
        )
        .await
        .unwrap();
    assert_eq!(fits.status, 200, "{}", fits.text());
}

/// An app's live instances together hold at most its share of the node's memory budget
/// (`[pool] memory_budget_mb` x `app_share_percent`), so many instances of one app each within
/// its own limit cannot take the machine's memory; another app still gets its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_apps_instances_together_stay_within_its_share_of_memory() {
    let node_dir = NodeDir::new("memory-share");
    let apps = [
        node_dir.app("hog", "probe", &["a.test"], "[limits]\nmemory_mb = 40\n"),
        node_dir.app("other", "probe", &["b.test"], "[limits]\nmemory_mb = 40\n"),
    ];
    let (node, client) = node_dir.start(&node_dir.config(
        &apps,
        "[pool]\ninstances = 8\nmemory_mb = 64\nmemory_budget_mb = 100\napp_share_percent = 50\n",
    ));
    let hold = |host: &'static str| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .send(host, Proto::H1, get("/hold?mb=30&ms=3000"))
                .await
                .unwrap()
        })
    };
    let first = hold("a.test");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 30 MiB more would take the app past its 50 MiB: of two holds at once, one is refused
    // (on a loaded machine the second may reach the node first: which one does not matter).
    let second = hold("a.test");
    // The other app has its own share.
    let other = hold("b.test");
    let (first, second, other) = (
        first.await.unwrap(),
        second.await.unwrap(),
        other.await.unwrap(),
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [200, 503], "{}\n{}", first.text(), second.text());
    assert_eq!(other.status, 200, "{}", other.text());
    assert!(
        node.wait_for_log(
            "the app's instances together hold its share",
            Duration::from_secs(5)
        ),
        "{}",
        node.stderr()
    );
    // What the instances held is given back: once their stores are dropped, which happens just
    // after the last byte of their responses left, so a request sent at once may still find it
    // held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let again = client
            .send("a.test", Proto::H1, get("/hold?mb=30&ms=10"))
            .await
            .unwrap();
        if again.status == 200 || tokio::time::Instant::now() > deadline {
            assert_eq!(again.status, 200, "{}", again.text());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
