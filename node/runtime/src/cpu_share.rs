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
//! Many short requests can add up to the same: an app answering a flood of requests that each
//! compute for a few milliseconds. So each app's CPU use is also counted over a short
//! [`WINDOW`]; while an app has used more than its lanes' worth of the window, every one of its
//! requests, short or long, starts and runs its slices only on a lane.
//!
//! Shares matter only when there is someone to share with: while no other app's guests have
//! run in the last window or two, an app's requests take no lanes at all, so one busy app alone
//! on a node still has every core.
//!
//! A lane is held only while the guest runs: the metering future gives it back each time the
//! guest stops (to wait for I/O, for its next turn, or because it is done), so a guest waiting
//! on a fetch or an idle reused instance never holds one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU a request may use before its slices need a lane. Far above what a quick handler
/// (microseconds to a few milliseconds) takes, so only computing guests ever queue.
pub(crate) const LONG_RUNNING: Duration = Duration::from_millis(10);

/// The span over which an app's CPU use is compared with its share.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// The lanes one app's long runners take turns on, and the node's for every app.
#[derive(Clone)]
pub(crate) struct CpuLanes {
    app: Arc<Semaphore>,
    node: NodeLanes,
    /// Turns that had to wait (`outpost_guest_cpu_turns_waited_total{app}`).
    waited: IntCounter,
    usage: Arc<Usage>,
}

/// The node's lanes (every worker thread but one) and the CPU all apps' guests used lately.
#[derive(Clone)]
pub(crate) struct NodeLanes {
    lanes: Arc<Semaphore>,
    usage: Arc<Usage>,
}

impl NodeLanes {
    pub(crate) fn new(threads: usize) -> Self {
        let lanes = threads.saturating_sub(1).max(1);
        NodeLanes {
            lanes: Arc::new(Semaphore::new(lanes)),
            usage: Arc::new(Usage::new(lanes)),
        }
    }
}

/// CPU an app's guests used in the current window and the one before it.
struct Usage {
    /// The most CPU the app may use in a window before its requests need lanes: its lanes'
    /// worth of threads for the whole window.
    share: u64,
    window: AtomicU64,
    current: AtomicU64,
    previous: AtomicU64,
}

/// Which window `now` falls in, counted from the first use.
fn window_now() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    (START.elapsed().as_nanos() / WINDOW.as_nanos()) as u64
}

impl Usage {
    fn new(lanes: usize) -> Self {
        Usage {
            share: lanes as u64 * WINDOW.as_nanos() as u64,
            window: AtomicU64::new(window_now()),
            current: AtomicU64::new(0),
            previous: AtomicU64::new(0),
        }
    }

    /// Move to the window `now` if it has begun (whoever sees it first does it; a charge
    /// racing the move may land in either window, which is close enough for a share).
    fn roll(&self, now: u64) {
        let seen = self.window.load(Ordering::Relaxed);
        if now != seen
            && self
                .window
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let last = self.current.swap(0, Ordering::Relaxed);
            // A window with no charge in between leaves nothing to remember.
            let last = if now == seen + 1 { last } else { 0 };
            self.previous.store(last, Ordering::Relaxed);
        }
    }

    fn charge(&self, nanos: u64) {
        self.roll(window_now());
        self.current.fetch_add(nanos, Ordering::Relaxed);
    }

    /// CPU used in the current and the previous window.
    fn recent(&self) -> u64 {
        self.roll(window_now());
        self.current.load(Ordering::Relaxed) + self.previous.load(Ordering::Relaxed)
    }

    fn over_share(&self) -> bool {
        self.roll(window_now());
        let used = self
            .current
            .load(Ordering::Relaxed)
            .max(self.previous.load(Ordering::Relaxed));
        used > self.share
    }
}

/// The right to run one slice of guest code past [`LONG_RUNNING`].
pub(crate) struct Lane {
    _app: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
}

/// How many of `threads` one app's long runners may occupy at once: `percent` of them,
/// rounded up, at least one.
pub(crate) fn app_lane_count(threads: usize, percent: u32) -> usize {
    (threads * percent as usize).div_ceil(100).max(1)
}

impl CpuLanes {
    pub(crate) fn new(app_lanes: usize, node: NodeLanes, waited: IntCounter) -> Self {
        CpuLanes {
            app: Arc::new(Semaphore::new(app_lanes)),
            node,
            waited,
            usage: Arc::new(Usage::new(app_lanes)),
        }
    }

    /// Count CPU the app's guests used.
    pub(crate) fn charge(&self, nanos: u64) {
        self.usage.charge(nanos);
        self.node.usage.charge(nanos);
    }

    /// Whether a request of this app must run on a lane: it is a long runner (`long_running`)
    /// or its app has used more than its share lately, and other apps' guests have run lately.
    pub(crate) fn must_take_turns(&self, long_running: bool) -> bool {
        (long_running || self.usage.over_share()) && self.node.usage.recent() > self.usage.recent()
    }

    /// Wait for a lane: the app's first, then the node's (always in this order, and both
    /// queues are first come, first served, so long runners take turns and none starves).
    pub(crate) async fn take(&self) -> Lane {
        if let (Ok(app), Ok(node)) = (
            self.app.clone().try_acquire_owned(),
            self.node.lanes.clone().try_acquire_owned(),
        ) {
            return Lane {
                _app: app,
                _node: node,
            };
        }
        self.waited.inc();
        let app = self.app.clone().acquire_owned().await;
        let node = self.node.lanes.clone().acquire_owned().await;
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
        let lanes = |threads| NodeLanes::new(threads).lanes.available_permits();
        assert_eq!(lanes(1), 1);
        assert_eq!(lanes(2), 1);
        assert_eq!(lanes(8), 7);
    }

    #[test]
    fn an_app_gets_its_percent_of_the_threads_rounded_up() {
        assert_eq!(app_lane_count(2, 50), 1);
        assert_eq!(app_lane_count(2, 1), 1);
        assert_eq!(app_lane_count(4, 50), 2);
        assert_eq!(app_lane_count(3, 50), 2);
        assert_eq!(app_lane_count(8, 100), 8);
    }

    #[test]
    fn an_app_past_its_share_of_a_window_is_over_share_until_it_eases_off() {
        let usage = Usage::new(1);
        assert!(!usage.over_share());
        usage.charge(WINDOW.as_nanos() as u64 / 2);
        assert!(!usage.over_share());
        usage.charge(WINDOW.as_nanos() as u64);
        assert!(usage.over_share());
        // Two windows later with nothing used, it is within its share again.
        usage.roll(usage.window.load(Ordering::Relaxed) + 2);
        assert!(!usage.over_share());
    }

    #[test]
    fn an_app_alone_on_the_node_never_takes_turns() {
        let counter = || IntCounter::new("waited", "turns waited").unwrap();
        let node = NodeLanes::new(2);
        let busy = CpuLanes::new(1, node.clone(), counter());
        let other = CpuLanes::new(1, node, counter());
        busy.charge(10 * WINDOW.as_nanos() as u64);
        // Over its share and long-running, but nobody else ran: no turns.
        assert!(!busy.must_take_turns(true));
        // Another app's guest ran: now the busy app takes turns, and the other does not.
        other.charge(1_000);
        assert!(busy.must_take_turns(false));
        assert!(!other.must_take_turns(false));
    }

    #[tokio::test]
    async fn long_runners_of_one_app_take_turns_and_leave_the_node_lanes_to_others() {
        let node = NodeLanes::new(4); // 3 lanes
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
        assert_eq!(node.lanes.available_permits(), 1);
        assert_eq!(spinner.waited.get(), 1);
        assert_eq!(other.waited.get(), 0);
    }
}
