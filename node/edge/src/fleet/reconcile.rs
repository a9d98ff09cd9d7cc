//! The pure part of applying a desired state on a node: what to keep, what to deploy, what to
//! drop. No I/O, so every case is a unit test.

use std::collections::BTreeMap;

use outpost_core::wire::{DesiredState, Release};

/// What a node must do to go from what it runs to what is desired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Apps already at the desired release.
    pub keep: Vec<String>,
    /// Releases to fetch, compile and switch to.
    pub deploy: Vec<Release>,
    /// Apps no longer desired.
    pub remove: Vec<String>,
}

/// Compare the releases running (by app) with a desired state.
pub fn plan(running: &BTreeMap<String, Release>, desired: &DesiredState) -> Plan {
    let mut plan = Plan::default();
    for release in &desired.releases {
        match running.get(&release.app) {
            Some(current) if current == release => plan.keep.push(release.app.clone()),
            _ => plan.deploy.push(release.clone()),
        }
    }
    plan.remove = running
        .keys()
        .filter(|app| !desired.releases.iter().any(|r| &r.app == *app))
        .cloned()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::config::AppManifest;

    fn release(app: &str, version: u64) -> Release {
        Release {
            app: app.into(),
            version,
            sha256: format!("{version:064x}"),
            manifest: AppManifest {
                name: app.into(),
                ..AppManifest::default()
            },
        }
    }

    fn running(releases: &[Release]) -> BTreeMap<String, Release> {
        releases
            .iter()
            .map(|r| (r.app.clone(), r.clone()))
            .collect()
    }

    #[test]
    fn new_changed_kept_and_removed_apps() {
        let now = running(&[release("a", 1), release("b", 1), release("gone", 3)]);
        let desired = DesiredState {
            revision: 7,
            releases: vec![release("a", 1), release("b", 2), release("new", 1)],
        };
        assert_eq!(
            plan(&now, &desired),
            Plan {
                keep: vec!["a".into()],
                deploy: vec![release("b", 2), release("new", 1)],
                remove: vec!["gone".into()],
            }
        );
    }

    #[test]
    fn a_changed_manifest_at_the_same_version_is_redeployed() {
        let now = running(&[release("a", 1)]);
        let mut changed = release("a", 1);
        changed.manifest.routes = vec!["a.test".into()];
        let desired = DesiredState {
            revision: 2,
            releases: vec![changed.clone()],
        };
        assert_eq!(plan(&now, &desired).deploy, vec![changed]);
    }

    #[test]
    fn an_empty_state_removes_everything() {
        let now = running(&[release("a", 1)]);
        let p = plan(&now, &DesiredState::default());
        assert_eq!(p.remove, vec!["a".to_string()]);
        assert!(p.keep.is_empty() && p.deploy.is_empty());
    }
}
