//! What the fleet should run, and what a node reports it runs: the types the origin and the
//! nodes exchange (as JSON) and a node keeps on disk.

use std::collections::BTreeMap;
use std::fmt;

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
    /// The share of the app's traffic this version takes, in percent: 100 for an app's only
    /// version, less in a split, 0 for one reachable by preview only. A state from an origin
    /// that predates splits reads 100.
    #[serde(default = "all_traffic", skip_serializing_if = "is_all_traffic")]
    pub percent: u8,
}

fn all_traffic() -> u8 {
    100
}

fn is_all_traffic(percent: &u8) -> bool {
    *percent == 100
}

/// A version's share of its app's traffic, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionShare {
    /// The version.
    pub version: u64,
    /// Its share, 1 to 100.
    pub percent: u8,
}

/// Every app the fleet should serve, at its active version. `revision` grows with every change
/// at the origin, so a node can tell a newer state from an older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Raised by the origin on every change, so a newer state has the higher revision.
    pub revision: u64,
    /// One release for each app the fleet should serve, at its active version: the version
    /// whose routes the app is served on (in a split, the base the others share traffic with).
    pub releases: Vec<Release>,
    /// The apps' other versions nodes run too: those in a split beside the active one, and
    /// the newest uploaded since it, which only preview hosts reach (`percent` 0). A node that
    /// predates them ignores them and serves the active versions alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<Release>,
    /// The secrets of the apps that have any, which handlers read like config values. They
    /// travel only on the mutual-TLS link; a node keeps them sealed on its disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<AppSecrets>,
}

/// One app's secrets, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSecrets {
    /// The app they belong to.
    pub app: String,
    /// Each secret's value, by name.
    pub values: BTreeMap<String, SecretValue>,
}

/// A secret's value: text on the wire, never shown by `Debug` (so no log line prints one).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl DesiredState {
    /// Every release, the active versions first.
    pub fn all_releases(&self) -> impl Iterator<Item = &Release> {
        self.releases.iter().chain(&self.others)
    }

    /// The split of the app whose active release is `active`: the active one's share first,
    /// then each other release of the app with a share, in order. `None` when the active one
    /// takes all the traffic.
    pub fn split_of(&self, active: &Release) -> Option<Vec<VersionShare>> {
        if active.percent >= 100 {
            return None;
        }
        let share = |r: &Release| VersionShare {
            version: r.version,
            percent: r.percent,
        };
        let mut split = vec![share(active)];
        split.extend(
            self.others
                .iter()
                .filter(|r| r.app == active.app && r.version != active.version && r.percent > 0)
                .map(share),
        );
        Some(split)
    }

    /// The secrets of `app`, if it has any.
    pub fn secrets_of(&self, app: &str) -> Option<&AppSecrets> {
        self.secrets.iter().find(|s| s.app == app)
    }
}

/// How one app stands on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The name of the app this is about.
    pub app: String,
    /// The version serving now, if any (in a split, the active one the others share with).
    pub live_version: Option<u64>,
    /// The split this node serves the app's traffic by, when it is split between versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<VersionShare>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::release;

    #[test]
    fn a_split_lists_the_active_share_first_then_the_others_of_the_app() {
        let state = DesiredState {
            others: vec![release("a", 2, 10), release("a", 3, 0), release("b", 2, 50)],
            ..DesiredState::default()
        };
        assert_eq!(
            state.split_of(&release("a", 1, 90)),
            Some(vec![
                VersionShare {
                    version: 1,
                    percent: 90
                },
                VersionShare {
                    version: 2,
                    percent: 10
                },
            ])
        );
        assert_eq!(state.split_of(&release("a", 1, 100)), None);
    }
}
