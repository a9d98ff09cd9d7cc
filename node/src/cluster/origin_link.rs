//! The origin's end of the cluster link: accept nodes (mutual TLS), publish the desired state
//! to each subscriber, serve component blobs, and keep a directory of who is connected and
//! what each node says it runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::tls::verify_peer_name;
use super::wire::{BlobReply, Open, read_frame, write_frame};
use crate::fleet::{BlobStore, NodeReport, is_sha256_hex};
use crate::origin::Registry;
use crate::server::ShutdownSignal;
use crate::server::listener::wait_for_shutdown;

/// What the origin knows of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEntry {
    pub name: String,
    pub connected: bool,
    pub address: String,
    /// Unix time in milliseconds of the last frame from the node.
    pub last_contact_ms: u64,
    pub report: NodeReport,
    #[serde(skip)]
    connections: u32,
}

#[derive(Default)]
pub struct NodeDirectory {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeDirectory {
    fn with<R>(&self, name: &str, change: impl FnOnce(&mut NodeEntry) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let entry = nodes.entry(name.to_string()).or_insert_with(|| NodeEntry {
            name: name.to_string(),
            connected: false,
            address: String::new(),
            last_contact_ms: 0,
            report: NodeReport::default(),
            connections: 0,
        });
        change(entry)
    }

    fn connected(&self, name: &str, address: SocketAddr) {
        self.with(name, |e| {
            e.connections += 1;
            e.connected = true;
            e.address = address.to_string();
            e.last_contact_ms = now_ms();
        });
    }

    fn reported(&self, name: &str, report: NodeReport) {
        self.with(name, |e| {
            e.report = report;
            e.last_contact_ms = now_ms();
        });
    }

    fn disconnected(&self, name: &str) {
        self.with(name, |e| {
            e.connections = e.connections.saturating_sub(1);
            e.connected = e.connections > 0;
        });
    }

    /// Every node seen since the origin started, connected or not.
    pub fn snapshot(&self) -> Vec<NodeEntry> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Accept cluster connections until shutdown.
pub async fn serve(
    endpoint: quinn::Endpoint,
    registry: Arc<Registry>,
    blobs: BlobStore,
    directory: Arc<NodeDirectory>,
    mut shutdown: ShutdownSignal,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        let Some(incoming) = incoming else { break };
        let (registry, blobs, directory) = (registry.clone(), blobs.clone(), directory.clone());
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
                let (connection, registry, blobs, directory) = (
                    connection.clone(),
                    registry.clone(),
                    blobs.clone(),
                    directory.clone(),
                );
                tokio::spawn(async move {
                    if let Err(err) =
                        stream(&connection, send, recv, &registry, &blobs, &directory).await
                    {
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
    registry: &Registry,
    blobs: &BlobStore,
    directory: &NodeDirectory,
) -> anyhow::Result<()> {
    let Some(open) = read_frame::<_, Open>(&mut recv).await? else {
        return Ok(());
    };
    match open {
        Open::Subscribe { node } => {
            if let Err(err) = verify_peer_name(connection, &node) {
                connection.close(1u32.into(), b"certificate does not match the node name");
                return Err(err).with_context(|| format!("node {node:?} refused"));
            }
            directory.connected(&node, connection.remote_address());
            tracing::info!(node, remote = %connection.remote_address(), "node subscribed");
            let result = subscription(&node, &mut send, &mut recv, registry, directory).await;
            directory.disconnected(&node);
            tracing::info!(node, "node unsubscribed");
            result
        }
        Open::Blob { sha256 } => send_blob(&mut send, blobs, &sha256).await,
    }
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

async fn send_blob(
    send: &mut quinn::SendStream,
    blobs: &BlobStore,
    sha256: &str,
) -> anyhow::Result<()> {
    if !is_sha256_hex(sha256) || !blobs.contains(sha256) {
        let message = format!("no component {sha256}");
        write_frame(send, &BlobReply::Missing { message }).await?;
        send.finish()?;
        return Ok(());
    }
    let mut file = tokio::fs::File::open(blobs.path(sha256)).await?;
    let size = file.metadata().await?.len();
    write_frame(send, &BlobReply::Found { size }).await?;
    tokio::io::copy(&mut file, send).await?;
    send.flush().await?;
    send.finish()?;
    Ok(())
}
