//! The deployment registry: apps, their versions and which one is active, in redb.
//!
//! Every change that alters what nodes should run (activate, rollback, delete) bumps a global
//! revision in the same transaction, and the new desired state is published to the cluster
//! link once the transaction is durable.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use outpost_core::clock::unix_secs;
use outpost_core::config::AppManifest;
use outpost_core::wire::{DesiredState, Release};

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// An app as stored: its active version and activation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app's name, also its key in the registry.
    pub name: String,
    /// The version nodes should run; `None` until a version is activated.
    pub active: Option<u64>,
    /// Versions activated, oldest first; the last is the active one. Rollback walks it back.
    pub history: Vec<u64>,
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

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such app or version.
    #[error("{0}")]
    NotFound(String),
    /// The change cannot be made in the current state (nothing earlier to roll back to).
    #[error("{0}")]
    Conflict(String),
    /// The database failed or holds a record that does not decode.
    #[error("storage: {0}")]
    Storage(String),
}

impl<E: Into<redb::Error>> From<E> for RegistryError {
    fn from(err: E) -> Self {
        RegistryError::Storage(err.into().to_string())
    }
}

pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The registry database, and the desired state derived from it for the cluster link.
pub struct Registry {
    db: Database,
    state: watch::Sender<Arc<DesiredState>>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Storage(format!("corrupt record: {e}")))
}

impl Registry {
    /// Open (or create) the registry at `path` and publish the desired state it holds.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(APPS)?;
        txn.open_table(VERSIONS)?;
        txn.open_table(META)?;
        txn.commit()?;
        let registry = Registry {
            db,
            state: watch::Sender::new(Arc::new(DesiredState::default())),
        };
        registry.publish()?;
        Ok(registry)
    }

    /// The desired state now, and every change after.
    pub fn subscribe(&self) -> watch::Receiver<Arc<DesiredState>> {
        self.state.subscribe()
    }

    /// The desired state as last published.
    pub fn current_state(&self) -> Arc<DesiredState> {
        self.state.borrow().clone()
    }

    fn publish(&self) -> Result<()> {
        let state = Arc::new(self.desired_state()?);
        self.state.send_replace(state);
        Ok(())
    }

    /// Add a version of `app` (creating the app on its first version), optionally active.
    pub fn create_version(
        &self,
        app: &str,
        sha256: &str,
        manifest: AppManifest,
        note: Option<String>,
        activate: bool,
    ) -> Result<VersionRecord> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut apps = txn.open_table(APPS)?;
            let mut versions = txn.open_table(VERSIONS)?;
            let existing = apps
                .get(app)?
                .map(|g| decode::<AppRecord>(g.value()))
                .transpose()?;
            let mut record = existing.unwrap_or(AppRecord {
                name: app.to_string(),
                active: None,
                history: Vec::new(),
                next_version: 1,
                created_at: unix_secs(),
                updated_at: unix_secs(),
            });
            let version = VersionRecord {
                version: record.next_version,
                sha256: sha256.to_string(),
                manifest,
                created_at: unix_secs(),
                note,
            };
            record.next_version += 1;
            record.updated_at = unix_secs();
            if activate {
                record.active = Some(version.version);
                record.history.push(version.version);
            }
            versions.insert((app, version.version), encode(&version).as_slice())?;
            apps.insert(app, encode(&record).as_slice())?;
            version
        };
        if activate {
            bump_revision(&txn)?;
        }
        txn.commit()?;
        if activate {
            self.publish()?;
        }
        Ok(record)
    }

    /// Make `version` of `app` the active one.
    pub fn activate(&self, app: &str, version: u64) -> Result<()> {
        self.change_active(app, |record, versions| {
            if versions.get((app, version))?.is_none() {
                return Err(RegistryError::NotFound(format!(
                    "app {app} has no version {version}"
                )));
            }
            record.history.push(version);
            Ok(version)
        })
        .map(|_| ())
    }

    /// Go back to `to`, or to the version active before the current one. Returns the version.
    pub fn rollback(&self, app: &str, to: Option<u64>) -> Result<u64> {
        self.change_active(app, |record, versions| match to {
            Some(version) => {
                if versions.get((app, version))?.is_none() {
                    return Err(RegistryError::NotFound(format!(
                        "app {app} has no version {version}"
                    )));
                }
                record.history.push(version);
                Ok(version)
            }
            None => {
                let current = record.active;
                // Drop the current activation, then any repeats of it, to reach the one before.
                while record.history.last().copied() == current && current.is_some() {
                    record.history.pop();
                }
                record.history.last().copied().ok_or_else(|| {
                    RegistryError::Conflict(format!(
                        "app {app} has no earlier version to roll back to"
                    ))
                })
            }
        })
    }

    fn change_active(
        &self,
        app: &str,
        change: impl FnOnce(&mut AppRecord, &redb::Table<(&str, u64), &[u8]>) -> Result<u64>,
    ) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let version = {
            let mut apps = txn.open_table(APPS)?;
            let versions = txn.open_table(VERSIONS)?;
            let mut record: AppRecord = match apps.get(app)? {
                Some(guard) => decode(guard.value())?,
                None => return Err(RegistryError::NotFound(format!("no app named {app}"))),
            };
            let version = change(&mut record, &versions)?;
            record.active = Some(version);
            record.updated_at = unix_secs();
            apps.insert(app, encode(&record).as_slice())?;
            version
        };
        bump_revision(&txn)?;
        txn.commit()?;
        self.publish()?;
        Ok(version)
    }

    /// Remove an app and all its versions; nodes stop serving it.
    pub fn delete_app(&self, app: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut apps = txn.open_table(APPS)?;
            if apps.remove(app)?.is_none() {
                return Err(RegistryError::NotFound(format!("no app named {app}")));
            }
            let mut versions = txn.open_table(VERSIONS)?;
            versions.retain_in((app, 0)..=(app, u64::MAX), |_, _| false)?;
        }
        bump_revision(&txn)?;
        txn.commit()?;
        self.publish()
    }

    /// Every app, in name order.
    pub fn apps(&self) -> Result<Vec<AppRecord>> {
        let txn = self.db.begin_read()?;
        let apps = txn.open_table(APPS)?;
        apps.iter()?
            .map(|entry| {
                let (_, value) = entry?;
                decode(value.value())
            })
            .collect()
    }

    /// An app with all its versions, oldest first.
    pub fn app(&self, app: &str) -> Result<(AppRecord, Vec<VersionRecord>)> {
        let txn = self.db.begin_read()?;
        let apps = txn.open_table(APPS)?;
        let record: AppRecord = match apps.get(app)? {
            Some(guard) => decode(guard.value())?,
            None => return Err(RegistryError::NotFound(format!("no app named {app}"))),
        };
        let versions = txn.open_table(VERSIONS)?;
        let list = versions
            .range((app, 0)..=(app, u64::MAX))?
            .map(|entry| {
                let (_, value) = entry?;
                decode(value.value())
            })
            .collect::<Result<Vec<VersionRecord>>>()?;
        Ok((record, list))
    }

    /// Every app's active release, and the revision they belong to.
    pub fn desired_state(&self) -> Result<DesiredState> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let revision = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0);
        let apps = txn.open_table(APPS)?;
        let versions = txn.open_table(VERSIONS)?;
        let mut releases = Vec::new();
        for entry in apps.iter()? {
            let (name, value) = entry?;
            let record: AppRecord = decode(value.value())?;
            let Some(active) = record.active else {
                continue;
            };
            let Some(version) = versions.get((name.value(), active))? else {
                return Err(RegistryError::Storage(format!(
                    "app {} points at missing version {active}",
                    record.name
                )));
            };
            let version: VersionRecord = decode(version.value())?;
            releases.push(Release {
                app: record.name,
                version: active,
                sha256: version.sha256,
                manifest: version.manifest,
            });
        }
        Ok(DesiredState { revision, releases })
    }
}

fn bump_revision(txn: &redb::WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0) + 1;
    meta.insert(REVISION, next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, std::path::PathBuf) {
        let dir = outpost_core::test_support::temp_dir("registry");
        (Registry::open(&dir.join("registry.redb")).unwrap(), dir)
    }

    fn manifest(name: &str) -> AppManifest {
        AppManifest {
            name: name.into(),
            ..AppManifest::default()
        }
    }

    #[test]
    fn versions_activation_and_desired_state() {
        let (reg, dir) = registry();
        let mut states = reg.subscribe();
        let v1 = reg
            .create_version(
                "shop",
                &"a".repeat(64),
                manifest("shop"),
                Some("first".into()),
                true,
            )
            .unwrap();
        assert_eq!(v1.version, 1);
        assert!(states.has_changed().unwrap());
        let state = states.borrow_and_update().clone();
        assert_eq!(state.revision, 1);
        assert_eq!(state.releases[0].version, 1);

        // An inactive version changes nothing nodes run.
        let v2 = reg
            .create_version("shop", &"b".repeat(64), manifest("shop"), None, false)
            .unwrap();
        assert_eq!(v2.version, 2);
        assert!(!states.has_changed().unwrap());
        reg.activate("shop", 2).unwrap();
        assert_eq!(reg.current_state().releases[0].sha256, "b".repeat(64));
        assert_eq!(reg.current_state().revision, 2);

        let (record, versions) = reg.app("shop").unwrap();
        assert_eq!((record.active, versions.len()), (Some(2), 2));
        assert_eq!(versions[0].note.as_deref(), Some("first"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rollback_walks_history_back_and_to_a_named_version() {
        let (reg, dir) = registry();
        for sha in ["a", "b", "c"] {
            reg.create_version("app", &sha.repeat(64), manifest("app"), None, true)
                .unwrap();
        }
        assert_eq!(reg.rollback("app", None).unwrap(), 2);
        assert_eq!(reg.rollback("app", None).unwrap(), 1);
        assert!(matches!(
            reg.rollback("app", None),
            Err(RegistryError::Conflict(_))
        ));
        assert_eq!(reg.rollback("app", Some(3)).unwrap(), 3);
        assert_eq!(reg.rollback("app", None).unwrap(), 1);
        assert!(matches!(
            reg.rollback("app", Some(9)),
            Err(RegistryError::NotFound(_))
        ));
        assert!(matches!(
            reg.activate("nope", 1),
            Err(RegistryError::NotFound(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn delete_removes_the_app_and_survives_reopen() {
        let (reg, dir) = registry();
        reg.create_version("keep", &"a".repeat(64), manifest("keep"), None, true)
            .unwrap();
        reg.create_version("drop", &"b".repeat(64), manifest("drop"), None, true)
            .unwrap();
        reg.delete_app("drop").unwrap();
        assert!(matches!(reg.app("drop"), Err(RegistryError::NotFound(_))));
        drop(reg);
        let reopened = Registry::open(&dir.join("registry.redb")).unwrap();
        let state = reopened.current_state();
        assert_eq!(state.revision, 3);
        assert_eq!(
            state
                .releases
                .iter()
                .map(|r| r.app.as_str())
                .collect::<Vec<_>>(),
            vec!["keep"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
