//! One tenant's misbehaviour stays that tenant's: a node serving a misbehaving app and a
//! well-behaved one (`hello`), attacked from loopback, keeps the well-behaved app fast.

use std::time::{Duration, Instant};

use outpost_tests::client::get;
use outpost_tests::{Client, NodeDir, Proto};

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

/// Guest code that computes for seconds gives its worker thread back every few milliseconds:
/// another app's requests are not held behind it, several spinners share the cores, and each
/// is still charged (and stopped) for all the CPU it uses.
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
    let (_node, client) = node_dir.start(&node_dir.config(&apps, ""));
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

    // Still charged for every slice: past its CPU budget a spinner is stopped.
    let stopped = client
        .send("b.test", Proto::H1, get("/loop"))
        .await
        .unwrap();
    assert_eq!(stopped.status, 503, "{}", stopped.text());
}
