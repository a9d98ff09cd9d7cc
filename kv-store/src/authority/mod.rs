//! The origin's single writer: every write is decided here against the current state, given the
//! next global versions, and committed durably before anyone hears of it.
//!
//! Storage is behind [`AuthorityStore`]: [`RedbAuthorityStore`] on disk (redb commits are
//! fsynced), [`MemoryAuthorityStore`] for the simulation, where a crash keeps exactly what was
//! committed.

use std::collections::HashMap;

use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, LimitError, Sweep};
use crate::ops::{WriteAck, WriteError, WriteOp, WriteOutcome};
use crate::protocol::{Batch, encode};
use crate::quota::{QuotaPolicy, RateMeters};
use crate::scope::tenant_of;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory_store;
mod redb_store;

pub use memory_store::MemoryAuthorityStore;
pub use redb_store::RedbAuthorityStore;

/// Durable state of the authority.
pub trait AuthorityStore {
    /// The newest global version committed so far (0 for an empty store).
    fn last_version(&self) -> u64;
    /// A key's latest entry in the current state, tombstones and expired entries included.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError>;
    /// The recorded outcome of write `id` from `writer`, if it was committed.
    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError>;
    /// Begin a round of writes: from here until `commit` or [`AuthorityStore::end_round`], no
    /// other writer sharing this store commits, and `last_version()` is the newest version any
    /// of them committed. Returns what they committed since this store last looked, as
    /// [`AuthorityStore::others_committed`] does. `writes` are the round's writes, for a store
    /// that fetches what they will read in one go. A store with one writer has nothing to do.
    fn begin_round(&mut self, writes: &[IncomingWrite]) -> Result<Option<Batch>, StorageError> {
        let _ = writes;
        Ok(None)
    }
    /// End a round that commits nothing.
    fn end_round(&mut self) {}
    /// What other writers sharing this store committed after `last_version()`, which moves to
    /// the newest of them: a batch of consecutive versions, or, when the store cannot hand them
    /// all over (its log no longer reaches back, or there are too many to hold at once), an
    /// empty batch from the newest version, which tells whoever relays it to catch up from the
    /// store. `None` when nothing is new, and always for a store with one writer.
    fn others_committed(&mut self) -> Result<Option<Batch>, StorageError> {
        Ok(None)
    }
    /// Commit durably, all or nothing: `entries` (versions already assigned, following
    /// `last_version()` without gaps) and the outcomes of the writes they came from. Ends the
    /// round [`AuthorityStore::begin_round`] began, whether it succeeds or not.
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
    /// state those [`reclaimable`](crate::model::reclaimable) at `through` and `now_ms`, in one durable commit.
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

/// A store chosen at run time (the origin's engine comes from its configuration).
impl<S: AuthorityStore + ?Sized> AuthorityStore for Box<S> {
    fn last_version(&self) -> u64 {
        (**self).last_version()
    }
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        (**self).get(namespace, key)
    }
    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        (**self).outcome(writer, id)
    }
    fn begin_round(&mut self, writes: &[IncomingWrite]) -> Result<Option<Batch>, StorageError> {
        (**self).begin_round(writes)
    }
    fn end_round(&mut self) {
        (**self).end_round()
    }
    fn others_committed(&mut self) -> Result<Option<Batch>, StorageError> {
        (**self).others_committed()
    }
    fn commit(
        &mut self,
        entries: &[Entry],
        outcomes: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        (**self).commit(entries, outcomes)
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
    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        (**self).list(namespace, prefix, after, limit)
    }
    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        (**self).list_keys(namespace, prefix, after, limit)
    }
}

/// The origin's single writer over the store `S`: it decides each write against the current
/// state, gives its entries the next global versions, holds tenants to their quotas, and
/// commits durably before answering.
pub struct Authority<S> {
    store: S,
    quotas: QuotaPolicy,
    rates: RateMeters,
}

/// A write as it reaches the authority: who sent it, its id there, and the op.
pub struct IncomingWrite {
    /// Who sent the write: a node's name, or the origin's own name for the writes it makes itself.
    pub writer: String,
    /// The write's id at its writer; with `writer`, it lets a retried write be applied once.
    pub id: u64,
    /// The write to decide.
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

    /// The store the authority commits to, for reads it does not offer itself (such as a
    /// tenant's used bytes) and for tests.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The newest global version committed so far (0 before the first write).
    pub fn last_version(&self) -> u64 {
        self.store.last_version()
    }

    /// A key's latest committed entry, tombstones and expired entries included.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        self.store.get(namespace, key)
    }

    /// Up to `limit` entries of a namespace with keys starting with `prefix`, after `after`
    /// (exclusive), in key order.
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
    /// outcome and the batch to send every subscriber (`None` if nothing changed). On a store
    /// other writers share, the batch begins with what they committed since this authority
    /// last looked; if its `from` is past the version this authority had reached, the store
    /// could not hand over every version between, and whoever relays the batch must catch up
    /// from the store instead (as [`crate::session::OriginSession`] does).
    pub fn write_all(
        &mut self,
        writes: Vec<IncomingWrite>,
        now_ms: u64,
        now_us: u64,
    ) -> Result<(Vec<WriteOutcome>, Option<Batch>), StorageError> {
        let others = self.store.begin_round(&writes)?;
        let first = self.store.last_version();
        let decided = match self.decide(writes, first, now_ms, now_us) {
            Ok(decided) => decided,
            Err(err) => {
                self.store.end_round();
                return Err(err);
            }
        };
        if decided.recorded.is_empty() {
            self.store.end_round();
            return Ok((decided.outcomes, others));
        }
        self.store.commit(&decided.entries, &decided.recorded)?;
        let through = self.store.last_version();
        let batch = match others {
            Some(mut others) => {
                others.through = through;
                others.entries.extend(decided.entries);
                Some(others)
            }
            None => (!decided.entries.is_empty()).then_some(Batch {
                from: first,
                through,
                entries: decided.entries,
            }),
        };
        Ok((decided.outcomes, batch))
    }

    /// What other writers sharing the store committed since this authority last looked, as a
    /// batch to relay (with the same rule for its `from` as [`Authority::write_all`]'s).
    pub fn others_committed(&mut self) -> Result<Option<Batch>, StorageError> {
        self.store.others_committed()
    }

    /// Decide `writes` in order against the state after version `first`: their outcomes, the
    /// entries to commit (versions from `first + 1`) and the outcomes to record.
    fn decide(
        &mut self,
        writes: Vec<IncomingWrite>,
        first: u64,
        now_ms: u64,
        now_us: u64,
    ) -> Result<Decided, StorageError> {
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
        Ok(Decided {
            outcomes,
            entries,
            recorded,
        })
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

/// A round of writes decided, not yet committed.
struct Decided {
    /// Each write's outcome, in order.
    outcomes: Vec<WriteOutcome>,
    /// The entries to commit, in version order.
    entries: Vec<Entry>,
    /// The outcomes to record against (writer, id), so a retry gets the same answer.
    recorded: Vec<(String, u64, WriteOutcome)>,
}

/// Why a write did not fit its tenant's quota.
enum QuotaRefusal {
    Rate(WriteError),
    Bytes(WriteError),
}

/// Entries from `entries` until `max_bytes` are taken (at least one, whatever its size), and
/// whether any were left: the budget every store's catch-up reads keep to.
pub fn within_budget(
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

/// The bytes an entry takes in the store, as its tenant's quota counts them: its encoding.
pub fn stored_bytes(entry: &Entry) -> u64 {
    encode(entry).len() as u64
}

/// Add `delta` bytes of `namespace` to its tenant's count in `usage`.
pub fn add_usage(usage: &mut HashMap<String, i64>, namespace: &str, delta: i64) {
    *usage.entry(tenant_of(namespace).to_string()).or_default() += delta;
}

/// The outcome of each write of a round its store failed: unavailable (it may or may not have
/// been applied; retry) when the store was out of reach, internal otherwise.
pub fn outcome_of_failure(err: &StorageError) -> WriteOutcome {
    Err(match err {
        StorageError::Unavailable(_) => WriteError::Unavailable(err.to_string()),
        StorageError::Failed(_) => WriteError::Internal(err.to_string()),
    })
}

#[cfg(test)]
mod tests;
