//! `outpost-core`: what every Outpost program shares, and nothing that runs.
//!
//! * [`config`]: the configuration files (an app's `outpost.toml`, `node.toml`, `origin.toml`),
//!   parsed with unknown fields refused and validated into plain structs;
//! * [`wire`]: the cluster link's vocabulary, both ends of it: the stream-opening and control
//!   frames, the desired state and node reports, tail records, and the KV's stream framing;
//! * [`files`]: private data directories and atomic, durable file writes;
//! * [`backoff`]: how every link waits before reconnecting;
//! * [`clock`]: the wall clock, in the units timestamps are written in;
//! * [`blobs`]: the content-addressed store of component files;
//! * [`metrics`]: the process's Prometheus registry, shared by every part that counts;
//! * [`sealed`]: secrets sealed at rest (ChaCha20-Poly1305), and the keys that seal them;
//! * [`cron`]: apps' cron triggers, their schedules and the ticks they name.
//!
//! It may not depend on the Wasm runtime, on HTTP serving or on any other Outpost crate but
//! `outpost-router` and `outpost-kv`: the edge, the origin and the CLI build on it, and the
//! fuzz targets link it alone.

pub mod api;
pub mod backoff;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod cron;
pub mod files;
pub mod metrics;
pub mod sealed;
#[doc(hidden)]
pub mod test_support;
pub mod wire;
