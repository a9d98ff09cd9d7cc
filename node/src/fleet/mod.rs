//! The node side of fleet deployment: content-addressed components, the desired state the
//! origin publishes, and applying it (fetch, verify, compile, swap routes) without ever
//! replacing what serves with something that failed.

mod blobs;
mod deployer;
mod reconcile;

pub use blobs::{BlobStore, BlobWriter, sha256_hex};
pub use deployer::{BlobSource, Deployer, LocalOnly};
pub use outpost_core::wire::is_sha256_hex;
pub use outpost_core::wire::{AppStatus, DesiredState, NodeReport, Release};
pub use reconcile::{Plan, plan};
