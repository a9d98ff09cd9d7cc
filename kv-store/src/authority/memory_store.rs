//! The authority's state in memory, for the simulation and tests.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{AuthorityStore, add_usage, stored_bytes, within_budget};
use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, reclaimable};
use crate::ops::WriteOutcome;

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
                return Err(StorageError::Failed(format!(
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
