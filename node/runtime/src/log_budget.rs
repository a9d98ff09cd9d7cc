//! How much guests may log: token buckets of lines and bytes, one pair per app and one pair for
//! all guests on the node. A line is written only if both pairs can pay for it, so one app's
//! flood runs out its own budget first, and all of them together cannot crowd the node's own
//! lines out of the log. What is dropped is counted (`outpost_guest_log_dropped_total{app}`) and
//! said once per [`REPORT_EVERY`] per app, in a line that is not itself budgeted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use outpost_core::config::GuestLogLimits;

/// Each bucket holds this many seconds of its rate: a short burst passes whole.
const BURST_SECONDS: f64 = 10.0;
/// How often, at most, an app's dropped lines are reported in the log.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Tokens refilled at a steady rate up to a capacity.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
}

impl Bucket {
    fn new(per_second: f64) -> Self {
        let capacity = per_second * BURST_SECONDS;
        Bucket {
            rate: per_second,
            capacity,
            tokens: capacity,
        }
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.capacity);
    }
}

/// A pair of buckets: lines and bytes.
#[derive(Debug, Clone)]
struct Allowance {
    lines: Bucket,
    bytes: Bucket,
    last: Instant,
}

impl Allowance {
    fn new(lines_per_second: u32, bytes_per_second: u64, now: Instant) -> Self {
        Allowance {
            lines: Bucket::new(lines_per_second.into()),
            bytes: Bucket::new(bytes_per_second as f64),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.lines.refill(elapsed);
        self.bytes.refill(elapsed);
    }

    fn can_pay(&self, bytes: usize) -> bool {
        self.lines.tokens >= 1.0 && self.bytes.tokens >= bytes as f64
    }

    fn pay(&mut self, bytes: usize) {
        self.lines.tokens -= 1.0;
        self.bytes.tokens -= bytes as f64;
    }
}

/// One app's allowance and what it has dropped since its last report.
#[derive(Debug)]
struct AppAccount {
    allowance: Allowance,
    dropped_unreported: u64,
    last_report: Instant,
}

/// The verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Write,
    /// Dropped; `report` holds the dropped count to say now, if a report is due.
    Drop {
        report: Option<u64>,
    },
}

/// Decides one line of `bytes` at `now` against an app's account and the node's allowance.
fn admit(app: &mut AppAccount, node: &mut Allowance, bytes: usize, now: Instant) -> Admission {
    app.allowance.refill(now);
    node.refill(now);
    if app.allowance.can_pay(bytes) && node.can_pay(bytes) {
        app.allowance.pay(bytes);
        node.pay(bytes);
        return Admission::Write;
    }
    app.dropped_unreported += 1;
    let report = (now.saturating_duration_since(app.last_report) >= REPORT_EVERY).then(|| {
        app.last_report = now;
        std::mem::take(&mut app.dropped_unreported)
    });
    Admission::Drop { report }
}

/// The node's allowance for all guests, shared by every app's [`LogBudget`].
pub(crate) struct NodeLogBudget {
    limits: GuestLogLimits,
    allowance: Arc<Mutex<Allowance>>,
}

impl NodeLogBudget {
    pub(crate) fn new(limits: GuestLogLimits) -> Self {
        NodeLogBudget {
            allowance: Arc::new(Mutex::new(Allowance::new(
                limits.node_lines_per_second,
                limits.node_bytes_per_second,
                Instant::now(),
            ))),
            limits,
        }
    }

    /// A budget for one app (shared by all its deployments and instances).
    pub(crate) fn for_app(&self, dropped: IntCounter) -> LogBudget {
        let now = Instant::now();
        LogBudget(Arc::new(AppBudget {
            account: Mutex::new(AppAccount {
                allowance: Allowance::new(
                    self.limits.lines_per_second,
                    self.limits.bytes_per_second,
                    now,
                ),
                dropped_unreported: 0,
                // The first drop is reported at once.
                last_report: now.checked_sub(REPORT_EVERY).unwrap_or(now),
            }),
            node: self.allowance.clone(),
            dropped,
        }))
    }
}

struct AppBudget {
    account: Mutex<AppAccount>,
    node: Arc<Mutex<Allowance>>,
    dropped: IntCounter,
}

/// One app's log budget; clones share it.
#[derive(Clone)]
pub(crate) struct LogBudget(Arc<AppBudget>);

impl LogBudget {
    /// Whether a line of `bytes` may be written now; a dropped line is counted.
    pub(crate) fn admit(&self, bytes: usize) -> Admission {
        let budget = &*self.0;
        let mut account = budget.account.lock().unwrap_or_else(|p| p.into_inner());
        let mut node = budget.node.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = admit(&mut account, &mut node, bytes, Instant::now());
        if let Admission::Drop { .. } = verdict {
            budget.dropped.inc();
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(lines: u32, bytes: u64, now: Instant) -> AppAccount {
        AppAccount {
            allowance: Allowance::new(lines, bytes, now),
            dropped_unreported: 0,
            last_report: now - REPORT_EVERY,
        }
    }

    #[test]
    fn an_app_gets_its_burst_then_its_rate_and_its_drops_are_reported_now_and_then() {
        let t0 = Instant::now();
        let mut app = account(10, 1 << 20, t0);
        let mut node = Allowance::new(1000, 1 << 30, t0);
        let written = (0..150)
            .filter(|_| admit(&mut app, &mut node, 10, t0) == Admission::Write)
            .count();
        assert_eq!(written, 100, "ten seconds' worth at once");

        // The first drop was reported at once (with itself), the rest wait for the next report.
        assert_eq!(app.dropped_unreported, 49);
        assert_eq!(
            admit(&mut app, &mut node, 10, t0 + Duration::from_millis(50)),
            Admission::Drop { report: None }
        );
        // A second later, ten more lines' worth.
        let t1 = t0 + Duration::from_secs(1);
        let written = (0..20)
            .filter(|_| admit(&mut app, &mut node, 10, t1) == Admission::Write)
            .count();
        assert!((9..=11).contains(&written), "{written}");
        // Ten seconds after the first report, a line no budget can pay for reports them all.
        let later = t0 + REPORT_EVERY;
        assert!(matches!(
            admit(&mut app, &mut node, 100 << 20, later),
            Admission::Drop { report: Some(n) } if n > 50
        ));
    }

    #[test]
    fn bytes_bound_an_app_of_few_long_lines() {
        let t0 = Instant::now();
        let mut app = account(1000, 64 << 10, t0);
        let mut node = Allowance::new(1000, 1 << 30, t0);
        let written = (0..100)
            .filter(|_| admit(&mut app, &mut node, 16 << 10, t0) == Admission::Write)
            .count();
        assert_eq!(written, 40, "640 KiB of 16 KiB lines");
    }

    #[test]
    fn the_node_allowance_caps_all_apps_together_and_keeps_a_quiet_app_writing() {
        let t0 = Instant::now();
        let mut loud = account(100, 1 << 30, t0);
        let mut quiet = account(100, 1 << 30, t0);
        let mut node = Allowance::new(150, 1 << 30, t0);
        for _ in 0..2000 {
            admit(&mut loud, &mut node, 10, t0);
        }
        assert_eq!(
            node.lines.tokens as u64, 500,
            "the loud app took only its own 1000"
        );
        let written = (0..100)
            .filter(|_| admit(&mut quiet, &mut node, 10, t0) == Admission::Write)
            .count();
        assert_eq!(written, 100);
    }
}
