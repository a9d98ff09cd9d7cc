//! CPU shares: how many worker threads computing guests may occupy at once.
//!
//! The node has one worker thread per core. Yielding every few milliseconds (see `cpu.rs`)
//! keeps a computing guest from holding a thread, but four guests spinning on a two-core node
//! still make every quick request wait behind their slices. So a request whose guest has run
//! past [`LONG_RUNNING`] of CPU is a long runner, and from then on each of its slices starts
//! only once it holds a [`Lane`]: one of its app's lanes (`[pool] cpu_share_percent` of the
//! threads) and one of the node's (every thread but one). Quick requests never wait for a lane,
//! so however many guests compute, one thread is left for them, and one app's long runners take
//! turns among themselves rather than with every other app's requests.
//!
//! A lane is held only while the guest runs: the metering future gives it back each time the
//! guest stops (to wait for I/O, for its next turn, or because it is done), so a guest waiting
//! on a fetch or an idle reused instance never holds one.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU a request may use before its slices need a lane. Far above what a quick handler
/// (microseconds to a few milliseconds) takes, so only computing guests ever queue.
pub const LONG_RUNNING: Duration = Duration::from_millis(10);

/// The lanes one app's long runners take turns on, and the node's for every app.
#[derive(Clone)]
pub struct CpuLanes {
    app: Arc<Semaphore>,
    node: Arc<Semaphore>,
    /// Turns that had to wait (`outpost_guest_cpu_turns_waited_total{app}`).
    waited: IntCounter,
}

/// The right to run one slice of guest code past [`LONG_RUNNING`].
pub struct Lane {
    _app: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
}

/// Lanes for long runners: every worker thread but one, so one always serves quick requests
/// (on a one-core machine, the one thread is shared).
pub fn node_lanes(threads: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(threads.saturating_sub(1).max(1)))
}

/// How many of `threads` one app's long runners may occupy at once: `percent` of them,
/// rounded up, at least one.
pub fn app_lane_count(threads: usize, percent: u32) -> usize {
    (threads * percent as usize).div_ceil(100).max(1)
}

impl CpuLanes {
    pub fn new(app_lanes: usize, node: Arc<Semaphore>, waited: IntCounter) -> Self {
        CpuLanes {
            app: Arc::new(Semaphore::new(app_lanes)),
            node,
            waited,
        }
    }

    /// Wait for a lane: the app's first, then the node's (always in this order, and both
    /// queues are first come, first served, so long runners take turns and none starves).
    pub async fn take(&self) -> Lane {
        if let (Ok(app), Ok(node)) = (
            self.app.clone().try_acquire_owned(),
            self.node.clone().try_acquire_owned(),
        ) {
            return Lane {
                _app: app,
                _node: node,
            };
        }
        self.waited.inc();
        let app = self.app.clone().acquire_owned().await;
        let node = self.node.clone().acquire_owned().await;
        match (app, node) {
            (Ok(app), Ok(node)) => Lane {
                _app: app,
                _node: node,
            },
            // The semaphores are never closed.
            _ => unreachable!("CPU lanes are never closed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_is_kept_for_quick_requests() {
        assert_eq!(node_lanes(1).available_permits(), 1);
        assert_eq!(node_lanes(2).available_permits(), 1);
        assert_eq!(node_lanes(8).available_permits(), 7);
    }

    #[test]
    fn an_app_gets_its_percent_of_the_threads_rounded_up() {
        assert_eq!(app_lane_count(2, 50), 1);
        assert_eq!(app_lane_count(2, 1), 1);
        assert_eq!(app_lane_count(4, 50), 2);
        assert_eq!(app_lane_count(3, 50), 2);
        assert_eq!(app_lane_count(8, 100), 8);
    }

    #[tokio::test]
    async fn long_runners_of_one_app_take_turns_and_leave_the_node_lanes_to_others() {
        let node = node_lanes(4); // 3 lanes
        let counter = || IntCounter::new("waited", "turns waited").unwrap();
        let spinner = CpuLanes::new(1, node.clone(), counter());
        let other = CpuLanes::new(1, node.clone(), counter());
        let first = spinner.take().await;
        // The spinner's second long runner waits for its first...
        let second = tokio::spawn({
            let spinner = spinner.clone();
            async move { spinner.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        // ...while another app still gets a lane.
        let _theirs = other.take().await;
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the lane came free")
            .unwrap();
        assert_eq!(node.available_permits(), 1);
        assert_eq!(spinner.waited.get(), 1);
        assert_eq!(other.waited.get(), 0);
    }
}
