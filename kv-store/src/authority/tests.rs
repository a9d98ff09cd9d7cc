use super::*;

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        namespace: "ns".into(),
        key: key.into(),
        value: value.as_bytes().to_vec(),
        metadata: None,
        ttl_secs: None,
    }
}

fn write(id: u64, op: WriteOp) -> IncomingWrite {
    IncomingWrite {
        writer: "edge-1".into(),
        id,
        op,
    }
}

fn both() -> Vec<Box<dyn FnOnce() -> Box<dyn AuthorityStore>>> {
    vec![
        Box::new(|| Box::new(MemoryAuthorityStore::default())),
        Box::new(|| {
            let dir = std::env::temp_dir().join(format!(
                "outpost-kv-authority-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Box::new(RedbAuthorityStore::open(&dir.join("kv.redb")).unwrap())
        }),
    ]
}

impl AuthorityStore for Box<dyn AuthorityStore> {
    fn last_version(&self) -> u64 {
        (**self).last_version()
    }
    fn get(&self, n: &str, k: &str) -> Result<Option<Entry>, StorageError> {
        (**self).get(n, k)
    }
    fn outcome(&self, w: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        (**self).outcome(w, id)
    }
    fn commit(
        &mut self,
        e: &[Entry],
        o: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        (**self).commit(e, o)
    }
    fn log_after(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Entry>>, StorageError> {
        (**self).log_after(from, max_bytes)
    }
    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        (**self).snapshot_after(after, max_bytes)
    }
    fn compact(&mut self, through: u64) -> Result<(), StorageError> {
        (**self).compact(through)
    }
    fn compacted_through(&self) -> u64 {
        (**self).compacted_through()
    }
    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError> {
        (**self).used_bytes(tenant)
    }
    fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        (**self).reclaim(after, max_keys, through, now_ms)
    }
    fn list_keys(
        &self,
        n: &str,
        p: &str,
        a: Option<&str>,
        l: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        (**self).list_keys(n, p, a, l)
    }
    fn list(
        &self,
        n: &str,
        p: &str,
        a: Option<&str>,
        l: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        (**self).list(n, p, a, l)
    }
}

#[test]
fn versions_batches_retries_catch_up_and_compaction() {
    for make in both() {
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
}

#[test]
fn reclaiming_takes_dead_keys_the_log_no_longer_holds() {
    for make in both() {
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
}

#[test]
fn each_tenant_is_held_to_its_bytes_and_its_write_rate() {
    use crate::quota::{Quota, QuotaPolicy};
    let put_in = |ns: &str, key: &str, bytes: usize| WriteOp::Put {
        namespace: ns.into(),
        key: key.into(),
        value: vec![0; bytes],
        metadata: None,
        ttl_secs: None,
    };
    for make in both() {
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
}

#[test]
fn reclaiming_gives_the_bytes_back_and_the_count_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("outpost-kv-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kv.redb");
    let delete = WriteOp::Delete {
        namespace: "ns".into(),
        key: "a".into(),
    };
    {
        let mut authority = Authority::new(RedbAuthorityStore::open(&path).unwrap());
        let writes = vec![
            write(1, put("a", &"x".repeat(500))),
            write(2, put("b", "y")),
        ];
        authority.write_all(writes, 0, 0).unwrap();
        authority.write_all(vec![write(3, delete)], 0, 0).unwrap();
    }
    let mut authority = Authority::new(RedbAuthorityStore::open(&path).unwrap());
    // b and the tombstone of a (its 500 bytes gave back at the delete).
    let with_tombstone = authority.store().used_bytes("ns").unwrap();
    assert!(with_tombstone < 100, "{with_tombstone}");
    authority.compact(0).unwrap();
    authority.reclaim(None, 10, 0).unwrap();
    let after = authority.store().used_bytes("ns").unwrap();
    let b = encode(&authority.get("ns", "b").unwrap().unwrap()).len() as u64;
    assert!(with_tombstone > b);
    assert_eq!(after, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A store whose reads of current entries fail, as a disk error would make them.
struct UnreadableEntries(MemoryAuthorityStore);

impl AuthorityStore for UnreadableEntries {
    fn last_version(&self) -> u64 {
        self.0.last_version()
    }
    fn get(&self, _: &str, _: &str) -> Result<Option<Entry>, StorageError> {
        Err(StorageError("read failed".into()))
    }
    fn outcome(&self, w: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        self.0.outcome(w, id)
    }
    fn commit(
        &mut self,
        e: &[Entry],
        o: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        self.0.commit(e, o)
    }
    fn log_after(&self, f: u64, m: usize) -> Result<Option<Vec<Entry>>, StorageError> {
        self.0.log_after(f, m)
    }
    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        self.0.snapshot_after(after, max_bytes)
    }
    fn compact(&mut self, through: u64) -> Result<(), StorageError> {
        self.0.compact(through)
    }
    fn compacted_through(&self) -> u64 {
        self.0.compacted_through()
    }
    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError> {
        self.0.used_bytes(tenant)
    }
    fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        self.0.reclaim(after, max_keys, through, now_ms)
    }
    fn list(
        &self,
        n: &str,
        p: &str,
        a: Option<&str>,
        l: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.0.list(n, p, a, l)
    }
    fn list_keys(
        &self,
        n: &str,
        p: &str,
        a: Option<&str>,
        l: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        self.0.list_keys(n, p, a, l)
    }
}

#[test]
fn a_key_that_cannot_be_read_fails_the_write_instead_of_reading_as_absent() {
    let mut store = MemoryAuthorityStore::default();
    let entry = Entry {
        namespace: "ns".into(),
        key: "n".into(),
        value: Some(b"41".to_vec()),
        metadata: None,
        expires_at_ms: None,
        version: 1,
        committed_at_us: 0,
    };
    store.commit(&[entry], &[]).unwrap();
    let mut authority = Authority::new(UnreadableEntries(store));
    let increment = WriteOp::Increment {
        namespace: "ns".into(),
        key: "n".into(),
        delta: 1,
    };
    let failed = authority.write_all(vec![write(1, increment)], 0, 0);
    assert_eq!(failed, Err(StorageError("read failed".into())));
    // Nothing was committed: no "1" over the 41 that could not be read.
    assert_eq!(authority.last_version(), 1);
    // A put needs no read and still goes through.
    assert!(
        authority
            .write_all(vec![write(2, put("k", "v"))], 0, 0)
            .is_ok()
    );
}

#[test]
fn redb_state_survives_reopen() {
    let dir = std::env::temp_dir().join(format!("outpost-kv-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kv.redb");
    {
        let mut authority = Authority::new(RedbAuthorityStore::open(&path).unwrap());
        authority
            .write_all(vec![write(7, put("k", "v"))], 0, 0)
            .unwrap();
    }
    let mut authority = Authority::new(RedbAuthorityStore::open(&path).unwrap());
    assert_eq!(authority.last_version(), 1);
    let (outcome, batch) = authority
        .write_all(vec![write(7, put("k", "again"))], 0, 0)
        .unwrap();
    assert!(
        batch.is_none(),
        "the retry was recognised after the restart"
    );
    assert!(outcome[0].is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
