//! The origin's admin API as types: what each endpoint answers, serialized by the origin and
//! read back by the CLI, whose `--json` prints these same types. A field added here reaches
//! both ends at once; the JSON shape of each is its serde form.

use serde::{Deserialize, Serialize};

use crate::config::AppManifest;
use crate::wire::{NodeReport, VersionShare};

/// An app as stored: its active version and activation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app's name, also its key in the registry.
    pub name: String,
    /// The version nodes should run; `None` until a version is activated.
    pub active: Option<u64>,
    /// Versions activated, oldest first; the last is the active one. Rollback walks it back.
    pub history: Vec<u64>,
    /// When the app's traffic is split between versions: each with its share, the active
    /// one first (the shares add up to 100). Empty: the active version takes it all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<VersionShare>,
    /// The number the next version gets; versions count up from 1.
    pub next_version: u64,
    /// Unix time in seconds of its first version.
    pub created_at: u64,
    /// Unix time in seconds of the last new version or change of active version.
    pub updated_at: u64,
}

/// One uploaded version of an app; versions are kept until the app is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Its number within the app, from 1.
    pub version: u64,
    /// The component's sha256 in lowercase hex, its name in the blob store.
    pub sha256: String,
    /// The manifest it was deployed with.
    pub manifest: AppManifest,
    /// Unix time in seconds it was created.
    pub created_at: u64,
    /// Free text given at deploy time, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /v1/apps/{app}`: the app and every version of it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDetail {
    /// The app.
    pub app: AppRecord,
    /// Its versions.
    pub versions: Vec<VersionRecord>,
    /// The config values were withheld (a token that may not deploy sees the keys only):
    /// each value in the versions' manifests is empty.
    #[serde(default)]
    pub config_hidden: bool,
}

/// One app in `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// The app's name.
    pub name: String,
    /// Its active version, if one is.
    pub active: Option<u64>,
    /// How many versions were uploaded.
    pub versions: u64,
    /// Unix time in seconds of its last change.
    pub updated_at: u64,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// Every app, by name.
    pub apps: Vec<AppSummary>,
}

/// An app the fleet runs, in `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveApp {
    /// The app's name.
    pub name: String,
    /// The version nodes run.
    pub active: u64,
    /// That version's component.
    pub sha256: String,
    /// The split of its traffic between versions, the active one first; empty: no split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<VersionShare>,
}

/// A node as an origin knows it, in `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name, as its cluster certificate proves.
    pub name: String,
    /// Whether it is linked to this origin now.
    pub connected: bool,
    /// The remote address of its latest link; empty until it has subscribed.
    pub address: String,
    /// Unix time in milliseconds of the last frame from the node.
    pub last_contact_ms: u64,
    /// What the node last said it runs; the default until its first report.
    pub report: NodeReport,
}

/// `GET /v1/status`: what the fleet should run, and what each node says it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The revision of the desired state.
    pub revision: u64,
    /// The apps with an active version.
    pub apps: Vec<ActiveApp>,
    /// The nodes (for the CLI, merged over every origin of the fleet).
    pub nodes: Vec<NodeStatus>,
}

/// `POST /v1/apps/{app}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCreated {
    /// The app.
    pub app: String,
    /// The new version's number.
    pub version: u64,
    /// Its component.
    pub sha256: String,
    /// Whether it was made active at once.
    pub active: bool,
    /// Its share of the app's traffic: 100 when active, less in a gradual deployment, 0 when
    /// only uploaded (reachable by preview).
    #[serde(default)]
    pub percent: u8,
}

/// `POST /v1/apps/{app}/activate`, `.../rollback` and `.../split`: the version now active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveVersion {
    /// The app.
    pub app: String,
    /// The version nodes now run (in a split, the one the others share traffic with).
    pub active: u64,
    /// The split of its traffic, the active version first; empty: the active one takes all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<VersionShare>,
}

/// One secret in `GET /v1/apps/{app}/secrets`: its name, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The secret's name, which handlers ask wasi:config for.
    pub name: String,
    /// Unix time in seconds it was last set.
    pub updated_at: u64,
}

/// `GET /v1/apps/{app}/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    /// The app.
    pub app: String,
    /// Its secrets, by name.
    pub secrets: Vec<SecretInfo>,
}

/// `PUT /v1/apps/{app}/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretStored {
    /// The app.
    pub app: String,
    /// The secret's name.
    pub name: String,
    /// Whether it replaced a value.
    pub replaced: bool,
}

/// `DELETE /v1/apps/{app}`, `DELETE /v1/apps/{app}/secrets/{name}` and
/// `DELETE /v1/kv/.../values/{key}`: what is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The app, or the key.
    pub deleted: String,
}

/// `HEAD` and `PUT /v1/blobs/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// The component's sha256.
    pub sha256: String,
    /// Its size in bytes, after an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Whether this call stored it (`false`: it was there already).
    pub stored: bool,
}

/// `PUT /v1/kv/{app}/{namespace}/values/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStored {
    /// The key.
    pub key: String,
    /// The value's size in bytes.
    pub size: u64,
    /// The version the write got in the fleet's one order.
    pub version: Option<u64>,
}

/// One key in a KV listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKey {
    /// The key.
    pub name: String,
    /// Unix time in milliseconds it expires at, if it does.
    pub expires_at_ms: Option<u64>,
    /// Its metadata, as text.
    pub metadata: Option<String>,
    /// The version of its last write.
    pub version: u64,
}

/// `GET /v1/kv/{app}/{namespace}/keys`: a page of keys in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeys {
    /// The keys on this page.
    pub keys: Vec<KvKey>,
    /// No key after these.
    pub list_complete: bool,
    /// Where the next page starts, if there is one.
    pub cursor: Option<String>,
}
