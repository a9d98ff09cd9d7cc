//! The origin's single writer: every write is decided here against the current state, given the
//! next global versions, and committed durably before anyone hears of it.
//!
//! Storage is behind [`AuthorityStore`]: [`RedbAuthorityStore`] on disk (redb commits are
//! fsynced), [`MemoryAuthorityStore`] for the simulation, where a crash keeps exactly what was
//! committed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::model::{Entry, KeyInfo, LimitError, Sweep, reclaimable};
use crate::ops::{WriteAck, WriteError, WriteOp, WriteOutcome};
use crate::protocol::{Batch, decode, encode};
use crate::quota::{QuotaPolicy, RateMeters};
use crate::scope::tenant_of;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KV storage: {0}")]
pub struct StorageError(pub String);

impl<E: Into<redb::Error>> From<E> for StorageError {
    fn from(err: E) -> Self {
        StorageError(err.into().to_string())
    }
}

/// Durable state of the authority.
pub trait AuthorityStore {
    fn last_version(&self) -> u64;
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError>;
    /// The recorded outcome of write `id` from `writer`, if it was committed.
    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError>;
    /// Commit durably, all or nothing: `entries` (versions already assigned, following
    /// `last_version()` without gaps) and the outcomes of the writes they came from.
    fn commit(
        &mut self,
        entries: &[Entry],
        outcomes: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError>;
    /// Log entries after `from`, stopping after `max_bytes` (at least one entry); `None` if the
    /// log no longer reaches back that far (it was compacted).
    fn log_after(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Entry>>, StorageError>;
    /// Every key's latest entry, tombstones included, in key order after the key `after`,
    /// stopping after `max_bytes` (at least one entry); and whether keys remain past them.
    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError>;
    /// Forget log entries and write outcomes up to version `through`.
    fn compact(&mut self, through: u64) -> Result<(), StorageError>;
    /// The version the log was compacted through: catch-ups from before it get a snapshot.
    fn compacted_through(&self) -> u64;
    /// The bytes `tenant`'s keys take in the current state (see [`crate::quota`]), kept up to
    /// date by `commit` and `reclaim`.
    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError>;
    /// Look at up to `max_keys` keys in key order after `after` and remove from the current
    /// state those [`reclaimable`] at `through` and `now_ms`, in one durable commit.
    fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError>;
    /// Entries of a namespace with keys starting with `prefix`, after `after` (exclusive).
    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError>;
    /// The same keys as [`AuthorityStore::list`], without their values.
    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError>;
}

pub struct Authority<S> {
    store: S,
    quotas: QuotaPolicy,
    rates: RateMeters,
}

/// A write as it reaches the authority: who sent it, its id there, and the op.
pub struct IncomingWrite {
    pub writer: String,
    pub id: u64,
    pub op: WriteOp,
}

impl<S: AuthorityStore> Authority<S> {
    /// An authority with no quotas.
    pub fn new(store: S) -> Self {
        Self::with_quotas(store, QuotaPolicy::default())
    }

    /// An authority that holds every tenant to its quota (see [`crate::quota`]).
    pub fn with_quotas(store: S, quotas: QuotaPolicy) -> Self {
        Authority {
            store,
            quotas,
            rates: RateMeters::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn last_version(&self) -> u64 {
        self.store.last_version()
    }

    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get(namespace, key)
    }

    pub fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.store.list(namespace, prefix, after, limit)
    }

    /// Keys of a namespace by prefix, without their values.
    pub fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        self.store.list_keys(namespace, prefix, after, limit)
    }

    /// Decide and commit `writes`, in order, with one durable commit. Returns each write's
    /// outcome and the batch to send every subscriber (`None` if nothing changed).
    pub fn write_all(
        &mut self,
        writes: Vec<IncomingWrite>,
        now_ms: u64,
        now_us: u64,
    ) -> Result<(Vec<WriteOutcome>, Option<Batch>), StorageError> {
        let first = self.store.last_version();
        let mut next = first;
        let mut staged: HashMap<(String, String), Entry> = HashMap::new();
        let mut entries = Vec::new();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut recorded: Vec<(String, u64, WriteOutcome)> = Vec::new();
        // Bytes each tenant's writes in this round add, on top of what the store holds.
        let mut round_usage: HashMap<String, i64> = HashMap::new();
        for write in writes {
            // A retry of a write already decided gets the same answer, and changes nothing.
            let earlier = recorded
                .iter()
                .find(|(w, id, _)| *w == write.writer && *id == write.id)
                .map(|(_, _, o)| o.clone());
            let known = match earlier {
                Some(outcome) => Some(outcome),
                None => self.store.outcome(&write.writer, write.id)?,
            };
            if let Some(outcome) = known {
                outcomes.push(outcome);
                continue;
            }
            // A key the store cannot read is not an absent key (an increment would restart
            // from 0): the first storage error fails the whole round, committing nothing.
            let unreadable = std::cell::RefCell::new(None);
            let planned = write.op.plan(now_ms, |namespace, key| {
                if let Some(entry) = staged.get(&(namespace.to_string(), key.to_string())) {
                    return Some(entry.clone());
                }
                self.store.get(namespace, key).unwrap_or_else(|err| {
                    unreadable.borrow_mut().get_or_insert(err);
                    None
                })
            });
            if let Some(err) = unreadable.into_inner() {
                return Err(err);
            }
            let planned = match planned {
                Ok((changes, result)) => {
                    match self.within_quota(&write.op, &changes, &staged, &mut round_usage, now_ms)
                    {
                        Ok(()) => Ok((changes, result)),
                        // Not recorded: a retry once the rate allows it must get through.
                        Err(QuotaRefusal::Rate(err)) => {
                            outcomes.push(Err(err));
                            continue;
                        }
                        Err(QuotaRefusal::Bytes(err)) => Err(err),
                    }
                }
                Err(err) => Err(err),
            };
            let outcome = match planned {
                Ok((changes, result)) => {
                    let committed: Vec<Entry> = changes
                        .into_iter()
                        .map(|change| {
                            next += 1;
                            Entry {
                                namespace: change.namespace,
                                key: change.key,
                                value: change.value,
                                metadata: change.metadata,
                                expires_at_ms: change.expires_at_ms,
                                version: next,
                                committed_at_us: now_us,
                            }
                        })
                        .collect();
                    for entry in &committed {
                        staged.insert((entry.namespace.clone(), entry.key.clone()), entry.clone());
                    }
                    entries.extend(committed.iter().cloned());
                    Ok(WriteAck {
                        entries: committed,
                        result,
                    })
                }
                Err(err) => Err(err),
            };
            recorded.push((write.writer, write.id, outcome.clone()));
            outcomes.push(outcome);
        }
        if recorded.is_empty() {
            return Ok((outcomes, None));
        }
        self.store.commit(&entries, &recorded)?;
        let batch = (!entries.is_empty()).then_some(Batch {
            from: first,
            through: next,
            entries,
        });
        Ok((outcomes, batch))
    }

    /// Whether `op`, planned as `changes`, fits its tenant's quota: a token per key changed,
    /// and, if it adds bytes, room for them. Counts what it adds into `round_usage`.
    fn within_quota(
        &mut self,
        op: &WriteOp,
        changes: &[crate::ops::Change],
        staged: &HashMap<(String, String), Entry>,
        round_usage: &mut HashMap<String, i64>,
        now_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        let tenant = tenant_of(op.namespace());
        let quota = self.quotas.of(tenant);
        if quota == crate::quota::Quota::UNLIMITED {
            return Ok(());
        }
        let mut added: i64 = 0;
        for change in changes {
            let key = (change.namespace.clone(), change.key.clone());
            let before = match staged.get(&key) {
                Some(entry) => Some(entry.clone()),
                None => self
                    .store
                    .get(&change.namespace, &change.key)
                    .map_err(|err| QuotaRefusal::Bytes(WriteError::Internal(err.to_string())))?,
            };
            let after = Entry {
                namespace: change.namespace.clone(),
                key: change.key.clone(),
                value: change.value.clone(),
                metadata: change.metadata.clone(),
                expires_at_ms: change.expires_at_ms,
                version: u64::MAX,
                committed_at_us: u64::MAX,
            };
            added += stored_bytes(&after) as i64 - before.map_or(0, |e| stored_bytes(&e) as i64);
        }
        let keys = u32::try_from(changes.len().max(1)).unwrap_or(u32::MAX);
        if !self
            .rates
            .take(tenant, quota.writes_per_second, keys, now_ms)
        {
            return Err(QuotaRefusal::Rate(WriteError::RateLimited(format!(
                "app {tenant:?} is over its KV write rate of {} keys per second",
                quota.writes_per_second
            ))));
        }
        let pending = round_usage.entry(tenant.to_string()).or_default();
        if added > 0 {
            let used = self
                .store
                .used_bytes(tenant)
                .map_err(|err| QuotaRefusal::Bytes(WriteError::Internal(err.to_string())))?;
            let total = used
                .saturating_add_signed(*pending)
                .saturating_add(added as u64);
            if total > quota.max_bytes {
                return Err(QuotaRefusal::Bytes(WriteError::Limit(LimitError(format!(
                    "app {tenant:?} would hold {total} bytes of KV; its quota is {} bytes \
                     (delete keys to make room)",
                    quota.max_bytes
                )))));
            }
        }
        *pending += added;
        Ok(())
    }

    /// Log entries after `from` (about `max_bytes` of them), or `None` if the log was compacted
    /// past `from`.
    pub fn log_after(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<Vec<Entry>>, StorageError> {
        self.store.log_after(from, max_bytes)
    }

    /// Current entries in key order after `after` (about `max_bytes` of them), and whether
    /// more keys follow.
    pub fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        self.store.snapshot_after(after, max_bytes)
    }

    /// Reclaim up to `max_keys` keys after `after`: deleted and expired entries whose versions
    /// the log no longer holds. A node that could still lack such a delete is behind the log,
    /// so it catches up from a snapshot, and a snapshot part empties its key range of whatever
    /// the origin does not list (see [`crate::catch_up`]).
    pub fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        let through = self.store.compacted_through();
        self.store.reclaim(after, max_keys, through, now_ms)
    }

    /// Keep only the newest `keep` versions of the log.
    pub fn compact(&mut self, keep: u64) -> Result<(), StorageError> {
        let through = self.store.last_version().saturating_sub(keep);
        if through > 0 {
            self.store.compact(through)?;
        }
        Ok(())
    }
}

/// Why a write did not fit its tenant's quota.
enum QuotaRefusal {
    Rate(WriteError),
    Bytes(WriteError),
}

/// Entries from `entries` until `max_bytes` are taken (at least one, whatever its size), and
/// whether any were left.
fn within_budget(
    entries: impl Iterator<Item = Result<Entry, StorageError>>,
    max_bytes: usize,
) -> Result<(Vec<Entry>, bool), StorageError> {
    let mut taken = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let entry = entry?;
        if !taken.is_empty() && bytes + entry.size() > max_bytes {
            return Ok((taken, true));
        }
        bytes += entry.size();
        taken.push(entry);
    }
    Ok((taken, false))
}

/// The authority's state in memory, for the simulation: what `commit` returned from is
/// exactly what survives a crash.
#[derive(Debug, Clone, Default)]
pub struct MemoryAuthorityStore {
    last: u64,
    compacted_through: u64,
    current: BTreeMap<(String, String), Entry>,
    log: BTreeMap<u64, Entry>,
    outcomes: BTreeMap<(String, u64), (u64, WriteOutcome)>,
    usage: HashMap<String, u64>,
}

/// The bytes an entry takes in the store: its encoding.
fn stored_bytes(entry: &Entry) -> u64 {
    encode(entry).len() as u64
}

/// Add `delta` to a tenant's bytes in `usage`.
fn add_usage(usage: &mut HashMap<String, i64>, namespace: &str, delta: i64) {
    *usage.entry(tenant_of(namespace).to_string()).or_default() += delta;
}

impl MemoryAuthorityStore {
    fn apply_usage(&mut self, delta: HashMap<String, i64>) {
        for (tenant, delta) in delta {
            let used = self.usage.entry(tenant).or_default();
            *used = used.saturating_add_signed(delta);
        }
    }
}

impl AuthorityStore for MemoryAuthorityStore {
    fn last_version(&self) -> u64 {
        self.last
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self
            .current
            .get(&(namespace.to_string(), key.to_string()))
            .cloned())
    }

    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        Ok(self
            .outcomes
            .get(&(writer.to_string(), id))
            .map(|(_, o)| o.clone()))
    }

    fn commit(
        &mut self,
        entries: &[Entry],
        outcomes: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        for entry in entries {
            if entry.version != self.last + 1 {
                return Err(StorageError(format!(
                    "version {} does not follow {}",
                    entry.version, self.last
                )));
            }
            self.last = entry.version;
            let mut delta = HashMap::new();
            add_usage(&mut delta, &entry.namespace, stored_bytes(entry) as i64);
            if let Some(old) = self
                .current
                .insert((entry.namespace.clone(), entry.key.clone()), entry.clone())
            {
                add_usage(&mut delta, &old.namespace, -(stored_bytes(&old) as i64));
            }
            self.apply_usage(delta);
            self.log.insert(entry.version, entry.clone());
        }
        for (writer, id, outcome) in outcomes {
            self.outcomes
                .insert((writer.clone(), *id), (self.last, outcome.clone()));
        }
        Ok(())
    }

    fn log_after(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Entry>>, StorageError> {
        if from < self.compacted_through {
            return Ok(None);
        }
        Ok(Some(
            within_budget(
                self.log.range(from + 1..).map(|(_, e)| Ok(e.clone())),
                max_bytes,
            )?
            .0,
        ))
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        within_budget(
            self.current
                .range::<(String, String), _>((start, Bound::Unbounded))
                .map(|(_, e)| Ok(e.clone())),
            max_bytes,
        )
    }

    fn compact(&mut self, through: u64) -> Result<(), StorageError> {
        self.log.retain(|v, _| *v > through);
        self.outcomes.retain(|_, (v, _)| *v > through);
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
        let (sweep, removed) =
            crate::model::sweep_map(&mut self.current, after, max_keys, |entry| {
                reclaimable(&KeyInfo::from(entry), through, now_ms)
            });
        let mut delta = HashMap::new();
        for entry in &removed {
            add_usage(&mut delta, &entry.namespace, -(stored_bytes(entry) as i64));
        }
        self.apply_usage(delta);
        Ok(sweep)
    }

    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError> {
        Ok(self.usage.get(tenant).copied().unwrap_or(0))
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(crate::model::list_prefix(
            &self.current,
            namespace,
            prefix,
            after,
            limit,
            Entry::clone,
        ))
    }

    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        Ok(crate::model::list_prefix(
            &self.current,
            namespace,
            prefix,
            after,
            limit,
            |entry: &Entry| KeyInfo::from(entry),
        ))
    }
}

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

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| StorageError(format!("corrupt entry: {e}")))
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
                    .map_err(|e| StorageError(format!("corrupt outcome: {e}")))
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
                    return Err(StorageError(format!(
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
        let current = txn.open_table(CURRENT)?;
        let start = match after {
            Some((namespace, key)) => Bound::Excluded((namespace.as_str(), key.as_str())),
            None => Bound::Unbounded,
        };
        let entries = current
            .range::<(&str, &str)>((start, Bound::Unbounded))?
            .map(|item| {
                item.map_err(StorageError::from)
                    .and_then(|(_, v)| decode_entry(v.value()))
            });
        within_budget(entries, max_bytes)
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
                .map_err(|e| StorageError(format!("corrupt entry: {e}")))
        })
    }
}

/// A write outcome when the authority itself failed.
pub fn internal_error(err: &StorageError) -> WriteOutcome {
    Err(WriteError::Internal(err.to_string()))
}

#[cfg(test)]
mod tests {
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
        fn log_after(
            &self,
            from: u64,
            max_bytes: usize,
        ) -> Result<Option<Vec<Entry>>, StorageError> {
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
}
