//! Tail records on the `logs` stream: what a node sends about each request of a tailed app,
//! and the set of apps the origin wants records for.

use serde::{Deserialize, Serialize};

/// One request, as a tail client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The node that served it (filled in by the origin from the node's certificate name).
    #[serde(default)]
    pub node: String,
    pub app: String,
    /// The component's sha256, first 12 hex digits.
    pub version: String,
    /// When the response head was sent, ms since the Unix epoch.
    pub at_ms: u64,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// From the request's arrival to the response head.
    pub micros: u64,
    /// Guest CPU time until the response head.
    pub guest_us: u64,
}

/// Origin to node, on the `logs` stream: the apps to send records for (replaces the last set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailSet {
    pub apps: Vec<String>,
}

/// Node to origin, on the `logs` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub records: Vec<RequestRecord>,
    /// Records this node dropped since the last batch because the link could not keep up.
    pub dropped: u64,
}
