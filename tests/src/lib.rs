//! The end-to-end test harness: builds the real `outpost` binary and the guest components,
//! runs the binary as a child process on loopback ports, and talks to it over real TLS.
//!
//! Everything here is a real part: processes, sockets, certificates made with rcgen, a hyper
//! origin server. Nothing is mocked.

pub mod certs;
pub mod client;
pub mod fleet;
pub mod guests;
pub mod kv;
pub mod netns;
pub mod node;
pub mod origin;
pub mod process;
pub mod udp_proxy;

pub use certs::TestCa;
pub use client::{Client, Proto, Reply};
pub use fleet::Fleet;
pub use guests::{built_app, built_variant, wasm};
pub use node::NodeDir;
pub use origin::Origin;
pub use process::{Exited, Outpost, TempDir};
