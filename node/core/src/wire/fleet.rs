//! What the fleet should run, and what a node reports it runs: the types the origin and the
//! nodes exchange (as JSON) and a node keeps on disk.

use serde::{Deserialize, Serialize};

use crate::config::AppManifest;

/// Whether `text` is a sha256 in lowercase hex, as components are named everywhere.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One app at one version: its component (by hash) and its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The name of the app this is a release of.
    pub app: String,
    /// The version number the origin gave it, counting from 1 for each app.
    pub version: u64,
    /// The component's sha256 in lowercase hex, the name nodes fetch it by.
    pub sha256: String,
    /// The app's manifest at this version: routes, limits, config and the rest.
    pub manifest: AppManifest,
}

/// Every app the fleet should serve, at its active version. `revision` grows with every change
/// at the origin, so a node can tell a newer state from an older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Raised by the origin on every change, so a newer state has the higher revision.
    pub revision: u64,
    /// One release for each app the fleet should serve, at its active version.
    pub releases: Vec<Release>,
}

/// How one app stands on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The name of the app this is about.
    pub app: String,
    /// The version serving now, if any.
    pub live_version: Option<u64>,
    /// Why the desired version is not live, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A node's account of itself after applying a state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The newest desired state the node has processed.
    pub revision: u64,
    /// How each app stands on this node.
    pub apps: Vec<AppStatus>,
}
