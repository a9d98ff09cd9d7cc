//! The registry in redb, in the origin's data directory: the embedded engine.

use std::path::Path;

use outpost_core::wire::DesiredState;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::rules::{self, Outcome};
use super::secrets::{self, StoredSecret};
use super::{AppRecord, RegistryError, Result, TickClaim, VersionRecord, decode, encode};

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Each app's secrets, by (app, name): a `StoredSecret` in JSON.
const SECRETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("secrets");
/// The last tick fired of each trigger, by (app, trigger key): unix seconds.
const TICKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("trigger_ticks");
const REVISION: &str = "revision";

/// Move the registry's revision by one, in `txn`.
fn bump_revision(txn: &redb::WriteTransaction) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0) + 1;
    meta.insert(REVISION, next)?;
    Ok(())
}

impl<E: Into<redb::Error>> From<E> for RegistryError {
    fn from(err: E) -> Self {
        RegistryError::Storage(err.into().to_string())
    }
}

/// The registry's tables in one redb file.
pub(crate) struct RedbRegistry {
    db: Database,
}

impl RedbRegistry {
    /// Open (or create) the registry at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(APPS)?;
        txn.open_table(VERSIONS)?;
        txn.open_table(META)?;
        txn.open_table(SECRETS)?;
        txn.open_table(TICKS)?;
        txn.commit()?;
        Ok(RedbRegistry { db })
    }

    /// Decide a change of `app` from its record and version numbers, and commit it in the same
    /// transaction. Returns what `decide` returned, and whether what nodes run changed.
    pub(crate) fn change<T>(
        &self,
        app: &str,
        decide: impl FnOnce(Option<AppRecord>, &[u64]) -> Result<(Outcome, T)>,
    ) -> Result<(T, bool)> {
        let txn = self.db.begin_write()?;
        let (value, moved) = {
            let mut apps = txn.open_table(APPS)?;
            let mut versions = txn.open_table(VERSIONS)?;
            let existing = apps
                .get(app)?
                .map(|g| decode::<AppRecord>(g.value()))
                .transpose()?;
            let numbers = versions
                .range((app, 0)..=(app, u64::MAX))?
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<std::result::Result<Vec<u64>, _>>()?;
            let (outcome, value) = decide(existing, &numbers)?;
            let moved = match outcome {
                Outcome::Keep {
                    record,
                    added,
                    moves_fleet,
                } => {
                    if let Some(version) = added {
                        versions.insert((app, version.version), encode(&version).as_slice())?;
                    }
                    apps.insert(app, encode(&record).as_slice())?;
                    moves_fleet
                }
                Outcome::Delete => {
                    apps.remove(app)?;
                    versions.retain_in((app, 0)..=(app, u64::MAX), |_, _| false)?;
                    let mut secrets = txn.open_table(SECRETS)?;
                    secrets.retain_in((app, "")..=(app, "\u{10ffff}"), |_, _| false)?;
                    let mut ticks = txn.open_table(TICKS)?;
                    ticks.retain_in((app, "")..=(app, "\u{10ffff}"), |_, _| false)?;
                    true
                }
            };
            (value, moved)
        };
        if moved {
            bump_revision(&txn)?;
        }
        txn.commit()?;
        Ok((value, moved))
    }

    /// Set (`Some`) or delete (`None`) the secret `name` of `app` (which must exist), moving
    /// the revision if anything changed. Returns whether the secret was there before.
    pub(crate) fn change_secret(
        &self,
        app: &str,
        name: &str,
        value: Option<StoredSecret>,
    ) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let existed = {
            if txn.open_table(APPS)?.get(app)?.is_none() {
                return Err(RegistryError::NotFound(format!("no app named {app}")));
            }
            let mut table = txn.open_table(SECRETS)?;
            let held: Vec<String> = table
                .range((app, "")..=(app, "\u{10ffff}"))?
                .map(|entry| entry.map(|(key, _)| key.value().1.to_string()))
                .collect::<std::result::Result<_, _>>()?;
            let existed = held.iter().any(|n| n == name);
            match &value {
                Some(secret) => {
                    secrets::check_room(&held, name)?;
                    table.insert((app, name), encode(secret).as_slice())?;
                }
                None if existed => {
                    table.remove((app, name))?;
                }
                None => {}
            }
            existed
        };
        if value.is_some() || existed {
            bump_revision(&txn)?;
        }
        txn.commit()?;
        Ok(existed)
    }

    /// Claim `tick` of `trigger` of `app` (see [`super::TickClaim`]), durably.
    pub(crate) fn claim_tick(&self, app: &str, trigger: &str, tick: u64) -> Result<TickClaim> {
        let txn = self.db.begin_write()?;
        let claim = {
            let mut table = txn.open_table(TICKS)?;
            let last = table.get((app, trigger))?.map(|g| g.value());
            let claim = TickClaim::decide(last, tick);
            if matches!(claim, TickClaim::Won { .. }) {
                table.insert((app, trigger), tick)?;
            }
            claim
        };
        txn.commit()?;
        Ok(claim)
    }

    /// The secrets of `app` (sealed), or of every app.
    pub(crate) fn secrets(&self, app: Option<&str>) -> Result<Vec<StoredSecret>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECRETS)?;
        let entries = match app {
            Some(app) => table.range((app, "")..=(app, "\u{10ffff}"))?,
            None => table.range::<(&str, &str)>(..)?,
        };
        entries.map(|entry| decode(entry?.1.value())).collect()
    }

    /// Every app, in name order.
    pub(crate) fn apps(&self) -> Result<Vec<AppRecord>> {
        let txn = self.db.begin_read()?;
        let apps = txn.open_table(APPS)?;
        apps.iter()?
            .map(|entry| {
                let (_, value) = entry?;
                decode(value.value())
            })
            .collect()
    }

    /// An app with all its versions, oldest first; `None` if there is no such app.
    pub(crate) fn app(&self, app: &str) -> Result<Option<(AppRecord, Vec<VersionRecord>)>> {
        let txn = self.db.begin_read()?;
        let apps = txn.open_table(APPS)?;
        let Some(record) = apps.get(app)? else {
            return Ok(None);
        };
        let record: AppRecord = decode(record.value())?;
        let versions = txn.open_table(VERSIONS)?;
        let list = versions
            .range((app, 0)..=(app, u64::MAX))?
            .map(|entry| {
                let (_, value) = entry?;
                decode(value.value())
            })
            .collect::<Result<Vec<VersionRecord>>>()?;
        Ok(Some((record, list)))
    }

    /// What every app runs (see `rules::releases`), and the revision it belongs to, with
    /// every app's secrets (sealed) of that revision.
    pub(crate) fn desired_state(&self) -> Result<(DesiredState, Vec<StoredSecret>)> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let revision = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0);
        let apps = txn.open_table(APPS)?;
        let versions = txn.open_table(VERSIONS)?;
        let mut state = DesiredState {
            revision,
            ..DesiredState::default()
        };
        for entry in apps.iter()? {
            let (name, value) = entry?;
            let record: AppRecord = decode(value.value())?;
            let wanted = rules::wanted_versions(&record);
            let (name, lo, hi) = (name.value(), *wanted.start(), *wanted.end());
            let records = versions
                .range((name, lo)..=(name, hi))?
                .map(|entry| decode::<VersionRecord>(entry?.1.value()))
                .collect::<Result<Vec<_>>>()?;
            let (active, others) = rules::releases(&record, &records)?;
            state.releases.extend(active);
            state.others.extend(others);
        }
        let sealed = txn
            .open_table(SECRETS)?
            .range::<(&str, &str)>(..)?
            .map(|entry| decode(entry?.1.value()))
            .collect::<Result<Vec<StoredSecret>>>()?;
        Ok((state, sealed))
    }
}
