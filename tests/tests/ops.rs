//! Operating a node end to end: Prometheus metrics, health and readiness with the announcer
//! hooks, the drain sequence, certificate reload, a takeover by a new process under load, and
//! JSON request logs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_tests::client::{get, plain, request};
use outpost_tests::{Client, Outpost, Proto, TempDir, TestCa, wasm};
use tokio::io::AsyncWriteExt;

/// A node serving the probe at every host, with an admin listener and `extra` config (where
/// `{dir}` stands for the test's directory).
struct Setup {
    dir: TempDir,
    ca: TestCa,
    config: PathBuf,
}

impl Setup {
    fn new(label: &str, extra: &str) -> Setup {
        let dir = TempDir::new(label);
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let ca = TestCa::new();
        let (cert, key) = ca.issue(dir.path(), "localhost", &["localhost"]);
        let app = dir.write(
            "probe/outpost.toml",
            format!(
                "name = \"probe\"\ncomponent = {:?}\nroutes = [\"*\"]\n[kv]\nnamespaces = [\"data\"]\n",
                wasm("probe").display().to_string()
            ),
        );
        let config = dir.write(
            "node.toml",
            format!(
                "name = \"ops-node\"\ndata_dir = \"data\"\napps = [{:?}]\n\
                 [listen]\nhttps = \"127.0.0.1:0\"\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n\
                 [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {cert:?}\nkey = {key:?}\n{extra}",
                app.parent().unwrap().display().to_string()
            ),
        );
        Setup { dir, ca, config }
    }

    fn start(&self, extra_args: &[&str]) -> (Outpost, Client) {
        let node = Outpost::node_with(&self.config, extra_args)
            .unwrap_or_else(|e| panic!("outpost node failed: {e:?}"));
        let client = Client::new(node.addr, self.ca.pem());
        (node, client)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn admin(node: &Outpost) -> SocketAddr {
    node.admin.expect("the node logs its admin address")
}

/// `/metrics` as a map from `name{labels}` to value.
async fn scrape(admin: SocketAddr) -> BTreeMap<String, f64> {
    let reply = plain(admin, get("/metrics")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = reply.text();
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(name.to_string(), value);
    }
    assert!(!samples.is_empty(), "{text}");
    samples
}

fn sample(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", samples.keys().collect::<Vec<_>>()))
}

fn wait_for_file(path: &Path, needle: &str, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            started.elapsed() < timeout,
            "{} never held {needle:?}: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_readiness_and_a_drain_that_tells_the_announcer_first() {
    let setup = Setup::new(
        "ops-metrics",
        "[health]\non_ready = \"echo $OUTPOST_NODE $OUTPOST_STATE >> {dir}/hooks.log\"\n\
         on_drain = \"echo $OUTPOST_NODE $OUTPOST_STATE >> {dir}/hooks.log\"\n\
         drain_delay_ms = 1500\n",
    );
    let hooks = setup.path("hooks.log");
    let (node, client) = setup.start(&[]);
    let admin = admin(&node);
    wait_for_file(&hooks, "ops-node ready", Duration::from_secs(5));

    let healthz = plain(admin, get("/healthz")).await.unwrap();
    assert_eq!((healthz.status, healthz.text().trim()), (200, "ok"));
    let readyz = plain(admin, get("/readyz")).await.unwrap();
    assert_eq!((readyz.status, readyz.text().trim()), (200, "ready"));
    assert_eq!(plain(admin, get("/nothing")).await.unwrap().status, 404);

    for _ in 0..3 {
        assert_eq!(client.get("/ok").await.unwrap().status, 200);
    }
    let h2 = client
        .send("localhost", Proto::H2, get("/ok"))
        .await
        .unwrap();
    assert_eq!(h2.status, 200);
    assert_eq!(client.get("/panic").await.unwrap().status, 500);
    let set = client
        .send(
            "localhost",
            Proto::H1,
            request("POST", "/kv/set?ns=data&key=k", "v"),
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(
        client.get("/kv/get?ns=data&key=k").await.unwrap().text(),
        "v"
    );
    // A handshake that fails: garbage instead of a ClientHello.
    let mut garbage = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(garbage);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Connections held open (they have sent nothing yet) are counted until they close.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(node.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = scrape(admin).await;
    assert!(sample(&m, "outpost_connections_open") >= 3.0);
    drop(held);
    let h1_ok = r#"outpost_requests_total{app="probe",protocol="h1",status="2xx",tls="true"}"#;
    assert!(sample(&m, h1_ok) >= 5.0, "{}", sample(&m, h1_ok));
    assert_eq!(
        sample(
            &m,
            r#"outpost_requests_total{app="probe",protocol="h2",status="2xx",tls="true"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"outpost_requests_total{app="probe",protocol="h1",status="5xx",tls="true"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"outpost_guest_failures_total{app="probe",kind="trap"}"#
        ),
        1.0
    );
    assert!(sample(&m, r#"outpost_request_duration_seconds_count{app="probe"}"#) >= 7.0);
    assert!(sample(&m, r#"outpost_guest_cpu_seconds_count{app="probe"}"#) >= 7.0);
    assert!(sample(&m, "outpost_instantiate_duration_seconds_count") >= 7.0);
    assert!(sample(&m, "outpost_tls_handshakes_total") >= 7.0);
    assert!(
        sample(
            &m,
            r#"outpost_tls_handshake_failures_total{reason="error"}"#
        ) >= 1.0
    );
    assert_eq!(sample(&m, "outpost_pool_slots"), 1000.0);
    assert_eq!(sample(&m, "outpost_pool_slots_in_use"), 0.0);
    assert!(sample(&m, r#"outpost_kv_reads_total{app="probe"}"#) >= 1.0);
    assert_eq!(
        sample(&m, r#"outpost_kv_writes_total{app="probe",outcome="ok"}"#),
        1.0
    );
    assert!(sample(&m, "outpost_kv_applied_version") >= 1.0);
    assert_eq!(sample(&m, "outpost_kv_replication_lag_versions"), 0.0);
    assert_eq!(sample(&m, r#"outpost_link_up{link="origin"}"#), 1.0);
    assert_eq!(sample(&m, "outpost_ready"), 1.0);
    let live: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with(r#"outpost_app_live{app="probe",sha256=""#))
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    // No request waits for a slot; each served certificate says when it expires.
    assert_eq!(sample(&m, "outpost_pool_queue_depth"), 0.0);
    let expiry: Vec<f64> = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with(r#"outpost_tls_certificate_expiry_timestamp_seconds{cert=""#)
        })
        .map(|(_, v)| *v)
        .collect();
    let now = outpost_core::clock::unix_secs() as f64;
    assert!(
        expiry.len() == 1 && expiry[0] > now + 86_400.0,
        "{expiry:?}"
    );
    // A fetch outside the app's allow-list is counted as refused.
    let fetched = client
        .get("/fetch?url=https://not-allowed.example/")
        .await
        .unwrap();
    assert_ne!(fetched.status, 200);
    let after = scrape(admin).await;
    assert_eq!(
        sample(
            &after,
            r#"outpost_outbound_requests_total{app="probe",outcome="refused"}"#
        ),
        1.0
    );
    // Which build serves, and the process's own resources.
    let build = format!(
        r#"outpost_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&m, &build), 1.0);
    assert!(sample(&m, "process_resident_memory_bytes") > (1 << 20) as f64);
    assert!(sample(&m, "process_open_fds") >= 3.0);
    assert!(sample(&m, "process_threads") >= 2.0);
    // Whole seconds of CPU, so maybe 0 yet; but exported, and the start time is this run's.
    assert!(sample(&m, "process_cpu_seconds_total") >= 0.0);
    let started = sample(&m, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );

    // Drain: readiness turns false and the hook runs before anything closes; requests keep
    // being served through the drain delay; the one in flight finishes.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.get("/sleep?ms=2500").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    node.signal_terminate();
    wait_for_file(&hooks, "ops-node draining", Duration::from_secs(5));
    let readyz = plain(admin, get("/readyz")).await.unwrap();
    assert_eq!(readyz.status, 503);
    assert!(readyz.text().contains("draining"), "{}", readyz.text());
    assert!(signalled.elapsed() < Duration::from_millis(1500));
    let during = client.get("/ok").await.unwrap();
    assert_eq!(during.status, 200, "still serving during the drain delay");
    let slow = slow.await.unwrap().unwrap();
    assert_eq!((slow.status, slow.text().as_str()), (200, "slept"));
    assert!(node.wait(Duration::from_secs(20)).success());
    let log = std::fs::read_to_string(&hooks).unwrap();
    assert_eq!(log, "ops-node ready\nops-node draining\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload_on_change_and_on_sighup_and_a_bad_one_is_refused() {
    let setup = Setup::new("ops-certs", "");
    let (node, client) = setup.start(&[]);
    let first = client.get("/ok").await.unwrap().peer_cert;
    // A connection opened before the change keeps working after it.
    let (mut open, _) = client.connect("localhost", Proto::H2).await.unwrap();

    // New files in place: noticed without a signal.
    let fresh = setup.path("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    setup.ca.issue(&fresh, "localhost", &["localhost"]);
    let install = |from: &Path| {
        for file in ["localhost.pem", "localhost-key.pem"] {
            std::fs::copy(from.join(file), setup.path(file)).unwrap();
        }
    };
    install(&fresh);
    assert!(node.wait_for_log("TLS certificates reloaded", Duration::from_secs(10)));
    let second = client.get("/ok").await.unwrap().peer_cert;
    assert_ne!(first, second, "new handshakes get the new certificate");
    assert_eq!(
        open.send("localhost", get("/ok")).await.unwrap().status,
        200
    );

    // A broken certificate: refused, the previous one keeps serving.
    std::fs::write(setup.path("localhost.pem"), "not a certificate").unwrap();
    assert!(node.wait_for_log("new TLS certificates refused", Duration::from_secs(10)));
    let still = client.get("/ok").await.unwrap();
    assert_eq!((still.status, &still.peer_cert), (200, &second));

    // SIGHUP reloads at once.
    let third_dir = setup.path("third");
    std::fs::create_dir_all(&third_dir).unwrap();
    setup.ca.issue(&third_dir, "localhost", &["localhost"]);
    install(&third_dir);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(node.pid() as libc::pid_t, libc::SIGHUP);
    }
    assert!(node.wait_for_log("trigger=\"SIGHUP\"", Duration::from_secs(10)));
    let third = client.get("/ok").await.unwrap().peer_cert;
    assert!(third != second && third != first);
    assert!(node.terminate(Duration::from_secs(20)).success());
}

/// Clients getting `/ok` in a loop, every request on a fresh connection (so each one needs an
/// accept), counting what succeeds and what fails until stopped.
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl SteadyLoad {
    fn start(client: &Client, workers: usize) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let workers = (0..workers)
            .map(|_| {
                let (client, stop, ok, failed) =
                    (client.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get("/ok").await {
                            Ok(reply) if reply.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(reply) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("status {}", reply.status));
                            }
                            Err(err) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("{err:#}"));
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        SteadyLoad {
            stop,
            ok,
            failed,
            workers,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stop the clients: (requests ok, requests failed, the failures' errors).
    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for worker in self.workers {
            errors.extend(worker.await.unwrap());
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_process_takes_over_under_load_without_a_failed_request() {
    let setup = Setup::new("ops-takeover", "");
    let (old, client) = setup.start(&[]);
    let set = client
        .send(
            "localhost",
            Proto::H1,
            request("POST", "/kv/set?ns=data&key=kept", "yes"),
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200, "{}", set.text());

    // A second node on the same data directory is refused unless it takes over.
    let refused = Outpost::node(&setup.config).err().expect("refused");
    assert!(
        refused.stderr.contains("already running") && refused.stderr.contains("--takeover"),
        "{}",
        refused.stderr
    );

    let load = SteadyLoad::start(&client, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = load.ok();
    assert!(before > 0);

    let started = Instant::now();
    let config = setup.config.clone();
    let new = tokio::task::spawn_blocking(move || Outpost::node_with(&config, &["--takeover"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("takeover failed: {e:?}"));
    let took = started.elapsed();
    assert!(old.wait(Duration::from_secs(20)).success());
    assert_eq!(new.addr, client.addr(), "the same socket, the same address");
    let at_takeover = load.ok();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (ok, failed, errors) = load.stop().await;
    println!(
        "takeover: {ok} requests ok, {failed} failed; {before} before, {} after the new process served; takeover took {took:?}",
        ok - at_takeover
    );
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > at_takeover, "the new process serves");
    // The KV data came along: the new process opened the same replica.
    assert_eq!(
        client.get("/kv/get?ns=data&key=kept").await.unwrap().text(),
        "yes"
    );
    assert!(new.terminate(Duration::from_secs(20)).success());
}

/// A takeover that could not serve stops before it asks for the sockets: the running node
/// keeps them and keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_that_cannot_serve_leaves_the_running_node_alone() {
    let setup = Setup::new("ops-bad-takeover", "");
    let (old, client) = setup.start(&[]);
    assert_eq!(client.get("/ok").await.unwrap().status, 200);
    // The key the new process would load is now garbage.
    std::fs::write(setup.path("localhost-key.pem"), "not a key").unwrap();
    let config = setup.config.clone();
    let refused = tokio::task::spawn_blocking(move || Outpost::node_with(&config, &["--takeover"]))
        .await
        .unwrap()
        .err()
        .expect("the takeover is refused");
    assert!(
        refused.stderr.contains("not taking over"),
        "{}",
        refused.stderr
    );
    for _ in 0..5 {
        assert_eq!(client.get("/ok").await.unwrap().status, 200);
    }
    assert!(old.terminate(Duration::from_secs(20)).success());
}

/// A takeover that fails after it took the sockets (here: a listener the old node did not have
/// cannot be bound) hands them back: the old node serves again on the very same sockets, with
/// its KV data, and no request fails meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_that_fails_after_taking_the_sockets_hands_them_back() {
    let setup = Setup::new("ops-failed-takeover", "");
    let (old, client) = setup.start(&[]);
    let set = client
        .send(
            "localhost",
            Proto::H1,
            request("POST", "/kv/set?ns=data&key=kept", "yes"),
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200, "{}", set.text());
    // The new process's configuration adds a plain listener on a port something else holds:
    // nothing checks that before the sockets change hands.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let base = std::fs::read_to_string(&setup.config).unwrap();
    let broken = setup.dir.write(
        "node-broken.toml",
        base.replace(
            "https = \"127.0.0.1:0\"",
            &format!("https = \"127.0.0.1:0\"\nplain = \"127.0.0.1:{port}\""),
        ),
    );

    let load = SteadyLoad::start(&client, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failure = tokio::task::spawn_blocking(move || Outpost::node_with(&broken, &["--takeover"]))
        .await
        .unwrap()
        .err()
        .expect("the takeover fails");
    assert!(
        failure.stderr.contains("binding the plain listener"),
        "{}",
        failure.stderr
    );
    let at_failure = load.ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed, errors) = load.stop().await;
    println!(
        "failed takeover: {ok} requests ok ({} after), {failed} failed",
        ok - at_failure
    );
    assert_eq!(
        failed,
        0,
        "{:?}\nthe old node's log:\n{}",
        &errors[..errors.len().min(5)],
        old.stderr()
    );
    assert!(ok > at_failure, "the old node serves again");
    assert_eq!(
        client.get("/kv/get?ns=data&key=kept").await.unwrap().text(),
        "yes",
        "with its KV data"
    );
    // And it can still hand over for real afterwards.
    let config = setup.config.clone();
    let new = tokio::task::spawn_blocking(move || Outpost::node_with(&config, &["--takeover"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("takeover failed: {e:?}"));
    assert!(old.wait(Duration::from_secs(20)).success());
    assert_eq!(new.addr, client.addr());
    assert_eq!(client.get("/ok").await.unwrap().status, 200);
    assert!(new.terminate(Duration::from_secs(20)).success());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_request() {
    let setup = Setup::new("ops-logs", "");
    let (node, client) = setup.start(&["--log-format", "json"]);
    assert_eq!(client.get("/ok").await.unwrap().status, 200);
    assert!(node.wait_for_log("outpost::access", Duration::from_secs(5)));
    let line = node
        .stderr()
        .lines()
        .find(|l| l.contains("outpost::access"))
        .unwrap()
        .to_string();
    let entry: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(entry["app"], "probe", "{line}");
    assert_eq!(entry["status"], 200, "{line}");
    assert_eq!(entry["method"], "GET", "{line}");
    assert_eq!(entry["path"], "/ok", "{line}");
    assert_eq!(entry["version"].as_str().unwrap().len(), 12, "{line}");
    assert!(entry["request_id"].is_string(), "{line}");
    assert!(entry["micros"].as_u64().is_some() && entry["guest_us"].as_u64().is_some());
    assert!(node.terminate(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_once_the_node_serves_and_stopping_when_it_drains() {
    let setup = Setup::new("ops-notify", "");
    // systemd's side of `Type=notify`: a datagram socket named by NOTIFY_SOCKET.
    let socket = setup.path("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let node = Outpost::node_with_env(
        &setup.config,
        &[("NOTIFY_SOCKET", socket.to_str().unwrap())],
    )
    .unwrap_or_else(|e| panic!("outpost node failed: {e:?}"));
    let mut message = [0u8; 512];
    let read = |listener: &std::os::unix::net::UnixDatagram, message: &mut [u8]| {
        let n = listener.recv(message).expect("a notification within 20 s");
        String::from_utf8_lossy(&message[..n]).into_owned()
    };
    let ready = read(&listener, &mut message);
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving on 127.0.0.1:"),
        "{ready:?}"
    );
    // It was serving when it said so.
    let client = Client::new(node.addr, setup.ca.pem());
    assert_eq!(client.get("/ok").await.unwrap().status, 200);

    node.signal_terminate();
    let stopping = read(&listener, &mut message);
    assert_eq!(stopping, "STOPPING=1\nSTATUS=draining\n");
    assert!(node.wait(Duration::from_secs(30)).success());
}
