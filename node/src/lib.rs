//! `outpost-node`: the `outpost` binary's library: the CLI, and the wiring that starts an
//! edge node, an origin, or both in one process for `outpost dev`.
//!
//! The parts live in their own crates (see ARCHITECTURE.md): `outpost-core` (config, wire,
//! files), `outpost-net` (serve loop, TLS), `outpost-runtime` (the Wasm runtime and host
//! boundary), `outpost-edge` (a node), `outpost-origin` (the origin). This crate only puts them
//! together.

pub mod cli;
pub mod dev_cert;
pub mod embedded_kv;
pub mod launch;
pub mod local_admin;
pub mod service_manager;
