use super::*;

pub(super) fn entry(key: &str, value: Option<&str>, version: u64) -> Entry {
    Entry {
        namespace: "ns".into(),
        key: key.into(),
        value: value.map(|v| v.as_bytes().to_vec()),
        metadata: None,
        expires_at_ms: None,
        version,
        committed_at_us: 0,
    }
}

fn check(replica: &dyn ReplicaStore) {
    replica
        .apply(
            &[entry("a", Some("1"), 1), entry("b", Some("2"), 2)],
            Some(2),
        )
        .unwrap();
    // Older and repeated entries change nothing; a tombstone replaces a value.
    replica
        .apply(&[entry("a", Some("old"), 1), entry("b", None, 3)], Some(3))
        .unwrap();
    assert_eq!(
        replica.get("ns", "a").unwrap().unwrap().value.as_deref(),
        Some(b"1".as_slice())
    );
    assert_eq!(replica.get("ns", "b").unwrap().unwrap().value, None);
    assert_eq!(replica.applied(), 3);
    // An early entry (read-your-writes) does not move `applied`.
    replica.apply(&[entry("c", Some("3"), 9)], None).unwrap();
    assert_eq!(replica.applied(), 3);
    let after: Vec<u64> = replica
        .entries_after(1, usize::MAX)
        .unwrap()
        .unwrap()
        .0
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(after, vec![3, 9]);
    let listed: Vec<String> = replica
        .list("ns", "", Some("a"), 10)
        .unwrap()
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(listed, vec!["b", "c"]);
    // Listing keys alone gives the same keys and what stands beside them, not the values.
    let keys = replica.list_keys("ns", "", Some("a"), 10).unwrap();
    let full = replica.list("ns", "", Some("a"), 10).unwrap();
    assert_eq!(
        keys,
        full.iter().map(|e| KeyInfo::from(&**e)).collect::<Vec<_>>()
    );
    assert!(replica.get("other", "a").unwrap().is_none());
    reclaim_and_snapshot_parts(replica);
}

fn versions(replica: &dyn ReplicaStore) -> Vec<(String, u64)> {
    replica
        .list("ns", "", None, 100)
        .unwrap()
        .iter()
        .map(|e| (e.key.clone(), e.version))
        .collect()
}

/// Continues from [`check`]: a (1), b tombstone (3), c (9); applied 3.
fn reclaim_and_snapshot_parts(replica: &dyn ReplicaStore) {
    let expired = Entry {
        expires_at_ms: Some(50),
        ..entry("d", Some("4"), 4)
    };
    replica.apply(&[expired], Some(4)).unwrap();
    // Only what reads as absent, and only at or below the horizon: the tombstone b (3), not
    // d (4, expired but above it).
    let sweep = replica.reclaim(None, 100, 3, 100).unwrap();
    assert_eq!((sweep.removed, sweep.next), (1, None));
    assert_eq!(replica.floor(), 3);
    assert_eq!(
        versions(replica),
        vec![("a".into(), 1), ("c".into(), 9), ("d".into(), 4)]
    );
    // A sweep of one key at a time says where it stopped.
    let sweep = replica.reclaim(None, 1, 4, 100).unwrap();
    assert_eq!(sweep.next, Some(("ns".into(), "a".into())));
    let sweep = replica.reclaim(sweep.next.as_ref(), 10, 4, 100).unwrap();
    assert_eq!((sweep.removed, sweep.next), (1, None), "d went");
    // Below the floor a peer's pull is refused, and an old entry brings back nothing.
    assert_eq!(replica.entries_after(2, usize::MAX).unwrap(), None);
    replica.apply(&[entry("b", Some("old"), 2)], None).unwrap();
    assert!(replica.get("ns", "b").unwrap().is_none());
    // A snapshot part speaks for its key range: after "a" through "e", the origin holds
    // only e; c (9) is newer than the snapshot's start and stays, z lies past the range.
    replica
        .apply(
            &[entry("b2", Some("x"), 5), entry("z", Some("z"), 6)],
            Some(6),
        )
        .unwrap();
    let part = SnapshotPart {
        started_at: 8,
        after: Some(("ns".into(), "a".into())),
        entries: vec![entry("e", Some("e"), 7)],
        last: false,
    };
    assert_eq!(replica.apply_part(&part).unwrap(), 1);
    assert_eq!(
        versions(replica),
        vec![
            ("a".into(), 1),
            ("c".into(), 9),
            ("e".into(), 7),
            ("z".into(), 6)
        ]
    );
    assert_eq!(replica.floor(), 4, "only the last part raises the floor");
    let last = SnapshotPart {
        started_at: 8,
        after: Some(("ns".into(), "e".into())),
        entries: vec![],
        last: true,
    };
    assert_eq!(replica.apply_part(&last).unwrap(), 1, "z went");
    assert_eq!(replica.floor(), 8);
    assert_eq!(replica.get("ns", "z").unwrap(), None);
}

#[test]
fn memory_replica() {
    check(&MemoryReplica::default());
}

#[test]
fn redb_replica_and_restart() {
    let dir = std::env::temp_dir().join(format!("outpost-kv-replica-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("replica.redb");
    check(&RedbReplica::open(&path).unwrap());
    let reopened = RedbReplica::open(&path).unwrap();
    assert_eq!((reopened.applied(), reopened.floor()), (6, 8));
    assert_eq!(reopened.get("ns", "c").unwrap().unwrap().version, 9);
    assert_eq!(reopened.get("ns", "z").unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
