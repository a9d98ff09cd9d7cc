//! Tail records on the `logs` stream: what a node sends about each request of a tailed app,
//! and the set of apps the origin wants records for.

use serde::{Deserialize, Serialize};

/// One request, as a tail client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The node that served it (filled in by the origin from the node's certificate name).
    #[serde(default)]
    pub node: String,
    /// The name of the app that served it.
    pub app: String,
    /// The component's sha256, first 12 hex digits.
    pub version: String,
    /// When the response head was sent, ms since the Unix epoch.
    pub at_ms: u64,
    /// The id the node gave the request, as in its access log.
    pub request_id: String,
    /// The client's address (behind trusted proxies, the one they forwarded); empty from a
    /// node that predates it.
    #[serde(default)]
    pub client: String,
    /// The HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// The request's path, without the query.
    pub path: String,
    /// The HTTP status of the response.
    pub status: u16,
    /// From the request's arrival to the response head.
    pub micros: u64,
    /// Guest CPU time until the response head.
    pub guest_us: u64,
    /// For a request a cron trigger sent, its schedule; `None` for a client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// Origin to node, on the `logs` stream: the apps to send records for (replaces the last set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailSet {
    /// The names of the apps whose requests the node should send.
    pub apps: Vec<String>,
}

/// Node to origin, on the `logs` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// Requests of the tailed apps since the last batch.
    pub records: Vec<RequestRecord>,
    /// Records this node dropped since the last batch because the link could not keep up.
    pub dropped: u64,
}
