//! The deployment registry: apps, their versions and which one is active, in one of two
//! engines: the origin's embedded database (redb, `redb_store`), or the fleet's PostgreSQL
//! (`pg_store`), which several origins share. What each change does is decided once, in
//! `rules`, inside the engine's transaction.
//!
//! Every change that alters what nodes should run (activate, rollback, delete) moves a global
//! revision in the same transaction, and the new desired state is published to the cluster
//! link once the transaction is durable. With PostgreSQL, changes other origins make are
//! published too: see [`Registry::follow`].

mod pg_store;
mod redb_store;
mod rules;
pub(crate) mod secrets;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use outpost_core::api::{AppRecord, VersionRecord};
use outpost_core::clock::unix_secs;
use outpost_core::config::AppManifest;
use outpost_core::sealed::SealKey;
use outpost_core::wire::{AppSecrets, DesiredState, SecretValue, VersionShare};

use crate::database::Database;
use pg_store::PgRegistry;
use redb_store::RedbRegistry;
use rules::Outcome;
pub(crate) use rules::Rollout;

/// How often an origin on PostgreSQL reads the revision again even without a notification.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such app or version.
    #[error("{0}")]
    NotFound(String),
    /// The change cannot be made in the current state (nothing earlier to roll back to).
    #[error("{0}")]
    Conflict(String),
    /// What was asked is malformed or out of bounds (a secret's name, its size).
    #[error("{0}")]
    Invalid(String),
    /// The database is out of reach for now; the same call may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed or holds a record that does not decode.
    #[error("storage: {0}")]
    Storage(String),
}

pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What a node's claim of a trigger's tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickClaim {
    /// The node fires the tick. `previous` is the tick fired before it, if any: the ticks
    /// between the two were missed.
    Won {
        /// The trigger's tick fired before this one.
        previous: Option<u64>,
    },
    /// This tick, or a later one, went to a node already.
    Taken,
}

impl TickClaim {
    /// The claim of `tick` for a trigger whose last fired tick is `last`.
    fn decide(last: Option<u64>, tick: u64) -> Self {
        if outpost_core::cron::claim_wins(last, tick) {
            TickClaim::Won { previous: last }
        } else {
            TickClaim::Taken
        }
    }
}

/// Where the registry lives.
enum Engine {
    Redb(RedbRegistry),
    Postgres(PgRegistry),
}

/// The registry, and the desired state derived from it for the cluster link.
pub struct Registry {
    engine: Engine,
    state: watch::Sender<Arc<DesiredState>>,
    /// What apps' secrets are sealed with; `None`: this origin takes no secrets.
    secrets_key: Option<Arc<SealKey>>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Storage(format!("corrupt record: {e}")))
}

impl Registry {
    /// Open (or create) the embedded registry at `path` and publish the desired state it
    /// holds; apps' secrets are sealed with `secrets_key`, if the origin has one.
    pub fn open(path: &Path, secrets_key: Option<Arc<SealKey>>) -> Result<Self> {
        let engine = RedbRegistry::open(path)?;
        let (state, sealed) = engine.desired_state()?;
        let state = with_secrets(state, sealed, secrets_key.as_deref())?;
        Ok(Registry {
            engine: Engine::Redb(engine),
            state: watch::Sender::new(Arc::new(state)),
            secrets_key,
        })
    }

    /// The registry in `db` (whose schema is up to date), with the desired state it holds;
    /// apps' secrets are sealed with `secrets_key`, if the origin has one.
    pub async fn connect(db: Arc<Database>, secrets_key: Option<Arc<SealKey>>) -> Result<Self> {
        let engine = PgRegistry::new(db);
        let (state, sealed) = engine.desired_state().await?;
        let state = with_secrets(state, sealed, secrets_key.as_deref())?;
        Ok(Registry {
            engine: Engine::Postgres(engine),
            state: watch::Sender::new(Arc::new(state)),
            secrets_key,
        })
    }

    /// With PostgreSQL, publish what other origins change, until the registry is dropped:
    /// read the desired state again on each of their notifications, and every few seconds.
    /// Nothing to do for the embedded engine, which only this origin changes.
    pub fn follow(self: &Arc<Self>, db: &Database) {
        if !matches!(self.engine, Engine::Postgres(_)) {
            return;
        }
        let mut woken = db.listen(pg_store::CHANNEL, FOLLOW_EVERY);
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                if let Err(err) = registry.refresh().await {
                    tracing::warn!("reading the registry: {err}");
                }
            }
        });
    }

    /// The desired state now, and every change after.
    pub fn subscribe(&self) -> watch::Receiver<Arc<DesiredState>> {
        self.state.subscribe()
    }

    /// The desired state as last published.
    pub fn current_state(&self) -> Arc<DesiredState> {
        self.state.borrow().clone()
    }

    /// Read the desired state and publish it if its revision is newer than the one published.
    pub async fn refresh(&self) -> Result<()> {
        let (state, sealed) = match &self.engine {
            Engine::Redb(engine) => engine.desired_state()?,
            Engine::Postgres(engine) => engine.desired_state().await?,
        };
        let state = with_secrets(state, sealed, self.secrets_key.as_deref())?;
        self.state.send_if_modified(|published| {
            let newer = state.revision > published.revision;
            if newer {
                *published = Arc::new(state);
            }
            newer
        });
        Ok(())
    }

    /// Apply a change of `app`, decided by `decide`, and publish the fleet's new desired state
    /// if it moved.
    async fn change<T>(
        &self,
        app: &str,
        decide: impl FnOnce(Option<AppRecord>, &[u64]) -> Result<(Outcome, T)>,
    ) -> Result<T> {
        let (value, moved) = match &self.engine {
            Engine::Redb(engine) => engine.change(app, decide)?,
            Engine::Postgres(engine) => engine.change(app, decide).await?,
        };
        if moved {
            self.refresh().await?;
        }
        Ok(value)
    }

    /// Add a version of `app` (creating the app on its first version), released by
    /// `rollout`: uploaded only, active, or given a share of the traffic.
    pub async fn create_version(
        &self,
        app: &str,
        sha256: &str,
        manifest: AppManifest,
        note: Option<String>,
        rollout: Rollout,
    ) -> Result<VersionRecord> {
        self.change(app, |existing, _| {
            let now = unix_secs();
            rules::new_version(app, existing, sha256, manifest, note, rollout, now)
        })
        .await
    }

    /// Split the traffic of `app` between versions by `shares` (the first becomes the active
    /// one); one share of 100 is an activation. Returns the active version and the split.
    pub async fn split(
        &self,
        app: &str,
        shares: &[VersionShare],
    ) -> Result<(u64, Vec<VersionShare>)> {
        self.change(app, |existing, versions| {
            rules::split(app, existing, versions, shares, unix_secs())
        })
        .await
    }

    /// Make `version` of `app` the active one.
    pub async fn activate(&self, app: &str, version: u64) -> Result<()> {
        self.change(app, |existing, versions| {
            rules::activate(app, existing, versions, version, unix_secs())
        })
        .await
        .map(drop)
    }

    /// Go back to `to`, or to the version active before the current one. Returns the version.
    pub async fn rollback(&self, app: &str, to: Option<u64>) -> Result<u64> {
        self.change(app, |existing, versions| {
            rules::rollback(app, existing, versions, to, unix_secs())
        })
        .await
    }

    /// Remove an app and all its versions; nodes stop serving it.
    pub async fn delete_app(&self, app: &str) -> Result<()> {
        self.change(app, |existing, _| rules::delete(app, existing))
            .await
    }

    /// Set the secret `name` of `app` (which must exist) to `value`, sealed; nodes get it with
    /// the next desired state. Returns whether it replaced one.
    pub async fn put_secret(&self, app: &str, name: &str, value: &str) -> Result<bool> {
        secrets::check_name(name)?;
        if value.len() > secrets::MAX_VALUE_BYTES {
            return Err(RegistryError::Invalid(format!(
                "a secret is at most {} KiB",
                secrets::MAX_VALUE_BYTES >> 10
            )));
        }
        let key = self.secrets_key.as_ref().ok_or_else(|| {
            RegistryError::Invalid(
                "this origin keeps no secrets: origin.toml names no [secrets] key_file".into(),
            )
        })?;
        let stored = secrets::StoredSecret {
            app: app.to_string(),
            name: name.to_string(),
            sealed: hex::encode(key.seal(&secrets::place(app, name), value.as_bytes())),
            updated_at: unix_secs(),
        };
        let replaced = match &self.engine {
            Engine::Redb(engine) => engine.change_secret(app, name, Some(stored))?,
            Engine::Postgres(engine) => engine.change_secret(app, name, Some(stored)).await?,
        };
        self.refresh().await?;
        Ok(replaced)
    }

    /// Delete the secret `name` of `app`; nodes drop it with the next desired state.
    pub async fn delete_secret(&self, app: &str, name: &str) -> Result<()> {
        let existed = match &self.engine {
            Engine::Redb(engine) => engine.change_secret(app, name, None)?,
            Engine::Postgres(engine) => engine.change_secret(app, name, None).await?,
        };
        if !existed {
            return Err(RegistryError::NotFound(format!(
                "app {app} has no secret {name}"
            )));
        }
        self.refresh().await
    }

    /// The names of `app`'s secrets, with when each was set (never a value).
    pub async fn secret_names(&self, app: &str) -> Result<Vec<(String, u64)>> {
        self.app(app).await?;
        let stored = match &self.engine {
            Engine::Redb(engine) => engine.secrets(Some(app))?,
            Engine::Postgres(engine) => engine.secrets(Some(app)).await?,
        };
        Ok(stored.into_iter().map(|s| (s.name, s.updated_at)).collect())
    }

    /// Claim `tick` of `trigger` (its key) of `app` for a node; the decision is durable
    /// before it returns.
    pub(crate) async fn claim_tick(
        &self,
        app: &str,
        trigger: &str,
        tick: u64,
    ) -> Result<TickClaim> {
        match &self.engine {
            Engine::Redb(engine) => engine.claim_tick(app, trigger, tick),
            Engine::Postgres(engine) => engine.claim_tick(app, trigger, tick).await,
        }
    }

    /// Every app, in name order.
    pub async fn apps(&self) -> Result<Vec<AppRecord>> {
        match &self.engine {
            Engine::Redb(engine) => engine.apps(),
            Engine::Postgres(engine) => engine.apps().await,
        }
    }

    /// An app with all its versions, oldest first.
    pub async fn app(&self, app: &str) -> Result<(AppRecord, Vec<VersionRecord>)> {
        let found = match &self.engine {
            Engine::Redb(engine) => engine.app(app)?,
            Engine::Postgres(engine) => engine.app(app).await?,
        };
        found.ok_or_else(|| RegistryError::NotFound(format!("no app named {app}")))
    }

    /// Copy everything this registry holds (every app with all its versions, their secrets
    /// still sealed, and the revision) into `target`, a registry on PostgreSQL that holds nothing yet: the move
    /// from the embedded engine. Returns the apps and versions copied.
    pub async fn copy_into(&self, target: &Registry) -> Result<(usize, usize)> {
        let Engine::Postgres(into) = &target.engine else {
            return Err(RegistryError::Conflict(
                "a registry is copied into PostgreSQL only".into(),
            ));
        };
        let mut apps = Vec::new();
        for record in self.apps().await? {
            apps.push(self.app(&record.name).await?);
        }
        let versions = apps.iter().map(|(_, versions)| versions.len()).sum();
        let secrets = match &self.engine {
            Engine::Redb(engine) => engine.secrets(None)?,
            Engine::Postgres(engine) => engine.secrets(None).await?,
        };
        into.import(self.current_state().revision, &apps, &secrets)
            .await?;
        Ok((apps.len(), versions))
    }
}

/// `state` with the apps' secrets opened from `sealed` (by `key`; refused without one if any
/// are stored).
fn with_secrets(
    mut state: DesiredState,
    sealed: Vec<secrets::StoredSecret>,
    key: Option<&SealKey>,
) -> Result<DesiredState> {
    if sealed.is_empty() {
        return Ok(state);
    }
    let key = key.ok_or_else(|| {
        RegistryError::Storage(
            "apps' secrets are stored but origin.toml names no [secrets] key_file to open them"
                .into(),
        )
    })?;
    for secret in sealed {
        let place = secrets::place(&secret.app, &secret.name);
        let opened = hex::decode(&secret.sealed)
            .map_err(|e| RegistryError::Storage(format!("secret {place}: {e}")))
            .and_then(|bytes| {
                key.open(&place, &bytes)
                    .map_err(|e| RegistryError::Storage(format!("secret {place}: {e}")))
            })?;
        let value = String::from_utf8(opened)
            .map_err(|_| RegistryError::Storage(format!("secret {place} is not text")))?;
        match state.secrets.iter_mut().find(|s| s.app == secret.app) {
            Some(app) => {
                app.values.insert(secret.name, SecretValue(value));
            }
            None => state.secrets.push(AppSecrets {
                app: secret.app,
                values: [(secret.name, SecretValue(value))].into(),
            }),
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
