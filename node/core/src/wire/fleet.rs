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
    pub app: String,
    pub version: u64,
    pub sha256: String,
    pub manifest: AppManifest,
}

/// Every app the fleet should serve, at its active version. `revision` grows with every change
/// at the origin, so a node can tell a newer state from an older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub revision: u64,
    pub releases: Vec<Release>,
}

/// How one app stands on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
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
    pub apps: Vec<AppStatus>,
}
