//! Applying desired states on a node: fetch each new component (verifying its hash), compile it
//! through the cache, build a whole new route table and swap it in at once. An app whose new
//! release fails keeps serving its previous one. What runs is written to disk, so a node that
//! restarts while the origin is away serves what it last knew.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use tokio::sync::Mutex;

use super::reconcile::plan;
use crate::server::routes::{self, LiveRoutes};
use outpost_core::blobs::{BlobStore, BlobWriter};
use outpost_core::wire::{AppStatus, DesiredState, NodeReport, Release};
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
    deployment: Arc<Deployment>,
}

#[derive(Default)]
struct Inner {
    running: BTreeMap<String, Running>,
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
    blobs: BlobStore,
    state_file: PathBuf,
    inner: Mutex<Inner>,
}

impl Deployer {
    /// A deployer serving `fixed` apps ahead of fleet apps, with its blobs and saved state in
    /// `data_dir`; nothing is restored until [`Deployer::restore`].
    pub fn new(
        runtime: Arc<Runtime>,
        routes: Arc<LiveRoutes>,
        fixed: Vec<Arc<Deployment>>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        Ok(Deployer {
            runtime,
            routes,
            fixed,
            blobs: BlobStore::open(&data_dir.join("blobs"))?,
            state_file: data_dir.join("fleet-state.json"),
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
        let state: DesiredState = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved fleet state", self.state_file.display()))?;
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
        let running: BTreeMap<String, Release> = inner
            .running
            .iter()
            .map(|(app, r)| (app.clone(), r.release.clone()))
            .collect();
        let plan = plan(&running, desired);
        if plan.deploy.is_empty() && plan.remove.is_empty() {
            inner.revision = desired.revision;
            inner.desired = desired.releases.iter().map(|r| r.app.clone()).collect();
            inner.errors.clear();
            self.persist(&inner);
            return report(&inner);
        }

        let mut next = inner.running.clone();
        let mut errors = BTreeMap::new();
        for app in &plan.remove {
            next.remove(app);
            tracing::info!(app, "app removed");
        }
        let mut changed = Vec::new();
        for release in plan.deploy {
            match self.prepare(&release, source).await {
                Ok(deployment) => {
                    changed.push(release.app.clone());
                    next.insert(
                        release.app.clone(),
                        Running {
                            release,
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

        // A changed app whose routes collide with another's goes back to what it ran before.
        let table = loop {
            let order = self
                .fixed
                .iter()
                .chain(
                    next.iter()
                        .filter(|(app, _)| !changed.contains(app))
                        .map(|(_, r)| &r.deployment),
                )
                .chain(
                    changed
                        .iter()
                        .filter_map(|app| next.get(app))
                        .map(|r| &r.deployment),
                );
            match routes::build(order) {
                Ok(table) => break table,
                Err(conflict) => {
                    let app = conflict.second.clone();
                    tracing::error!(app, "release not deployed: {conflict}");
                    errors.insert(app.clone(), conflict.to_string());
                    changed.retain(|a| a != &app);
                    match inner.running.get(&app) {
                        Some(previous) => next.insert(app, previous.clone()),
                        None => next.remove(&app),
                    };
                }
            }
        };
        self.routes.swap(table);
        for app in &changed {
            let r = &next[app];
            tracing::info!(app, version = r.release.version, sha256 = %r.release.sha256, "release live");
        }
        inner.running = next;
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
    async fn prepare(
        &self,
        release: &Release,
        source: &impl BlobSource,
    ) -> anyhow::Result<Arc<Deployment>> {
        let settings = release
            .manifest
            .settings()
            .map_err(|e| anyhow!("invalid manifest: {e}"))?;
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
                let writer = self.blobs.writer(&release.sha256)?;
                source
                    .fetch(&release.sha256, writer)
                    .await
                    .with_context(|| format!("fetching component {}", release.sha256))?;
                self.blobs.read_verified(&release.sha256)?
            }
        };
        let runtime = self.runtime.clone();
        let app = self.runtime.app(&settings);
        tokio::task::spawn_blocking(move || runtime.deploy_bytes(app, &bytes))
            .await
            .context("the compile task failed")?
    }

    /// Record what runs, so a restart can serve it without the origin.
    fn persist(&self, inner: &Inner) {
        let state = DesiredState {
            revision: inner.revision,
            releases: inner.running.values().map(|r| r.release.clone()).collect(),
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
            .running
            .keys()
            .filter(|a| !inner.desired.contains(a))
            .cloned(),
    );
    NodeReport {
        revision: inner.revision,
        apps: apps
            .into_iter()
            .map(|app| AppStatus {
                live_version: inner.running.get(&app).map(|r| r.release.version),
                error: inner.errors.get(&app).cloned(),
                app,
            })
            .collect(),
    }
}
