//! Per-request CPU time: time spent running the guest, not time waiting on I/O.
//!
//! With async wasmtime, guest code runs inside `Future::poll` of the call; while the guest waits
//! on a fetch or on the client's body the future is pending and no time is charged. So
//! [`Metered`] adds up the time spent inside `poll`, and the epoch deadline callback
//! ([`CpuClock::on_deadline`]) compares that total with the budget: over it, the guest traps
//! with [`CpuLimitExceeded`]; under it, the guest gives its worker thread back (a tokio yield,
//! so every other task on that worker runs first) and the deadline is set again, at most
//! [`YIELD_SLICE`] of CPU ahead. A guest that computes for seconds thus runs in slices of a
//! few milliseconds, still charged for every one, and never holds a worker thread. Past
//! [`LONG_RUNNING`], each slice also waits for a lane of the app's CPU share (`cpu_share.rs`),
//! which [`Metered`] gives back whenever the guest stops running.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

use super::cpu_share::{CpuLanes, LONG_RUNNING, Lane};
use super::engine::EPOCH_TICK;

/// The most CPU a guest runs for before it yields its worker thread.
pub(crate) const YIELD_SLICE: Duration = Duration::from_millis(2);

/// The trap raised when a request uses up its CPU budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimitExceeded {
    /// The CPU time the request was allowed.
    pub budget: Duration,
}

impl fmt::Display for CpuLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler exceeded its CPU time limit of {} ms",
            self.budget.as_millis()
        )
    }
}

impl std::error::Error for CpuLimitExceeded {}

/// CPU time used by one request, shared by the metering future and the epoch callback (which
/// run on the same thread, one after the other, so relaxed atomics suffice).
pub(crate) struct CpuClock {
    budget: Duration,
    origin: Instant,
    /// Nanoseconds charged by finished polls.
    used: AtomicU64,
    /// When the current poll began, in nanoseconds since `origin`.
    slice_start: AtomicU64,
    /// The app's CPU share, if long runners must take turns (they must on a serving node).
    lanes: Option<CpuLanes>,
    /// The lane the guest runs its current slice on, once past [`LONG_RUNNING`].
    lane: Mutex<Option<Lane>>,
}

impl CpuClock {
    pub(crate) fn new(budget: Duration, lanes: Option<CpuLanes>) -> Arc<Self> {
        Arc::new(CpuClock {
            budget,
            origin: Instant::now(),
            used: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            lanes,
            lane: Mutex::new(None),
        })
    }

    /// CPU time used so far, counting the poll in progress if `polling`.
    pub(crate) fn used(&self, polling: bool) -> Duration {
        let mut nanos = self.used.load(Ordering::Relaxed);
        if polling {
            nanos += self
                .now()
                .saturating_sub(self.slice_start.load(Ordering::Relaxed));
        }
        Duration::from_nanos(nanos)
    }

    /// The epoch deadline to set before the first call.
    pub(crate) fn initial_ticks(&self) -> u64 {
        ticks_for(self.budget.min(YIELD_SLICE))
    }

    /// The epoch deadline callback: trap past the budget, else yield the worker and run on
    /// for the next slice (a long runner once it has a lane).
    pub(crate) fn on_deadline(self: &Arc<Self>) -> wasmtime::Result<UpdateDeadline> {
        let used = self.used(true);
        if used >= self.budget {
            return Err(wasmtime::Error::new(CpuLimitExceeded {
                budget: self.budget,
            }));
        }
        let next = ticks_for((self.budget - used).min(YIELD_SLICE));
        let turn = match &self.lanes {
            Some(lanes) if lanes.must_take_turns(used >= LONG_RUNNING) => {
                let (lanes, clock) = (lanes.clone(), self.clone());
                Box::pin(async move {
                    // Yielding returns from the poll, which gives back the lane of the
                    // slice just run; then this request queues for its next turn.
                    tokio::task::yield_now().await;
                    let lane = lanes.take().await;
                    *clock.lane_slot() = Some(lane);
                }) as Pin<Box<dyn Future<Output = ()> + Send>>
            }
            _ => Box::pin(tokio::task::yield_now()),
        };
        Ok(UpdateDeadline::YieldCustom(next, turn))
    }

    /// Before the guest starts: if its app has used more than its CPU share lately, wait for
    /// a lane, as a long runner would at each slice.
    pub(crate) async fn wait_turn_if_over_share(&self) {
        if let Some(lanes) = &self.lanes
            && lanes.must_take_turns(false)
        {
            let lane = lanes.take().await;
            *self.lane_slot() = Some(lane);
        }
    }

    fn lane_slot(&self) -> std::sync::MutexGuard<'_, Option<Lane>> {
        self.lane.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Ticks until `remaining` has passed: at least one, rounded up.
fn ticks_for(remaining: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (remaining.as_nanos().div_ceil(tick) as u64).max(1)
}

/// A future whose time inside `poll` is charged to a [`CpuClock`].
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    clock: Arc<CpuClock>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, clock: Arc<CpuClock>) -> Self {
        Metered {
            inner: Box::pin(inner),
            clock,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = self.clock.now();
        self.clock.slice_start.store(start, Ordering::Relaxed);
        let result = self.inner.as_mut().poll(cx);
        let spent = self.clock.now().saturating_sub(start);
        self.clock.used.fetch_add(spent, Ordering::Relaxed);
        // The guest stopped running: whatever it waits for now, it waits without a lane.
        if let Some(lanes) = &self.clock.lanes {
            lanes.charge(spent);
            self.clock.lane_slot().take();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_never_reach_zero() {
        assert_eq!(ticks_for(Duration::ZERO), 1);
        assert_eq!(ticks_for(EPOCH_TICK), 1);
        assert_eq!(ticks_for(EPOCH_TICK + Duration::from_nanos(1)), 2);
        assert_eq!(ticks_for(Duration::from_millis(50)), 50);
    }

    #[test]
    fn deadline_yields_in_slices_while_budget_remains_then_traps() {
        let clock = CpuClock::new(Duration::from_millis(30), None);
        assert_eq!(clock.initial_ticks(), ticks_for(YIELD_SLICE));
        clock.used.store(10_000_000, Ordering::Relaxed);
        clock.slice_start.store(clock.now(), Ordering::Relaxed);
        match clock.on_deadline().unwrap() {
            UpdateDeadline::YieldCustom(ticks, _) => {
                assert!((1..=ticks_for(YIELD_SLICE)).contains(&ticks), "{ticks}")
            }
            _ => panic!("expected a yield"),
        }
        clock.used.store(29_500_000, Ordering::Relaxed);
        match clock.on_deadline().unwrap() {
            UpdateDeadline::YieldCustom(ticks, _) => assert_eq!(ticks, 1),
            _ => panic!("expected a yield"),
        }
        clock.used.store(31_000_000, Ordering::Relaxed);
        let Err(err) = clock.on_deadline() else {
            panic!("expected the CPU limit to trap")
        };
        assert_eq!(
            err.downcast_ref::<CpuLimitExceeded>(),
            Some(&CpuLimitExceeded {
                budget: Duration::from_millis(30)
            })
        );
    }

    #[test]
    fn waiting_is_not_charged() {
        let clock = CpuClock::new(Duration::from_secs(1), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(Metered::new(
            async { tokio::time::sleep(Duration::from_millis(50)).await },
            clock.clone(),
        ));
        assert!(
            clock.used(false) < Duration::from_millis(20),
            "{:?}",
            clock.used(false)
        );
    }
}
