//! A relay's side of the cluster link: nodes that follow this one instead of the origin
//! (`[cluster] relays` on theirs, `relay = true` on this one) open here the same streams they
//! would open to the origin, on the peer listener, with the same mutual TLS (a follower's
//! certificate must be issued for the name it claims). The relay serves what it has made its
//! own: the desired state once every component it names is stored here, the components from
//! its blob store, and the KV from its replica through the driver (`outpost_kv::Relay`,
//! believed by followers only as far as the origin's signed heads). Writes and trigger claims
//! go on to the origin through this node's own link, and so do the followers' reports, so
//! the origin lists them (linked "via" this relay). Logs are not relayed: a follower's tail
//! stream is held open and its records dropped (`outpost tail` shows the nodes that hold their
//! link to an origin).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use crate::fleet::Deployer;
use crate::kv::LinkEvent;
use crate::triggers::OriginClaims;
use outpost_core::wire::kv_frames::{self as frames, Backlog};
use outpost_core::wire::{BlobReply, DesiredState, LogBatch, NodeReport, Open, RelayedReport};
use outpost_core::wire::{read_frame, write_frame};
use outpost_net::cluster_tls::verify_peer_name;

/// What a relay serves its followers from.
pub struct RelayServices {
    /// The KV driver, which runs the relay's side of each follower's session.
    pub kv: mpsc::UnboundedSender<LinkEvent>,
    /// The desired state this node applied and holds every component of.
    pub desired: watch::Receiver<Option<Arc<DesiredState>>>,
    /// The blob store components are served from.
    pub deployer: Arc<Deployer>,
    /// Where followers' trigger claims go on to the origin.
    pub tick_claims: Arc<OriginClaims>,
    /// Each subscribed follower's newest report, which this node's link passes on.
    pub reports: watch::Sender<FollowerReports>,
}

/// The newest report of each follower subscribed to a relay, by name.
pub type FollowerReports = BTreeMap<String, NodeReport>;

/// Serve a follower's connection, whose first stream opened with `open`, until it closes.
pub(crate) async fn serve(
    connection: quinn::Connection,
    first: (quinn::SendStream, quinn::RecvStream, Open),
    services: Arc<RelayServices>,
) {
    let remote = connection.remote_address();
    let mut next = Some(first);
    loop {
        let (send, recv, open) = match next.take() {
            Some(stream) => stream,
            None => {
                let Ok((send, mut recv)) = connection.accept_bi().await else {
                    return;
                };
                match read_frame::<_, Open>(&mut recv).await {
                    Ok(Some(open)) => (send, recv, open),
                    Ok(None) => continue,
                    Err(err) => {
                        tracing::debug!(%remote, "a follower's stream opened badly: {err:#}");
                        continue;
                    }
                }
            }
        };
        tokio::spawn(stream_logged(
            connection.clone(),
            send,
            recv,
            open,
            services.clone(),
        ));
    }
}

async fn stream_logged(
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    open: Open,
    services: Arc<RelayServices>,
) {
    if let Err(err) = stream(&connection, send, recv, open, &services).await {
        tracing::debug!(remote = %connection.remote_address(), "a follower's stream ended: {err:#}");
    }
}

async fn stream(
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    open: Open,
    services: &RelayServices,
) -> anyhow::Result<()> {
    let verify = |node: &str| {
        verify_peer_name(connection, node)
            .inspect_err(|_| {
                connection.close(1u32.into(), b"certificate does not match the node name");
            })
            .with_context(|| format!("follower {node:?} refused"))
    };
    match open {
        Open::Subscribe { node } => {
            verify(&node)?;
            tracing::info!(node, remote = %connection.remote_address(), "follower subscribed");
            let result = subscription(&node, &mut send, &mut recv, services).await;
            services.reports.send_modify(|reports| {
                reports.remove(&node);
            });
            tracing::info!(node, "follower unsubscribed");
            result
        }
        Open::Kv { node } => {
            verify(&node)?;
            kv_session(node, send, recv, &services.kv).await
        }
        Open::Blob { sha256 } => send_blob(&mut send, &services.deployer, &sha256).await,
        Open::Logs { node } => {
            verify(&node)?;
            // Held open (a follower's link ends when any of its streams does), records dropped.
            while read_frame::<_, LogBatch>(&mut recv).await?.is_some() {}
            Ok(())
        }
        Open::Tick {
            node,
            app,
            trigger,
            tick,
        } => {
            verify(&node)?;
            let reply = services.tick_claims.claim(&app, &trigger, tick).await?;
            write_frame(&mut send, &reply).await?;
            send.finish()?;
            Ok(())
        }
        Open::Reports { relay } => {
            // A follower that is a relay too: its followers' reports go on with this one's.
            verify(&relay)?;
            nested_reports(&mut recv, &services.reports).await
        }
        Open::Peer { node } => bail!("node {node:?} opened a peer stream on a follower's link"),
    }
}

/// The desired state, now and on every change, once this node holds all of it; the
/// follower's reports kept for the origin.
async fn subscription(
    node: &str,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    services: &RelayServices,
) -> anyhow::Result<()> {
    let mut desired = services.desired.clone();
    desired.mark_changed();
    loop {
        tokio::select! {
            changed = desired.changed() => {
                changed.context("the relay is shutting down")?;
                let state = desired.borrow_and_update().clone();
                if let Some(state) = state {
                    write_frame(send, &*state).await?;
                }
            }
            report = read_frame::<_, NodeReport>(recv) => match report? {
                Some(report) => {
                    services.reports.send_modify(|reports| {
                        reports.insert(node.to_string(), report);
                    });
                }
                None => return Ok(()),
            },
        }
    }
}

/// Reports a follower relay passes on, kept with this relay's own followers' until its
/// stream ends.
async fn nested_reports(
    recv: &mut quinn::RecvStream,
    reports: &watch::Sender<FollowerReports>,
) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    let result = loop {
        match read_frame::<_, RelayedReport>(recv).await {
            Ok(Some(RelayedReport { node, report })) => reports.send_modify(|all| match report {
                Some(report) => {
                    seen.push(node.clone());
                    all.insert(node, report);
                }
                None => {
                    all.remove(&node);
                }
            }),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    reports.send_modify(|all| {
        for node in &seen {
            all.remove(node);
        }
    });
    result
}

/// Number of each follower KV session, so the driver tells an ended one from its successor.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// Carry a follower's KV session between its stream and the driver.
async fn kv_session(
    node: String,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    kv: &mpsc::UnboundedSender<LinkEvent>,
) -> anyhow::Result<()> {
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let (to_follower, outbox) = mpsc::unbounded_channel();
    kv.send(LinkEvent::FollowerUp(node.clone(), session, to_follower))
        .map_err(|_| anyhow::anyhow!("the KV driver has stopped"))?;
    let deliver = |message, queued| {
        kv.send(LinkEvent::FromFollower(node.clone(), message, queued))
            .is_ok()
    };
    let result = frames::pump(send, recv, outbox, Some(Backlog::default()), deliver).await;
    let _ = kv.send(LinkEvent::FollowerDown(node, session));
    result
}

/// A component from this node's blob store.
async fn send_blob(
    send: &mut quinn::SendStream,
    deployer: &Deployer,
    sha256: &str,
) -> anyhow::Result<()> {
    let store = deployer.blob_store();
    let file = match store.contains(sha256) {
        true => tokio::fs::File::open(store.path(sha256)).await.ok(),
        false => None,
    };
    let Some(mut file) = file else {
        let message = format!("the relay holds no component {sha256}");
        write_frame(send, &BlobReply::Missing { message }).await?;
        send.finish()?;
        return Ok(());
    };
    let size = file.metadata().await?.len();
    write_frame(send, &BlobReply::Found { size }).await?;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        send.write_all(&buffer[..n]).await?;
    }
    send.finish()?;
    Ok(())
}
