//! A node's end of the cluster link: stay connected to the origin, or to a relay that serves
//! what it has from the origin (reconnecting with backoff, and moving to the next relay or
//! origin at once when one is lost), receive desired states, apply them, report back, and
//! carry the KV session between the node's driver and its upstream. Serving never waits on any
//! of this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};

use super::relay_link::FollowerReports;
use crate::fleet::{BlobSource, Deployer};
use crate::kv::LinkEvent;
use crate::tail_tap::TailTap;
use crate::triggers::OriginClaims;
use anyhow::{Context, anyhow, bail};
use outpost_core::backoff::{Backoff, BackoffPolicy};
use outpost_core::blobs::BlobWriter;
use outpost_core::config::{OriginLink, Upstream};
use outpost_core::wire::DesiredState;
use outpost_core::wire::kv_frames::{self as frames, Backlog};
use outpost_core::wire::{BlobReply, Open, read_frame, write_frame};
use outpost_core::wire::{LogBatch, RelayedReport, TailSet};
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
    /// Each desired state once applied and every component it names is stored here: what a
    /// relay serves its followers.
    pub desired: watch::Sender<Option<Arc<DesiredState>>>,
    /// On a relay, its followers' reports, passed on to the origin.
    pub follower_reports: Option<watch::Receiver<FollowerReports>>,
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
        desired,
        follower_reports,
    } = services;
    let mut endpoints = Endpoints::new(&link);
    let mut backoff = Backoff::new(BackoffPolicy::LINKS);
    let upstreams = link.upstreams();
    // Which upstream to try: after any failure or lost link, the next in the list.
    let mut next = 0;
    // Upstreams that failed in a row since the last one that served; the node waits (backoff)
    // only once every one has failed, so losing one means moving to another at once.
    let mut failed_in_a_row = 0;
    loop {
        let started = Instant::now();
        let upstream = &upstreams[next % upstreams.len()];
        let session = async {
            let (addr, server_name, relay) = match upstream {
                Upstream::Relay(relay) => (&relay.addr, relay.name.as_str(), true),
                Upstream::Origin(origin) => (origin, link.server_name.as_str(), false),
            };
            let found = addr
                .resolve()
                .await
                .with_context(|| format!("resolving the {upstream}"))?;
            let (connection, addr) =
                connect_any(&mut endpoints, &found, server_name, upstream).await?;
            tracing::info!(%addr, "connected to the {upstream}");
            tick_claims.connected(&connection);
            // Away from its first relay (which failed), a node goes back once it answers, so
            // a restarted relay gets its followers back instead of leaving them on the origin.
            // (Between origins a node stays where it is: they serve alike.)
            let home =
                (next % upstreams.len() != 0 && !link.relays.is_empty()).then(|| &upstreams[0]);
            // Any ending ends the connection's session; the next one starts them all afresh.
            let result = tokio::select! {
                result = subscribe(&connection, &node, &deployer, &desired) => result,
                result = kv_session(&connection, &node, &kv, relay) => result,
                result = logs_session(&connection, &node, &tap) => result,
                result = reports_session(&connection, &node, follower_reports.clone()) => result,
                home = answers_again(&mut endpoints, home, &link.server_name) => {
                    connection.close(0u32.into(), b"going back to the first upstream");
                    Err(HomeAgain(home).into())
                }
            };
            tick_claims.disconnected();
            result
        };
        let outcome = tokio::select! {
            outcome = session => outcome,
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        if let Err(err) = &outcome
            && let Some(HomeAgain(home)) = err.downcast_ref::<HomeAgain>()
        {
            tracing::info!("the {home} answers again: linking to it instead of the {upstream}");
            next = 0;
            failed_in_a_row = 0;
            continue;
        }
        let wait = backoff.next_wait(started.elapsed());
        if started.elapsed() >= HEARTBEAT {
            // It served a while: the next failure starts a new round of origins.
            failed_in_a_row = 0;
        }
        failed_in_a_row += 1;
        next += 1;
        let wait = if failed_in_a_row < upstreams.len() {
            Duration::ZERO
        } else {
            failed_in_a_row = 0;
            wait
        };
        if let Err(err) = outcome {
            let kind = match upstream {
                Upstream::Relay(_) => "relay",
                Upstream::Origin(_) => "origin",
            };
            tracing::warn!(
                upstream = %upstream,
                "{kind} link down: {err:#}; trying the {} in {} ms",
                upstreams[next % upstreams.len()],
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

/// How often a node linked elsewhere than its first relay checks whether that one answers
/// again.
const HOME_PROBE: Duration = Duration::from_secs(10);

/// The first upstream answers again: the session ends so the node links to it.
#[derive(Debug)]
struct HomeAgain(String);

impl std::fmt::Display for HomeAgain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} answers again", self.0)
    }
}

impl std::error::Error for HomeAgain {}

/// Resolves once `home` (when given) takes a connection, checked every [`HOME_PROBE`]; never
/// without one. The probe's connection is closed at once.
async fn answers_again(
    endpoints: &mut Endpoints<'_>,
    home: Option<&Upstream>,
    origin_name: &str,
) -> String {
    let Some(home) = home else {
        return std::future::pending().await;
    };
    let (addr, server_name) = match home {
        Upstream::Relay(relay) => (&relay.addr, relay.name.as_str()),
        Upstream::Origin(origin) => (origin, origin_name),
    };
    loop {
        tokio::time::sleep(HOME_PROBE).await;
        let Ok(found) = addr.resolve().await else {
            continue;
        };
        if let Ok((probe, _)) = connect_any(endpoints, &found, server_name, home).await {
            probe.close(0u32.into(), b"only checking that you answer");
            return home.to_string();
        }
    }
}

/// Connect to the first of `found` (the addresses `upstream` resolved to) that answers.
async fn connect_any(
    endpoints: &mut Endpoints<'_>,
    found: &[SocketAddr],
    server_name: &str,
    upstream: &Upstream,
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
    bail!("connecting to the {upstream}: {}", errors.join("; "))
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
    desired: &watch::Sender<Option<Arc<DesiredState>>>,
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
                if desired.receiver_count() > 0 {
                    // A relay passes the state on once it holds every component it names.
                    match deployer.store_components(&state, &source).await {
                        Ok(()) => {
                            desired.send_replace(Some(Arc::new(state)));
                        }
                        Err(err) => tracing::warn!(
                            revision = state.revision,
                            "not passing the desired state on to followers: {err:#}"
                        ),
                    }
                }
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

/// How often a relay passes on a follower's report that has not changed, so the origin sees
/// it in contact.
const REPORTS_REFRESH: Duration = Duration::from_secs(15);

/// On a relay: pass the followers' reports on to the upstream as they change (and each again
/// every [`REPORTS_REFRESH`]), and say when a follower is gone. Elsewhere: nothing, forever.
async fn reports_session(
    connection: &quinn::Connection,
    node: &str,
    reports: Option<watch::Receiver<FollowerReports>>,
) -> anyhow::Result<()> {
    let Some(mut reports) = reports else {
        return std::future::pending().await;
    };
    let (mut send, _recv) = connection.open_bi().await?;
    write_frame(
        &mut send,
        &Open::Reports {
            relay: node.to_string(),
        },
    )
    .await?;
    let mut sent = FollowerReports::new();
    let mut refresh = tokio::time::interval(REPORTS_REFRESH);
    reports.mark_changed();
    loop {
        let everything = tokio::select! {
            changed = reports.changed() => {
                changed.context("the relay is shutting down")?;
                false
            }
            _ = refresh.tick() => true,
        };
        let now = reports.borrow_and_update().clone();
        for (follower, report) in &now {
            if everything || sent.get(follower) != Some(report) {
                let relayed = RelayedReport {
                    node: follower.clone(),
                    report: Some(report.clone()),
                };
                write_frame(&mut send, &relayed).await?;
            }
        }
        for gone in sent.keys().filter(|f| !now.contains_key(*f)) {
            let relayed = RelayedReport {
                node: gone.clone(),
                report: None,
            };
            write_frame(&mut send, &relayed).await?;
        }
        sent = now;
    }
}

/// Tells the driver the origin is gone when the session ends, however it ends.
struct OriginDownOnDrop<'a>(&'a mpsc::UnboundedSender<LinkEvent>);

impl Drop for OriginDownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(LinkEvent::OriginDown);
    }
}

/// Carry the KV session: the driver's messages to the origin (or the relay followed), and its
/// messages to the driver.
async fn kv_session(
    connection: &quinn::Connection,
    node: &str,
    links: &mpsc::UnboundedSender<LinkEvent>,
    relay: bool,
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
    let up = if relay {
        LinkEvent::RelayUp(to_origin)
    } else {
        LinkEvent::OriginUp(to_origin)
    };
    links
        .send(up)
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
    bail!("the upstream ended the KV session")
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
