//! What a connection is doing, for its deadlines: how many requests are in flight (a request
//! counts until its response body is done) and when it last started or finished one. A
//! connection with nothing in flight is idle, whatever bytes it exchanges: HTTP/2 pings and
//! window updates do not keep a connection that never asks for anything alive.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// One connection's requests, shared by its service and its watchdog.
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `started` of the last request start or finish.
    last_ms: AtomicU64,
}

/// What the watchdog should do about a connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// It never sent a request within the first-request deadline.
    NoFirstRequest,
    /// It has had nothing in flight for longer than the idle deadline.
    Idle,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A request arrived; it is in flight until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.last_ms.store(self.now_ms(), Ordering::Release);
        InFlight {
            activity: self.clone(),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// Whether to keep the connection, given its deadlines.
    pub(crate) fn verdict(&self, first_request: Duration, idle: Duration) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Keep;
        }
        let quiet = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Acquire)),
        );
        match self.requests() {
            0 if quiet >= first_request => Verdict::NoFirstRequest,
            0 => Verdict::Keep,
            _ if quiet >= idle => Verdict::Idle,
            _ => Verdict::Keep,
        }
    }

    /// When to look again: when the deadline that applies now would pass, but no later than
    /// the shorter of the two (a request that starts and ends meanwhile moves the deadline
    /// without waking the watchdog).
    pub(crate) fn next_check(&self, first_request: Duration, idle: Duration) -> Duration {
        let limit = if self.requests() == 0 {
            first_request
        } else {
            idle
        };
        let quiet = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Acquire)),
        );
        limit
            .saturating_sub(quiet)
            .min(first_request.min(idle))
            .max(Duration::from_millis(50))
    }
}

/// A request in flight; dropping it (when its response body is done or dropped) ends it.
pub(crate) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity.last_ms.store(activity.now_ms(), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is done.
pub(crate) struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_only_with_nothing_in_flight_past_the_deadline() {
        let activity = Activity::new();
        let (first, idle) = (Duration::from_millis(30), Duration::from_millis(60));
        assert_eq!(activity.verdict(first, idle), Verdict::Keep);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(activity.verdict(first, idle), Verdict::NoFirstRequest);

        let request = activity.begin();
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(activity.verdict(first, idle), Verdict::Keep, "in flight");
        drop(request);
        assert_eq!(
            activity.verdict(first, idle),
            Verdict::Keep,
            "just finished"
        );
        assert!(activity.next_check(first, idle) <= idle);
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(activity.verdict(first, idle), Verdict::Idle);
    }
}
