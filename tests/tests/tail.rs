//! `outpost tail`: an app's requests from every node of a fleet, live, through the origin (or
//! every origin of a fleet of several), with a status filter; nodes send nothing once nobody
//! tails.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_tests::Fleet;
use outpost_tests::fleet::probe;

/// Lines the child prints, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_streams_filtered_requests_from_every_node() {
    tail_every_node_of(Fleet::start("tail", 2)).await;
}

/// Two origins on one database, edge-1 linked to origin-1 and edge-2 to origin-2: the tail
/// follows both.
#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_every_origin_of_a_fleet_of_several() {
    tail_every_node_of(Fleet::start_on_postgres("tail-pg", 2, 2)).await;
}

/// Tail an app on the two nodes of `fleet`, filtered to its failing requests.
async fn tail_every_node_of(fleet: Fleet) {
    let dir = fleet.app("probe", &probe(), &[]);
    let out = fleet.cli(&dir, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    fleet
        .wait_for_everywhere("/ok", "ok", Duration::from_secs(30))
        .await;

    // An unknown app is refused at once, with the reason.
    let unknown = fleet.cli(&dir, &["tail", "nope"]);
    assert!(!unknown.status.success());
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);

    let mut tail = fleet
        .cli_command(
            Some(&fleet.read_token),
            &dir,
            &["tail", "probe", "--status", "5xx"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut tail);

    // Until the nodes have heard someone tails, their requests are not sent: keep sending
    // failing requests until the first one shows up.
    let started = Instant::now();
    let first = loop {
        assert_eq!(fleet.client(0).get("/panic").await.unwrap().status, 500);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no tail line");
    };
    // The client is this test, on loopback.
    assert!(first.contains("edge-1 127.0.0.1 500 GET /panic"), "{first}");
    // Lines for the other warm-up requests may still be on their way.
    while lines.recv_timeout(Duration::from_millis(700)).is_ok() {}

    // Both nodes, only 5xx.
    for i in 0..2 {
        let client = fleet.client(i);
        for _ in 0..3 {
            assert_eq!(client.get("/ok").await.unwrap().status, 200);
        }
        assert_eq!(client.get("/panic").await.unwrap().status, 500);
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("tail lines so far: {seen:?}"));
        seen.push(line);
    }
    assert!(
        seen.iter().all(|l| l.contains(" 500 GET /panic ")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.contains("edge-1")), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("edge-2")), "{seen:?}");
    assert!(
        lines.recv_timeout(Duration::from_millis(500)).is_err(),
        "only the failing requests are shown"
    );
    let _ = tail.kill();
    let _ = tail.wait();
}
