//! Applying desired states on a node: fetch each new component (verifying its hash), compile it
//! through the cache, build whole new routes (the route table, the splits of apps shared
//! between versions, the versions preview hosts reach) and swap them in at once. An app whose
//! new active release fails keeps serving its previous one; a split one of whose versions
//! failed serves its active version alone. What runs is written to disk, so a node that
//! restarts while the origin is away serves what it last knew; the apps' secrets, which
//! handlers read like config values, only sealed (with a key derived from the node's cluster
//! key), never in clear.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use tokio::sync::Mutex;

use super::reconcile::{VersionKey, key, same_build, to_deploy, wanted};
use crate::server::routes::{self, LiveRoutes};
use crate::server::split::Split;
use outpost_core::blobs::{BlobStore, BlobWriter};
use outpost_core::sealed::SealKey;
use outpost_core::wire::{
    AppSecrets, AppStatus, DesiredState, NodeReport, Release, SecretValue, VersionShare,
};
use outpost_runtime::{Deployment, Runtime};

/// Where missing components come from (the origin, over the cluster link).
pub trait BlobSource: Send + Sync {
    /// Stream the blob `sha256` into `into` and finish it (which checks the hash).
    fn fetch(
        &self,
        sha256: &str,
        into: BlobWriter,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Used when restoring from disk: nothing can be fetched.
pub struct LocalOnly;

impl BlobSource for LocalOnly {
    async fn fetch(&self, sha256: &str, _into: BlobWriter) -> anyhow::Result<()> {
        bail!("component {sha256} is not on this node's disk and the origin is not reachable")
    }
}

#[derive(Clone)]
struct Running {
    release: Release,
    /// The app's secrets it was deployed with.
    secrets: Option<Secrets>,
    deployment: Arc<Deployment>,
}

/// One app's secrets, by name.
type Secrets = BTreeMap<String, SecretValue>;

/// What the secrets file is sealed for.
const SECRETS_PLACE: &str = "outpost node secrets";

#[derive(Default)]
struct Inner {
    /// Every version deployed, by app and version.
    running: BTreeMap<VersionKey, Running>,
    /// By app, the version its routes lead to.
    active: BTreeMap<String, u64>,
    /// By app, how its traffic is split, when it is.
    splits: BTreeMap<String, Vec<VersionShare>>,
    /// The apps' secrets, as the last desired state gave them.
    secrets: Vec<AppSecrets>,
    revision: u64,
    /// Apps of the last desired state whose release could not go live, and why.
    errors: BTreeMap<String, String>,
    desired: Vec<String>,
}

/// Applies desired states to this node, and saves the fleet state it runs in its data dir.
pub struct Deployer {
    runtime: Arc<Runtime>,
    routes: Arc<LiveRoutes>,
    /// Apps from node.toml: always served, ahead of fleet apps.
    fixed: Vec<Arc<Deployment>>,
    /// Whether this node runs versions only preview hosts reach.
    previews: bool,
    blobs: BlobStore,
    state_file: PathBuf,
    /// Where the apps' secrets are kept, sealed with `seal`; without a key, nowhere.
    secrets_file: PathBuf,
    seal: Option<SealKey>,
    inner: Mutex<Inner>,
}

impl Deployer {
    /// A deployer serving `fixed` apps ahead of fleet apps, with its blobs and saved state in
    /// `data_dir` (the apps' secrets sealed with `seal`, or not kept on disk at all), running
    /// preview-only versions if `previews`; nothing is restored until [`Deployer::restore`].
    pub fn new(
        runtime: Arc<Runtime>,
        routes: Arc<LiveRoutes>,
        fixed: Vec<Arc<Deployment>>,
        previews: bool,
        data_dir: &Path,
        seal: Option<SealKey>,
    ) -> anyhow::Result<Self> {
        Ok(Deployer {
            runtime,
            routes,
            fixed,
            previews,
            blobs: BlobStore::open(&data_dir.join("blobs"))?,
            state_file: data_dir.join("fleet-state.json"),
            secrets_file: data_dir.join("secrets.sealed"),
            seal,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Serve what this node ran before it stopped, from its own disk.
    pub async fn restore(&self) -> anyhow::Result<NodeReport> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.report().await);
            }
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", self.state_file.display()));
            }
        };
        let mut state: DesiredState = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved fleet state", self.state_file.display()))?;
        state.secrets = self.restore_secrets();
        tracing::info!(
            revision = state.revision,
            apps = state.releases.len(),
            "restoring the last known fleet state from disk"
        );
        Ok(self.apply(&state, &LocalOnly).await)
    }

    /// Move towards `desired`. Returns the node's report afterwards.
    pub async fn apply(&self, desired: &DesiredState, source: &impl BlobSource) -> NodeReport {
        let mut inner = self.inner.lock().await;
        if desired.revision < inner.revision {
            tracing::debug!(
                revision = desired.revision,
                have = inner.revision,
                "ignoring an older desired state"
            );
            return report(&inner);
        }
        let wanted = wanted(desired, self.previews);
        let running: BTreeMap<VersionKey, Release> = inner
            .running
            .iter()
            .map(|(key, r)| (key.clone(), r.release.clone()))
            .collect();
        let secrets_of = |app: &str| desired.secrets_of(app).map(|s| &s.values);
        let unchanged = running.len() == wanted.len()
            && wanted.iter().all(|r| running.get(&key(r)) == Some(r))
            && inner.secrets == desired.secrets
            && inner.active.len() == desired.releases.len()
            && desired
                .releases
                .iter()
                .all(|r| inner.active.get(&r.app) == Some(&r.version));
        if unchanged {
            inner.revision = desired.revision;
            inner.desired = desired.releases.iter().map(|r| r.app.clone()).collect();
            inner.errors.clear();
            self.persist(&inner);
            return report(&inner);
        }

        // Everything running stays until the new routes are built: an app whose new active
        // release fails goes on with its previous one.
        let mut next = inner.running.clone();
        let mut errors = BTreeMap::new();
        // New builds, and running ones whose app's secrets changed.
        let mut deploy = to_deploy(&running, &wanted);
        deploy.extend(
            wanted
                .iter()
                .filter(|r| {
                    inner.running.get(&key(r)).is_some_and(|now| {
                        same_build(&now.release, r) && now.secrets.as_ref() != secrets_of(&r.app)
                    })
                })
                .cloned(),
        );
        for release in deploy {
            let secrets = secrets_of(&release.app).cloned();
            match self.prepare(&release, secrets.as_ref(), source).await {
                Ok(deployment) => {
                    next.insert(
                        key(&release),
                        Running {
                            release,
                            secrets,
                            deployment,
                        },
                    );
                }
                Err(err) => {
                    tracing::error!(app = %release.app, version = release.version, "release not deployed: {err:#}");
                    errors.insert(release.app.clone(), format!("{err:#}"));
                }
            }
        }
        // A new share of a running version needs no new deployment.
        for release in &wanted {
            if let Some(r) = next.get_mut(&key(release))
                && same_build(&r.release, release)
            {
                r.release = release.clone();
            }
        }

        // Each desired app's active version, if deployed, else what it ran before.
        let mut active: BTreeMap<String, u64> = BTreeMap::new();
        let mut changed = Vec::new();
        for release in &desired.releases {
            let deployed = next
                .get(&key(release))
                .is_some_and(|r| same_build(&r.release, release));
            let before = inner.active.get(&release.app).copied();
            match (deployed, before) {
                (true, _) => {
                    if before != Some(release.version) {
                        changed.push(release.app.clone());
                    }
                    active.insert(release.app.clone(), release.version);
                }
                (false, Some(version)) => {
                    active.insert(release.app.clone(), version);
                }
                (false, None) => {}
            }
        }

        // A changed app whose routes collide with another's goes back to what it ran before.
        let mut table = loop {
            let deployment = |app: &String| &next[&(app.clone(), active[app])].deployment;
            let order = self
                .fixed
                .iter()
                .chain(
                    active
                        .keys()
                        .filter(|a| !changed.contains(a))
                        .map(deployment),
                )
                .chain(changed.iter().map(deployment));
            match routes::build(order) {
                Ok(table) => break table,
                Err(conflict) => {
                    let app = conflict.second.clone();
                    tracing::error!(app, "release not deployed: {conflict}");
                    errors.insert(app.clone(), conflict.to_string());
                    changed.retain(|a| a != &app);
                    match inner.active.get(&app) {
                        Some(previous) => active.insert(app, *previous),
                        None => active.remove(&app),
                    };
                }
            }
        };

        // Splits, where the app's desired active version is the one serving and every
        // version of the split is deployed.
        let mut splits = BTreeMap::new();
        for release in &desired.releases {
            if active.get(&release.app) != Some(&release.version) {
                continue;
            }
            let Some(shares) = desired.split_of(release) else {
                continue;
            };
            let members: Option<Vec<_>> = shares
                .iter()
                .map(|share| {
                    next.get(&(release.app.clone(), share.version))
                        .map(|r| (*share, r.deployment.clone()))
                })
                .collect();
            match members.and_then(Split::new) {
                Some(split) => {
                    table =
                        table.with_split(next[&key(release)].deployment.app.name.clone(), split);
                    splits.insert(release.app.clone(), shares);
                }
                None => {
                    let why = "a version of its split is not deployed here; the active version takes all its traffic";
                    tracing::error!(app = %release.app, "{why}");
                    errors
                        .entry(release.app.clone())
                        .or_insert_with(|| why.to_string());
                }
            }
        }

        // What is neither wanted nor serving goes; the rest is reachable by preview host.
        let wanted_keys: std::collections::BTreeSet<VersionKey> = wanted.iter().map(key).collect();
        next.retain(|key, _| wanted_keys.contains(key) || active.get(&key.0) == Some(&key.1));
        for ((_, version), r) in &next {
            table = table.with_preview(*version, r.deployment.clone());
        }
        self.routes.swap(table);
        for app in &changed {
            let r = &next[&(app.clone(), active[app])];
            tracing::info!(app, version = r.release.version, sha256 = %r.release.sha256, "release live");
        }
        for (app, shares) in &splits {
            if inner.splits.get(app) != Some(shares) {
                tracing::info!(app, ?shares, "traffic split");
            }
        }
        inner.running = next;
        inner.active = active;
        inner.splits = splits;
        if inner.secrets != desired.secrets {
            inner.secrets = desired.secrets.clone();
            self.persist_secrets(&inner.secrets);
        }
        inner.revision = desired.revision;
        inner.errors = errors;
        inner.desired = desired.releases.iter().map(|r| r.app.clone()).collect();
        self.persist(&inner);
        report(&inner)
    }

    /// What this node runs now, and why any desired release is not live.
    pub async fn report(&self) -> NodeReport {
        report(&*self.inner.lock().await)
    }

    /// Fetch (or find) the component, check it, compile it: everything short of serving it.
    /// The app's secrets join its config values (a secret wins over a config value of the
    /// same name).
    async fn prepare(
        &self,
        release: &Release,
        secrets: Option<&Secrets>,
        source: &impl BlobSource,
    ) -> anyhow::Result<Arc<Deployment>> {
        let mut settings = release
            .manifest
            .settings()
            .map_err(|e| anyhow!("invalid manifest: {e}"))?;
        if let Some(secrets) = secrets {
            settings
                .config
                .retain(|(name, _)| !secrets.contains_key(name));
            settings.config.extend(
                secrets
                    .iter()
                    .map(|(name, value)| (name.clone(), value.0.clone())),
            );
        }
        if settings.name != release.app {
            bail!(
                "the manifest names app {:?}, not {:?}",
                settings.name,
                release.app
            );
        }
        let bytes = match self.blobs.read_verified(&release.sha256) {
            Ok(bytes) => bytes,
            Err(_) => {
                self.fetch(&release.sha256, source).await?;
                self.blobs.read_verified(&release.sha256)?
            }
        };
        let runtime = self.runtime.clone();
        let app = self.runtime.app(&settings);
        tokio::task::spawn_blocking(move || runtime.deploy_bytes(app, &bytes))
            .await
            .context("the compile task failed")?
    }

    /// Fetch component `sha256` from `source` into the blob store (checked against its name).
    async fn fetch(&self, sha256: &str, source: &impl BlobSource) -> anyhow::Result<()> {
        let writer = self.blobs.writer(sha256)?;
        source
            .fetch(sha256, writer)
            .await
            .with_context(|| format!("fetching component {sha256}"))
    }

    /// Make sure every component `desired` names is in the blob store, whether this node runs
    /// it or not: a relay serves them all to its followers.
    pub async fn store_components(
        &self,
        desired: &DesiredState,
        source: &impl BlobSource,
    ) -> anyhow::Result<()> {
        for release in desired.all_releases() {
            if !self.blobs.contains(&release.sha256) {
                self.fetch(&release.sha256, source).await?;
            }
        }
        Ok(())
    }

    /// The components this node holds, by hash.
    pub fn blob_store(&self) -> &BlobStore {
        &self.blobs
    }

    /// Keep the apps' secrets for a restart without the origin: sealed, or not at all.
    fn persist_secrets(&self, secrets: &[AppSecrets]) {
        let Some(seal) = &self.seal else {
            return;
        };
        let plain = serde_json::to_vec(secrets).expect("secrets serialize");
        let sealed = seal.seal(SECRETS_PLACE, &plain);
        if let Err(err) = outpost_core::files::write_atomic(&self.secrets_file, &sealed) {
            tracing::error!(
                "could not save the apps' secrets to {}: {err:#}",
                self.secrets_file.display()
            );
        }
    }

    /// The secrets kept by [`Deployer::persist_secrets`], if any can be read.
    fn restore_secrets(&self) -> Vec<AppSecrets> {
        let (Some(seal), Ok(sealed)) = (&self.seal, std::fs::read(&self.secrets_file)) else {
            return Vec::new();
        };
        let opened = seal
            .open(SECRETS_PLACE, &sealed)
            .and_then(|plain| Ok(serde_json::from_slice(&plain)?));
        opened.unwrap_or_else(|err| {
            tracing::error!(
                "the apps' secrets in {} do not open ({err:#}); serving without them until the origin sends them",
                self.secrets_file.display()
            );
            Vec::new()
        })
    }

    /// Record what runs, so a restart can serve it without the origin.
    fn persist(&self, inner: &Inner) {
        let (releases, others) = inner
            .running
            .iter()
            .map(|((app, version), r)| (inner.active.get(app) == Some(version), r.release.clone()))
            .partition::<Vec<_>, _>(|(active, _)| *active);
        // The secrets are kept apart, sealed (`persist_secrets`).
        let state = DesiredState {
            revision: inner.revision,
            releases: releases.into_iter().map(|(_, r)| r).collect(),
            others: others.into_iter().map(|(_, r)| r).collect(),
            secrets: Vec::new(),
        };
        let written = serde_json::to_vec_pretty(&state)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| outpost_core::files::write_atomic(&self.state_file, &bytes));
        if let Err(err) = written {
            tracing::error!(
                "could not save the fleet state to {}: {err:#}",
                self.state_file.display()
            );
        }
    }
}

fn report(inner: &Inner) -> NodeReport {
    let mut apps: Vec<String> = inner.desired.clone();
    apps.extend(
        inner
            .active
            .keys()
            .filter(|a| !inner.desired.contains(a))
            .cloned(),
    );
    NodeReport {
        revision: inner.revision,
        apps: apps
            .into_iter()
            .map(|app| AppStatus {
                live_version: inner.active.get(&app).copied(),
                split: inner.splits.get(&app).cloned().unwrap_or_default(),
                error: inner.errors.get(&app).cloned(),
                app,
            })
            .collect(),
    }
}
