//! The origin's end of the cluster link: accept nodes (mutual TLS), publish the desired state
//! to each subscriber, serve component blobs and KV sessions, and keep a directory of who is
//! connected and what each node says it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::Registry;
use super::kv::{
    KvAuthority, LinkProtocol, SESSION_INBOX, SESSION_OUTBOX, WriteScope, serve_session,
};
use crate::components::Components;
use crate::registry::TickClaim;
use crate::tail::TailHub;
use outpost_core::api::NodeStatus;
use outpost_core::clock::{unix_millis, unix_secs};
use outpost_core::wire::kv_frames as frames;
use outpost_core::wire::{BlobReply, Open, TickReply, read_frame, write_frame};
use outpost_core::wire::{DesiredState, NodeReport, RelayedReport};
use outpost_core::wire::{LogBatch, TailSet};
use outpost_net::cluster_tls::{protocol_version, verify_peer_name};
use outpost_net::listener::ShutdownSignal;
use outpost_net::listener::wait_for_shutdown;

/// What the origin knows of one node: what it reports, and how many links it holds (it is
/// connected while at least one of its subscriptions is open).
struct NodeEntry {
    status: NodeStatus,
    connections: u32,
}

/// Every node that has connected since the origin started, by name.
#[derive(Default)]
pub struct NodeDirectory {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
}

impl NodeDirectory {
    fn with<R>(&self, name: &str, change: impl FnOnce(&mut NodeEntry) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let entry = nodes.entry(name.to_string()).or_insert_with(|| NodeEntry {
            status: NodeStatus {
                name: name.to_string(),
                ..NodeStatus::default()
            },
            connections: 0,
        });
        change(entry)
    }

    /// `name` linked, at `address` (a socket address, or "via RELAY" for a relay's follower).
    fn connected(&self, name: &str, address: String) {
        self.with(name, |e| {
            e.connections += 1;
            e.status.connected = true;
            e.status.address = address;
            e.status.last_contact_ms = unix_millis();
        });
    }

    fn reported(&self, name: &str, report: NodeReport) {
        self.with(name, |e| {
            e.status.report = report;
            e.status.last_contact_ms = unix_millis();
        });
    }

    fn disconnected(&self, name: &str) {
        self.with(name, |e| {
            e.connections = e.connections.saturating_sub(1);
            e.status.connected = e.connections > 0;
        });
    }

    /// Every node seen since the origin started, connected or not.
    pub fn snapshot(&self) -> Vec<NodeStatus> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.status.clone())
            .collect()
    }
}

/// What the origin serves over the cluster link.
#[derive(Clone)]
pub struct ClusterServices {
    /// The source of the desired state published to each subscribed node.
    pub registry: Arc<Registry>,
    /// The component blobs nodes fetch by sha256.
    pub components: Components,
    /// Where connections and reports of nodes are recorded.
    pub directory: Arc<NodeDirectory>,
    /// The KV authority each node's KV session is served from.
    pub kv: KvAuthority,
    /// Takes the request records nodes send, and says which apps are tailed.
    pub tail: Arc<TailHub>,
}

/// Accept cluster connections until shutdown.
pub async fn serve(
    endpoint: quinn::Endpoint,
    services: ClusterServices,
    mut shutdown: ShutdownSignal,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        let Some(incoming) = incoming else { break };
        let services = services.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    // Most often: no certificate, or one not from the cluster CA.
                    tracing::warn!(%remote, "cluster connection refused: {err}");
                    return;
                }
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                let (connection, services) = (connection.clone(), services.clone());
                tokio::spawn(async move {
                    if let Err(err) = stream(&connection, send, recv, &services).await {
                        tracing::warn!(%remote, "cluster stream failed: {err:#}");
                    }
                });
            }
        });
    }
    endpoint.close(0u32.into(), b"origin shutting down");
}

async fn stream(
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    services: &ClusterServices,
) -> anyhow::Result<()> {
    let Some(open) = read_frame::<_, Open>(&mut recv).await? else {
        return Ok(());
    };
    let ClusterServices {
        registry,
        components,
        directory,
        kv,
        tail,
    } = services;
    let verify = |node: &str| {
        verify_peer_name(connection, node).inspect_err(|_| {
            connection.close(1u32.into(), b"certificate does not match the node name");
        })
    };
    match open {
        Open::Subscribe { node } => {
            verify(&node).with_context(|| format!("node {node:?} refused"))?;
            directory.connected(&node, connection.remote_address().to_string());
            tracing::info!(node, remote = %connection.remote_address(), "node subscribed");
            let result = subscription(&node, &mut send, &mut recv, registry, directory).await;
            directory.disconnected(&node);
            tracing::info!(node, "node unsubscribed");
            result
        }
        Open::Blob { sha256 } => send_blob(&mut send, components, &sha256).await,
        Open::Kv { node } => {
            verify(&node).with_context(|| format!("node {node:?} refused"))?;
            let registry = registry.clone();
            let scope: WriteScope =
                Arc::new(move |namespace| bound_namespace(&registry.current_state(), namespace));
            let protocol = match protocol_version(connection) {
                1 => LinkProtocol::V1,
                _ => LinkProtocol::V2,
            };
            kv_session(node, send, recv, kv.clone(), scope, protocol).await
        }
        Open::Peer { node } => {
            anyhow::bail!("node {node:?} opened a peer stream to the origin; peers are nodes")
        }
        Open::Logs { node } => {
            verify(&node).with_context(|| format!("node {node:?} refused"))?;
            logs_session(&node, send, recv, tail, registry).await
        }
        Open::Reports { relay } => {
            verify(&relay).with_context(|| format!("relay {relay:?} refused"))?;
            relayed_reports(&relay, &mut recv, directory).await
        }
        Open::Tick {
            node,
            app,
            trigger,
            tick,
        } => {
            verify(&node).with_context(|| format!("node {node:?} refused"))?;
            let reply = claim_tick(registry, &app, &trigger, tick).await;
            tracing::debug!(node, app, trigger, tick, ?reply, "tick claimed");
            write_frame(&mut send, &reply).await?;
            send.finish()?;
            Ok(())
        }
    }
}

/// How far ahead of the origin's clock a node may claim a tick: more is a node whose clock is
/// wrong, and its claim would take the tick from the nodes whose clocks are right.
const TICK_AHEAD_SECS: u64 = 30;

/// Decide a node's claim of `tick` of `trigger` (its key) of `app`: refused unless the app's
/// active version has that trigger and the tick is not ahead of the clock; otherwise the
/// registry's durable decision.
async fn claim_tick(registry: &Registry, app: &str, trigger: &str, tick: u64) -> TickReply {
    let state = registry.current_state();
    let declared = state
        .releases
        .iter()
        .filter(|r| r.app == app)
        .flat_map(|r| &r.manifest.triggers)
        .any(|t| t.key() == trigger);
    if !declared {
        let message = format!("the fleet runs no app {app:?} with the trigger {trigger:?}");
        return TickReply::Refused { message };
    }
    let now = unix_secs();
    if tick > now + TICK_AHEAD_SECS {
        let message = format!(
            "tick {tick} is {} s ahead of the origin's clock: check the node's clock",
            tick - now
        );
        return TickReply::Refused { message };
    }
    match registry.claim_tick(app, trigger, tick).await {
        Ok(TickClaim::Won { previous }) => TickReply::Fire { previous },
        Ok(TickClaim::Taken) => TickReply::Taken,
        Err(err) => TickReply::Refused {
            message: format!("the origin could not record the claim: {err}"),
        },
    }
}

/// Tell a node which apps are tailed (now and on every change), and pass on its records.
async fn logs_session(
    node: &str,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    tail: &TailHub,
    registry: &Registry,
) -> anyhow::Result<()> {
    let mut apps = tail.apps();
    let current = apps.borrow_and_update().clone();
    write_frame(&mut send, &TailSet { apps: current }).await?;
    loop {
        tokio::select! {
            changed = apps.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let current = apps.borrow_and_update().clone();
                write_frame(&mut send, &TailSet { apps: current }).await?;
            }
            frame = read_frame::<_, LogBatch>(&mut recv) => {
                let Some(batch) = frame? else { return Ok(()) };
                if batch.dropped > 0 {
                    tracing::warn!(node, dropped = batch.dropped, "a node dropped tail records");
                }
                // A node speaks only for the apps the fleet runs: a record naming another is
                // dropped, not shown to whoever tails that name.
                let state = registry.current_state();
                for mut record in batch.records {
                    if !state.releases.iter().any(|r| r.app == record.app) {
                        tracing::warn!(node, app = record.app, "dropped a tail record for an app the fleet does not run");
                        continue;
                    }
                    record.node = node.to_string();
                    tail.publish(record);
                }
            }
        }
    }
}

/// Whether a node may write `namespace` (stored as `app/namespace`): only if an app the fleet
/// runs binds it in its `[kv] namespaces`.
pub fn bound_namespace(state: &DesiredState, namespace: &str) -> Result<(), String> {
    let bound = outpost_kv::scope::split_namespace(namespace).is_some_and(|(app, name)| {
        state
            .all_releases()
            .any(|r| r.app == app && r.manifest.kv.binds(name))
    });
    if bound {
        Ok(())
    } else {
        Err(format!(
            "no app the fleet runs binds the namespace {namespace:?}"
        ))
    }
}

/// Serve a node's KV session until the stream or the authority ends.
async fn kv_session(
    node: String,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    kv: KvAuthority,
    scope: WriteScope,
    protocol: LinkProtocol,
) -> anyhow::Result<()> {
    let (to_session, from_node) = tokio::sync::mpsc::channel(SESSION_INBOX);
    let (to_node, outbox) = tokio::sync::mpsc::channel(SESSION_OUTBOX);
    tracing::info!(node, ?protocol, "KV session open");
    let session = serve_session(node.clone(), kv, scope, protocol, from_node, to_node);
    // The session's own bounded inbox limits what a node may have waiting (see below).
    let pumping = frames::pump(send, recv, outbox, None, |message, _| {
        match to_session.try_send(message) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    node,
                    "closing the KV session: the node sent {SESSION_INBOX} messages more than the origin took in"
                );
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
    let result = tokio::select! {
        () = session => Ok(()),
        result = pumping => result,
    };
    tracing::info!(node, "KV session closed");
    result
}

async fn subscription(
    node: &str,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    registry: &Registry,
    directory: &NodeDirectory,
) -> anyhow::Result<()> {
    let mut states = registry.subscribe();
    let current = states.borrow_and_update().clone();
    write_frame(send, &*current).await?;
    loop {
        tokio::select! {
            changed = states.changed() => {
                changed.context("the registry is gone")?;
                let state = states.borrow_and_update().clone();
                write_frame(send, &*state).await?;
            }
            report = read_frame::<_, NodeReport>(recv) => match report? {
                Some(report) => directory.reported(node, report),
                None => return Ok(()),
            },
        }
    }
}

/// A relay's followers: listed as linked (via the relay) while it reports them.
async fn relayed_reports(
    relay: &str,
    recv: &mut quinn::RecvStream,
    directory: &NodeDirectory,
) -> anyhow::Result<()> {
    let mut followers = BTreeSet::new();
    let result = loop {
        match read_frame::<_, RelayedReport>(recv).await {
            Ok(Some(RelayedReport { node, report })) => match report {
                Some(report) => {
                    if followers.insert(node.clone()) {
                        directory.connected(&node, format!("via {relay}"));
                    }
                    directory.reported(&node, report);
                }
                None => {
                    if followers.remove(&node) {
                        directory.disconnected(&node);
                    }
                }
            },
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    for node in followers {
        directory.disconnected(&node);
    }
    result
}

async fn send_blob(
    send: &mut quinn::SendStream,
    components: &Components,
    sha256: &str,
) -> anyhow::Result<()> {
    let Some(size) = components.size(sha256).await? else {
        let message = format!("no component {sha256}");
        write_frame(send, &BlobReply::Missing { message }).await?;
        send.finish()?;
        return Ok(());
    };
    write_frame(send, &BlobReply::Found { size }).await?;
    components.copy_to(sha256, send).await?;
    send.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::config::AppManifest;
    use outpost_core::wire::Release;

    #[test]
    fn a_node_writes_only_namespaces_a_running_app_binds() {
        let mut manifest = AppManifest {
            name: "shop".into(),
            ..Default::default()
        };
        manifest.kv.namespaces = vec!["carts".into()];
        let state = DesiredState {
            revision: 1,
            releases: vec![Release {
                app: "shop".into(),
                version: 1,
                sha256: "0".repeat(64),
                manifest,
                percent: 100,
            }],
            others: Vec::new(),
            secrets: Vec::new(),
        };
        assert!(bound_namespace(&state, "shop/carts").is_ok());
        for refused in [
            "shop/orders",
            "bank/carts",
            "carts",
            "shop/",
            "/carts",
            "shop/carts/x",
        ] {
            assert!(bound_namespace(&state, refused).is_err(), "{refused}");
        }
    }

    /// A node's claims: refused for an app or trigger the fleet does not run and for a tick
    /// ahead of the origin's clock; otherwise each tick to one claim.
    #[tokio::test]
    async fn tick_claims_are_refused_unless_the_fleet_runs_the_trigger_now() {
        use crate::registry::Rollout;
        use outpost_core::config::TriggerManifest;
        let path = outpost_core::test_support::temp_dir("link-ticks").join("registry.redb");
        let registry = Registry::open(&path, None).unwrap();
        let manifest = AppManifest {
            name: "shop".into(),
            triggers: vec![TriggerManifest {
                cron: "*  * * * * *".into(),
                path: "/cron".into(),
            }],
            ..Default::default()
        };
        let sha = "a".repeat(64);
        registry
            .create_version("shop", &sha, manifest, None, Rollout::Activate)
            .await
            .unwrap();
        let key = "* * * * * * /cron";
        let now = unix_secs();
        let refused = |reply: TickReply| matches!(reply, TickReply::Refused { .. });
        assert!(refused(claim_tick(&registry, "blog", key, now).await));
        assert!(refused(
            claim_tick(&registry, "shop", "* * * * * * /other", now).await
        ));
        assert!(refused(
            claim_tick(&registry, "shop", key, now + 3600).await
        ));
        assert_eq!(
            claim_tick(&registry, "shop", key, now).await,
            TickReply::Fire { previous: None }
        );
        assert_eq!(
            claim_tick(&registry, "shop", key, now).await,
            TickReply::Taken
        );
    }
}
