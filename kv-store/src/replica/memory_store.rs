//! A replica in memory, for the simulation and tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use super::ReplicaStore;
use crate::authority::within_budget;
use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, reclaimable};
use crate::protocol::SnapshotPart;

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

    fn entries_after(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<(Vec<Entry>, bool)>, StorageError> {
        let state = self.state.lock().unwrap();
        if from < state.floor {
            return Ok(None);
        }
        let mut entries: Vec<&Arc<Entry>> = state
            .entries
            .values()
            .filter(|e| e.version > from)
            .collect();
        entries.sort_by_key(|e| e.version);
        within_budget(entries.into_iter().map(|e| Ok((**e).clone())), max_bytes).map(Some)
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let state = self.state.lock().unwrap();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        within_budget(
            state
                .entries
                .range::<(String, String), _>((start, Bound::Unbounded))
                .map(|(_, e)| Ok((**e).clone())),
            max_bytes,
        )
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
