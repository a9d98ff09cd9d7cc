//! The registry in PostgreSQL, shared by every origin of the fleet.
//!
//! Changes take the one row of `registry_meta` first (`FOR UPDATE`), so changes from all
//! origins happen one at a time and the revision counts them in one order; a change that moves
//! the fleet tells the other origins (`NOTIFY outpost_registry`) once it commits.

use std::collections::HashMap;
use std::sync::Arc;

use outpost_core::wire::DesiredState;
use tokio_postgres::types::Json;

use super::rules::{self, Outcome};
use super::secrets::{self, StoredSecret};
use super::{AppRecord, RegistryError, Result, TickClaim, VersionRecord};
use crate::database::{Database, DatabaseError};

/// The channel on which origins tell each other the registry changed.
pub(crate) const CHANNEL: &str = "outpost_registry";

impl From<DatabaseError> for RegistryError {
    fn from(err: DatabaseError) -> Self {
        match err {
            DatabaseError::Unavailable(..) => RegistryError::Unavailable(err.to_string()),
            DatabaseError::Refused(..) => RegistryError::Storage(err.to_string()),
        }
    }
}

/// The registry's tables in the fleet's database.
pub(crate) struct PgRegistry {
    db: Arc<Database>,
}

impl PgRegistry {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        PgRegistry { db }
    }

    /// Decide a change of `app` from its record and version numbers, and commit it in the same
    /// transaction. Returns what `decide` returned, and whether what nodes run changed.
    pub(crate) async fn change<T>(
        &self,
        app: &str,
        decide: impl FnOnce(Option<AppRecord>, &[u64]) -> Result<(Outcome, T)>,
    ) -> Result<(T, bool)> {
        let mut client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        let txn = client.transaction().await.map_err(db)?;
        let revision = self.locked_revision(&txn).await?;
        let existing = txn
            .query_opt("SELECT record FROM registry_apps WHERE name = $1", &[&app])
            .await
            .map_err(db)?
            .map(|row| row.try_get::<_, Json<AppRecord>>(0).map(|json| json.0))
            .transpose()
            .map_err(db)?;
        let numbers: Vec<u64> = txn
            .query(
                "SELECT version FROM registry_versions WHERE app = $1 ORDER BY version",
                &[&app],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.get::<_, i64>(0) as u64)
            .collect();
        let (outcome, value) = decide(existing, &numbers)?;
        let moved = match outcome {
            Outcome::Keep {
                record,
                added,
                moves_fleet,
            } => {
                txn.execute(
                    "INSERT INTO registry_apps (name, record) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                    &[&app, &Json(&record)],
                )
                .await
                .map_err(db)?;
                if let Some(version) = added {
                    txn.execute(
                        "INSERT INTO registry_versions (app, version, record) VALUES ($1, $2, $3)",
                        &[&app, &(version.version as i64), &Json(&version)],
                    )
                    .await
                    .map_err(db)?;
                }
                moves_fleet
            }
            Outcome::Delete => {
                txn.execute("DELETE FROM registry_apps WHERE name = $1", &[&app])
                    .await
                    .map_err(db)?;
                true
            }
        };
        if moved {
            self.bump_revision(&txn, revision).await?;
        }
        txn.commit().await.map_err(db)?;
        Ok((value, moved))
    }

    /// The revision, its row held `FOR UPDATE` in `txn`: the changes of every origin take
    /// their turn on it.
    async fn locked_revision(&self, txn: &tokio_postgres::Transaction<'_>) -> Result<i64> {
        let row = txn
            .query_one("SELECT revision FROM registry_meta FOR UPDATE", &[])
            .await
            .map_err(|e| RegistryError::from(self.db.error(e)))?;
        Ok(row.get(0))
    }

    /// Move the revision on from `revision` (held `FOR UPDATE` in `txn`) and tell the other
    /// origins once `txn` commits.
    async fn bump_revision(
        &self,
        txn: &tokio_postgres::Transaction<'_>,
        revision: i64,
    ) -> Result<()> {
        let db = |e| RegistryError::from(self.db.error(e));
        let next = revision + 1;
        txn.execute("UPDATE registry_meta SET revision = $1", &[&next])
            .await
            .map_err(db)?;
        txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &next.to_string()])
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Claim `tick` of `trigger` of `app` (see [`TickClaim`]): the trigger's row, locked, moves
    /// forward only, so of all claims of one tick, through any origin, one wins.
    pub(crate) async fn claim_tick(
        &self,
        app: &str,
        trigger: &str,
        tick: u64,
    ) -> Result<TickClaim> {
        let mut client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        let txn = client.transaction().await.map_err(db)?;
        txn.execute(
            "INSERT INTO trigger_ticks (app, trigger) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&app, &trigger],
        )
        .await
        .map_err(db)?;
        let last: Option<i64> = txn
            .query_one(
                "SELECT last_tick FROM trigger_ticks WHERE app = $1 AND trigger = $2 FOR UPDATE",
                &[&app, &trigger],
            )
            .await
            .map_err(db)?
            .get(0);
        let claim = TickClaim::decide(last.map(|t| t as u64), tick);
        if matches!(claim, TickClaim::Won { .. }) {
            txn.execute(
                "UPDATE trigger_ticks SET last_tick = $3 WHERE app = $1 AND trigger = $2",
                &[&app, &trigger, &(tick as i64)],
            )
            .await
            .map_err(db)?;
        }
        txn.commit().await.map_err(db)?;
        Ok(claim)
    }

    /// Set (`Some`) or delete (`None`) the secret `name` of `app` (which must exist), moving
    /// the revision if anything changed. Returns whether the secret was there before.
    pub(crate) async fn change_secret(
        &self,
        app: &str,
        name: &str,
        value: Option<StoredSecret>,
    ) -> Result<bool> {
        let mut client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        let txn = client.transaction().await.map_err(db)?;
        let revision = self.locked_revision(&txn).await?;
        let found = txn
            .query_opt("SELECT 1 FROM registry_apps WHERE name = $1", &[&app])
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(RegistryError::NotFound(format!("no app named {app}")));
        }
        let held: Vec<String> = txn
            .query("SELECT name FROM registry_secrets WHERE app = $1", &[&app])
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let existed = held.iter().any(|n| n == name);
        match &value {
            Some(secret) => {
                secrets::check_room(&held, name)?;
                txn.execute(
                    "INSERT INTO registry_secrets (app, name, record) VALUES ($1, $2, $3)
                     ON CONFLICT (app, name) DO UPDATE SET record = excluded.record",
                    &[&app, &name, &Json(secret)],
                )
                .await
                .map_err(db)?;
            }
            None => {
                txn.execute(
                    "DELETE FROM registry_secrets WHERE app = $1 AND name = $2",
                    &[&app, &name],
                )
                .await
                .map_err(db)?;
            }
        }
        if value.is_some() || existed {
            self.bump_revision(&txn, revision).await?;
        }
        txn.commit().await.map_err(db)?;
        Ok(existed)
    }

    /// The secrets of `app` (sealed), or of every app.
    pub(crate) async fn secrets(&self, app: Option<&str>) -> Result<Vec<StoredSecret>> {
        let client = self.db.client().await?;
        read_secrets(&*client, app, &self.db).await
    }

    /// Every app, in name order.
    pub(crate) async fn apps(&self) -> Result<Vec<AppRecord>> {
        let client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        client
            .query("SELECT record FROM registry_apps ORDER BY name", &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                row.try_get::<_, Json<AppRecord>>(0)
                    .map(|json| json.0)
                    .map_err(db)
            })
            .collect()
    }

    /// An app with all its versions, oldest first; `None` if there is no such app.
    pub(crate) async fn app(&self, app: &str) -> Result<Option<(AppRecord, Vec<VersionRecord>)>> {
        let client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        // One statement, one snapshot: the record and its versions agree.
        let rows = client
            .query(
                "SELECT a.record, v.record FROM registry_apps a
                 LEFT JOIN registry_versions v ON v.app = a.name
                 WHERE a.name = $1 ORDER BY v.version",
                &[&app],
            )
            .await
            .map_err(db)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let record = first.try_get::<_, Json<AppRecord>>(0).map_err(db)?.0;
        let versions = rows
            .iter()
            .filter_map(|row| {
                row.try_get::<_, Option<Json<VersionRecord>>>(1)
                    .map(|v| v.map(|json| json.0))
                    .transpose()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db)?;
        Ok(Some((record, versions)))
    }

    /// What every app runs (see `rules::releases`), and the revision it belongs to, with
    /// every app's secrets (sealed), from one snapshot.
    pub(crate) async fn desired_state(&self) -> Result<(DesiredState, Vec<StoredSecret>)> {
        let mut client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        let txn = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let revision: i64 = txn
            .query_one("SELECT revision FROM registry_meta", &[])
            .await
            .map_err(db)?
            .get(0);
        let records = txn
            .query("SELECT record FROM registry_apps ORDER BY name", &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.try_get::<_, Json<AppRecord>>(0).map(|json| json.0))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db)?;
        // The versions each app's releases need, all in one statement.
        let (mut names, mut lows, mut highs) = (Vec::new(), Vec::new(), Vec::new());
        for record in &records {
            let wanted = rules::wanted_versions(record);
            names.push(record.name.as_str());
            lows.push(*wanted.start() as i64);
            highs.push(*wanted.end() as i64);
        }
        let mut versions: HashMap<String, Vec<VersionRecord>> = HashMap::new();
        for row in txn
            .query(
                "SELECT v.app, v.record FROM registry_versions v
                 JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS w(app, lo, hi)
                   ON v.app = w.app AND v.version BETWEEN w.lo AND w.hi",
                &[&names, &lows, &highs],
            )
            .await
            .map_err(db)?
        {
            let app: String = row.try_get(0).map_err(db)?;
            let version = row.try_get::<_, Json<VersionRecord>>(1).map_err(db)?.0;
            versions.entry(app).or_default().push(version);
        }
        let sealed = read_secrets(&txn, None, &self.db).await?;
        txn.commit().await.map_err(db)?;
        let mut state = DesiredState {
            revision: revision as u64,
            ..DesiredState::default()
        };
        for record in &records {
            let found = versions.get(&record.name).map_or(&[][..], Vec::as_slice);
            let (active, others) = rules::releases(record, found)?;
            state.releases.extend(active);
            state.others.extend(others);
        }
        Ok((state, sealed))
    }

    /// Fill an empty registry with `apps` (each record with its versions) at `revision`, in
    /// one transaction: a registry moved here from the embedded engine. Refused if the
    /// registry holds anything.
    pub(crate) async fn import(
        &self,
        revision: u64,
        apps: &[(AppRecord, Vec<VersionRecord>)],
        secrets: &[StoredSecret],
    ) -> Result<()> {
        let mut client = self.db.client().await?;
        let db = |e| RegistryError::from(self.db.error(e));
        let txn = client.transaction().await.map_err(db)?;
        let (current, held): (i64, i64) = {
            let row = txn
                .query_one(
                    "SELECT revision, (SELECT count(*) FROM registry_apps) \
                     FROM registry_meta FOR UPDATE",
                    &[],
                )
                .await
                .map_err(db)?;
            (row.get(0), row.get(1))
        };
        if current != 0 || held != 0 {
            return Err(RegistryError::Conflict(format!(
                "the registry in {} is not empty (revision {current}, {held} apps)",
                self.db.shown()
            )));
        }
        for (record, versions) in apps {
            txn.execute(
                "INSERT INTO registry_apps (name, record) VALUES ($1, $2)",
                &[&record.name, &Json(record)],
            )
            .await
            .map_err(db)?;
            for version in versions {
                txn.execute(
                    "INSERT INTO registry_versions (app, version, record) VALUES ($1, $2, $3)",
                    &[&record.name, &(version.version as i64), &Json(version)],
                )
                .await
                .map_err(db)?;
            }
        }
        // Sealed as they are: the origins on the database need the same key file.
        for secret in secrets {
            txn.execute(
                "INSERT INTO registry_secrets (app, name, record) VALUES ($1, $2, $3)",
                &[&secret.app, &secret.name, &Json(secret)],
            )
            .await
            .map_err(db)?;
        }
        txn.execute(
            "UPDATE registry_meta SET revision = $1",
            &[&(revision as i64)],
        )
        .await
        .map_err(db)?;
        txn.commit().await.map_err(db)?;
        Ok(())
    }
}

/// The secrets of `app` (sealed), or of every app, through `client` (or a transaction).
async fn read_secrets(
    client: &impl tokio_postgres::GenericClient,
    app: Option<&str>,
    db: &Database,
) -> Result<Vec<StoredSecret>> {
    let dbe = |e| RegistryError::from(db.error(e));
    let rows = match app {
        Some(app) => {
            client
                .query(
                    "SELECT record FROM registry_secrets WHERE app = $1 ORDER BY name",
                    &[&app],
                )
                .await
        }
        None => {
            client
                .query(
                    "SELECT record FROM registry_secrets ORDER BY app, name",
                    &[],
                )
                .await
        }
    }
    .map_err(dbe)?;
    rows.iter()
        .map(|row| row.try_get::<_, Json<StoredSecret>>(0).map(|json| json.0))
        .collect::<std::result::Result<_, _>>()
        .map_err(dbe)
}
