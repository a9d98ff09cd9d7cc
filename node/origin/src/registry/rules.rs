//! What each registry change does to an app's record, decided from the record and the version
//! numbers it has, with no storage in sight: both engines run these same rules inside their
//! own transactions.

use std::ops::RangeInclusive;

use outpost_core::config::AppManifest;
use outpost_core::wire::{Release, VersionShare};

use super::{AppRecord, RegistryError, Result, VersionRecord};

/// How many versions uploaded since an app's active one nodes run for preview (the newest).
pub(crate) const PREVIEWS_PER_APP: u64 = 5;

/// What a new version does to the traffic of its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Nothing: it is uploaded, reachable by preview only, until activated.
    Upload,
    /// It takes all the traffic.
    Activate,
    /// It takes this share (1 to 99 percent) beside the active version, which keeps the
    /// rest (a gradual deployment); 100 is the same as `Activate`.
    Percent(u8),
}

/// What a change leaves behind for one app.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The app's record as it now is, and a version to add with it.
    Keep {
        /// The app's new record.
        record: AppRecord,
        /// A version this change adds (boxed: a manifest is large, and most changes add none).
        added: Option<Box<VersionRecord>>,
        /// Whether what nodes should run changed (the revision moves).
        moves_fleet: bool,
    },
    /// The app and all its versions are gone.
    Delete,
}

/// The version numbers an app has, to check a change against.
pub(crate) type Versions<'a> = &'a [u64];

/// A new version of `app` (the app itself on its first version), active at once or not.
pub(crate) fn new_version(
    app: &str,
    existing: Option<AppRecord>,
    sha256: &str,
    manifest: AppManifest,
    note: Option<String>,
    rollout: Rollout,
    now: u64,
) -> Result<(Outcome, VersionRecord)> {
    let mut record = existing.unwrap_or(AppRecord {
        name: app.to_string(),
        active: None,
        history: Vec::new(),
        split: Vec::new(),
        next_version: 1,
        created_at: now,
        updated_at: now,
    });
    let version = VersionRecord {
        version: record.next_version,
        sha256: sha256.to_string(),
        manifest,
        created_at: now,
        note,
    };
    record.next_version += 1;
    record.updated_at = now;
    match rollout {
        Rollout::Upload => {}
        Rollout::Activate | Rollout::Percent(100) => {
            record.active = Some(version.version);
            record.history.push(version.version);
            record.split.clear();
        }
        Rollout::Percent(percent) => {
            let Some(active) = record.active else {
                return Err(RegistryError::Conflict(format!(
                    "app {app} has no active version to share traffic with: deploy it whole first"
                )));
            };
            record.split = checked_split(
                app,
                &[
                    VersionShare {
                        version: active,
                        percent: 100u8.saturating_sub(percent),
                    },
                    VersionShare {
                        version: version.version,
                        percent,
                    },
                ],
                &[active, version.version],
            )?;
        }
    }
    // Even an upload moves what nodes run: they run it for preview.
    let outcome = Outcome::Keep {
        record,
        added: Some(Box::new(version.clone())),
        moves_fleet: true,
    };
    Ok((outcome, version))
}

/// Split the app's traffic between versions by `shares`, the first of which becomes the
/// active one (whose routes serve the app). One share of 100 is a plain activation.
pub(crate) fn split(
    app: &str,
    existing: Option<AppRecord>,
    versions: Versions<'_>,
    shares: &[VersionShare],
    now: u64,
) -> Result<(Outcome, (u64, Vec<VersionShare>))> {
    let mut record = existing.ok_or_else(|| no_app(app))?;
    let shares = checked_split(app, shares, versions)?;
    let base = shares[0].version;
    if record.active != Some(base) {
        record.history.push(base);
    }
    record.split = if shares.len() > 1 { shares } else { Vec::new() };
    let (outcome, version) = activated(record, base, now);
    let split = match &outcome {
        Outcome::Keep { record, .. } => record.split.clone(),
        Outcome::Delete => Vec::new(),
    };
    Ok((outcome, (version, split)))
}

/// `shares` if they make a split: versions that exist, each named once, each 1 to 100
/// percent, adding up to 100.
fn checked_split(
    app: &str,
    shares: &[VersionShare],
    versions: Versions<'_>,
) -> Result<Vec<VersionShare>> {
    let refuse = |why: String| Err(RegistryError::Conflict(format!("app {app}: {why}")));
    if shares.is_empty() {
        return refuse("a split needs at least one version".into());
    }
    let mut total = 0u32;
    for (i, share) in shares.iter().enumerate() {
        if !versions.contains(&share.version) {
            return Err(no_version(app, share.version));
        }
        if shares[..i].iter().any(|s| s.version == share.version) {
            return refuse(format!("version {} is named twice", share.version));
        }
        if !(1..=100).contains(&share.percent) {
            return refuse(format!(
                "version {} is given {}%; a share is 1 to 100",
                share.version, share.percent
            ));
        }
        total += u32::from(share.percent);
    }
    if total != 100 {
        return refuse(format!("the shares add up to {total}%, not 100%"));
    }
    Ok(shares.to_vec())
}

/// Make `version` the active one.
pub(crate) fn activate(
    app: &str,
    existing: Option<AppRecord>,
    versions: Versions<'_>,
    version: u64,
    now: u64,
) -> Result<(Outcome, u64)> {
    let mut record = existing.ok_or_else(|| no_app(app))?;
    if !versions.contains(&version) {
        return Err(no_version(app, version));
    }
    record.history.push(version);
    record.split.clear();
    Ok(activated(record, version, now))
}

/// Go back to `to`, or to the version active before the current one; in a split, back to the
/// active version alone (what served before the gradual deployment began).
pub(crate) fn rollback(
    app: &str,
    existing: Option<AppRecord>,
    versions: Versions<'_>,
    to: Option<u64>,
    now: u64,
) -> Result<(Outcome, u64)> {
    let Some(to) = to else {
        let mut record = existing.ok_or_else(|| no_app(app))?;
        if let (false, Some(active)) = (record.split.is_empty(), record.active) {
            record.split.clear();
            return Ok(activated(record, active, now));
        }
        let current = record.active;
        // Drop the current activation, then any repeats of it, to reach the one before.
        while record.history.last().copied() == current && current.is_some() {
            record.history.pop();
        }
        let version = record.history.last().copied().ok_or_else(|| {
            RegistryError::Conflict(format!("app {app} has no earlier version to roll back to"))
        })?;
        return Ok(activated(record, version, now));
    };
    activate(app, existing, versions, to, now)
}

/// Remove the app and its versions.
pub(crate) fn delete(app: &str, existing: Option<AppRecord>) -> Result<(Outcome, ())> {
    existing.ok_or_else(|| no_app(app))?;
    Ok((Outcome::Delete, ()))
}

fn activated(mut record: AppRecord, version: u64, now: u64) -> (Outcome, u64) {
    record.active = Some(version);
    record.updated_at = now;
    let outcome = Outcome::Keep {
        record,
        added: None,
        moves_fleet: true,
    };
    (outcome, version)
}

/// The versions of an app that [`releases`] needs, as a range to read: from the oldest in its
/// split (or the active one) to the newest uploaded; with no active version, the newest few.
pub(crate) fn wanted_versions(record: &AppRecord) -> RangeInclusive<u64> {
    let newest = record.next_version.saturating_sub(1);
    let oldest = record
        .split
        .iter()
        .map(|s| s.version)
        .chain(record.active)
        .min()
        .unwrap_or_else(|| newest.saturating_sub(PREVIEWS_PER_APP - 1).max(1));
    oldest..=newest
}

/// What nodes run of an app, from its record and (at least) the versions
/// [`wanted_versions`] names: the active release, if it has one, carrying its share of the
/// traffic; then the other versions of its split with theirs, and the newest versions uploaded
/// since the active one (at most [`PREVIEWS_PER_APP`]) at 0 percent, for preview.
pub(crate) fn releases(
    record: &AppRecord,
    versions: &[VersionRecord],
) -> Result<(Option<Release>, Vec<Release>)> {
    let release = |version: u64, percent: u8| -> Result<Release> {
        let found = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                RegistryError::Storage(format!(
                    "app {} points at missing version {version}",
                    record.name
                ))
            })?;
        Ok(Release {
            app: record.name.clone(),
            version,
            sha256: found.sha256.clone(),
            manifest: found.manifest.clone(),
            percent,
        })
    };
    let share = |version: u64| record.split.iter().find(|s| s.version == version);
    let active = record
        .active
        .map(|v| release(v, share(v).map_or(100, |s| s.percent)))
        .transpose()?;
    let mut others = Vec::new();
    for s in record
        .split
        .iter()
        .filter(|s| Some(s.version) != record.active)
    {
        others.push(release(s.version, s.percent)?);
    }
    let since = record.active.unwrap_or(0);
    let mut pending: Vec<u64> = versions
        .iter()
        .map(|v| v.version)
        .filter(|v| *v > since && share(*v).is_none())
        .collect();
    pending.sort_unstable();
    let skip = pending.len().saturating_sub(PREVIEWS_PER_APP as usize);
    for version in &pending[skip..] {
        others.push(release(*version, 0)?);
    }
    Ok((active, others))
}

fn no_app(app: &str) -> RegistryError {
    RegistryError::NotFound(format!("no app named {app}"))
}

fn no_version(app: &str, version: u64) -> RegistryError {
    RegistryError::NotFound(format!("app {app} has no version {version}"))
}
