//! The node side of fleet deployment: content-addressed components, the desired state the
//! origin publishes, and applying it (fetch, verify, compile, swap routes) without ever
//! replacing what serves with something that failed.

mod blobs;
mod deployer;
mod reconcile;
mod release;

pub use blobs::{BlobStore, BlobWriter, is_sha256_hex, sha256_hex};
pub use deployer::{BlobSource, Deployer, LocalOnly};
pub use reconcile::{Plan, plan};
pub use release::{AppStatus, DesiredState, NodeReport, Release};
