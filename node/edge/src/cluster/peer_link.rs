//! Node-to-node links for KV anti-entropy: QUIC with the same mutual TLS as the origin link.
//!
//! Each node listens for its peers and dials those whose name sorts after its own, so every
//! pair of nodes shares exactly one link. A link is one stream of `PeerMsg`s each way; both ends
//! hand it to their KV driver. On a relay the same listener takes its followers' connections,
//! told apart by their first stream (see [`super::relay_link`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use outpost_kv::PeerMsg;
use tokio::sync::mpsc;

use super::relay_link::{self, RelayServices};
use crate::kv::LinkEvent;
use outpost_core::backoff::{Backoff, BackoffPolicy};
use outpost_core::config::{ClusterIdentity, Peer, Peering};
use outpost_core::wire::kv_frames::{self as frames, Backlog};
use outpost_core::wire::{Open, read_frame, write_frame};
use outpost_net::cluster_tls::{client_config, protocol_version, server_config, verify_peer_name};
use outpost_net::listener::ShutdownSignal;
use outpost_net::listener::wait_for_shutdown;

/// Listen for peers (and, with `relay`, for followers) and keep links to them until shutdown.
pub async fn run(
    node: String,
    peering: Peering,
    identity: ClusterIdentity,
    links: mpsc::UnboundedSender<LinkEvent>,
    relay: Option<RelayServices>,
    shutdown: ShutdownSignal,
) {
    let endpoint = match endpoint(&peering, &identity) {
        Ok(endpoint) => endpoint,
        Err(err) => {
            tracing::error!("KV peer links cannot start: {err:#}");
            return;
        }
    };
    tracing::info!(
        listen = ?endpoint.local_addr().ok(),
        peers = peering.peers.len(),
        relay = relay.is_some(),
        "KV peer links"
    );
    // Peers whose names sort before ours dial us; only they may. Any other holder of a cluster
    // certificate (a node not in `peers`, or one of those we dial) is turned away.
    let callers: Vec<String> = peering
        .peers
        .iter()
        .filter(|p| p.name < node)
        .map(|p| p.name.clone())
        .collect();
    for peer in peering.peers.into_iter().filter(|p| p.name > node) {
        tokio::spawn(dial(
            endpoint.clone(),
            node.clone(),
            peer,
            links.clone(),
            shutdown.clone(),
        ));
    }
    accept(endpoint, callers, links, relay.map(Arc::new), shutdown).await;
}

fn endpoint(peering: &Peering, identity: &ClusterIdentity) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::server(server_config(identity)?, peering.listen)
        .with_context(|| format!("binding the peer listener on udp {}", peering.listen))?;
    endpoint.set_default_client_config(client_config(identity)?);
    Ok(endpoint)
}

async fn accept(
    endpoint: quinn::Endpoint,
    callers: Vec<String>,
    links: mpsc::UnboundedSender<LinkEvent>,
    relay: Option<Arc<RelayServices>>,
    mut shutdown: ShutdownSignal,
) {
    let callers = Arc::new(callers);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        let Some(incoming) = incoming else { break };
        let (links, callers, relay) = (links.clone(), callers.clone(), relay.clone());
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let result = async {
                let connection = incoming.await?;
                let (send, mut recv) = connection.accept_bi().await?;
                let peer = match read_frame::<_, Open>(&mut recv).await? {
                    Some(Open::Peer { node }) => node,
                    Some(open) => {
                        let Some(relay) = relay else {
                            connection.close(1u32.into(), b"this node is not a relay");
                            bail!("a node tried to follow this one, which is not a relay");
                        };
                        relay_link::serve(connection, (send, recv, open), relay).await;
                        return Ok(());
                    }
                    None => bail!("the connection closed its first stream at once"),
                };
                verify_peer_name(&connection, &peer)?;
                if !callers.contains(&peer) {
                    connection.close(1u32.into(), b"not a peer of this node");
                    tracing::warn!(%remote, peer, "refused a KV peer link: not one of the peers that dial this node");
                    return Ok(());
                }
                serve_link(peer, protocol_version(&connection), send, recv, &links).await
            }
            .await;
            if let Err(err) = result {
                tracing::debug!(%remote, "peer link ended: {err:#}");
            }
        });
    }
    endpoint.close(0u32.into(), b"node shutting down");
}

async fn dial(
    endpoint: quinn::Endpoint,
    node: String,
    peer: Peer,
    links: mpsc::UnboundedSender<LinkEvent>,
    mut shutdown: ShutdownSignal,
) {
    let mut backoff = Backoff::new(BackoffPolicy::LINKS);
    loop {
        let attempt = async {
            // The endpoint is the peer listener's socket: reach the peer in its family.
            let v6 = endpoint.local_addr()?.is_ipv6();
            let found = peer
                .addr
                .resolve()
                .await
                .with_context(|| format!("resolving peer {} at {}", peer.name, peer.addr))?;
            let addr = found
                .iter()
                .find(|a| a.is_ipv6() == v6)
                .unwrap_or(&found[0]);
            let connecting = endpoint.connect(*addr, &peer.name)?;
            let connection = tokio::time::timeout(Duration::from_secs(3), connecting)
                .await
                .map_err(|_| anyhow!("no answer from peer {} at {}", peer.name, peer.addr))??;
            let (mut send, recv) = connection.open_bi().await?;
            write_frame(&mut send, &Open::Peer { node: node.clone() }).await?;
            let protocol = protocol_version(&connection);
            serve_link(peer.name.clone(), protocol, send, recv, &links).await
        };
        let started = std::time::Instant::now();
        tokio::select! {
            result = attempt => {
                if let Err(err) = result {
                    tracing::debug!(peer = %peer.name, "peer link down: {err:#}");
                }
            }
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_wait(started.elapsed())) => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
    }
}

/// A protocol-1 peer's outbox: that peer knows no heads, so they are left out.
struct WithoutHeads(mpsc::UnboundedReceiver<PeerMsg>);

impl frames::Outbox<PeerMsg> for WithoutHeads {
    async fn next(&mut self) -> Option<PeerMsg> {
        loop {
            match self.0.recv().await {
                Some(PeerMsg::Head(_)) => continue,
                other => return other,
            }
        }
    }
}

/// Carry one peer link until it breaks, reporting it up and down to the driver.
async fn serve_link(
    peer: String,
    protocol: u32,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    links: &mpsc::UnboundedSender<LinkEvent>,
) -> anyhow::Result<()> {
    let (to_peer, outbox) = mpsc::unbounded_channel();
    links
        .send(LinkEvent::PeerUp(peer.clone(), to_peer))
        .map_err(|_| anyhow!("the KV driver has stopped"))?;
    let deliver = {
        let (peer, links) = (peer.clone(), links.clone());
        move |message, queued| {
            links
                .send(LinkEvent::FromPeer(peer.clone(), message, queued))
                .is_ok()
        }
    };
    let backlog = Some(Backlog::default());
    let result = match protocol {
        1 => frames::pump(send, recv, WithoutHeads(outbox), backlog, deliver).await,
        _ => frames::pump(send, recv, outbox, backlog, deliver).await,
    };
    let _ = links.send(LinkEvent::PeerDown(peer));
    result
}
