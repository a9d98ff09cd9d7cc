//! Anycast with real parts: network namespaces joined by veth links, a router running BIRD 2
//! with an ECMP route to the anycast address (and router-pin.sh keeping each connection on its
//! node), and three nodes, each running `outpost node` on that address and announcing it over
//! BGP through its own BIRD, from the node's readiness hooks (node/deploy/bird). A client in
//! its own namespace behind the router reaches every node; draining one withdraws its route,
//! its requests in flight finish, and the client sees no failure.
//!
//! Needs root (as CI runs), BIRD 2 and nftables (`.ci/run` installs them); elsewhere it says
//! why it cannot run and passes without checking anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outpost_tests::netns::{self, KillOnDrop, Netns};
use outpost_tests::{Client, Outpost, TempDir, TestCa, wasm};

const ANYCAST: &str = "10.99.0.1";
const NODES: usize = 3;

fn tools_available() -> bool {
    ["/usr/sbin/bird", "/usr/sbin/birdc", "/usr/sbin/nft"]
        .iter()
        .all(|tool| Path::new(tool).exists())
}

/// The router's view: how many next hops its route to the anycast address has.
fn next_hops(router: &Netns) -> usize {
    let route = router.ip_output(&["-4", "route", "show", &format!("{ANYCAST}/32")]);
    if route.trim().is_empty() {
        0
    } else {
        route.matches("nexthop").count().max(1)
    }
}

fn wait_for_next_hops(router: &Netns, want: usize, timeout: Duration) {
    let started = Instant::now();
    while next_hops(router) != want {
        assert!(
            started.elapsed() < timeout,
            "the router has {} next hops to {ANYCAST}, not {want}:\n{}",
            next_hops(router),
            router.ip_output(&["-4", "route"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send `count` requests, each on a fresh connection from the client's namespace, and count
/// the answers by node.
async fn spread(client: &Client, count: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let reply = client
            .get("/whoami")
            .await
            .expect("a request through the anycast address");
        assert_eq!(reply.status, 200, "{}", reply.text());
        *seen.entry(reply.text()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn draining_a_node_withdraws_its_route_and_no_request_fails() {
    if !netns::available() || !tools_available() {
        eprintln!(
            "skipped: needs root, iproute2, BIRD 2 and nftables (apt-get install bird2 nftables); .ci/run has them"
        );
        return;
    }
    let dir = TempDir::new("anycast");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(dir.path(), "localhost", &["localhost"]);
    let deploy = outpost_tests::guests::repo_root().join("node/deploy/bird");
    let tag = std::process::id() % 100_000;

    // The router and its BIRD: ECMP over whatever the nodes announce.
    let router = Netns::create(&format!("op{tag}r"));
    for setting in [
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=2",
    ] {
        let sysctl = router
            .command("sysctl")
            .args(["-w", setting])
            .output()
            .unwrap();
        assert!(sysctl.status.success(), "{setting}");
    }
    let client_ns = Netns::create(&format!("op{tag}c"));
    router.link("c0", "10.10.0.1/24", &client_ns, "up0", "10.10.0.2/24");
    client_ns.ip(&["route", "add", "default", "via", "10.10.0.1"]);
    let mut nodes = Vec::new();
    for i in 1..=NODES {
        let ns = Netns::create(&format!("op{tag}n{i}"));
        router.link(
            &format!("r{i}"),
            &format!("10.10.{i}.1/24"),
            &ns,
            "up0",
            &format!("10.10.{i}.2/24"),
        );
        ns.ip(&["route", "add", "default", "via", &format!("10.10.{i}.1")]);
        ns.ip(&["addr", "add", &format!("{ANYCAST}/32"), "dev", "lo"]);
        nodes.push(ns);
    }
    let router_conf = std::fs::read_to_string(deploy.join("router.conf"))
        .unwrap()
        .replace("192.0.2.1/32", &format!("{ANYCAST}/32"));
    let router_conf = dir.write("bird-router.conf", router_conf);
    let router_socket = dir.path().join("bird-router.ctl");
    let _router_bird = start_bird(&router, &router_conf, &router_socket);
    let links: Vec<String> = (1..=NODES).map(|i| format!("r{i}:10.10.{i}.2")).collect();
    let pin = router
        .command("sh")
        .arg(deploy.join("router-pin.sh"))
        .arg(ANYCAST)
        .args(&links)
        .output()
        .unwrap();
    assert!(
        pin.status.success(),
        "router-pin.sh: {}",
        String::from_utf8_lossy(&pin.stderr)
    );

    // Each node: BIRD with the shipped node.conf (addresses adapted), and `outpost node`
    // whose readiness hooks run the shipped announce.sh against that BIRD.
    let node_conf = std::fs::read_to_string(deploy.join("node.conf")).unwrap();
    let mut birds = Vec::new();
    let mut outposts = Vec::new();
    for (i, ns) in nodes.iter().enumerate() {
        let n = i + 1;
        let conf = node_conf
            .replace("router id 10.10.1.2", &format!("router id 10.10.{n}.2"))
            .replace(
                "local 10.10.1.2 as 65001",
                &format!("local 10.10.{n}.2 as 6500{n}"),
            )
            .replace("neighbor 10.10.1.1", &format!("neighbor 10.10.{n}.1"))
            .replace("192.0.2.1/32", &format!("{ANYCAST}/32"));
        let conf = dir.write(&format!("bird-n{n}.conf"), conf);
        let socket = dir.path().join(format!("bird-n{n}.ctl"));
        birds.push(start_bird(ns, &conf, &socket));
        let app = dir.write(
            &format!("n{n}/probe/outpost.toml"),
            format!(
                "name = \"probe\"\ncomponent = {:?}\nroutes = [\"*\"]\n[config]\nnode = \"n{n}\"\n",
                wasm("probe").display().to_string()
            ),
        );
        let hook = format!(
            "BIRD_SOCKET={} {}",
            socket.display(),
            deploy.join("announce.sh").display()
        );
        let config = dir.write(
            &format!("n{n}/node.toml"),
            format!(
                "name = \"n{n}\"\ndata_dir = \"data\"\napps = [{:?}]\n\
                 [listen]\nhttps = \"{ANYCAST}:8443\"\n\
                 [admin]\nlisten = \"127.0.0.1:9901\"\n\
                 [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {cert:?}\nkey = {key:?}\n\
                 [health]\non_ready = {hook:?}\non_drain = {hook:?}\ndrain_delay_ms = 2000\n",
                app.parent().unwrap().display().to_string()
            ),
        );
        let node = Outpost::node_in(Some(&ns.name), &config, &[])
            .unwrap_or_else(|e| panic!("node n{n} failed: {e:?}"));
        assert!(
            node.wait_for_log("hook ran", Duration::from_secs(20)),
            "n{n} never announced:\n{}",
            node.stderr()
        );
        outposts.push(Some(node));
    }
    wait_for_next_hops(&router, NODES, Duration::from_secs(30));

    // Every node gets new connections through the one address.
    let client = Client::new(format!("{ANYCAST}:8443").parse().unwrap(), ca.pem());
    let seen = {
        let client = client.clone();
        client_ns.run(move || async move { spread(&client, 90).await })
    };
    assert_eq!(seen.len(), NODES, "answers by node: {seen:?}");

    // Drain n2 under steady load, with slow requests in flight on every node.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        let client_name = client_ns.name.clone();
        std::thread::spawn(move || {
            netns::run_in(&client_name, move || async move {
                let slow: Vec<_> = (0..12)
                    .map(|_| {
                        let client = client.clone();
                        tokio::spawn(async move { client.get("/whoami?ms=1500").await })
                    })
                    .collect();
                let mut fast = BTreeMap::new();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get("/whoami").await {
                        Ok(reply) if reply.status == 200 => {
                            *fast.entry(reply.text()).or_insert(0usize) += 1
                        }
                        Ok(reply) => failures.push(format!("status {}", reply.status)),
                        Err(err) => failures.push(format!("{err:#}")),
                    }
                }
                let mut slow_by_node = BTreeMap::new();
                for request in slow {
                    match request.await.unwrap() {
                        Ok(reply) if reply.status == 200 => {
                            *slow_by_node.entry(reply.text()).or_insert(0usize) += 1
                        }
                        Ok(reply) => failures.push(format!("slow: status {}", reply.status)),
                        Err(err) => failures.push(format!("slow: {err:#}")),
                    }
                }
                (fast, slow_by_node, failures)
            })
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let draining = outposts[1].take().unwrap();
    draining.signal_terminate();
    wait_for_next_hops(&router, NODES - 1, Duration::from_secs(5));
    let withdrawn_at = Instant::now();
    assert!(draining.wait(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (fast, slow, failures) = load.join().unwrap();
    println!(
        "anycast: during the drain, answers by node {fast:?}; slow requests by node {slow:?}; n2 exited {:?} after its route was withdrawn",
        withdrawn_at.elapsed()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(slow.values().sum::<usize>(), 12);

    // After: only n1 and n3 answer.
    let after = client_ns.run(move || async move { spread(&client, 40).await });
    assert!(!after.contains_key("n2"), "{after:?}");
    assert_eq!(after.len(), NODES - 1, "{after:?}");
    drop(birds);
}

fn start_bird(ns: &Netns, conf: &Path, socket: &Path) -> KillOnDrop {
    let pid = socket.with_extension("pid");
    let bird = ns.spawn(
        "/usr/sbin/bird",
        &[
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            socket.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ],
    );
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "BIRD in {} did not start",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    bird
}
