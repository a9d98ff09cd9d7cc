//! Memory limits, as a wasmtime `ResourceLimiter` that traps with a typed error so the node can
//! tell an out-of-memory apart from any other trap. Three bounds apply to every growth: the
//! instance's own (`limits.memory_mb`), the app's share of the node's memory budget (all its
//! live instances together), and the node's budget (all instances together), so one app's
//! instances cannot take the machine's memory however many of them run at once.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::ResourceLimiter;

/// Which bound a growth ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryScope {
    Instance,
    App,
    Node,
}

/// The trap raised when a guest asks for more linear memory than it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimitExceeded {
    /// Which bound the growth ran into.
    pub scope: MemoryScope,
    /// That bound, in bytes.
    pub limit: u64,
    /// Bytes asked for: the new memory size for the instance bound, the growth for the others.
    pub requested: u64,
}

impl fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limit, requested) = (self.limit >> 20, self.requested.div_ceil(1 << 20));
        match self.scope {
            MemoryScope::Instance => write!(
                f,
                "handler exceeded its memory limit of {limit} MiB (asked for {requested} MiB)"
            ),
            MemoryScope::App => write!(
                f,
                "the app's instances together hold its share of this node's memory \
                 ({limit} MiB, [pool] memory_budget_mb x app_share_percent); \
                 growing by {requested} MiB more was refused"
            ),
            MemoryScope::Node => write!(
                f,
                "this node's memory budget for instances ({limit} MiB, [pool] memory_budget_mb) \
                 is used up; growing by {requested} MiB more was refused"
            ),
        }
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// Most table elements an instance may grow to: generous for real code, a cap for runaway code.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Bytes of linear memory held by live instances, against a cap.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    cap: u64,
    held: AtomicU64,
}

impl MemoryBudget {
    pub(crate) fn new(cap: u64) -> Arc<Self> {
        Arc::new(MemoryBudget {
            cap,
            held: AtomicU64::new(0),
        })
    }

    fn reserve(&self, bytes: u64) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.cap {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// One instance's limiter: its own limit, and what it holds of its app's and the node's budgets
/// (given back when the instance's store is dropped).
#[derive(Debug)]
pub(crate) struct GuestLimits {
    memory_bytes: u64,
    app: Arc<MemoryBudget>,
    node: Arc<MemoryBudget>,
    held: u64,
}

impl GuestLimits {
    pub(crate) fn new(memory_bytes: u64, app: Arc<MemoryBudget>, node: Arc<MemoryBudget>) -> Self {
        GuestLimits {
            memory_bytes,
            app,
            node,
            held: 0,
        }
    }
}

impl Drop for GuestLimits {
    fn drop(&mut self) {
        self.app.release(self.held);
        self.node.release(self.held);
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let exceeded = |scope, limit, requested| {
            Err(wasmtime::Error::new(MemoryLimitExceeded {
                scope,
                limit,
                requested,
            }))
        };
        if desired as u64 > self.memory_bytes {
            return exceeded(MemoryScope::Instance, self.memory_bytes, desired as u64);
        }
        let more = desired.saturating_sub(current) as u64;
        if !self.app.reserve(more) {
            return exceeded(MemoryScope::App, self.app.cap, more);
        }
        if !self.node.reserve(more) {
            self.app.release(more);
            return exceeded(MemoryScope::Node, self.node.cap, more);
        }
        self.held += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_a_typed_error() {
        let (app, node) = (MemoryBudget::new(1 << 30), MemoryBudget::new(1 << 30));
        let mut limits = GuestLimits::new(1 << 20, app, node);
        assert!(limits.memory_growing(0, 1 << 20, None).unwrap());
        let err = limits.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let exceeded = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(exceeded.requested, 2 << 20);
        assert!(err.to_string().contains("memory limit of 1 MiB"));
        assert!(
            !limits
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }

    #[test]
    fn instances_together_stay_within_the_apps_share_and_the_nodes_budget() {
        let node = MemoryBudget::new(100 << 20);
        let (a, b) = (MemoryBudget::new(60 << 20), MemoryBudget::new(60 << 20));
        let mut a1 = GuestLimits::new(64 << 20, a.clone(), node.clone());
        let mut a2 = GuestLimits::new(64 << 20, a.clone(), node.clone());
        assert!(a1.memory_growing(0, 40 << 20, None).unwrap());
        let refused = a2.memory_growing(0, 30 << 20, None).unwrap_err();
        let refused = refused.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(refused.scope, MemoryScope::App);
        assert!(a2.memory_growing(0, 20 << 20, None).unwrap());

        let mut b1 = GuestLimits::new(64 << 20, b.clone(), node.clone());
        let refused = b1.memory_growing(0, 50 << 20, None).unwrap_err();
        let refused = refused.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(refused.scope, MemoryScope::Node);
        assert_eq!(b.held(), 0, "a refused growth holds nothing");
        assert!(b1.memory_growing(0, 40 << 20, None).unwrap());

        // Dropped instances give back what they held.
        drop(a1);
        drop(a2);
        assert_eq!(a.held(), 0);
        assert_eq!(node.held(), 40 << 20);
        drop(b1);
        assert_eq!(node.held(), 0);
    }
}
