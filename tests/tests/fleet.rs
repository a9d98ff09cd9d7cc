//! An origin and three nodes on loopback: deploys reach every node, roll out with no failed
//! request, bad components are refused, rollback works, nodes survive the origin going away,
//! and strangers get nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_core::api;
use outpost_tests::client::{Conn, get};
use outpost_tests::fleet::{distinct_component, probe};
use outpost_tests::{Fleet, Proto, TestCa};

const VERSION_PATH: &str = "/config?key=VERSION";

fn served(version: &str) -> String {
    format!("config={version} env={version}")
}

#[derive(Default)]
struct Tally {
    ok_v1: AtomicU64,
    ok_v2: AtomicU64,
    failed: AtomicU64,
}

/// Requests against one node until `stop`: a fresh HTTP/1.1 connection each time on one task,
/// a long-lived HTTP/2 connection on another.
fn load(
    fleet: &Fleet,
    node: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let client = fleet.client(node);
    let record = |tally: &Tally,
                  result: anyhow::Result<outpost_tests::Reply>,
                  errors: &mut Vec<String>| match result {
        Ok(reply) if reply.status == 200 && reply.text() == served("v1") => {
            tally.ok_v1.fetch_add(1, Ordering::Relaxed);
        }
        Ok(reply) if reply.status == 200 && reply.text() == served("v2") => {
            tally.ok_v2.fetch_add(1, Ordering::Relaxed);
        }
        Ok(reply) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            errors.push(format!("{} {}", reply.status, reply.text()));
        }
        Err(err) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            errors.push(format!("{err:#}"));
        }
    };
    let fresh = {
        let (client, stop, tally) = (client.clone(), stop.clone(), tally.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                record(&tally, client.get(VERSION_PATH).await, &mut errors);
            }
            errors
        })
    };
    let persistent = tokio::spawn(async move {
        let mut errors = Vec::new();
        let (mut conn, _) = client
            .connect("localhost", Proto::H2)
            .await
            .expect("h2 connection");
        while !stop.load(Ordering::Relaxed) {
            record(
                &tally,
                conn.send("localhost", get(VERSION_PATH)).await,
                &mut errors,
            );
        }
        drop::<Conn>(conn);
        errors
    });
    vec![fresh, persistent]
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_roll_out_refuse_and_roll_back_across_three_nodes() {
    let fleet = Fleet::start("rollout", 3);
    let app = fleet.app("shop", &probe(), &[("VERSION", "v1")]);

    // v1 reaches every node, and the CLI waits until it has.
    let out = fleet.cli(&app, &["deploy", "--activate", "--note", "first"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("shop version 1"), "{}", out.stdout);
    assert!(out.stdout.contains("live on 3 nodes"), "{}", out.stdout);
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v1"), Duration::from_secs(5))
        .await;

    // v2 rolls out under steady load through every node: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..3)
        .flat_map(|node| load(&fleet, node, stop.clone(), tally.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = fleet.app("shop", &probe(), &[("VERSION", "v2")]);
    let out = fleet.cli(&app, &["deploy", "--activate", "--note", "second"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("shop version 2"), "{}", out.stdout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    let (v1, v2, failed) = (
        tally.ok_v1.load(Ordering::Relaxed),
        tally.ok_v2.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "failed requests during the roll-out: {errors:?}");
    assert!(
        v1 > 0 && v2 > 0,
        "expected both versions to be served: v1 {v1}, v2 {v2}"
    );
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v2"), Duration::from_secs(1))
        .await;

    // A component that does not link is refused with the reason; v2 keeps serving.
    let broken = fleet.dir.write(
        "broken.wasm",
        wat::parse_str(
            r#"(component (import "acme:thing/api@1.0.0" (instance (export "f" (func))))
                 (import "wasi:http/types@0.2.0" (instance $t
                   (export "incoming-request" (type (sub resource)))
                   (export "response-outparam" (type (sub resource)))))
                 (alias export $t "incoming-request" (type $rq))
                 (alias export $t "response-outparam" (type $ro))
                 (core module $m (func (export "h") (param i32 i32)))
                 (core instance $i (instantiate $m))
                 (func $h (param "request" (own $rq)) (param "response-out" (own $ro)) (canon lift (core func $i "h")))
                 (instance $e (export "handle" (func $h)))
                 (export "wasi:http/incoming-handler@0.2.0" (instance $e)))"#,
        )
        .unwrap(),
    );
    let bad_app = fleet.app("shop", &broken, &[("VERSION", "v3")]);
    let out = fleet.cli(&bad_app, &["deploy", "--activate"]);
    assert!(!out.status.success());
    let message = out.stderr.trim();
    assert!(
        message.starts_with("error: the origin refused (422): component refused"),
        "{message}"
    );
    assert!(message.contains("acme:thing/api@1.0.0"), "{message}");
    assert_eq!(message.lines().count(), 1, "one clear line: {message}");
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v2"), Duration::from_secs(1))
        .await;

    // Rollback returns every node to v1.
    let out = fleet.cli(&app, &["rollback"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("rolled back to version 1"),
        "{}",
        out.stdout
    );
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v1"), Duration::from_secs(1))
        .await;

    let versions = fleet.cli(&app, &["versions"]);
    assert!(versions.status.success(), "{}", versions.stderr);
    let rows: Vec<&str> = versions.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", versions.stdout);
    assert!(
        rows[0].starts_with("1 ") && rows[0].contains("100%") && rows[0].ends_with("first"),
        "{}",
        versions.stdout
    );
    assert!(
        rows[1].starts_with("2 ") && rows[1].ends_with("second"),
        "{}",
        versions.stdout
    );

    let status = fleet.cli(&app, &["status"]);
    assert!(status.status.success(), "{}", status.stderr);
    for node in ["edge-1", "edge-2", "edge-3"] {
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{}", status.stdout));
        assert!(line.contains("yes") && line.contains("shop@1"), "{line}");
    }

    // The same answers as JSON, in the admin API's own types.
    let json = |args: &[&str]| {
        let mut args = args.to_vec();
        args.push("--json");
        let out = fleet.cli(&app, &args);
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        out.stdout
    };
    let detail: api::AppDetail = serde_json::from_str(&json(&["versions"])).unwrap();
    assert_eq!(detail.app.active, Some(1));
    assert_eq!(detail.versions.len(), 2);
    assert_eq!(detail.versions[1].note.as_deref(), Some("second"));
    assert!(!detail.config_hidden);
    let status: api::FleetStatus = serde_json::from_str(&json(&["status"])).unwrap();
    assert_eq!(status.nodes.len(), 3, "{status:?}");
    for node in &status.nodes {
        assert!(node.connected, "{node:?}");
        assert_eq!(node.report.apps[0].live_version, Some(1), "{node:?}");
    }
    let active: api::ActiveVersion = serde_json::from_str(&json(&["activate", "2"])).unwrap();
    assert_eq!((active.app.as_str(), active.active), ("shop", 2));
    let active: api::ActiveVersion = serde_json::from_str(&json(&["rollback"])).unwrap();
    assert_eq!(active.active, 1);
}

/// `GET VERSION_PATH` on node `node` with `header` set, answered with the version served.
async fn version_for(fleet: &Fleet, node: usize, header: (&str, &str)) -> String {
    let request = http::Request::builder()
        .uri(VERSION_PATH)
        .header(header.0, header.1)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = fleet
        .client(node)
        .send("localhost", Proto::H1, request)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// For keys `k0`..`k{n-1}` sent to the nodes in turn: which version each got.
async fn versions_by_key(fleet: &Fleet, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k{i}");
        got.push(version_for(fleet, i % 3, ("outpost-version-key", &key)).await);
    }
    got
}

fn count(versions: &[String], version: &str) -> usize {
    versions.iter().filter(|v| **v == served(version)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn gradual_deploys_keep_each_client_on_one_version_and_previews_reach_any() {
    let fleet = Fleet::start_previewing("gradual", 3);
    let v1 = fleet.app("shop", &probe(), &[("VERSION", "v1")]);
    assert!(fleet.cli(&v1, &["deploy", "--activate"]).status.success());

    // Version 2 takes 10%: the CLI waits until every node splits so.
    let v2 = fleet.app("shop", &probe(), &[("VERSION", "v2")]);
    let out = fleet.cli(&v2, &["deploy", "--percent", "10"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("takes 10% of the traffic"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("live on 3 nodes"), "{}", out.stdout);

    // A thousand distinct keys through all three nodes land within a few percent of it.
    let at_10 = versions_by_key(&fleet, 1000).await;
    let (on_v1, on_v2) = (count(&at_10, "v1"), count(&at_10, "v2"));
    assert_eq!(on_v1 + on_v2, 1000);
    assert!((70..=130).contains(&on_v2), "v2 took {on_v2} of 1000");
    // Each key gets the same version again, from another node, and by cookie as by header.
    for i in (0..1000).step_by(7) {
        let key = format!("k{i}");
        let again = version_for(&fleet, (i + 1) % 3, ("outpost-version-key", &key)).await;
        assert_eq!(again, at_10[i], "key {key}");
        let cookie = format!("theme=dark; outpost-version-key={key}");
        let by_cookie = version_for(&fleet, (i + 2) % 3, ("cookie", &cookie)).await;
        assert_eq!(by_cookie, at_10[i], "key {key} by cookie");
    }

    // 50/50 by hand: the keys already on version 2 stay there.
    let out = fleet.cli(&v2, &["versions", "split", "1=50", "2=50"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("traffic split 1=50 2=50"),
        "{}",
        out.stdout
    );
    let at_50 = versions_by_key(&fleet, 1000).await;
    let on_v2 = count(&at_50, "v2");
    assert!((440..=560).contains(&on_v2), "v2 took {on_v2} of 1000");
    for (i, before) in at_10.iter().enumerate() {
        if *before == served("v2") {
            assert_eq!(at_50[i], served("v2"), "key k{i} moved back to v1");
        }
    }

    // Status and every node's metrics show the split.
    let status = fleet.cli(&v2, &["status"]);
    assert!(
        status
            .stdout
            .contains("shop                     1 (split 1=50 2=50)"),
        "{}",
        status.stdout
    );
    for node in 0..3 {
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("edge-{}", node + 1)))
            .unwrap();
        assert!(line.contains("shop@1 (split 1=50 2=50)"), "{line}");
        let admin = fleet.node(node).admin.unwrap();
        let metrics = outpost_tests::client::plain(admin, get("/metrics"))
            .await
            .unwrap()
            .text();
        for version in ["1", "2"] {
            let line =
                format!("outpost_app_traffic_percent{{app=\"shop\",version=\"{version}\"}} 50");
            assert!(
                metrics.contains(&line),
                "{line} not in node {node}'s metrics"
            );
        }
    }

    // Rollback ends the split at once: everyone is on version 1 again.
    let out = fleet.cli(&v2, &["rollback"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("rolled back to version 1"),
        "{}",
        out.stdout
    );
    let after = versions_by_key(&fleet, 100).await;
    assert_eq!(count(&after, "v1"), 100, "{after:?}");

    // Previews: an uploaded, never activated version is reachable on every node at its
    // preview host, as is any version nodes run; others are refused by name.
    let v3 = fleet.app("shop", &probe(), &[("VERSION", "v3")]);
    let out = fleet.cli(&v3, &["deploy"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("v3--shop."), "{}", out.stdout);
    for (version, expected) in [("3", "v3"), ("2", "v2"), ("1", "v1")] {
        let host = format!("v{version}--shop.preview.localhost");
        for node in 0..3 {
            let started = Instant::now();
            loop {
                let reply = fleet
                    .client(node)
                    .send("localhost", Proto::H1, {
                        let mut request = get(VERSION_PATH);
                        request.headers_mut().insert("host", host.parse().unwrap());
                        request
                    })
                    .await
                    .unwrap();
                if reply.status == 200 {
                    assert_eq!(reply.text(), served(expected), "{host} on node {node}");
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{host}: {}",
                    reply.text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let mut request = get(VERSION_PATH);
    request
        .headers_mut()
        .insert("host", "v9--shop.preview.localhost".parse().unwrap());
    let missing = fleet
        .client(0)
        .send("localhost", Proto::H1, request)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .text()
            .contains("version 9 of app shop is not available for preview")
    );
    // The routes still serve the active version only.
    assert_eq!(count(&versions_by_key(&fleet, 30).await, "v1"), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_refuse_a_tampered_blob_and_serve_without_the_origin() {
    let mut fleet = Fleet::start("survive", 3);
    let app = fleet.app("shop", &probe(), &[("VERSION", "v1")]);
    let out = fleet.cli(&app, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}", out.stderr);

    // Version 2 is uploaded but not active; then its blob is corrupted on the origin's disk.
    let component = distinct_component(&probe(), fleet.dir.path(), "tampered");
    let app2 = fleet.app("shop", &component, &[("VERSION", "v2")]);
    let out = fleet.cli(&app2, &["deploy"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("not active yet: outpost activate 2"),
        "{}",
        out.stdout
    );
    let sha = outpost_node_sha(&component);
    let blob = fleet
        .dir
        .path()
        .join(format!("origin-data/blobs/{sha}.wasm"));
    let mut tampered = std::fs::read(&blob).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    std::fs::write(&blob, tampered).unwrap();

    let out = fleet.cli(&app2, &["activate", "2"]);
    assert!(
        !out.status.success(),
        "activating a tampered blob should fail: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("could not deploy shop version 2"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v1"), Duration::from_secs(1))
        .await;

    // The origin goes away; a node restarted meanwhile serves what it last knew.
    let out = fleet.cli(&app, &["activate", "1"]);
    assert!(out.status.success(), "{}", out.stderr);
    fleet.kill_origin();
    fleet.kill_node(0);
    fleet.start_node(0);
    let reply = fleet.client(0).get(VERSION_PATH).await.unwrap();
    assert_eq!(reply.text(), served("v1"));
    assert!(
        fleet
            .node(0)
            .stderr()
            .contains("restoring the last known fleet state")
    );
    // And it keeps trying to reach the origin without getting in the way of serving.
    assert!(
        fleet
            .node(0)
            .wait_for_log("origin link down", Duration::from_secs(10))
    );
    assert_eq!(
        fleet.client(0).get(VERSION_PATH).await.unwrap().text(),
        served("v1")
    );
}

fn outpost_node_sha(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_cluster_certificates_keep_strangers_out() {
    let fleet = Fleet::start("auth", 1);
    let app = fleet.app("shop", &probe(), &[("VERSION", "v1")]);
    let out = fleet.cli(&app, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}", out.stderr);

    for (token, needle) in [
        (
            None,
            "the origin refused (401): missing or unknown bearer token",
        ),
        (Some("opt_not-a-real-token"), "the origin refused (401)"),
        (
            Some(fleet.read_token.as_str()),
            "the origin refused (403): the token lacks the Deploy right",
        ),
    ] {
        let out = fleet.cli_with_token(token, &app, &["deploy", "--activate"]);
        assert!(!out.status.success());
        assert!(
            out.stderr.contains(needle),
            "expected {needle:?} in {}",
            out.stderr
        );
        let rollback = fleet.cli_with_token(token, &app, &["rollback", "1"]);
        assert!(!rollback.status.success());
    }
    // What the origin and the node keep is theirs alone, whatever the umask they started with.
    for dir in ["origin-data", "edge-1-data"] {
        let dir = fleet.dir.path().join(dir);
        for entry in walk(&dir) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.display());
        }
    }

    // A stranger's upload is refused before the origin reads it: the answer comes at once,
    // not after 64 MiB or a timeout, and the connection is closed.
    let admin = outpost_tests::Client::new(fleet.admin, &fleet.ca_pem());
    let started = Instant::now();
    let refused = admin
        .exchange(
            "localhost",
            format!(
                "PUT /v1/blobs/{} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer opt_wrong\r\n\
                 content-length: 67108864\r\n\r\n{}",
                "0".repeat(64),
                "x".repeat(1000)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusal took {:?}",
        started.elapsed()
    );

    // A `read` token sees an app's config names, not their values; a deploy token sees both.
    let app_json = |token: &str| {
        let admin = admin.clone();
        let token = token.to_string();
        async move {
            let reply = admin
                .exchange(
                    "localhost",
                    format!(
                        "GET /v1/apps/shop HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
                         connection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
            reply
        }
    };
    let as_reader = app_json(&fleet.read_token).await;
    assert!(as_reader.contains("\"VERSION\": \"\""), "{as_reader}");
    assert!(as_reader.contains("\"config_hidden\": true"), "{as_reader}");
    assert!(!as_reader.contains("\"v1\""), "{as_reader}");
    let as_deployer = app_json(&fleet.token).await;
    assert!(as_deployer.contains("\"VERSION\": \"v1\""), "{as_deployer}");

    // Nothing changed: still one version, still served.
    let versions = fleet.cli_with_token(Some(&fleet.read_token), &app, &["versions"]);
    assert!(versions.status.success(), "{}", versions.stderr);
    assert_eq!(versions.stdout.lines().count(), 2, "{}", versions.stdout);
    assert_eq!(
        fleet.client(0).get(VERSION_PATH).await.unwrap().text(),
        served("v1")
    );
    // Deploying the same component again uploads nothing.
    let again = fleet.cli(&app, &["deploy"]);
    assert!(again.status.success(), "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("the origin has this component already"),
        "{}",
        again.stdout
    );

    // QUIC without a client certificate, or with one from another CA: refused.
    let ca = fleet.dir.path().join("cluster/ca.pem");
    assert!(
        quic_subscribe(fleet.cluster, &ca, None, "edge-1")
            .await
            .is_err()
    );
    let other = TestCa::new();
    let (cert, key) = other.issue(fleet.dir.path(), "stranger", &["edge-1"]);
    assert!(
        quic_subscribe(fleet.cluster, &ca, Some((&cert, &key)), "edge-1")
            .await
            .is_err()
    );
    // A real member claiming another member's name: refused too.
    let own = (
        fleet.dir.path().join("cluster/edge-1.pem"),
        fleet.dir.path().join("cluster/edge-1-key.pem"),
    );
    assert!(
        quic_subscribe(fleet.cluster, &ca, Some((&own.0, &own.1)), "edge-9")
            .await
            .is_err()
    );
    // The real thing works, so the refusals above are not an artefact of this client.
    let state = quic_subscribe(fleet.cluster, &ca, Some((&own.0, &own.1)), "edge-1")
        .await
        .unwrap();
    assert!(state.contains("\"app\":\"shop\""), "{state}");
}

/// A node takes KV peer links only from the peers its config names, and of those only the ones
/// that dial it: another holder of a cluster certificate is turned away before it can send a
/// thing, as is a configured peer calling in the wrong direction.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_take_peer_links_only_from_their_configured_peers() {
    let fleet = Fleet::start("peer-allow", 2);
    let cluster = fleet.dir.path().join("cluster");
    let issued = fleet.cli(
        fleet.dir.path(),
        &["ca", "issue", "--node", "edge-9", "--dir", "cluster"],
    );
    assert!(issued.status.success(), "{}", issued.stderr);
    let ca = cluster.join("ca.pem");
    // Member `caller`, with its own certificate, opens a peer link to node `to` (0-based).
    let call = |caller: &str, to: usize| {
        let (cert, key) = (
            cluster.join(format!("{caller}.pem")),
            cluster.join(format!("{caller}-key.pem")),
        );
        let (addr, name) = (fleet.peer_addrs[to], format!("edge-{}", to + 1));
        let open = format!("{{\"open\":\"peer\",\"node\":{caller:?}}}");
        let ca = ca.clone();
        async move { quic_open(addr, &name, &ca, Some((&cert, &key)), &open).await }
    };

    // edge-1 dials edge-2 (names sort so), so edge-2 takes edge-1's link...
    call("edge-1", 1)
        .await
        .expect("edge-2 takes a link from edge-1 (and sends it a digest)");
    // ...but not from a member that is not among its peers,
    let refused = call("edge-9", 1).await;
    assert!(refused.is_err(), "edge-9 got {refused:?}");
    // and edge-1 does not take edge-2 calling it: it dials edge-2 itself.
    let reversed = call("edge-2", 0).await;
    assert!(reversed.is_err(), "edge-2 calling in got {reversed:?}");
    for node in 0..2 {
        assert!(
            fleet
                .node(node)
                .wait_for_log("refused a KV peer link", Duration::from_secs(5)),
            "{}",
            fleet.node(node).stderr()
        );
    }
}

/// `dir` and everything beneath it.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            found.extend(walk(&entry.unwrap().path()));
        }
    }
    found
}

/// Connect to the origin's cluster port and subscribe as `node`; the first desired state frame.
async fn quic_subscribe(
    origin: std::net::SocketAddr,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    node: &str,
) -> anyhow::Result<String> {
    let open = format!("{{\"open\":\"subscribe\",\"node\":{node:?}}}");
    quic_open(origin, "origin", ca, identity, &open).await
}

/// Connect to a cluster member at `addr` (its certificate naming `name`), open a stream with
/// the frame `open`; the first frame it answers with.
async fn quic_open(
    addr: std::net::SocketAddr,
    name: &str,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    open: &str,
) -> anyhow::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"outpost-cluster/1".to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(config);
    let attempt = async {
        let connection = endpoint.connect(addr, name)?.await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&(open.len() as u32).to_be_bytes()).await?;
        send.write_all(open.as_bytes()).await?;
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        recv.read_exact(&mut body).await?;
        // JSON from the origin; a binary KV frame from a peer.
        anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt).await?;
    endpoint.close(0u32.into(), b"");
    result
}

/// The figure for the closing note:
///     cargo test --release -p outpost-tests --test fleet deploy_to_live -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run by hand"]
async fn deploy_to_live_median_over_ten_deploys() {
    let fleet = Fleet::start("figure", 3);
    let mut times = Vec::new();
    for round in 0..10 {
        // A new component each time, so every deploy uploads, validates, fetches and compiles.
        let component = distinct_component(&probe(), fleet.dir.path(), &format!("round-{round}"));
        let app = fleet.app("shop", &component, &[("VERSION", &format!("r{round}"))]);
        let started = Instant::now();
        let out = fleet.cli(&app, &["deploy", "--activate"]);
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{}", out.stderr);
        fleet
            .wait_for_everywhere(
                VERSION_PATH,
                &served(&format!("r{round}")),
                Duration::from_secs(1),
            )
            .await;
        times.push(elapsed);
        println!("deploy {round}: {:.0} ms", elapsed.as_secs_f64() * 1000.0);
    }
    times.sort();
    let median = (times[4] + times[5]) / 2;
    println!(
        "deploy --activate to live on 3 nodes, 10 deploys: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        median.as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[9].as_secs_f64() * 1000.0
    );
}

/// A node (and the CLI) that knows several origins, by address and by name, uses one that
/// answers: the first listed has nothing listening, the second is `localhost`.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_several_origins_links_to_the_one_that_answers() {
    let mut fleet = Fleet::start("origins", 1);
    fleet.kill_node(0);
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = format!("127.0.0.1:{}", nobody.local_addr().unwrap().port());
    drop(nobody);
    let by_name = format!("localhost:{}", fleet.cluster.port());
    fleet.set_origins(0, &[dead, by_name]);
    fleet.start_node(0);

    // The CLI likewise: the first origin it is given refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origins = format!(
        "https://127.0.0.1:{},https://localhost:{}",
        closed.local_addr().unwrap().port(),
        fleet.admin.port()
    );
    drop(closed);
    let app = fleet.app("shop", &probe(), &[("VERSION", "v1")]);
    let out = fleet.cli(&app, &["deploy", "--activate", "--origin", &origins]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let waited = fleet
        .wait_for_everywhere(VERSION_PATH, &served("v1"), Duration::from_secs(20))
        .await;
    println!("served through the second origin after {waited:?}");
    assert!(
        fleet
            .node(0)
            .wait_for_log("connected to the origin", Duration::from_secs(1)),
        "{}",
        fleet.node(0).stderr()
    );

    // Deleting an app asks first; with no terminal to ask on, it takes --yes.
    let refused = fleet.cli(&app, &["delete", "--origin", &origins]);
    assert!(!refused.status.success(), "{}", refused.stdout);
    assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
    let still = fleet.cli(&app, &["versions", "--origin", &origins]);
    assert!(still.status.success(), "{}", still.stderr);
    let deleted = fleet.cli(&app, &["delete", "--yes", "--origin", &origins]);
    assert!(deleted.status.success(), "{}", deleted.stderr);
    let gone = fleet.cli(&app, &["versions", "--origin", &origins]);
    assert!(!gone.status.success(), "{}", gone.stdout);
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_handlers_and_nowhere_else() {
    use std::io::Write;
    let mut fleet = Fleet::start("secrets", 3);
    let app = fleet.app("shop", &probe(), &[("VERSION", "v1")]);
    assert!(fleet.cli(&app, &["deploy", "--activate"]).status.success());
    const SECRET: &str = "hunter2-very-secret";
    let secret_path = "/config?key=API_KEY";

    // From stdin, as a script pipes it; one trailing newline is not part of it.
    let mut put = fleet
        .cli_command(Some(&fleet.token), &app, &["secret", "put", "API_KEY"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(format!("{SECRET}\n").as_bytes())
        .unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every node's handler reads it like a config value (wasi:config, and the environment).
    fleet
        .wait_for_everywhere(
            secret_path,
            &format!("config={SECRET} env={SECRET}"),
            Duration::from_secs(10),
        )
        .await;

    // Listed by name only, with a read token too; never set with one.
    let list = fleet.cli_with_token(Some(&fleet.read_token), &app, &["secret", "list"]);
    assert!(list.status.success(), "{}", list.stderr);
    assert_eq!(list.stdout.trim(), "API_KEY");
    let listed: api::SecretList =
        serde_json::from_str(&fleet.cli(&app, &["secret", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed.secrets.len(), 1);
    let value_file = fleet.dir.write("value.txt", "x");
    let refused = fleet.cli_with_token(
        Some(&fleet.read_token),
        &app,
        &[
            "secret",
            "put",
            "OTHER",
            "--file",
            value_file.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    for args in [&["versions", "--json"][..], &["status", "--json"]] {
        let out = fleet.cli(&app, args);
        assert!(!out.stdout.contains(SECRET), "{args:?} shows the secret");
    }

    // Nothing on any disk holds it in clear, and no log line shows it.
    let on_disk = files_containing(fleet.dir.path(), SECRET.as_bytes());
    assert!(on_disk.is_empty(), "in clear in {on_disk:?}");
    for node in 0..3 {
        assert!(!fleet.node(node).stderr().contains(SECRET));
    }
    assert!(!fleet.origin.as_ref().unwrap().stderr().contains(SECRET));

    // A node restarted while the origin is away still has it (sealed on its disk).
    fleet.kill_origin();
    fleet.kill_node(0);
    fleet.start_node(0);
    let reply = fleet.client(0).get(secret_path).await.unwrap();
    assert_eq!(reply.text(), format!("config={SECRET} env={SECRET}"));
    fleet.restart_origin();

    // Deleted: every handler sees it gone.
    let out = fleet.cli(&app, &["secret", "delete", "API_KEY"]);
    assert!(out.status.success(), "{}", out.stderr);
    fleet
        .wait_for_everywhere(
            secret_path,
            "config=(unset) env=(unset)",
            Duration::from_secs(20),
        )
        .await;
}

/// A per-second cron trigger on three nodes for about 20 s, one node killed hard mid-run:
/// every tick reaches the handler once (the probe counts each scheduled time in the KV), none
/// twice, and a client cannot pass for a trigger.
#[tokio::test(flavor = "multi_thread")]
async fn each_cron_tick_fires_once_across_the_fleet_as_a_node_dies() {
    use outpost_tests::kv::{keys_in_pages, kv};
    let mut fleet = Fleet::start("triggers", 3);
    let app = fleet.app_with_kv("shop", &probe(), &["*"], &[], &["data"]);
    let manifest = app.join("outpost.toml");
    let without_triggers = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{without_triggers}\n[[triggers]]\ncron = \"* * * * * *\"\npath = \"/tick?ns=data\"\n"
        ),
    )
    .unwrap();
    let out = fleet.cli(&app, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);

    // The marker headers a client sends are removed before the handler sees them.
    let mut forged = outpost_tests::client::request("POST", "/tick?ns=data", "");
    for (name, value) in [
        ("outpost-trigger", "* * * * * *"),
        ("outpost-scheduled-time", "1000"),
    ] {
        forged.headers_mut().insert(name, value.parse().unwrap());
    }
    let reply = fleet
        .client(0)
        .send("localhost", Proto::H1, forged)
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());

    tokio::time::sleep(Duration::from_secs(8)).await;
    let killed_at = outpost_core::clock::unix_millis();
    fleet.kill_node(1);
    tokio::time::sleep(Duration::from_secs(12)).await;
    // Redeployed without the trigger, the fleet stops firing it.
    std::fs::write(&manifest, &without_triggers).unwrap();
    let out = fleet.cli(&app, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let client = fleet.client(0);
    let ticks: Vec<u64> = keys_in_pages(&client, "tick-", 1000)
        .await
        .iter()
        .map(|key| key["tick-".len()..].parse().unwrap())
        .collect();
    assert!(
        ticks.len() >= 18,
        "only {} ticks fired: {ticks:?}",
        ticks.len()
    );
    for tick in &ticks {
        let fired = kv(&client, "get", &format!("key=tick-{tick}"), "").await;
        assert_eq!(
            fired.text(),
            "1",
            "tick {tick} fired {} times",
            fired.text()
        );
    }
    // Every second from the first tick to the last fired; a tick the killed node had claimed
    // but not finished is the one allowed gap, next to the kill.
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    let gaps: Vec<u64> = (first / 1000..=last / 1000)
        .map(|s| s * 1000)
        .filter(|t| !ticks.contains(t))
        .collect();
    assert!(
        gaps.len() <= 1 && gaps.iter().all(|g| g.abs_diff(killed_at) <= 2000),
        "ticks missing: {gaps:?} (node killed at {killed_at})"
    );
    eprintln!(
        "{} ticks from {first} to {last}, each fired once; missing: {gaps:?}",
        ticks.len()
    );
    let fired_lines: usize = [0, 2]
        .iter()
        .map(|&n| fleet.node(n).stderr().matches("trigger fired").count())
        .sum();
    assert!(fired_lines > 0, "the nodes log each tick they fire");
}

/// A relay takes followers as the origin takes nodes: a cluster certificate from another CA,
/// or a member claiming another member's name, is refused; a follower with its own name gets
/// the desired state.
#[tokio::test(flavor = "multi_thread")]
async fn relays_refuse_followers_that_are_not_who_they_claim() {
    let fleet = Fleet::start_tiered("relay-refuse", 1, 1);
    let relay = fleet.peer_addrs[0];
    let ca = fleet.dir.path().join("cluster/ca.pem");
    let subscribe = |node: &str| format!("{{\"open\":\"subscribe\",\"node\":{node:?}}}");
    let other = TestCa::new();
    let (cert, key) = other.issue(fleet.dir.path(), "stranger", &["edge-2"]);
    assert!(
        quic_open(
            relay,
            "edge-1",
            &ca,
            Some((&cert, &key)),
            &subscribe("edge-2")
        )
        .await
        .is_err()
    );
    let own = (
        fleet.dir.path().join("cluster/edge-2.pem"),
        fleet.dir.path().join("cluster/edge-2-key.pem"),
    );
    assert!(
        quic_open(
            relay,
            "edge-1",
            &ca,
            Some((&own.0, &own.1)),
            &subscribe("edge-9")
        )
        .await
        .is_err()
    );
    let state = quic_open(
        relay,
        "edge-1",
        &ca,
        Some((&own.0, &own.1)),
        &subscribe("edge-2"),
    )
    .await
    .unwrap();
    // Still serving after the refusals: the real follower gets the desired state.
    assert!(state.contains("\"revision\""), "{state}");
}
