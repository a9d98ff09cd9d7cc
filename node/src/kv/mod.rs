//! The edge KV on a node: the replica, the replication driver around the `outpost-kv` state
//! machine, and the client handlers' host calls go through (`runtime::kv_host` implements
//! `wasi:keyvalue` on it).

mod client;
mod driver;
pub use outpost_core::wire::kv_frames as frames;
mod progress;
mod service;

pub use client::{Command, KvClient};
pub use driver::{KvStats, LinkEvent};
pub use progress::KvProgress;
pub use service::NodeKv;

/// Ids of this run's writes start here. The origin recognises a retried write by its writer and
/// id, so each run must use ids no earlier run used: the clock in microseconds, scaled so a run
/// would need over a thousand writes per microsecond to reach the next run's range.
pub fn write_id_base() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    micros.saturating_mul(1024)
}
