//! A fleet in tiers as real processes on loopback: relays that follow the origin, and nodes
//! that follow the relays for the KV, the desired state and the components, failing over to
//! the next relay and then to the origin when theirs dies.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use outpost_core::api;
use outpost_tests::Fleet;
use outpost_tests::kv::{deploy_probe, kv, wait_for_value};

/// The nodes linked to the origin now, by name.
fn linked_to_origin(fleet: &Fleet) -> BTreeSet<String> {
    let out = fleet.cli(fleet.dir.path(), &["status", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let status: api::FleetStatus = serde_json::from_str(&out.stdout).unwrap();
    status
        .nodes
        .into_iter()
        .filter(|n| n.connected)
        .map(|n| n.name)
        .collect()
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
    let relays: BTreeSet<String> = ["edge-1", "edge-2"].map(String::from).into();
    assert_eq!(
        linked_to_origin(&fleet),
        relays,
        "followers hold their link to a relay"
    );

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
    assert_eq!(
        linked_to_origin(&fleet),
        ["edge-2"].map(String::from).into(),
        "the followers moved to the other relay, not to the origin"
    );

    // edge-2 dies too: the followers fall back to the origin itself.
    fleet.kill_node(1);
    write_and_see(&fleet, 4, &[2, 3, 4], "no-relays-left", "4").await;
    let started = Instant::now();
    loop {
        let linked = linked_to_origin(&fleet);
        if linked == ["edge-3", "edge-4", "edge-5"].map(String::from).into() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "linked to the origin: {linked:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A relay restarted from its data serves again what it had, and what came meanwhile.
    fleet.start_node(0);
    wait_for_value(
        &fleet.client(0),
        "no-relays-left",
        Some("4"),
        Duration::from_secs(20),
    )
    .await;
}
