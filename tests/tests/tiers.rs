//! A fleet in tiers as real processes on loopback: relays that follow the origin, and nodes
//! that follow the relays for the KV, the desired state and the components, failing over to
//! the next relay and then to the origin when theirs dies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use outpost_core::api;
use outpost_tests::client::request;
use outpost_tests::fleet::probe;
use outpost_tests::kv::{deploy_probe, kv, wait_for_keys, wait_for_value};
use outpost_tests::process::cpu_time;
use outpost_tests::{Client, Fleet, Proto};

/// The nodes the origin lists as linked now, each with where: its address, or "via RELAY"
/// for a relay's follower.
fn linked(fleet: &Fleet) -> BTreeMap<String, String> {
    let out = fleet.cli(fleet.dir.path(), &["status", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let status: api::FleetStatus = serde_json::from_str(&out.stdout).unwrap();
    status
        .nodes
        .into_iter()
        .filter(|n| n.connected)
        .map(|n| (n.name, n.address))
        .collect()
}

/// Wait until the origin lists exactly `expected` as linked: each node's name, and its relay
/// (`Some`) or `None` for a node linked to the origin itself.
async fn wait_for_links(fleet: &Fleet, expected: &[(&str, Option<&str>)]) {
    let want: BTreeMap<String, Option<String>> = expected
        .iter()
        .map(|(n, via)| (n.to_string(), via.map(|r| format!("via {r}"))))
        .collect();
    let started = Instant::now();
    loop {
        let now: BTreeMap<String, Option<String>> = linked(fleet)
            .into_iter()
            .map(|(n, at)| (n, at.starts_with("via ").then_some(at)))
            .collect();
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "linked: {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Write `key` = `value` through node `writer` (retrying while its link moves), and wait until
/// every node in `readers` reads it; how long the slowest took.
async fn write_and_see(
    fleet: &Fleet,
    writer: usize,
    readers: &[usize],
    key: &str,
    value: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let reply = kv(&fleet.client(writer), "set", &format!("key={key}"), value).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "node {writer} could not write: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let written = Instant::now();
    for &reader in readers {
        wait_for_value(
            &fleet.client(reader),
            key,
            Some(value),
            Duration::from_secs(20),
        )
        .await;
    }
    written.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_follow_relays_and_fail_over_to_the_next_relay_then_the_origin() {
    // edge-1 and edge-2 are relays; edge-3 and edge-5 follow edge-1 first, edge-4 edge-2.
    let mut fleet = Fleet::start_tiered("tiers", 2, 3);
    deploy_probe(&fleet, "shop", &["*"]).await;
    // The deploy reaches the followers through the relays: desired state and component.
    fleet
        .wait_for_everywhere("/ok", "ok", Duration::from_secs(60))
        .await;
    // The followers hold their link to a relay, which reports them to the origin.
    wait_for_links(
        &fleet,
        &[
            ("edge-1", None),
            ("edge-2", None),
            ("edge-3", Some("edge-1")),
            ("edge-4", Some("edge-2")),
            ("edge-5", Some("edge-1")),
        ],
    )
    .await;

    // A follower's write goes through its relay to the origin, and back out to everyone.
    let took = write_and_see(&fleet, 2, &[0, 1, 2, 3, 4], "through-relay", "1").await;
    println!("a write through a relay was on all five nodes after {took:?}");
    // The writer reads its own write at once, as from the origin.
    let reply = kv(&fleet.client(3), "set", "key=mine", "x").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let read = kv(&fleet.client(3), "get", "key=mine", "").await;
    assert_eq!(read.text(), "x");

    // edge-1 dies: its followers move to edge-2, and go on reading and writing.
    fleet.kill_node(0);
    let took = write_and_see(&fleet, 3, &[1, 2, 3, 4], "after-edge-1", "2").await;
    println!("with edge-1 dead, a write reached every node left after {took:?}");
    write_and_see(&fleet, 2, &[1, 3, 4], "from-moved-follower", "3").await;
    // They moved to the other relay, not to the origin.
    wait_for_links(
        &fleet,
        &[
            ("edge-2", None),
            ("edge-3", Some("edge-2")),
            ("edge-4", Some("edge-2")),
            ("edge-5", Some("edge-2")),
        ],
    )
    .await;

    // edge-2 dies too: the followers fall back to the origin itself.
    fleet.kill_node(1);
    write_and_see(&fleet, 4, &[2, 3, 4], "no-relays-left", "4").await;
    wait_for_links(
        &fleet,
        &[("edge-3", None), ("edge-4", None), ("edge-5", None)],
    )
    .await;

    // A relay restarted from its data serves again what it had, and what came meanwhile, and
    // its followers come back to it from the origin.
    fleet.start_node(0);
    wait_for_value(
        &fleet.client(0),
        "no-relays-left",
        Some("4"),
        Duration::from_secs(20),
    )
    .await;
    wait_for_links(
        &fleet,
        &[
            ("edge-1", None),
            ("edge-3", Some("edge-1")),
            ("edge-4", None),
            ("edge-5", Some("edge-1")),
        ],
    )
    .await;
    write_and_see(&fleet, 3, &[0, 2, 3, 4], "home-again", "5").await;
}

/// The figures for docs/operators.md#fleets-in-tiers: an origin, 5 relays and 50 nodes that
/// follow them, as real processes (release build), 500 writes/s through five of the nodes for
/// 10 s with a deploy halfway, then the same fleet without relays:
///     cargo test --release -p outpost-tests --test tiers fifty -- --ignored --nocapture --test-threads 1
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run by hand"]
async fn fifty_nodes_behind_five_relays() {
    fleet_figures(Fleet::start_tiered("tiers-50", 5, 50), 5).await;
}

/// See [`fifty_nodes_behind_five_relays`]: the same 50 nodes, each linked to the origin.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run by hand"]
async fn fifty_nodes_on_the_origin() {
    fleet_figures(Fleet::start_tiered("flat-50", 0, 50), 0).await;
}

const VERSION_PATH: &str = "/config?key=VERSION";

fn served(version: &str) -> String {
    format!("config={version} env={version}")
}

/// The origin's `outpost_kv_link_bytes_total{direction="sent"}`.
async fn origin_kv_bytes_sent(fleet: &Fleet) -> u64 {
    let request = http::Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {}", fleet.read_token))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = Client::new(fleet.admin, &fleet.ca_pem())
        .send("localhost", Proto::H1, request)
        .await
        .expect("the origin's metrics");
    reply
        .text()
        .lines()
        .find(|l| l.starts_with("outpost_kv_link_bytes_total{direction=\"sent\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// How long after `begun` every one of `clients` answered with v2.
async fn live_everywhere(clients: Vec<Client>, begun: Instant) -> Duration {
    for client in clients {
        loop {
            let reply = client
                .send("localhost", Proto::H1, request("GET", VERSION_PATH, ""))
                .await;
            if reply.is_ok_and(|r| r.status == 200 && r.text() == served("v2")) {
                break;
            }
            assert!(
                begun.elapsed() < Duration::from_secs(120),
                "v2 is not live everywhere"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    begun.elapsed()
}

/// A process's resident memory, from `/proc`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The `n`-th of `sorted` at quantile `q`.
fn at(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Deploy, write at 500/s through five nodes for 10 s with a second deploy halfway, and print
/// propagation to every node (from each node's own measure), deploy-to-live on every node,
/// the origin's CPU and KV bytes per write, and each node's memory.
async fn fleet_figures(fleet: Fleet, relays: usize) {
    const RATE: u64 = 500;
    const SECONDS: u64 = 10;
    let nodes = fleet.nodes.len();
    let app = fleet.app_with_kv("shop", &probe(), &["*"], &[("VERSION", "v1")], &["data"]);
    let out = fleet.cli(&app, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    fleet
        .wait_for_everywhere(VERSION_PATH, &served("v1"), Duration::from_secs(300))
        .await;
    println!("{nodes} nodes ({relays} relays) serving v1");

    let origin_pid = fleet.origin.as_ref().expect("the origin").pid();
    let (cpu_before, bytes_before) = (cpu_time(origin_pid), origin_kv_bytes_sent(&fleet).await);
    // Writers spread over the fleet, followers where there are relays.
    let writers: Vec<Client> = (0..5)
        .map(|k| fleet.client(relays + k * (nodes - relays) / 5))
        .collect();
    let clients: Vec<Client> = (0..nodes).map(|i| fleet.client(i)).collect();
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    let mut deploy = None;
    for i in 0..RATE * SECONDS {
        tokio::time::sleep_until(started + Duration::from_micros(i * 1_000_000 / RATE)).await;
        if i == RATE * SECONDS / 2 {
            let app = fleet.app_with_kv("shop", &probe(), &["*"], &[("VERSION", "v2")], &["data"]);
            let mut cli = fleet.cli_command(Some(&fleet.token), &app, &["deploy", "--activate"]);
            let begun = Instant::now();
            let cli = tokio::task::spawn_blocking(move || (cli.output(), begun.elapsed()));
            deploy = Some((cli, tokio::spawn(live_everywhere(clients.clone(), begun))));
        }
        let writer = writers[i as usize % writers.len()].clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/kv/set?ns=data&key=w{i}");
            match writer
                .send("localhost", Proto::H1, request("POST", &path, "value"))
                .await
            {
                Ok(reply) if reply.status == 200 => Ok(format!("w{i}")),
                // The reason without its details (request ids), so like answers add up.
                Ok(reply) => Err(format!(
                    "{} {}",
                    reply.status,
                    reply.text().lines().next().unwrap_or("").trim()
                )),
                Err(err) => Err(format!("no answer: {err:#}")),
            }
        }));
    }
    let mut acked = BTreeSet::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(key) => {
                acked.insert(key);
            }
            Err(answer) => *refused.entry(answer).or_default() += 1,
        }
    }
    for (answer, count) in &refused {
        println!("{count} writes answered: {answer}");
    }
    let (cli, live) = deploy.expect("deployed halfway");
    let (output, cli_took) = cli.await.unwrap();
    let output = output.expect("running outpost deploy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let live = live.await.unwrap();
    println!(
        "{} of {} writes acknowledged; v2 live on all {nodes} nodes {live:?} after the deploy \
         began (the CLI returned after {cli_took:?})",
        acked.len(),
        RATE * SECONDS,
    );
    let origin_cpu = cpu_time(origin_pid) - cpu_before;
    let origin_bytes = origin_kv_bytes_sent(&fleet).await - bytes_before;
    for i in 0..nodes {
        wait_for_keys(&fleet.client(i), "w", &acked, Duration::from_secs(30)).await;
    }
    println!("every acknowledged write is on all {nodes} nodes");
    println!(
        "origin: {:.0} us CPU and {:.0} bytes of KV messages sent per write",
        origin_cpu.as_secs_f64() * 1e6 / acked.len().max(1) as f64,
        origin_bytes as f64 / acked.len().max(1) as f64,
    );
    let mut rss: Vec<f64> = fleet
        .nodes
        .iter()
        .map(|n| rss_mib(n.as_ref().unwrap().pid()))
        .collect();
    rss.sort_by(f64::total_cmp);
    println!(
        "node RSS: min {:.1} MiB, median {:.1}, max {:.1}; origin {:.1} MiB",
        rss[0],
        at(&rss, 0.5),
        rss[rss.len() - 1],
        rss_mib(origin_pid)
    );
    // Each node's own measure of propagation (origin commit to durable here).
    let (mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new());
    for node in fleet.nodes.iter().flatten() {
        node.signal_terminate();
        assert!(node.wait_for_log("KV latencies this run", Duration::from_secs(30)));
        let stderr = node.stderr();
        let line = stderr.lines().find(|l| l.contains("KV latencies")).unwrap();
        let figures = &line[line.find("propagation=").unwrap()..];
        let field = |name: &str| -> f64 {
            let start = figures.find(name).unwrap() + name.len();
            figures[start..].split(' ').next().unwrap().parse().unwrap()
        };
        p50.push(field("p50=") / 1000.0);
        p99.push(field("p99=") / 1000.0);
        max.push(field("max=") / 1000.0);
    }
    for list in [&mut p50, &mut p99, &mut max] {
        list.sort_by(f64::total_cmp);
    }
    println!(
        "propagation, each node's own measure: p50 {:.1} ms (median over nodes; highest {:.1}), \
         p99 {:.1} ms (median; highest {:.1}), max {:.1} ms (highest)",
        at(&p50, 0.5),
        p50[p50.len() - 1],
        at(&p99, 0.5),
        p99[p99.len() - 1],
        max[max.len() - 1],
    );
}
