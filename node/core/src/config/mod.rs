//! Configuration files: an app's `outpost.toml` and a node's `node.toml`.
//!
//! Files are parsed with unknown fields refused, then validated into the plain structs the rest
//! of the node uses. Every error names the file, the field and what is wrong with it.

mod app;
mod cluster;
mod egress;
mod error;
mod health;
mod http;
mod node;
mod origin;
mod outbound;
mod pool;
mod tenancy;
mod tls;

pub use app::{
    AppLimits, AppManifest, AppSettings, AppSpec, BuildSettings, DeployTarget, Language,
    LimitsManifest, OutboundManifest, TriggerManifest, validate_name, validate_namespace_name,
};
pub use cluster::{ClusterIdentity, OriginLink, Peer, RemoteAddr, Upstream};
pub use egress::EgressPolicy;
pub use error::{ConfigError, FieldError};
pub use health::HealthSettings;
pub use http::HttpSettings;
pub use node::{NodeConfig, Peering};
pub use origin::{DatabaseSettings, OriginConfig, Right, TokenSpec};
pub use outbound::{AllowedOrigin, OutboundPolicy};
pub use pool::PoolSettings;
pub use tenancy::{GuestLogLimits, LimitCeilings, Tenancy};
pub use tls::{TlsCertSpec, validate_cert_host};

use std::path::Path;

/// Read and parse a TOML file into `T`, with errors that name the file.
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::file(path, format!("cannot read: {err}")))?;
    toml::from_str(&text).map_err(|err| ConfigError::file(path, toml_message(&err)))
}

/// toml's message, flattened to one line: "unknown field `x`, expected ... at line 3, column 1".
fn toml_message(err: &toml::de::Error) -> String {
    let message = err.message().trim_end_matches('.').to_string();
    match err.span() {
        Some(_) => {
            let rendered = err.to_string();
            let location = rendered
                .lines()
                .next()
                .and_then(|first| first.find("line ").map(|at| first[at..].to_string()));
            match location {
                Some(location) => format!("{message} ({location})"),
                None => message,
            }
        }
        None => message,
    }
}
