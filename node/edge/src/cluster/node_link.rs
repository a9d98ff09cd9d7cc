//! A node's end of the cluster link: stay connected to the origin (reconnecting with backoff),
//! receive desired states, apply them, report back, and carry the KV session between the
//! node's driver and the origin's authority. Serving never waits on any of this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use crate::fleet::{BlobSource, Deployer};
use crate::kv::LinkEvent;
use crate::tail_tap::TailTap;
use crate::triggers::OriginClaims;
use anyhow::{Context, anyhow, bail};
use outpost_core::backoff::{Backoff, BackoffPolicy};
use outpost_core::blobs::BlobWriter;
use outpost_core::config::OriginLink;
use outpost_core::wire::DesiredState;
use outpost_core::wire::kv_frames::{self as frames, Backlog};
use outpost_core::wire::{BlobReply, Open, read_frame, write_frame};
use outpost_core::wire::{LogBatch, TailSet};
use outpost_net::cluster_tls::client_config;
use outpost_net::listener::ShutdownSignal;
use outpost_net::listener::wait_for_shutdown;

const HEARTBEAT: Duration = Duration::from_secs(5);
/// An origin that does not answer a handshake in this long is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the link carries between the origin and the parts of the node.
pub struct NodeServices {
    /// Applies each desired state the origin publishes.
    pub deployer: Arc<Deployer>,
    /// The KV driver, told when the origin comes and goes and given its messages.
    pub kv: mpsc::UnboundedSender<LinkEvent>,
    /// The request records of tailed apps.
    pub tap: Arc<TailTap>,
    /// Trigger ticks claimed from the origin, on the connection held now.
    pub tick_claims: Arc<OriginClaims>,
}

/// Keep a subscription to the origin, a KV session and the logs stream alive until shutdown,
/// and let triggers claim ticks on the connection.
pub async fn run(
    link: OriginLink,
    node: String,
    services: NodeServices,
    mut shutdown: ShutdownSignal,
) {
    let NodeServices {
        deployer,
        kv,
        tap,
        tick_claims,
    } = services;
    let mut endpoints = Endpoints::new(&link);
    let mut backoff = Backoff::new(BackoffPolicy::LINKS);
    // Which origin to try: after any failure or lost link, the next in the list.
    let mut next = 0;
    // Origins that failed in a row since the last one that served; the node waits (backoff)
    // only once every origin has failed, so losing one means moving to another at once.
    let mut failed_in_a_row = 0;
    loop {
        let started = Instant::now();
        let origin = &link.origins[next % link.origins.len()];
        let session = async {
            let found = origin
                .resolve()
                .await
                .with_context(|| format!("resolving the origin {origin}"))?;
            let (connection, addr) =
                connect_any(&mut endpoints, &found, &link.server_name, origin).await?;
            tracing::info!(origin = %origin, %addr, "connected to the origin");
            tick_claims.connected(&connection);
            // Any ending ends the connection's session; the next one starts them all afresh.
            let result = tokio::select! {
                result = subscribe(&connection, &node, &deployer) => result,
                result = kv_session(&connection, &node, &kv) => result,
                result = logs_session(&connection, &node, &tap) => result,
            };
            tick_claims.disconnected();
            result
        };
        let outcome = tokio::select! {
            outcome = session => outcome,
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        let wait = backoff.next_wait(started.elapsed());
        if started.elapsed() >= HEARTBEAT {
            // It served a while: the next failure starts a new round of origins.
            failed_in_a_row = 0;
        }
        failed_in_a_row += 1;
        next += 1;
        let wait = if failed_in_a_row < link.origins.len() {
            Duration::ZERO
        } else {
            failed_in_a_row = 0;
            wait
        };
        if let Err(err) = outcome {
            tracing::warn!(
                origin = %origin,
                "origin link down: {err:#}; trying {} in {} ms",
                link.origins[next % link.origins.len()],
                wait.as_millis()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wait_for_shutdown(&mut shutdown) => break,
        }
    }
    endpoints.close();
}

/// Connect to the first of `found` (the addresses `origin` resolved to) that answers.
async fn connect_any(
    endpoints: &mut Endpoints<'_>,
    found: &[SocketAddr],
    server_name: &str,
    origin: &outpost_core::config::RemoteAddr,
) -> anyhow::Result<(quinn::Connection, SocketAddr)> {
    let mut errors = Vec::new();
    for &addr in found {
        let attempt = async {
            let connecting = endpoints.for_addr(addr)?.connect(addr, server_name)?;
            tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| anyhow!("no answer within {CONNECT_TIMEOUT:?}"))?
                .map_err(anyhow::Error::from)
        };
        match attempt.await {
            Ok(connection) => return Ok((connection, addr)),
            Err(err) => errors.push(format!("{addr}: {err:#}")),
        }
    }
    bail!(
        "connecting to the origin at {origin}: {}",
        errors.join("; ")
    )
}

/// The node's QUIC endpoints towards its origins, one per address family, made when first
/// needed (a name may resolve to either).
struct Endpoints<'a> {
    identity: &'a outpost_core::config::ClusterIdentity,
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

impl<'a> Endpoints<'a> {
    fn new(link: &'a OriginLink) -> Self {
        Endpoints {
            identity: &link.identity,
            v4: None,
            v6: None,
        }
    }

    fn for_addr(&mut self, addr: SocketAddr) -> anyhow::Result<&quinn::Endpoint> {
        let (slot, bind) = if addr.is_ipv6() {
            (&mut self.v6, "[::]:0")
        } else {
            (&mut self.v4, "0.0.0.0:0")
        };
        if slot.is_none() {
            let mut endpoint =
                quinn::Endpoint::client(bind.parse()?).context("binding the cluster UDP socket")?;
            endpoint.set_default_client_config(client_config(self.identity)?);
            *slot = Some(endpoint);
        }
        Ok(slot.as_ref().expect("set above"))
    }

    fn close(&self) {
        for endpoint in self.v4.iter().chain(&self.v6) {
            endpoint.close(0u32.into(), b"node shutting down");
        }
    }
}

async fn subscribe(
    connection: &quinn::Connection,
    node: &str,
    deployer: &Deployer,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(
        &mut send,
        &Open::Subscribe {
            node: node.to_string(),
        },
    )
    .await?;
    let source = QuicBlobs {
        connection: connection.clone(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            frame = read_frame::<_, DesiredState>(&mut recv) => {
                let Some(state) = frame? else { bail!("the origin closed the subscription") };
                tracing::debug!(revision = state.revision, "desired state received");
                let report = deployer.apply(&state, &source).await;
                write_frame(&mut send, &report).await?;
            }
            _ = heartbeat.tick() => {
                write_frame(&mut send, &deployer.report().await).await?;
            }
            closed = connection.closed() => return Err(anyhow!("connection closed: {closed}")),
        }
    }
}

/// Records go out in batches: at most this many, at least this often while any are waiting.
const LOG_BATCH: usize = 256;
const LOG_FLUSH: Duration = Duration::from_millis(200);

/// Send the origin the requests of the apps it says are tailed.
async fn logs_session(
    connection: &quinn::Connection,
    node: &str,
    tap: &TailTap,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(
        &mut send,
        &Open::Logs {
            node: node.to_string(),
        },
    )
    .await?;
    let mut records = tap.subscribe();
    let mut batch = LogBatch {
        records: Vec::new(),
        dropped: 0,
    };
    let mut flush = tokio::time::interval(LOG_FLUSH);
    let result = loop {
        let due = tokio::select! {
            frame = read_frame::<_, TailSet>(&mut recv) => match frame {
                Ok(Some(set)) => {
                    tap.set_apps(set.apps);
                    false
                }
                Ok(None) => break Err(anyhow!("the origin closed the logs stream")),
                Err(err) => break Err(err),
            },
            record = records.recv() => match record {
                Ok(record) => {
                    batch.records.push(record);
                    batch.records.len() >= LOG_BATCH
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    batch.dropped += missed;
                    false
                }
                Err(broadcast::error::RecvError::Closed) => break Ok(()),
            },
            _ = flush.tick() => !batch.records.is_empty() || batch.dropped > 0,
        };
        if due {
            if let Err(err) = write_frame(&mut send, &batch).await {
                break Err(err);
            }
            batch.records.clear();
            batch.dropped = 0;
        }
    };
    // Nobody can be told about records any more: stop collecting them.
    tap.set_apps(Vec::new());
    result
}

/// Tells the driver the origin is gone when the session ends, however it ends.
struct OriginDownOnDrop<'a>(&'a mpsc::UnboundedSender<LinkEvent>);

impl Drop for OriginDownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(LinkEvent::OriginDown);
    }
}

/// Carry the KV session: the driver's messages to the origin, the origin's to the driver.
async fn kv_session(
    connection: &quinn::Connection,
    node: &str,
    links: &mpsc::UnboundedSender<LinkEvent>,
) -> anyhow::Result<()> {
    let (mut send, recv) = connection.open_bi().await?;
    write_frame(
        &mut send,
        &Open::Kv {
            node: node.to_string(),
        },
    )
    .await?;
    let (to_origin, outbox) = mpsc::unbounded_channel();
    links
        .send(LinkEvent::OriginUp(to_origin))
        .map_err(|_| anyhow!("the KV driver has stopped"))?;
    let _down = OriginDownOnDrop(links);
    frames::pump(
        send,
        recv,
        outbox,
        Some(Backlog::default()),
        |message, queued| links.send(LinkEvent::FromOrigin(message, queued)).is_ok(),
    )
    .await?;
    bail!("the origin ended the KV session")
}

/// Fetches components from the origin, one stream each.
struct QuicBlobs {
    connection: quinn::Connection,
}

impl BlobSource for QuicBlobs {
    async fn fetch(&self, sha256: &str, mut into: BlobWriter) -> anyhow::Result<()> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        write_frame(
            &mut send,
            &Open::Blob {
                sha256: sha256.to_string(),
            },
        )
        .await?;
        send.finish()?;
        let size = match read_frame::<_, BlobReply>(&mut recv).await? {
            Some(BlobReply::Found { size }) => size,
            Some(BlobReply::Missing { message }) => {
                bail!("the origin has no such component: {message}")
            }
            None => bail!("the origin closed the stream without an answer"),
        };
        let mut buffer = vec![0u8; 64 * 1024];
        while into.written() < size {
            let want = buffer.len().min((size - into.written()) as usize);
            match recv.read(&mut buffer[..want]).await? {
                Some(n) => into.write(&buffer[..n])?,
                None => bail!("the stream ended after {} of {size} bytes", into.written()),
            }
        }
        // Checks the hash: a component that does not match its name is refused here.
        into.finish()?;
        Ok(())
    }
}
