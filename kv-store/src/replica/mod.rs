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

use std::sync::Arc;

use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep};
use crate::protocol::SnapshotPart;

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
    /// Look at up to `max_keys` keys after `after` and remove those [`reclaimable`](crate::model::reclaimable) at `through`
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
    /// Each key's latest entry with a version above `from`, in version order, stopping after
    /// about `max_bytes` (at least one entry), and whether more follow; `None` if `from` is
    /// below the floor.
    fn entries_after(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Entry>, bool)>, StorageError>;
    /// Every key's latest entry, tombstones included, in key order after the key `after`,
    /// stopping after about `max_bytes` (at least one entry); and whether keys remain past
    /// them. A relay serves its followers' snapshots from here.
    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError>;
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

mod feed;
mod memory_store;
mod redb_store;

pub use feed::ReplicaFeed;
pub use memory_store::MemoryReplica;
pub use redb_store::RedbReplica;

#[cfg(test)]
pub(crate) mod tests;
