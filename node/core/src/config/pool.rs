//! `[pool]` of node.toml: the instance pool every app on the node shares.

use std::time::Duration;

use serde::Deserialize;

use super::FieldError;
use super::error::in_range;

/// The instance pool shared by every app on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Concurrent instances (and so concurrent requests in guests).
    pub instances: u32,
    /// The most linear memory one instance may have; an app's `limits.memory_mb` fits under it.
    pub max_memory_bytes: u64,
    /// Virtual address space reserved per memory. `None` picks the fastest layout that fits the
    /// machine's address space (4 GiB lets compiled code skip bounds checks).
    pub memory_reservation_bytes: Option<u64>,
    /// Memory kept resident (reset with memset, not madvise) per slot after each request.
    pub keep_resident_bytes: u64,
    /// How many slot decommits are batched into one madvise round; until then their memory
    /// stays resident.
    pub decommit_batch: usize,
    /// How long a request waits for a free slot before 503.
    pub queue_timeout: Duration,
    /// How many requests may wait for a slot at once; more get 503 at once.
    pub max_queued: usize,
    /// How many idle instances one app version that asks for instance reuse (`[instance] reuse`)
    /// may keep between requests; each holds a pool slot and its memory. 0 turns reuse off on
    /// this node.
    pub idle_per_app: usize,
    /// The share of `instances` one app may have running at once, in percent, so that one app
    /// (its bug or its attacker) cannot take the whole pool from the others.
    pub app_share_percent: u32,
    /// Linear memory all live instances together may hold; `None`: three quarters of the
    /// machine's memory. Each app may hold `app_share_percent` of it.
    pub memory_budget_bytes: Option<u64>,
    /// The share of the node's worker threads one app's long-running requests (past 10 ms of
    /// CPU) may occupy at once, in percent; all apps' together get every thread but one.
    pub cpu_share_percent: u32,
}

impl PoolSettings {
    /// How many instances one app may have running at once.
    pub fn app_share(&self) -> usize {
        ((u64::from(self.instances) * u64::from(self.app_share_percent)) / 100).max(1) as usize
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            instances: 1000,
            max_memory_bytes: 128 << 20,
            memory_reservation_bytes: None,
            // Slots keep the pages a request dirtied and reset them with memset (only the dirty
            // ones, where the kernel supports PAGEMAP_SCAN) instead of madvise: madvise's TLB
            // shootdowns and the next request's page faults cost more than the memset.
            keep_resident_bytes: 4 << 20,
            // A slot whose memory waits in a decommit batch stays resident: with batches of
            // 64, an app looping a handler that grows to its memory limit kept 32 slots x
            // 64 MiB resident (the hostile-load suite). Small instances never reach the batch
            // (their dirtied pages are reset in place, above), so batching only saved a madvise
            // per large fresh instance.
            decommit_batch: 1,
            queue_timeout: Duration::from_millis(1000),
            max_queued: 1000,
            idle_per_app: 16,
            app_share_percent: 50,
            memory_budget_bytes: None,
            cpu_share_percent: 50,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[pool]` as written.
pub(super) struct PoolFile {
    instances: Option<u64>,
    memory_mb: Option<u64>,
    memory_reservation_mb: Option<u64>,
    keep_resident_kb: Option<u64>,
    decommit_batch: Option<u64>,
    queue_timeout_ms: Option<u64>,
    max_queued: Option<u64>,
    idle_per_app: Option<u64>,
    app_share_percent: Option<u64>,
    memory_budget_mb: Option<u64>,
    cpu_share_percent: Option<u64>,
}

pub(super) fn pool_settings(file: &PoolFile) -> Result<PoolSettings, FieldError> {
    let d = PoolSettings::default();
    let ms = |v: Duration| v.as_millis() as u64;
    Ok(PoolSettings {
        instances: in_range(file.instances, "instances", 1..=100_000, d.instances.into())? as u32,
        max_memory_bytes: in_range(
            file.memory_mb,
            "memory_mb",
            1..=4096,
            d.max_memory_bytes >> 20,
        )? << 20,
        memory_reservation_bytes: file
            .memory_reservation_mb
            .map(|mb| in_range(Some(mb), "memory_reservation_mb", 1..=8192, 0).map(|mb| mb << 20))
            .transpose()?,
        keep_resident_bytes: in_range(
            file.keep_resident_kb,
            "keep_resident_kb",
            0..=4 << 20,
            d.keep_resident_bytes >> 10,
        )? << 10,
        decommit_batch: in_range(
            file.decommit_batch,
            "decommit_batch",
            1..=10_000,
            d.decommit_batch as u64,
        )? as usize,
        queue_timeout: Duration::from_millis(in_range(
            file.queue_timeout_ms,
            "queue_timeout_ms",
            0..=60_000,
            ms(d.queue_timeout),
        )?),
        max_queued: in_range(
            file.max_queued,
            "max_queued",
            0..=1_000_000,
            d.max_queued as u64,
        )? as usize,
        idle_per_app: in_range(
            file.idle_per_app,
            "idle_per_app",
            0..=10_000,
            d.idle_per_app as u64,
        )? as usize,
        app_share_percent: in_range(
            file.app_share_percent,
            "app_share_percent",
            1..=100,
            d.app_share_percent.into(),
        )? as u32,
        memory_budget_bytes: file
            .memory_budget_mb
            .map(|mb| in_range(Some(mb), "memory_budget_mb", 1..=1 << 30, 0).map(|mb| mb << 20))
            .transpose()?,
        cpu_share_percent: in_range(
            file.cpu_share_percent,
            "cpu_share_percent",
            1..=100,
            d.cpu_share_percent.into(),
        )? as u32,
    })
}
