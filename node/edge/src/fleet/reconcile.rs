//! The pure part of applying a desired state on a node: which versions it runs and what to
//! deploy (how an app's traffic is split is `DesiredState::split_of`). No I/O, so every case is a unit test.

use std::collections::BTreeMap;

use outpost_core::wire::{DesiredState, Release};

/// An app's version: what a node keys its deployments by.
pub(super) type VersionKey = (String, u64);

/// The key of `release`.
pub(super) fn key(release: &Release) -> VersionKey {
    (release.app.clone(), release.version)
}

/// Whether two releases of one version deploy the same thing (a share is not deployed).
pub(super) fn same_build(a: &Release, b: &Release) -> bool {
    a.sha256 == b.sha256 && a.manifest == b.manifest
}

/// The releases of `desired` a node runs: every app's active one, every one in a split, and
/// those reachable by preview only (0 percent) if the node serves previews.
pub(super) fn wanted(desired: &DesiredState, previews: bool) -> Vec<Release> {
    desired
        .all_releases()
        .filter(|r| previews || r.percent > 0)
        .cloned()
        .collect()
}

/// Of `wanted`, the releases to fetch and compile: those not running at the same build.
pub(super) fn to_deploy(
    running: &BTreeMap<VersionKey, Release>,
    wanted: &[Release],
) -> Vec<Release> {
    wanted
        .iter()
        .filter(|r| !running.get(&key(r)).is_some_and(|now| same_build(now, r)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::test_support::release;

    fn running(releases: &[Release]) -> BTreeMap<VersionKey, Release> {
        releases.iter().map(|r| (key(r), r.clone())).collect()
    }

    #[test]
    fn new_and_changed_versions_are_deployed_and_a_new_share_alone_is_not() {
        let now = running(&[release("a", 1, 100), release("b", 1, 100)]);
        let mut changed = release("b", 1, 100);
        changed.manifest.routes = vec!["b.test".into()];
        let wanted = [
            release("a", 1, 90),
            release("a", 2, 10),
            changed.clone(),
            release("new", 1, 100),
        ];
        assert_eq!(
            to_deploy(&now, &wanted),
            vec![release("a", 2, 10), changed, release("new", 1, 100)]
        );
    }

    #[test]
    fn previews_only_where_the_node_serves_them() {
        let desired = DesiredState {
            revision: 3,
            releases: vec![release("a", 1, 90)],
            others: vec![release("a", 2, 10), release("a", 3, 0), release("b", 1, 0)],
            secrets: Vec::new(),
        };
        let versions =
            |previews| -> Vec<VersionKey> { wanted(&desired, previews).iter().map(key).collect() };
        assert_eq!(versions(false), [("a".into(), 1), ("a".into(), 2)]);
        assert_eq!(versions(true).len(), 4);
    }
}
