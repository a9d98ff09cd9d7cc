//! The node side of fleet deployment: applying the desired state the origin publishes (fetch,
//! verify, compile, swap routes) without ever replacing what serves with something that failed.

mod deployer;
mod reconcile;

pub use deployer::{BlobSource, Deployer, LocalOnly};
