//! Readiness: whether this node should be sent traffic right now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::kv::KvProgress;
use crate::server::LiveRoutes;

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Send traffic here: `200 ready`.
    Ready,
    /// Keep traffic away, for these reasons: `503 not ready: ...`.
    NotReady(Vec<String>),
}

impl Readiness {
    /// Whether this is [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        *self == Readiness::Ready
    }

    /// The decision itself, from plain facts.
    pub fn decide(
        draining: bool,
        routes: usize,
        kv_lag: Duration,
        kv_lag_versions: u64,
        kv_max_lag: Duration,
    ) -> Readiness {
        let mut reasons = Vec::new();
        if draining {
            reasons.push("draining".to_string());
        }
        if routes == 0 {
            reasons.push("no app is deployed on this node yet".to_string());
        }
        if kv_lag > kv_max_lag {
            reasons.push(format!(
                "the KV replica is {kv_lag_versions} versions behind, for {:.1} s (bound {:.1} s)",
                kv_lag.as_secs_f64(),
                kv_max_lag.as_secs_f64()
            ));
        }
        if reasons.is_empty() {
            Readiness::Ready
        } else {
            Readiness::NotReady(reasons)
        }
    }
}

/// What readiness is computed from.
pub struct Health {
    draining: AtomicBool,
    routes: Arc<LiveRoutes>,
    kv: Arc<KvProgress>,
    kv_max_lag: Duration,
}

impl Health {
    /// Readiness from `routes` and `kv`, the replica allowed to lag for up to `kv_max_lag`;
    /// not draining yet.
    pub fn new(routes: Arc<LiveRoutes>, kv: Arc<KvProgress>, kv_max_lag: Duration) -> Self {
        Health {
            draining: AtomicBool::new(false),
            routes,
            kv,
            kv_max_lag,
        }
    }

    /// From now on, not ready: the node is on its way out.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Readiness now, from the drain flag, the route table and the KV lag.
    pub fn readiness(&self) -> Readiness {
        Readiness::decide(
            self.draining.load(Ordering::Acquire),
            self.routes.load().len(),
            self.kv.lag(),
            self.kv.lag_versions(),
            self.kv_max_lag,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn ready_only_with_routes_not_draining_and_kv_caught_up() {
        assert!(Readiness::decide(false, 3, Duration::ZERO, 0, BOUND).is_ready());
        // Behind, but within the bound: still ready.
        assert!(Readiness::decide(false, 3, Duration::from_secs(9), 40, BOUND).is_ready());
        let Readiness::NotReady(reasons) =
            Readiness::decide(true, 0, Duration::from_secs(12), 40, BOUND)
        else {
            panic!("not ready expected");
        };
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0], "draining");
        assert!(reasons[2].contains("40 versions behind"), "{reasons:?}");
    }
}
