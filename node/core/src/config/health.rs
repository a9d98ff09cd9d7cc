//! `[health]` in node.toml: readiness, the announcer hooks and the drain delay.

use std::time::Duration;

/// `[health]` in node.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Run (with `sh -c`) when the node becomes ready, e.g. to announce its anycast route.
    pub on_ready: Option<String>,
    /// Run when it stops being ready (draining, or fallen behind), e.g. to withdraw the route.
    pub on_drain: Option<String>,
    /// On shutdown, how long to keep serving after readiness turned false and `on_drain`
    /// returned, so routers and load balancers move traffic away before listeners close.
    pub drain_delay: Duration,
    /// Not ready while the KV replica has been behind for longer than this.
    pub kv_max_lag: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            on_ready: None,
            on_drain: None,
            drain_delay: Duration::ZERO,
            kv_max_lag: Duration::from_secs(10),
        }
    }
}
