//! The KV authority on PostgreSQL: the contract every store keeps, and several origins on one
//! database keeping one order of versions, each relaying the others' commits to its nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outpost_core::test_support::postgres::TestPostgres;
use outpost_kv::authority::conformance;
use outpost_kv::{AuthorityStore, OpResult, WriteOp};
use tokio::sync::broadcast;

use super::pg_store::PgAuthorityStore;
use super::*;
use crate::database::Database;

fn increment(key: &str) -> WriteOp {
    WriteOp::Increment {
        namespace: "shop/counters".into(),
        key: key.into(),
        delta: 1,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_store_keeps_the_contract_of_every_authority_store() {
    let server = Arc::new(TestPostgres::start("kv-contract"));
    let runtime = tokio::runtime::Handle::current();
    let made = AtomicUsize::new(0);
    tokio::task::spawn_blocking(move || {
        let make = || -> Box<dyn AuthorityStore> {
            let name = format!("contract_{}", made.fetch_add(1, Ordering::Relaxed));
            let url = server.create_database(&name);
            runtime.block_on(async {
                let db = Arc::new(Database::connect(&url).await.unwrap());
                Box::new(PgAuthorityStore::open(db).await.unwrap())
            })
        };
        conformance::check_all(&make);
    })
    .await
    .unwrap();
}

/// Everything one authority's feed carries until it reaches `through`: panics if a batch does
/// not follow the one before it (a node would have a gap) or if it takes too long.
async fn feed_through(
    feed: &mut broadcast::Receiver<Arc<Committed>>,
    through: u64,
) -> Vec<outpost_kv::Entry> {
    let mut reached = 0;
    let mut entries = Vec::new();
    while reached < through {
        let committed = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .unwrap_or_else(|_| panic!("the feed stopped at {reached} of {through}"))
            .unwrap();
        let batch = &committed.batch;
        assert_eq!(batch.from, reached, "a batch that skips versions");
        reached = batch.through;
        entries.extend(batch.entries.iter().cloned());
    }
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn two_origins_on_one_database_keep_one_order_and_lose_no_increment() {
    let server = TestPostgres::start("kv-two-origins");
    let origin = || async {
        let db = Arc::new(Database::connect(&server.url()).await.unwrap());
        KvAuthority::start_on_postgres(db, LogRetention::default(), QuotaPolicy::default(), None)
            .await
            .unwrap()
    };
    let (a, b) = (origin().await, origin().await);
    let (mut feed_a, mut feed_b) = (a.committed.subscribe(), b.committed.subscribe());

    // 400 increments of one counter at once, half through each origin.
    const WRITES: u64 = 400;
    let writes: Vec<_> = (0..WRITES)
        .map(|i| {
            let (origin, node) = if i % 2 == 0 {
                (&a, "edge-a")
            } else {
                (&b, "edge-b")
            };
            let origin = origin.clone();
            tokio::spawn(async move { origin.write(node, i, increment("hits")).await })
        })
        .collect();
    let mut counters = Vec::new();
    for write in writes {
        let ack = write.await.unwrap().expect("every increment is committed");
        let OpResult::Counter(value) = ack.result else {
            panic!("{ack:?}");
        };
        counters.push(value);
    }
    // Each increment saw its own value: 1..=400, none lost, none twice.
    counters.sort_unstable();
    assert_eq!(counters, (1..=WRITES as i64).collect::<Vec<_>>());
    for origin in [&a, &b] {
        let stored = origin.get("shop/counters", "hits").await.unwrap().unwrap();
        assert_eq!(stored.value.unwrap(), WRITES.to_string().as_bytes());
    }

    // Both feeds carry every version once, in order, whichever origin committed it (the
    // origin idle at the end hears of the last commits from the notification).
    for feed in [&mut feed_a, &mut feed_b] {
        let versions: Vec<u64> = feed_through(feed, WRITES)
            .await
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (1..=WRITES).collect::<Vec<_>>());
    }

    // A write retried through the other origin (a node that failed over) is applied once.
    let first = a.write("edge-a", 10_000, increment("once")).await.unwrap();
    let retried = b.write("edge-a", 10_000, increment("once")).await.unwrap();
    assert_eq!(first, retried);
    let once = b.get("shop/counters", "once").await.unwrap().unwrap();
    assert_eq!(once.value.unwrap(), b"1");
}

/// The authority alone, both engines side by side in one run: writes offered open loop from
/// one writer at rising rates, 3 s each, and how long each took to be committed and answered
/// (the highest rate whose p99 stays under 50 ms is what one origin sustains).
///     cargo test --release -p outpost-origin --lib kv::pg_tests::figures -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run by hand in a release build"]
async fn figures_ack_latency_redb_and_postgres() {
    let server = TestPostgres::start("kv-figures");
    let db = Arc::new(Database::connect(&server.url()).await.unwrap());
    let on_postgres =
        KvAuthority::start_on_postgres(db, LogRetention::default(), QuotaPolicy::default(), None)
            .await
            .unwrap();
    let dir = outpost_core::test_support::temp_dir("kv-figures-redb");
    let on_redb = KvAuthority::start(&dir.join("kv.redb")).unwrap();
    let mut ids = 0..;
    for rate in [1000u64, 4000, 8000, 12000, 16000, 24000, 32000] {
        for (engine, authority) in [("postgresql", &on_postgres), ("redb", &on_redb)] {
            let writes = rate * 3;
            let started = tokio::time::Instant::now();
            let mut answers = Vec::new();
            for i in 0..writes {
                tokio::time::sleep_until(started + Duration::from_micros(i * 1_000_000 / rate))
                    .await;
                let (authority, id) = (authority.clone(), ids.next().unwrap());
                answers.push(tokio::spawn(async move {
                    let asked = tokio::time::Instant::now();
                    let put = WriteOp::Put {
                        namespace: "shop/figures".into(),
                        key: format!("k{id}"),
                        value: vec![b'v'; 100],
                        metadata: None,
                        ttl_secs: None,
                    };
                    authority.write("edge-a", id, put).await.unwrap();
                    asked.elapsed()
                }));
            }
            let mut took = Vec::new();
            for answer in answers {
                took.push(answer.await.unwrap());
            }
            took.sort_unstable();
            let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
            println!(
                "{engine:>10} at {rate:>5} writes/s: done in {:>6.2?}, ack p50 {:>9.2?} p99 {:>9.2?} max {:>9.2?}",
                started.elapsed(),
                at(0.5),
                at(0.99),
                took[took.len() - 1]
            );
        }
    }
}
