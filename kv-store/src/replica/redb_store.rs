//! A replica in redb, on the node's disk, with an in-memory cache in front for hot reads.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::ReplicaStore;
use crate::authority::within_budget;
use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, reclaimable};
use crate::protocol::{SnapshotPart, decode, encode};

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const BY_VERSION: TableDefinition<u64, (&str, &str)> = TableDefinition::new("by_version");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const APPLIED: &str = "applied";
const FLOOR: &str = "floor";

/// Values larger than this are read from disk each time rather than kept in memory.
const CACHE_VALUE_LIMIT: usize = 64 << 10;
/// Memory the cache may hold before it starts over.
const CACHE_BUDGET: usize = 64 << 20;

/// A node's replica in redb, with an in-memory cache in front of it for hot reads.
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
    /// Open (or create) the replica at `path`, waiting briefly for another process to let go
    /// of the file; it resumes from the `applied` and floor it recorded.
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
    decode(bytes).map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
}

fn decode_key_info(bytes: &[u8]) -> Result<KeyInfo, StorageError> {
    crate::model::decode_key_info(bytes)
        .map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
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

    fn entries_after(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Entry>, bool)>, StorageError> {
        if from < self.floor() {
            return Ok(None);
        }
        let txn = self.db.begin_read()?;
        let by_version = txn.open_table(BY_VERSION)?;
        let table = txn.open_table(ENTRIES)?;
        let entries = by_version.range(from + 1..)?.filter_map(|item| {
            let read = || -> Result<Option<Entry>, StorageError> {
                let (_, key) = item?;
                match table.get(key.value())? {
                    Some(bytes) => Ok(Some(decode_entry(bytes.value())?)),
                    None => Ok(None),
                }
            };
            read().transpose()
        });
        within_budget(entries, max_bytes).map(Some)
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        crate::scan::snapshot_after(&table, after, max_bytes, decode_entry)
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
    use crate::replica::tests::entry;

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
