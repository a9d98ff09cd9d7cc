//! The authority's state in redb, on the origin's disk.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{AuthorityStore, add_usage, within_budget};
use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, reclaimable};
use crate::ops::WriteOutcome;
use crate::protocol::{decode, encode};

const CURRENT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("current");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const OUTCOMES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outcomes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Bytes per tenant (see [`crate::quota`]).
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
const LAST: &str = "last_version";
const COMPACTED: &str = "compacted_through";
/// Set once `USAGE` has been counted from the current state (stores made before it existed
/// are counted when first opened).
const USAGE_COUNTED: &str = "usage_counted";

/// Add `delta` (per tenant) to the `USAGE` table.
fn write_usage(
    txn: &redb::WriteTransaction,
    delta: HashMap<String, i64>,
) -> Result<(), StorageError> {
    let mut usage = txn.open_table(USAGE)?;
    for (tenant, delta) in delta {
        let used = usage.get(tenant.as_str())?.map(|g| g.value()).unwrap_or(0);
        usage.insert(tenant.as_str(), used.saturating_add_signed(delta))?;
    }
    Ok(())
}

/// The authority's state in redb. Every commit is durable (fsynced) when it returns.
pub struct RedbAuthorityStore {
    db: Database,
    last: u64,
    compacted_through: u64,
}

impl RedbAuthorityStore {
    /// Open (or create) the store at `path`, waiting briefly for another process to let go of
    /// the file, and count the tenants' bytes if this store predates keeping them.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = crate::open::create_database(path)?;
        let txn = db.begin_write()?;
        txn.open_table(CURRENT)?;
        txn.open_table(LOG)?;
        txn.open_table(OUTCOMES)?;
        txn.open_table(META)?;
        txn.open_table(USAGE)?;
        txn.commit()?;
        count_usage(&db)?;
        let (last, compacted_through) = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let read = |name| meta.get(name).map(|v| v.map(|g| g.value()).unwrap_or(0));
            (read(LAST)?, read(COMPACTED)?)
        };
        Ok(RedbAuthorityStore {
            db,
            last,
            compacted_through,
        })
    }
}

impl RedbAuthorityStore {
    /// Every recorded write outcome, as (writer, id, the version committed through when it
    /// was recorded, outcome): for moving the store elsewhere with its de-duplication intact.
    pub fn outcomes(&self) -> Result<Vec<(String, u64, u64, WriteOutcome)>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTCOMES)?;
        table
            .iter()?
            .map(|item| {
                let (key, value) = item?;
                let (writer, id) = key.value();
                let (version, outcome) = decode::<(u64, WriteOutcome)>(value.value())
                    .map_err(|e| StorageError::Failed(format!("corrupt outcome: {e}")))?;
                Ok((writer.to_string(), id, version, outcome))
            })
            .collect()
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
}

/// Count every tenant's bytes once, for a store made before they were kept.
fn count_usage(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    if txn.open_table(META)?.get(USAGE_COUNTED)?.is_some() {
        return Ok(());
    }
    let mut delta = HashMap::new();
    {
        let current = txn.open_table(CURRENT)?;
        for item in current.iter()? {
            let (key, value) = item?;
            add_usage(&mut delta, key.value().0, value.value().len() as i64);
        }
    }
    txn.open_table(USAGE)?.retain(|_, _| false)?;
    write_usage(&txn, delta)?;
    txn.open_table(META)?.insert(USAGE_COUNTED, 1)?;
    txn.commit()?;
    Ok(())
}

impl AuthorityStore for RedbAuthorityStore {
    fn last_version(&self) -> u64 {
        self.last
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CURRENT)?;
        table
            .get((namespace, key))?
            .map(|g| decode_entry(g.value()))
            .transpose()
    }

    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTCOMES)?;
        table
            .get((writer, id))?
            .map(|g| {
                decode::<(u64, WriteOutcome)>(g.value())
                    .map(|(_, o)| o)
                    .map_err(|e| StorageError::Failed(format!("corrupt outcome: {e}")))
            })
            .transpose()
    }

    fn commit(
        &mut self,
        entries: &[Entry],
        outcomes: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        let mut last = self.last;
        let mut delta = HashMap::new();
        let txn = self.db.begin_write()?;
        {
            let mut current = txn.open_table(CURRENT)?;
            let mut log = txn.open_table(LOG)?;
            for entry in entries {
                if entry.version != last + 1 {
                    return Err(StorageError::Failed(format!(
                        "version {} does not follow {last}",
                        entry.version
                    )));
                }
                last = entry.version;
                let bytes = encode(entry);
                add_usage(&mut delta, &entry.namespace, bytes.len() as i64);
                if let Some(old) = current.insert(
                    (entry.namespace.as_str(), entry.key.as_str()),
                    bytes.as_slice(),
                )? {
                    add_usage(&mut delta, &entry.namespace, -(old.value().len() as i64));
                }
                log.insert(entry.version, bytes.as_slice())?;
            }
            let mut recorded = txn.open_table(OUTCOMES)?;
            for (writer, id, outcome) in outcomes {
                recorded.insert((writer.as_str(), *id), encode(&(last, outcome)).as_slice())?;
            }
            txn.open_table(META)?.insert(LAST, last)?;
        }
        write_usage(&txn, delta)?;
        txn.commit()?;
        self.last = last;
        Ok(())
    }

    fn log_after(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Entry>>, StorageError> {
        if from < self.compacted_through {
            return Ok(None);
        }
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let entries = log.range(from + 1..)?.map(|item| {
            item.map_err(StorageError::from)
                .and_then(|(_, v)| decode_entry(v.value()))
        });
        Ok(Some(within_budget(entries, max_bytes)?.0))
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CURRENT)?;
        crate::scan::snapshot_after(&table, after, max_bytes, decode_entry)
    }

    fn compact(&mut self, through: u64) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(LOG)?;
            log.retain_in(..=through, |_, _| false)?;
            let mut outcomes = txn.open_table(OUTCOMES)?;
            outcomes.retain(|_, bytes| {
                decode::<(u64, WriteOutcome)>(bytes)
                    .map(|(v, _)| v > through)
                    .unwrap_or(false)
            })?;
            txn.open_table(META)?
                .insert(COMPACTED, through.max(self.compacted_through))?;
        }
        txn.commit()?;
        self.compacted_through = self.compacted_through.max(through);
        Ok(())
    }

    fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        let txn = self.db.begin_write()?;
        let sweep = {
            let mut current = txn.open_table(CURRENT)?;
            let (sweep, removed) = crate::scan::sweep(&mut current, after, max_keys, |info| {
                reclaimable(info, through, now_ms)
            })?;
            let mut delta = HashMap::new();
            for gone in &removed {
                add_usage(&mut delta, &gone.namespace, -(gone.bytes as i64));
            }
            drop(current);
            write_usage(&txn, delta)?;
            sweep
        };
        txn.commit()?;
        Ok(sweep)
    }

    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError> {
        let txn = self.db.begin_read()?;
        let usage = txn.open_table(USAGE)?;
        Ok(usage.get(tenant)?.map(|g| g.value()).unwrap_or(0))
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read()?;
        let current = txn.open_table(CURRENT)?;
        crate::scan::scan_prefix(&current, namespace, prefix, after, limit, decode_entry)
    }

    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        let txn = self.db.begin_read()?;
        let current = txn.open_table(CURRENT)?;
        crate::scan::scan_prefix(&current, namespace, prefix, after, limit, |bytes| {
            crate::model::decode_key_info(bytes)
                .map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
        })
    }
}
