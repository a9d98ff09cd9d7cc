use super::*;

use super::conformance::{put, write};

fn both() -> Vec<Box<dyn Fn() -> Box<dyn AuthorityStore>>> {
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

#[test]
fn versions_batches_retries_catch_up_and_compaction() {
    for make in both() {
        conformance::versions_batches_retries_catch_up_and_compaction(&make);
    }
}

#[test]
fn reclaiming_takes_dead_keys_the_log_no_longer_holds() {
    for make in both() {
        conformance::reclaiming_takes_dead_keys_the_log_no_longer_holds(&make);
    }
}

#[test]
fn each_tenant_is_held_to_its_bytes_and_its_write_rate() {
    for make in both() {
        conformance::each_tenant_is_held_to_its_bytes_and_its_write_rate(&make);
    }
}

/// A store whose reads of current entries fail, as a disk error would make them.
struct UnreadableEntries(MemoryAuthorityStore);

impl AuthorityStore for UnreadableEntries {
    fn last_version(&self) -> u64 {
        self.0.last_version()
    }
    fn get(&self, _: &str, _: &str) -> Result<Option<Entry>, StorageError> {
        Err(StorageError::Failed("read failed".into()))
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
    assert_eq!(failed, Err(StorageError::Failed("read failed".into())));
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
