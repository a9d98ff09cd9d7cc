//! Admission to the instance pool: one permit per pool slot, a short bounded queue in front.
//!
//! A request that finds every slot busy waits up to the queue timeout, and at most `max_queued`
//! requests wait at once; beyond either bound it is refused at once (the caller answers 503 with
//! Retry-After) rather than failing later with an opaque instantiation error. The same gate,
//! sized to an app's share of the pool, keeps one app from taking every slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct PoolGate {
    slots: Arc<Semaphore>,
    capacity: usize,
    waiting: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
    /// How long each request that had to wait waited.
    waits: Histogram,
}

/// Every slot stayed busy for the whole wait, or the queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBusy;

impl PoolGate {
    /// `slots` permits, at most `max_queued` waiting up to `queue_timeout`; the waits are
    /// observed in `outpost_pool_wait_seconds{pool}`.
    pub(crate) fn new(
        slots: usize,
        max_queued: usize,
        queue_timeout: Duration,
        pool: &str,
    ) -> Self {
        PoolGate {
            slots: Arc::new(Semaphore::new(slots)),
            capacity: slots,
            waiting: AtomicUsize::new(0),
            max_queued,
            queue_timeout,
            waits: outpost_core::metrics::metrics()
                .pool_wait_seconds
                .with_label_values(&[pool]),
        }
    }

    /// A slot if one is free right now.
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, PoolBusy> {
        if let Some(permit) = self.try_enter() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolBusy);
        }
        let timer = self.waits.start_timer();
        let waited =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        timer.observe_duration();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PoolBusy),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots in use right now.
    pub(crate) fn in_use(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Requests waiting for a slot right now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_briefly_then_refuses() {
        let gate = PoolGate::new(1, 1, Duration::from_millis(50), "test");
        let held = gate.enter().await.unwrap();
        assert_eq!(gate.in_use(), 1);
        let started = std::time::Instant::now();
        assert_eq!(gate.enter().await.unwrap_err(), PoolBusy);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // The wait is observed, refused or not.
        let waits = outpost_core::metrics::metrics()
            .pool_wait_seconds
            .with_label_values(&["test"]);
        assert!(waits.get_sample_count() >= 1);
        assert!(waits.get_sample_sum() >= 0.05);
        drop(held);
        assert!(gate.enter().await.is_ok());
    }

    #[tokio::test]
    async fn full_queue_refuses_at_once() {
        let gate = Arc::new(PoolGate::new(1, 1, Duration::from_secs(5), "test"));
        let held = gate.enter().await.unwrap();
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop) }
        });
        while gate.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(gate.enter().await.unwrap_err(), PoolBusy);
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        assert_eq!(queued.await.unwrap(), Ok(()));
    }
}
