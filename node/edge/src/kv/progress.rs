//! How far this node's KV replica is, for readiness and metrics: written by the driver after
//! every round, read by `/readyz` and `/metrics` without talking to the driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outpost_core::clock::unix_millis;
use outpost_core::metrics::metrics;

/// The replica's applied and newest known versions, and since when it is behind.
#[derive(Default)]
pub struct KvProgress {
    applied: AtomicU64,
    known: AtomicU64,
    /// When the replica fell behind the newest version it knows of (ms since the epoch); 0
    /// while caught up.
    behind_since_ms: AtomicU64,
}

impl KvProgress {
    /// The replica has made `applied` durable and knows versions exist up to `known`.
    pub fn update(&self, applied: u64, known: u64) {
        self.applied.store(applied, Ordering::Relaxed);
        self.known.store(known, Ordering::Relaxed);
        if known <= applied {
            self.behind_since_ms.store(0, Ordering::Relaxed);
        } else if self.behind_since_ms.load(Ordering::Relaxed) == 0 {
            self.behind_since_ms.store(unix_millis(), Ordering::Relaxed);
        }
    }

    /// The newest version the replica has made durable.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Versions known to exist and not applied yet.
    pub fn lag_versions(&self) -> u64 {
        self.known
            .load(Ordering::Relaxed)
            .saturating_sub(self.applied())
    }

    /// How long the replica has been behind (zero while caught up).
    pub fn lag(&self) -> Duration {
        match self.behind_since_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(unix_millis().saturating_sub(since)),
        }
    }

    /// Copy into the process's gauges (before a scrape).
    pub fn publish(&self) {
        let m = metrics();
        m.kv_applied_version.set(self.applied() as i64);
        m.kv_lag_versions.set(self.lag_versions() as i64);
        m.kv_lag_seconds.set(self.lag().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_starts_when_behind_and_ends_when_caught_up() {
        let progress = KvProgress::default();
        progress.update(10, 10);
        assert_eq!(
            (progress.lag_versions(), progress.lag()),
            (0, Duration::ZERO)
        );
        progress.update(10, 15);
        assert_eq!(progress.lag_versions(), 5);
        let since = progress.behind_since_ms.load(Ordering::Relaxed);
        assert!(since > 0);
        // Still behind: the clock keeps running from the first time.
        progress.update(12, 16);
        assert_eq!(progress.behind_since_ms.load(Ordering::Relaxed), since);
        progress.update(16, 16);
        assert_eq!(
            (progress.lag_versions(), progress.lag()),
            (0, Duration::ZERO)
        );
    }
}
