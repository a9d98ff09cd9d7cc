//! The origin: the authority for deployments. It keeps apps and versions in an embedded
//! database and component blobs on disk, answers the admin API over HTTPS, and publishes the
//! desired state to nodes over the cluster link.

mod registry;

pub use registry::{AppRecord, Registry, RegistryError, VersionRecord};
