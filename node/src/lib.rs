//! `outpost-node`: the `outpost` binary's library. It owns the edge node (configuration, TLS,
//! HTTP serving, the Wasm runtime and its host bindings) and the commands around it.
//!
//! The request path, kept short on purpose: accept (tokio) -> TLS (rustls, certificate by SNI,
//! ALPN h2/http1.1) -> hyper -> route lookup ([`outpost_router`]) -> a fresh instance from the
//! pool, pre-linked at deploy time -> the handler under CPU, memory and time limits -> the
//! response streamed back. Nothing on it parses config, compiles Wasm or touches disk.

pub mod admin;
pub mod cli;
pub mod cluster;
pub use outpost_core::config;
pub mod dev_cert;
pub mod embedded_kv;
pub use outpost_core::files;
pub mod fleet;
pub mod kv;
pub mod launch;
pub mod memory;
pub mod metrics;
pub mod origin;
pub mod pki;
pub mod request_id;
pub mod runtime;
pub mod server;
pub mod tail;
#[cfg(test)]
use outpost_core::test_support;
