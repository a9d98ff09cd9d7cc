//! The node's KV driver: the one task that owns the replication state machine. It turns link
//! events, handler writes and clock ticks into calls on the `Follower`, and carries out what the
//! follower asks: send to the origin or a peer, make batches durable in the replica, answer
//! writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_kv::protocol::CHUNK_BYTES;
use outpost_kv::{
    Batch, Entry, Follower, FollowerConfig, FromOrigin, Output, PeerMsg, ReplicaStore, ToOrigin,
    WriteOutcome,
};
use tokio::sync::{mpsc, oneshot};

use super::client::Command;

/// What the links report.
pub enum LinkEvent {
    /// A session with the origin is up; messages for it go into this channel.
    OriginUp(mpsc::UnboundedSender<ToOrigin>),
    OriginDown,
    FromOrigin(FromOrigin),
    PeerUp(String, mpsc::UnboundedSender<PeerMsg>),
    PeerDown(String),
    FromPeer(String, PeerMsg),
}

const TICK: Duration = Duration::from_millis(20);
const MAX_SAMPLES: usize = 1 << 20;

/// Latencies the driver observed, in microseconds.
#[derive(Default)]
pub struct KvStats {
    /// From a handler's write being sent to the origin to its acknowledgement.
    pub write_ack_us: Vec<u64>,
    /// From the origin committing an entry to this node applying it.
    pub propagation_us: Vec<u64>,
}

impl KvStats {
    fn push(samples: &mut Vec<u64>, value: u64) {
        if samples.len() < MAX_SAMPLES {
            samples.push(value);
        }
    }

    /// "n=…, p50=… µs, p99=… µs" for a set of samples.
    pub fn summary(samples: &[u64]) -> String {
        if samples.is_empty() {
            return "n=0".into();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
        format!(
            "n={} p50={} us p99={} us max={} us",
            sorted.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Driver {
    follower: Follower,
    replica: Arc<dyn ReplicaStore>,
    origin: Option<mpsc::UnboundedSender<ToOrigin>>,
    peers: HashMap<String, mpsc::UnboundedSender<PeerMsg>>,
    waiting: HashMap<u64, (oneshot::Sender<WriteOutcome>, Instant)>,
    started: Instant,
    stats: Arc<Mutex<KvStats>>,
}

/// Run the driver until `stop` fires (after the node has drained its requests, so their writes
/// still get answers). `id_base` must differ between runs of this node (the origin recognises
/// retried writes by id).
pub async fn run_driver(
    replica: Arc<dyn ReplicaStore>,
    mut commands: mpsc::Receiver<Command>,
    mut links: mpsc::UnboundedReceiver<LinkEvent>,
    id_base: u64,
    stats: Arc<Mutex<KvStats>>,
    mut stop: oneshot::Receiver<()>,
) {
    let follower = Follower::new(FollowerConfig::default(), replica.applied(), id_base);
    let mut driver = Driver {
        follower,
        replica,
        origin: None,
        peers: HashMap::new(),
        waiting: HashMap::new(),
        started: Instant::now(),
        stats,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = driver.now();
        tokio::select! {
            _ = &mut stop => break,
            command = commands.recv() => match command {
                Some(Command::Write { op, reply }) => match driver.follower.submit_write(op, now) {
                    Ok(id) => {
                        driver.waiting.insert(id, (reply, Instant::now()));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                },
                None => break,
            },
            event = links.recv() => match event {
                Some(event) => driver.on_link(event, now),
                None => break,
            },
            _ = tick.tick() => driver.follower.tick(now),
        }
        driver.carry_out().await;
    }
}

impl Driver {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn on_link(&mut self, event: LinkEvent, now: u64) {
        match event {
            LinkEvent::OriginUp(sender) => {
                self.origin = Some(sender);
                self.follower.origin_connected(now);
            }
            LinkEvent::OriginDown => {
                self.origin = None;
                self.follower.origin_disconnected(now);
            }
            LinkEvent::FromOrigin(message) => self.follower.on_origin(message, now),
            LinkEvent::PeerUp(peer, sender) => {
                self.peers.insert(peer.clone(), sender);
                self.follower.peer_connected(&peer);
            }
            LinkEvent::PeerDown(peer) => {
                self.peers.remove(&peer);
                self.follower.peer_disconnected(&peer);
            }
            LinkEvent::FromPeer(peer, message) => self.follower.on_peer(&peer, message, now),
        }
    }

    async fn apply(&self, entries: Vec<Entry>, through: Option<u64>) -> Result<(), String> {
        let replica = self.replica.clone();
        tokio::task::spawn_blocking(move || {
            replica.apply(&entries, through).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Do everything the follower has asked for, in order.
    async fn carry_out(&mut self) {
        while let Some(output) = self.follower.poll_output() {
            match output {
                Output::ToOrigin(message) => {
                    if let Some(origin) = &self.origin {
                        let _ = origin.send(message);
                    }
                }
                Output::ToPeer(peer, message) => {
                    if let Some(sender) = self.peers.get(&peer) {
                        let _ = sender.send(message);
                    }
                }
                Output::Apply(batch) => {
                    let through = batch.through;
                    let committed: Vec<u64> =
                        batch.entries.iter().map(|e| e.committed_at_us).collect();
                    match self.apply(batch.entries, Some(through)).await {
                        Ok(()) => {
                            let now = now_us();
                            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                            for at in committed {
                                KvStats::push(&mut stats.propagation_us, now.saturating_sub(at));
                            }
                            drop(stats);
                            let now = self.now();
                            self.follower.applied(through, now);
                        }
                        // Not durable: do not move on. The gap timer asks for it again.
                        Err(err) => tracing::error!("applying KV entries failed: {err}"),
                    }
                }
                Output::ApplyEarly(entries) => {
                    if let Err(err) = self.apply(entries, None).await {
                        tracing::error!("applying this node's own KV write failed: {err}");
                    }
                }
                Output::ServePull {
                    peer,
                    from,
                    through,
                } => {
                    let replica = self.replica.clone();
                    let entries =
                        tokio::task::spawn_blocking(move || replica.entries_after(from)).await;
                    match entries {
                        Ok(Ok(entries)) => {
                            if let Some(sender) = self.peers.get(&peer) {
                                for part in (Batch {
                                    from,
                                    through,
                                    entries,
                                })
                                .split(CHUNK_BYTES)
                                {
                                    let _ = sender.send(PeerMsg::Batch(part));
                                }
                            }
                        }
                        Ok(Err(err)) => {
                            tracing::error!("reading the KV replica for peer {peer} failed: {err}")
                        }
                        Err(err) => {
                            tracing::error!("reading the KV replica for peer {peer} failed: {err}")
                        }
                    }
                }
                Output::WriteDone { id, outcome } => {
                    if let Some((reply, sent)) = self.waiting.remove(&id) {
                        if outcome.is_ok() {
                            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                            KvStats::push(
                                &mut stats.write_ack_us,
                                sent.elapsed().as_micros() as u64,
                            );
                        }
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
    }
}
