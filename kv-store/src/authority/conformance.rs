//! What every [`AuthorityStore`] must do, as checks any engine's tests run on a fresh, empty
//! store from `make` (the memory and redb stores here; the origin's PostgreSQL store there):
//! one statement of the contract, however many engines keep it.
//!
//! Each check panics, naming what differs, when the store breaks the contract.

use super::*;

/// A put of `value` at `key` in the namespace `ns`.
pub(crate) fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        namespace: "ns".into(),
        key: key.into(),
        value: value.as_bytes().to_vec(),
        metadata: None,
        ttl_secs: None,
    }
}

/// `op` as written by `edge-1` with `id`.
pub(crate) fn write(id: u64, op: WriteOp) -> IncomingWrite {
    IncomingWrite {
        writer: "edge-1".into(),
        id,
        op,
    }
}

/// Every check, each on a fresh store.
pub fn check_all(make: &dyn Fn() -> Box<dyn AuthorityStore>) {
    versions_batches_retries_catch_up_and_compaction(make);
    reclaiming_takes_dead_keys_the_log_no_longer_holds(make);
    each_tenant_is_held_to_its_bytes_and_its_write_rate(make);
}

/// Versions follow one another, retries get the first answer, the log serves catch-ups until
/// it is compacted, and snapshots and listings go in key order.
pub fn versions_batches_retries_catch_up_and_compaction(
    make: &dyn Fn() -> Box<dyn AuthorityStore>,
) {
    let mut authority = Authority::new(make());
    let (outcomes, batch) = authority
        .write_all(
            vec![
                write(1, put("a", "1")),
                write(2, put("b", "2")),
                write(1, put("a", "other")),
            ],
            0,
            0,
        )
        .unwrap();
    // The retry of id 1 in the same batch got the first answer and made no entry.
    assert_eq!(outcomes[2], outcomes[0]);
    let batch = batch.unwrap();
    assert_eq!((batch.from, batch.through, batch.entries.len()), (0, 2, 2));
    // A retry in a later batch: same answer, nothing new.
    let (again, none) = authority
        .write_all(vec![write(2, put("b", "changed"))], 0, 0)
        .unwrap();
    assert_eq!(again[0], outcomes[1]);
    assert!(none.is_none());
    assert_eq!(
        authority.get("ns", "b").unwrap().unwrap().value.unwrap(),
        b"2"
    );

    let increment = WriteOp::Increment {
        namespace: "ns".into(),
        key: "n".into(),
        delta: 2,
    };
    authority
        .write_all(vec![write(3, increment.clone()), write(4, increment)], 0, 0)
        .unwrap();
    assert_eq!(
        authority.get("ns", "n").unwrap().unwrap().value.unwrap(),
        b"4"
    );
    assert_eq!(authority.last_version(), 4);

    let from_log = authority.log_after(1, 1 << 20).unwrap().unwrap();
    assert_eq!(
        from_log.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // A byte budget smaller than one entry still moves on by one entry.
    assert_eq!(authority.log_after(1, 1).unwrap().unwrap().len(), 1);
    authority.compact(1).unwrap();
    assert!(authority.log_after(1, 1 << 20).unwrap().is_none());
    // Latest per key, in key order: a, b, n (n's first increment is superseded).
    let (snapshot, more) = authority.snapshot_after(None, 1 << 20).unwrap();
    assert!(!more);
    assert_eq!(
        snapshot.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec!["a", "b", "n"]
    );
    let after_a = ("ns".to_string(), "a".to_string());
    let (part, more) = authority.snapshot_after(Some(&after_a), 1).unwrap();
    assert!(more);
    assert_eq!(part.len(), 1);
    assert_eq!(part[0].key, "b");
    let listed = authority.list("ns", "", Some("a"), 10).unwrap();
    assert_eq!(
        listed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec!["b", "n"]
    );
}

/// Deleted and expired keys go once the log no longer holds them, a few keys per sweep.
pub fn reclaiming_takes_dead_keys_the_log_no_longer_holds(
    make: &dyn Fn() -> Box<dyn AuthorityStore>,
) {
    let mut authority = Authority::new(make());
    let expiring = WriteOp::Put {
        namespace: "ns".into(),
        key: "e".into(),
        value: b"v".to_vec(),
        metadata: None,
        ttl_secs: Some(60),
    };
    let delete = WriteOp::Delete {
        namespace: "ns".into(),
        key: "a".into(),
    };
    let writes = vec![
        write(1, put("a", "1")),
        write(2, expiring),
        write(3, delete),
        write(4, put("b", "2")),
    ];
    authority.write_all(writes, 0, 0).unwrap();
    // Nothing is reclaimed while the log still holds it.
    assert_eq!(authority.reclaim(None, 100, 120_000).unwrap().removed, 0);
    authority.compact(0).unwrap();
    // Before its expiry, e stays; the tombstone of a goes.
    assert_eq!(authority.reclaim(None, 100, 1_000).unwrap().removed, 1);
    assert!(authority.get("ns", "a").unwrap().is_none());
    assert!(authority.get("ns", "e").unwrap().is_some());
    // Past it, e goes too, swept one key at a time.
    let first = authority.reclaim(None, 1, 120_000).unwrap();
    assert_eq!(first.next, Some(("ns".into(), "b".into())));
    let rest = authority.reclaim(first.next.as_ref(), 1, 120_000).unwrap();
    assert_eq!(rest.removed, 1);
    let keys: Vec<String> = authority
        .snapshot_after(None, usize::MAX)
        .unwrap()
        .0
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["b"]);
}

/// Each tenant is held to its bytes and its write rate, and a delete always makes room.
pub fn each_tenant_is_held_to_its_bytes_and_its_write_rate(
    make: &dyn Fn() -> Box<dyn AuthorityStore>,
) {
    use crate::quota::{Quota, QuotaPolicy};
    let put_in = |ns: &str, key: &str, bytes: usize| WriteOp::Put {
        namespace: ns.into(),
        key: key.into(),
        value: vec![0; bytes],
        metadata: None,
        ttl_secs: None,
    };
    let mut quotas = QuotaPolicy {
        default: Quota {
            max_bytes: 10_000,
            writes_per_second: 1000,
        },
        ..Default::default()
    };
    quotas.tenants.insert(
        "slow".into(),
        Quota {
            max_bytes: u64::MAX,
            writes_per_second: 2,
        },
    );
    let mut authority = Authority::with_quotas(make(), quotas);
    let (outcomes, _) = authority
        .write_all(
            vec![
                write(1, put_in("shop/a", "k1", 6_000)),
                write(2, put_in("shop/b", "k2", 6_000)),
                write(3, put_in("blog/a", "k1", 6_000)),
            ],
            0,
            0,
        )
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    let Err(WriteError::Limit(refused)) = &outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert!(refused.0.contains("app \"shop\"") && refused.0.contains("quota is 10000"));
    let used = authority.store().used_bytes("shop").unwrap();
    assert!((6_000..6_100).contains(&used), "{used}");
    // Replacing a value counts only the difference; a delete always goes through and
    // makes room.
    let (outcomes, _) = authority
        .write_all(
            vec![
                write(4, put_in("shop/a", "k1", 9_000)),
                write(
                    5,
                    WriteOp::Delete {
                        namespace: "shop/a".into(),
                        key: "k1".into(),
                    },
                ),
                write(6, put_in("shop/b", "k2", 6_000)),
            ],
            0,
            0,
        )
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    // The rate: two keys a second for "slow"; the refused write is not recorded, so
    // its retry goes through once the second has passed.
    let writes = (10..13).map(|id| write(id, put_in("slow/a", &format!("k{id}"), 1)));
    let (outcomes, _) = authority.write_all(writes.collect(), 0, 0).unwrap();
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok());
    assert!(
        matches!(&outcomes[2], Err(WriteError::RateLimited(m)) if m.contains("2 keys per second"))
    );
    let (retried, _) = authority
        .write_all(vec![write(12, put_in("slow/a", "k12", 1))], 1_000, 0)
        .unwrap();
    assert!(retried[0].is_ok(), "{retried:?}");
}
