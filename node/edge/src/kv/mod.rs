//! The edge KV on a node: the replica, and the replication driver around the `outpost-kv`
//! state machine that applies the origin's feed and forwards handlers' writes
//! (`outpost_runtime::kv_host` implements `wasi:keyvalue` on the client it hands out).

mod driver;
mod progress;
mod service;

pub use driver::{KvStats, LinkEvent};
pub use progress::KvProgress;
pub use service::NodeKv;
