//! What each registry change does to an app's record, decided from the record and the version
//! numbers it has, with no storage in sight: both engines run these same rules inside their
//! own transactions.

use outpost_core::config::AppManifest;

use super::{AppRecord, RegistryError, Result, VersionRecord};

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
    activate: bool,
    now: u64,
) -> (Outcome, VersionRecord) {
    let mut record = existing.unwrap_or(AppRecord {
        name: app.to_string(),
        active: None,
        history: Vec::new(),
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
    if activate {
        record.active = Some(version.version);
        record.history.push(version.version);
    }
    let outcome = Outcome::Keep {
        record,
        added: Some(Box::new(version.clone())),
        moves_fleet: activate,
    };
    (outcome, version)
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
    Ok(activated(record, version, now))
}

/// Go back to `to`, or to the version active before the current one.
pub(crate) fn rollback(
    app: &str,
    existing: Option<AppRecord>,
    versions: Versions<'_>,
    to: Option<u64>,
    now: u64,
) -> Result<(Outcome, u64)> {
    let Some(to) = to else {
        let mut record = existing.ok_or_else(|| no_app(app))?;
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

fn no_app(app: &str) -> RegistryError {
    RegistryError::NotFound(format!("no app named {app}"))
}

fn no_version(app: &str, version: u64) -> RegistryError {
    RegistryError::NotFound(format!("app {app} has no version {version}"))
}
