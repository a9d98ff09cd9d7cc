//! A node's copy of the KV: durable in redb, with an in-memory layer in front for hot reads.
//!
//! An entry replaces what a replica has for its key only if its version is newer, so applying
//! the same entries twice, or out of order, leaves the same state. `applied` is the version up
//! to which the replica has everything; it is written in the same transaction as the entries,
//! so a restarted node resumes from exactly there.
//!
//! Deleted and expired keys are reclaimed by a sweep, and a snapshot part empties its key range
//! of what the origin no longer holds; either way the replica may then lack deletes at or below
//! a version, its *floor*. Below the floor it serves no peer's pull (the peer would miss those
//! deletes), and an entry at or below it changes nothing: everything up to `applied`, which is
//! at least the floor, is already reflected here, and a late old entry must not bring back a
//! key whose delete was reclaimed.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::authority::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, reclaimable};
use crate::protocol::{SnapshotPart, decode, encode};

/// A replica's storage. All methods take `&self`: request handlers read while the replication
/// driver writes.
pub trait ReplicaStore: Send + Sync {
    /// Everything up to this version has been applied.
    fn applied(&self) -> u64;
    /// Deletes at or below this version may be missing here (see the module doc).
    fn floor(&self) -> u64;
    /// Apply `entries` durably (each only if newer than the key's current entry and above the
    /// floor) and, if `through` is given and greater, record it as applied.
    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError>;
    /// Apply a snapshot part durably: its entries as [`ReplicaStore::apply`] does, and every
    /// other key in the part's range ([`SnapshotPart::range`]) at a version up to the
    /// snapshot's start removed, since the origin no longer holds it. The last part raises the
    /// floor to the snapshot's start. Returns how many keys were removed.
    fn apply_part(&self, part: &SnapshotPart) -> Result<usize, StorageError>;
    /// Look at up to `max_keys` keys after `after` and remove those [`reclaimable`] at `through`
    /// and `now_ms`; the floor rises to `through`.
    fn reclaim(
        &self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError>;
    /// A key's latest entry, tombstones and expired entries included.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError>;
    /// Each key's latest entry with a version above `from`, in version order; `None` if `from`
    /// is below the floor.
    fn entries_after(&self, from: u64) -> Result<Option<Vec<Entry>>, StorageError>;
    /// Entries of a namespace with keys starting with `prefix`, after `after`, in key order.
    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Entry>>, StorageError>;
    /// The same keys as [`ReplicaStore::list`], without reading their values.
    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError>;
}

/// For the simulation: a crash keeps what `apply` returned from.
#[derive(Default)]
pub struct MemoryReplica {
    state: Mutex<MemoryState>,
}

#[derive(Default, Clone)]
struct MemoryState {
    applied: u64,
    floor: u64,
    entries: BTreeMap<(String, String), Arc<Entry>>,
}

impl MemoryState {
    fn apply(&mut self, entries: &[Entry]) {
        for entry in entries {
            let key = (entry.namespace.clone(), entry.key.clone());
            if entry.version > self.floor
                && self
                    .entries
                    .get(&key)
                    .is_none_or(|have| have.version < entry.version)
            {
                self.entries.insert(key, Arc::new(entry.clone()));
            }
        }
    }
}

impl MemoryReplica {
    /// Every key's latest entry, for comparing replicas.
    pub fn dump(&self) -> BTreeMap<(String, String), Entry> {
        let state = self.state.lock().unwrap();
        state
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect()
    }
}

impl ReplicaStore for MemoryReplica {
    fn applied(&self) -> u64 {
        self.state.lock().unwrap().applied
    }

    fn floor(&self) -> u64 {
        self.state.lock().unwrap().floor
    }

    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError> {
        let mut state = self.state.lock().unwrap();
        state.apply(entries);
        if let Some(through) = through {
            state.applied = state.applied.max(through);
        }
        Ok(())
    }

    fn apply_part(&self, part: &SnapshotPart) -> Result<usize, StorageError> {
        let mut state = self.state.lock().unwrap();
        let listed = part.keys();
        let gone: Vec<(String, String)> = match part.range() {
            Some(range) => state
                .entries
                .range::<(String, String), _>(range)
                .filter(|(key, entry)| !listed.contains(*key) && entry.version <= part.started_at)
                .map(|(key, _)| key.clone())
                .collect(),
            None => Vec::new(),
        };
        for key in &gone {
            state.entries.remove(key);
        }
        state.apply(&part.entries);
        if part.last {
            state.floor = state.floor.max(part.started_at);
        }
        Ok(gone.len())
    }

    fn reclaim(
        &self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        let mut state = self.state.lock().unwrap();
        let (sweep, _) = crate::model::sweep_map(&mut state.entries, after, max_keys, |entry| {
            reclaimable(&KeyInfo::from(&**entry), through, now_ms)
        });
        state.floor = state.floor.max(through.min(state.applied));
        Ok(sweep)
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .entries
            .get(&(namespace.to_string(), key.to_string()))
            .cloned())
    }

    fn entries_after(&self, from: u64) -> Result<Option<Vec<Entry>>, StorageError> {
        let state = self.state.lock().unwrap();
        if from < state.floor {
            return Ok(None);
        }
        let mut entries: Vec<Entry> = state
            .entries
            .values()
            .filter(|e| e.version > from)
            .map(|e| (**e).clone())
            .collect();
        entries.sort_by_key(|e| e.version);
        Ok(Some(entries))
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Entry>>, StorageError> {
        let state = self.state.lock().unwrap();
        Ok(crate::model::list_prefix(
            &state.entries,
            namespace,
            prefix,
            after,
            limit,
            Arc::clone,
        ))
    }

    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        let state = self.state.lock().unwrap();
        Ok(crate::model::list_prefix(
            &state.entries,
            namespace,
            prefix,
            after,
            limit,
            |entry| KeyInfo::from(&**entry),
        ))
    }
}

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const BY_VERSION: TableDefinition<u64, (&str, &str)> = TableDefinition::new("by_version");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const APPLIED: &str = "applied";
const FLOOR: &str = "floor";

/// Values larger than this are read from disk each time rather than kept in memory.
const CACHE_VALUE_LIMIT: usize = 64 << 10;
/// Memory the cache may hold before it starts over.
const CACHE_BUDGET: usize = 64 << 20;

pub struct RedbReplica {
    db: Database,
    applied: AtomicU64,
    floor: AtomicU64,
    /// Entries by `namespace \0 key`: every read after the first is served from here.
    cache: DashMap<String, Option<Arc<Entry>>>,
    cached_bytes: AtomicUsize,
    /// Applies committed so far. A read caches what it found on disk only if no apply
    /// committed while it read: otherwise it could write an entry back over a newer one.
    applies: AtomicU64,
}

fn cache_key(namespace: &str, key: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + key.len() + 1);
    k.push_str(namespace);
    k.push('\0');
    k.push_str(key);
    k
}

fn entry_bytes(entry: &Option<Arc<Entry>>) -> usize {
    entry.as_ref().map_or(0, |e| {
        e.key.len() + e.namespace.len() + e.value.as_ref().map_or(0, Vec::len) + 64
    })
}

impl RedbReplica {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = crate::open::create_database(path)?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(BY_VERSION)?;
        txn.open_table(META)?;
        txn.commit()?;
        let (applied, floor) = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let read = |name| meta.get(name).map(|v| v.map(|g| g.value()).unwrap_or(0));
            (read(APPLIED)?, read(FLOOR)?)
        };
        Ok(RedbReplica {
            db,
            applied: AtomicU64::new(applied),
            floor: AtomicU64::new(floor),
            cache: DashMap::new(),
            cached_bytes: AtomicUsize::new(0),
            applies: AtomicU64::new(0),
        })
    }

    fn read_disk(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        Ok(table
            .get((namespace, key))?
            .map(|g| decode_entry(g.value()))
            .transpose()?
            .map(Arc::new))
    }

    /// Cache what a read found on disk, unless an apply has committed since the read began
    /// (`applies` is the count it saw then).
    fn remember_read(&self, applies: u64, key: String, entry: Option<Arc<Entry>>) {
        if self.applies.load(Ordering::SeqCst) == applies {
            self.remember(key, entry);
        }
    }

    fn remember(&self, key: String, entry: Option<Arc<Entry>>) {
        if entry
            .as_ref()
            .and_then(|e| e.value.as_ref())
            .is_some_and(|v| v.len() > CACHE_VALUE_LIMIT)
        {
            self.cache.remove(&key);
            return;
        }
        let size = entry_bytes(&entry) + key.len();
        if self.cached_bytes.fetch_add(size, Ordering::Relaxed) + size > CACHE_BUDGET {
            // Over budget: start over rather than track recency on every read.
            self.cache.clear();
            self.cached_bytes.store(size, Ordering::Relaxed);
        }
        self.cache.insert(key, entry);
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| StorageError(format!("corrupt entry: {e}")))
}

fn decode_key_info(bytes: &[u8]) -> Result<KeyInfo, StorageError> {
    crate::model::decode_key_info(bytes).map_err(|e| StorageError(format!("corrupt entry: {e}")))
}

/// A key bound as redb's table of (namespace, key) takes it.
fn borrowed(bound: &Bound<(String, String)>) -> Bound<(&str, &str)> {
    match bound {
        Bound::Included((ns, key)) => Bound::Included((ns.as_str(), key.as_str())),
        Bound::Excluded((ns, key)) => Bound::Excluded((ns.as_str(), key.as_str())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Write each entry that is newer than what the table holds for its key and above `floor`;
/// returns those written.
fn write_entries(
    txn: &redb::WriteTransaction,
    entries: &[Entry],
    floor: u64,
) -> Result<Vec<Entry>, StorageError> {
    let mut table = txn.open_table(ENTRIES)?;
    let mut by_version = txn.open_table(BY_VERSION)?;
    let mut written = Vec::new();
    for entry in entries.iter().filter(|e| e.version > floor) {
        let key = (entry.namespace.as_str(), entry.key.as_str());
        let previous = table
            .get(key)?
            .map(|g| decode_key_info(g.value()))
            .transpose()?;
        if let Some(previous) = &previous {
            if previous.version >= entry.version {
                continue;
            }
            by_version.remove(previous.version)?;
        }
        table.insert(key, encode(entry).as_slice())?;
        by_version.insert(entry.version, key)?;
        written.push(entry.clone());
    }
    Ok(written)
}

/// Drop removed keys from the version index.
fn forget_versions(
    txn: &redb::WriteTransaction,
    removed: &[crate::scan::Removed],
) -> Result<(), StorageError> {
    let mut by_version = txn.open_table(BY_VERSION)?;
    for gone in removed {
        by_version.remove(gone.version)?;
    }
    Ok(())
}

impl RedbReplica {
    /// One durable write: `change` gets the transaction and the floor, and returns the entries
    /// it wrote, the keys it removed and the new floor; the cache and counters follow once the
    /// commit is durable.
    fn write(
        &self,
        change: impl FnOnce(
            &redb::WriteTransaction,
            u64,
        )
            -> Result<(Vec<Entry>, Vec<crate::scan::Removed>, u64), StorageError>,
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        let (written, removed, floor, applied) = {
            let floor = {
                let meta = txn.open_table(META)?;
                meta.get(FLOOR)?.map(|g| g.value()).unwrap_or(0)
            };
            let (written, removed, new_floor) = change(&txn, floor)?;
            let mut meta = txn.open_table(META)?;
            if new_floor > floor {
                meta.insert(FLOOR, new_floor)?;
            }
            let applied = meta.get(APPLIED)?.map(|g| g.value()).unwrap_or(0);
            (written, removed, new_floor.max(floor), applied)
        };
        // Durable (fsynced) before anyone is told.
        txn.commit()?;
        // Counted before the cache is updated: a read that began before this commit either
        // sees the count move (and caches nothing) or caches first and is overwritten below.
        self.applies.fetch_add(1, Ordering::SeqCst);
        for entry in written {
            let key = cache_key(&entry.namespace, &entry.key);
            self.remember(key, Some(Arc::new(entry)));
        }
        for gone in removed {
            self.remember(cache_key(&gone.namespace, &gone.key), None);
        }
        self.floor.store(floor, Ordering::Release);
        self.applied.store(applied, Ordering::Release);
        Ok(())
    }
}

impl ReplicaStore for RedbReplica {
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError> {
        self.write(|txn, floor| {
            let written = write_entries(txn, entries, floor)?;
            let mut meta = txn.open_table(META)?;
            let have = meta.get(APPLIED)?.map(|g| g.value()).unwrap_or(0);
            if let Some(through) = through.filter(|t| *t > have) {
                meta.insert(APPLIED, through)?;
            }
            Ok((written, Vec::new(), floor))
        })
    }

    fn apply_part(&self, part: &SnapshotPart) -> Result<usize, StorageError> {
        let mut gone = 0;
        self.write(|txn, floor| {
            let removed = match part.range() {
                Some((start, end)) => {
                    let listed = part.keys();
                    let mut table = txn.open_table(ENTRIES)?;
                    let (_, removed) = crate::scan::sweep_range(
                        &mut table,
                        borrowed(&start),
                        borrowed(&end),
                        usize::MAX,
                        |ns, key, info| {
                            info.version <= part.started_at
                                && !listed.contains(&(ns.to_string(), key.to_string()))
                        },
                    )?;
                    removed
                }
                None => Vec::new(),
            };
            forget_versions(txn, &removed)?;
            gone = removed.len();
            let written = write_entries(txn, &part.entries, floor)?;
            let floor = if part.last {
                floor.max(part.started_at)
            } else {
                floor
            };
            Ok((written, removed, floor))
        })?;
        Ok(gone)
    }

    fn reclaim(
        &self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        let mut sweep = Sweep::default();
        let applied = self.applied();
        self.write(|txn, floor| {
            let mut table = txn.open_table(ENTRIES)?;
            let (found, removed) = crate::scan::sweep(&mut table, after, max_keys, |info| {
                reclaimable(info, through, now_ms)
            })?;
            drop(table);
            forget_versions(txn, &removed)?;
            sweep = found;
            Ok((Vec::new(), removed, floor.max(through.min(applied))))
        })?;
        Ok(sweep)
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError> {
        let cache_key = cache_key(namespace, key);
        if let Some(hit) = self.cache.get(&cache_key) {
            return Ok(hit.clone());
        }
        let applies = self.applies.load(Ordering::SeqCst);
        let entry = self.read_disk(namespace, key)?;
        self.remember_read(applies, cache_key, entry.clone());
        Ok(entry)
    }

    fn entries_after(&self, from: u64) -> Result<Option<Vec<Entry>>, StorageError> {
        if from < self.floor() {
            return Ok(None);
        }
        let txn = self.db.begin_read()?;
        let by_version = txn.open_table(BY_VERSION)?;
        let table = txn.open_table(ENTRIES)?;
        let mut entries = Vec::new();
        for item in by_version.range(from + 1..)? {
            let (_, key) = item?;
            if let Some(bytes) = table.get(key.value())? {
                entries.push(decode_entry(bytes.value())?);
            }
        }
        Ok(Some(entries))
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Entry>>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        crate::scan::scan_prefix(&table, namespace, prefix, after, limit, |bytes| {
            decode_entry(bytes).map(Arc::new)
        })
    }

    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        crate::scan::scan_prefix(&table, namespace, prefix, after, limit, decode_key_info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: Option<&str>, version: u64) -> Entry {
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
            .entries_after(1)
            .unwrap()
            .unwrap()
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
        assert_eq!(replica.entries_after(2).unwrap(), None);
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

    #[test]
    fn a_read_racing_a_newer_apply_does_not_pin_the_old_entry() {
        let dir = std::env::temp_dir().join(format!("outpost-kv-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let replica = RedbReplica::open(&dir.join("replica.redb")).unwrap();
        replica
            .apply(&[entry("k", Some("old"), 1)], Some(1))
            .unwrap();
        replica.cache.clear();
        // A read misses the cache and finds the old entry on disk; a newer one is applied
        // before the read gets to cache what it found.
        let applies = replica.applies.load(Ordering::SeqCst);
        let found = replica.read_disk("ns", "k").unwrap();
        replica
            .apply(&[entry("k", Some("new"), 2)], Some(2))
            .unwrap();
        replica.remember_read(applies, cache_key("ns", "k"), found);
        assert_eq!(
            replica.get("ns", "k").unwrap().unwrap().value.as_deref(),
            Some(b"new".as_slice())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
