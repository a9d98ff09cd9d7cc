//! A node's copy of the KV: durable in redb, with an in-memory layer in front for hot reads.
//!
//! An entry replaces what a replica has for its key only if its version is newer, so applying
//! the same entries twice, or out of order, leaves the same state. `applied` is the version up
//! to which the replica has everything; it is written in the same transaction as the entries,
//! so a restarted node resumes from exactly there.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::authority::StorageError;
use crate::model::{Entry, KeyInfo};
use crate::protocol::{decode, encode};

/// A replica's storage. All methods take `&self`: request handlers read while the replication
/// driver writes.
pub trait ReplicaStore: Send + Sync {
    /// Everything up to this version has been applied.
    fn applied(&self) -> u64;
    /// Apply `entries` durably (each only if newer than the key's current entry) and, if
    /// `through` is given and greater, record it as applied.
    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError>;
    /// A key's latest entry, tombstones and expired entries included.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError>;
    /// Each key's latest entry with a version above `from`, in version order.
    fn entries_after(&self, from: u64) -> Result<Vec<Entry>, StorageError>;
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
    entries: BTreeMap<(String, String), Arc<Entry>>,
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

    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError> {
        let mut state = self.state.lock().unwrap();
        for entry in entries {
            let key = (entry.namespace.clone(), entry.key.clone());
            if state
                .entries
                .get(&key)
                .is_none_or(|have| have.version < entry.version)
            {
                state.entries.insert(key, Arc::new(entry.clone()));
            }
        }
        if let Some(through) = through {
            state.applied = state.applied.max(through);
        }
        Ok(())
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, StorageError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .entries
            .get(&(namespace.to_string(), key.to_string()))
            .cloned())
    }

    fn entries_after(&self, from: u64) -> Result<Vec<Entry>, StorageError> {
        let state = self.state.lock().unwrap();
        let mut entries: Vec<Entry> = state
            .entries
            .values()
            .filter(|e| e.version > from)
            .map(|e| (**e).clone())
            .collect();
        entries.sort_by_key(|e| e.version);
        Ok(entries)
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

/// Values larger than this are read from disk each time rather than kept in memory.
const CACHE_VALUE_LIMIT: usize = 64 << 10;
/// Memory the cache may hold before it starts over.
const CACHE_BUDGET: usize = 64 << 20;

pub struct RedbReplica {
    db: Database,
    applied: AtomicU64,
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
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(BY_VERSION)?;
        txn.open_table(META)?;
        txn.commit()?;
        let applied = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            meta.get(APPLIED)?.map(|g| g.value()).unwrap_or(0)
        };
        Ok(RedbReplica {
            db,
            applied: AtomicU64::new(applied),
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

impl ReplicaStore for RedbReplica {
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn apply(&self, entries: &[Entry], through: Option<u64>) -> Result<(), StorageError> {
        let mut written = Vec::new();
        let applied = {
            let txn = self.db.begin_write()?;
            let applied = {
                let mut table = txn.open_table(ENTRIES)?;
                let mut by_version = txn.open_table(BY_VERSION)?;
                for entry in entries {
                    let key = (entry.namespace.as_str(), entry.key.as_str());
                    let previous = table
                        .get(key)?
                        .map(|g| decode_entry(g.value()))
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
                let mut meta = txn.open_table(META)?;
                let have = meta.get(APPLIED)?.map(|g| g.value()).unwrap_or(0);
                let applied = through.map_or(have, |t| have.max(t));
                meta.insert(APPLIED, applied)?;
                applied
            };
            // Durable (fsynced) before anyone is told.
            txn.commit()?;
            applied
        };
        // Counted before the cache is updated: a read that began before this commit either
        // sees the count move (and caches nothing) or caches first and is overwritten below.
        self.applies.fetch_add(1, Ordering::SeqCst);
        for entry in written {
            let key = cache_key(&entry.namespace, &entry.key);
            self.remember(key, Some(Arc::new(entry)));
        }
        self.applied.store(applied, Ordering::Release);
        Ok(())
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

    fn entries_after(&self, from: u64) -> Result<Vec<Entry>, StorageError> {
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
        Ok(entries)
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
        assert_eq!(reopened.applied(), 3);
        assert_eq!(reopened.get("ns", "c").unwrap().unwrap().version, 9);
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
