//! The node's KV driver: the one task that owns the replication state machine. It turns link
//! events, handler writes and clock ticks into calls on the `Follower`, and carries out what the
//! follower asks: send to the origin (or the relay it follows) or a peer, make batches durable
//! in the replica, answer writes. On a relay it also owns the `Relay`, the side of the nodes
//! that follow this one: it serves them from the replica what it has made durable, and passes
//! their writes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_kv::protocol::CHUNK_BYTES;
use outpost_kv::{
    Batch, Entry, Follower, FollowerConfig, FromOrigin, HeadCheck, Output, PeerMsg, Relay,
    ReplicaFeed, ReplicaStore, SnapshotPart, ToOrigin, WriteOutcome,
};
use tokio::sync::{mpsc, oneshot};

use super::progress::KvProgress;
use outpost_core::clock::unix_micros;
use outpost_core::metrics::metrics;
use outpost_core::wire::kv_frames::Queued;
use outpost_runtime::kv_client::Command;

/// What the links report.
pub enum LinkEvent {
    /// A session with the origin is up; messages for it go into this channel.
    OriginUp(mpsc::UnboundedSender<ToOrigin>),
    /// A session with a relay, followed in place of the origin, is up; messages for it go
    /// into this channel (it is believed only as far as the origin's signed heads).
    RelayUp(mpsc::UnboundedSender<ToOrigin>),
    /// The session with the origin (or the relay) has ended, however it ended.
    OriginDown,
    /// A node that follows this one (a relay) is up, in its session numbered as given;
    /// messages for it go into this channel, and dropping it ends the session.
    FollowerUp(String, u64, mpsc::UnboundedSender<FromOrigin>),
    /// That follower's session with that number has ended.
    FollowerDown(String, u64),
    /// A message from a follower, holding its place in that link's backlog until handled.
    FromFollower(String, ToOrigin, Queued),
    /// A message, holding its place in its link's backlog until handled.
    FromOrigin(FromOrigin, Queued),
    /// A session with the named peer is up; messages for it go into this channel.
    PeerUp(String, mpsc::UnboundedSender<PeerMsg>),
    /// The session with the named peer has ended.
    PeerDown(String),
    /// A message from the named peer, holding its place in that link's backlog until handled.
    FromPeer(String, PeerMsg, Queued),
}

const TICK: Duration = Duration::from_millis(20);
/// How often the replica's reclaiming sweep runs, and how many keys each run looks at: a full
/// pass over a million keys takes about a quarter of an hour, at a few milliseconds a run.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
const RECLAIM_KEYS: usize = 1000;
/// Deleted and expired entries a replica keeps for this many versions behind what it applied,
/// so a peer that far behind can still catch up from it; one further behind waits for the
/// origin (the replica's floor, see `outpost_kv::replica`).
const KEEP_DEAD_VERSIONS: u64 = 100_000;
/// Most messages of each kind taken into one round.
const DRAIN: usize = 1024;
const MAX_SAMPLES: usize = 1 << 20;
/// Bytes of entries per message, and per catch-up step, to a follower: a step reads the
/// replica on the driver's task, so it stays short.
const RELAY_STEP_BYTES: usize = 256 << 10;

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

fn link_up(link: &str, up: bool) {
    metrics()
        .link_up
        .with_label_values(&[link])
        .set(i64::from(up));
}

struct Driver {
    follower: Follower,
    replica: Arc<dyn ReplicaStore>,
    origin: Option<mpsc::UnboundedSender<ToOrigin>>,
    peers: HashMap<String, mpsc::UnboundedSender<PeerMsg>>,
    /// The nodes following this one, and this node's side of their sessions.
    followers: HashMap<String, (u64, mpsc::UnboundedSender<FromOrigin>)>,
    relay: Relay,
    waiting: HashMap<u64, (oneshot::Sender<WriteOutcome>, Instant)>,
    started: Instant,
    stats: Arc<Mutex<KvStats>>,
    progress: Arc<KvProgress>,
    /// Where the next reclaiming sweep starts, and when the last one ran.
    sweep: Option<(String, String)>,
    swept_at: Instant,
}

/// Run the driver until `stop` fires (after the node has drained its requests, so their writes
/// still get answers). `id_base` must differ between runs of this node (the origin recognises
/// retried writes by id). `head_check` verifies the origin's heads that peers pass on.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_driver(
    replica: Arc<dyn ReplicaStore>,
    head_check: HeadCheck,
    mut commands: mpsc::Receiver<Command>,
    mut links: mpsc::UnboundedReceiver<LinkEvent>,
    id_base: u64,
    stats: Arc<Mutex<KvStats>>,
    progress: Arc<KvProgress>,
    mut stop: oneshot::Receiver<()>,
) {
    let follower = Follower::new(FollowerConfig::default(), replica.applied(), id_base)
        .with_head_check(head_check);
    let mut driver = Driver {
        follower,
        replica,
        origin: None,
        peers: HashMap::new(),
        followers: HashMap::new(),
        relay: Relay::new(RELAY_STEP_BYTES),
        waiting: HashMap::new(),
        started: Instant::now(),
        stats,
        progress,
        sweep: None,
        swept_at: Instant::now(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = driver.now();
        tokio::select! {
            _ = &mut stop => break,
            command = commands.recv() => match command {
                Some(command) => driver.on_command(command, now),
                None => break,
            },
            event = links.recv() => match event {
                Some(event) => driver.on_link(event, now),
                None => break,
            },
            _ = tick.tick() => {
                driver.follower.tick(now);
                driver.reclaim().await;
            }
            // A follower's catch-up goes on a step per round, between the other work.
            _ = std::future::ready(()), if driver.relay.catching_up() => {}
        }
        // Take in everything else already waiting, so one round (and one fsync) serves it all:
        // under load, the replica commits in groups instead of once per message.
        for _ in 0..DRAIN {
            match links.try_recv() {
                Ok(event) => driver.on_link(event, now),
                Err(_) => break,
            }
        }
        for _ in 0..DRAIN {
            match commands.try_recv() {
                Ok(command) => driver.on_command(command, now),
                Err(_) => break,
            }
        }
        driver.carry_out().await;
        driver.serve_followers();
        driver.progress.update(
            driver.follower.applied_version(),
            driver.follower.known_version(),
        );
    }
}

impl Driver {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn on_command(&mut self, command: Command, now: u64) {
        let Command::Write { op, reply } = command;
        match self.follower.submit_write(op, now) {
            Ok(id) => {
                self.waiting.insert(id, (reply, Instant::now()));
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn on_link(&mut self, event: LinkEvent, now: u64) {
        match event {
            LinkEvent::OriginUp(sender) => {
                self.origin = Some(sender);
                self.follower.origin_connected(now);
                link_up("origin", true);
            }
            LinkEvent::RelayUp(sender) => {
                self.origin = Some(sender);
                self.follower.relay_connected(now);
                link_up("origin", true);
            }
            LinkEvent::OriginDown => {
                self.origin = None;
                self.follower.origin_disconnected(now);
                link_up("origin", false);
                // A relay without its own upstream sends its followers elsewhere.
                for (name, _) in self.followers.drain() {
                    self.relay.follower_disconnected(&name);
                }
            }
            LinkEvent::FromOrigin(message, _queued) => self.follower.on_origin(message, now),
            LinkEvent::FollowerUp(name, session, sender) => {
                // Without an upstream, the sender is dropped: the follower's session ends and
                // it moves on to another relay or the origin.
                if self.follower.origin_up() {
                    self.relay.follower_connected(&name);
                    self.followers.insert(name, (session, sender));
                }
            }
            LinkEvent::FollowerDown(name, session) => {
                if self
                    .followers
                    .get(&name)
                    .is_some_and(|(s, _)| *s == session)
                {
                    self.followers.remove(&name);
                    self.relay.follower_disconnected(&name);
                }
            }
            LinkEvent::FromFollower(name, message, _queued) => {
                self.relay
                    .on_follower(&name, message, &mut self.follower, now)
            }
            LinkEvent::PeerUp(peer, sender) => {
                self.peers.insert(peer.clone(), sender);
                self.follower.peer_connected(&peer);
                link_up(&format!("peer/{peer}"), true);
            }
            LinkEvent::PeerDown(peer) => {
                self.peers.remove(&peer);
                self.follower.peer_disconnected(&peer);
                link_up(&format!("peer/{peer}"), false);
            }
            LinkEvent::FromPeer(peer, message, _queued) => {
                self.follower.on_peer(&peer, message, now)
            }
        }
    }

    /// Do everything the follower has asked for. Messages go out at once; this node's own
    /// acknowledged writes and the next batch are made durable together in one transaction,
    /// and only then are the writes answered (so a handler reads its own write).
    async fn carry_out(&mut self) {
        loop {
            let mut early: Vec<Entry> = Vec::new();
            let mut parts: Vec<SnapshotPart> = Vec::new();
            let mut batch: Option<Batch> = None;
            let mut answers = Vec::new();
            let head = self.follower.head().cloned();
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
                    Output::ApplyEarly(entries) => early.extend(entries),
                    Output::ApplyPart(part) => parts.push(part),
                    // The follower hands out one batch at a time, until told it is applied.
                    Output::Apply(next) => batch = Some(next),
                    Output::ServePull {
                        peer,
                        from,
                        through,
                    } => self.serve_pull(peer, from, through),
                    Output::WriteDone { id, outcome } => {
                        // A follower's write, passed on, is answered to the follower.
                        if let Some(outcome) = self.relay.write_done(id, outcome, head.as_ref()) {
                            answers.push((id, outcome));
                        }
                    }
                }
            }
            if early.is_empty() && parts.is_empty() && batch.is_none() && answers.is_empty() {
                return;
            }
            let had_parts = !parts.is_empty();
            let relayed = batch.clone().filter(|_| !self.followers.is_empty());
            if self.make_durable(parts, early, batch).await {
                if had_parts {
                    self.relay.part_applied();
                }
                if let Some(batch) = relayed {
                    self.relay.applied(&batch, self.follower.head());
                }
            }
            for (id, outcome) in answers {
                if let Some((reply, sent)) = self.waiting.remove(&id) {
                    if outcome.is_ok() {
                        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                        KvStats::push(&mut stats.write_ack_us, sent.elapsed().as_micros() as u64);
                    }
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// Snapshot parts first (the last one raises the replica's floor, and the batch closing the
    /// snapshot comes after it), then entries and the batch in one transaction.
    async fn make_durable(
        &mut self,
        parts: Vec<SnapshotPart>,
        mut entries: Vec<Entry>,
        batch: Option<Batch>,
    ) -> bool {
        if parts.is_empty() && entries.is_empty() && batch.is_none() {
            return true;
        }
        let through = batch.as_ref().map(|b| b.through);
        let from_batch = batch.map_or(0, |b| {
            let count = b.entries.len();
            entries.extend(b.entries);
            count
        });
        let committed: Vec<u64> = entries[entries.len() - from_batch..]
            .iter()
            .map(|e| e.committed_at_us)
            .collect();
        let replica = self.replica.clone();
        let result = tokio::task::spawn_blocking(move || {
            for part in &parts {
                replica.apply_part(part).map_err(|e| e.to_string())?;
            }
            replica.apply(&entries, through).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let now = self.now();
        match (result, through) {
            (Ok(()), Some(through)) => {
                let applied_at = unix_micros();
                let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                let propagation = &metrics().kv_propagation_seconds;
                for at in committed {
                    let micros = applied_at.saturating_sub(at);
                    KvStats::push(&mut stats.propagation_us, micros);
                    propagation.observe(micros as f64 / 1e6);
                }
                drop(stats);
                self.follower.applied(through, now);
                true
            }
            (Ok(()), None) => true,
            (Err(err), through) => {
                tracing::error!("making KV entries durable failed: {err}");
                if let Some(through) = through {
                    // Not durable: do not move on; the batch is asked for again.
                    self.follower.apply_failed(through, now);
                }
                false
            }
        }
    }

    /// A relay's side: one catch-up step for each follower catching up, from the replica up to
    /// what this node's signed head covers, then everything the relay has for its followers.
    fn serve_followers(&mut self) {
        if self.relay.catching_up() {
            let head = self.follower.head().cloned();
            let feed = ReplicaFeed::new(
                &*self.replica,
                self.follower.applied_version(),
                head.as_ref().map_or(0, |h| h.version),
            );
            if let Err(err) = self.relay.step(&feed, head.as_ref()) {
                tracing::error!("reading the KV replica for a follower failed: {err}");
            }
        }
        while let Some((name, message)) = self.relay.poll_output() {
            if let Some((_, sender)) = self.followers.get(&name) {
                let _ = sender.send(message);
            }
        }
    }

    /// Every [`RECLAIM_EVERY`], sweep [`RECLAIM_KEYS`] keys of the replica for deleted and
    /// expired entries more than [`KEEP_DEAD_VERSIONS`] behind what it applied.
    async fn reclaim(&mut self) {
        if self.swept_at.elapsed() < RECLAIM_EVERY {
            return;
        }
        self.swept_at = Instant::now();
        let through = self.replica.applied().saturating_sub(KEEP_DEAD_VERSIONS);
        if through == 0 {
            return;
        }
        let replica = self.replica.clone();
        let after = self.sweep.take();
        let now_ms = outpost_core::clock::unix_millis();
        let swept = tokio::task::spawn_blocking(move || {
            replica.reclaim(after.as_ref(), RECLAIM_KEYS, through, now_ms)
        })
        .await;
        match swept {
            Ok(Ok(sweep)) => {
                if sweep.removed > 0 {
                    tracing::debug!("reclaimed {} dead KV entries", sweep.removed);
                }
                self.sweep = sweep.next;
            }
            Ok(Err(err)) => tracing::error!("reclaiming dead KV entries failed: {err}"),
            Err(err) => tracing::error!("reclaiming dead KV entries failed: {err}"),
        }
    }

    /// Answer a peer's pull from the replica, off the driver's task.
    fn serve_pull(&self, peer: String, from: u64, through: u64) {
        let Some(sender) = self.peers.get(&peer).cloned() else {
            return;
        };
        let replica = self.replica.clone();
        tokio::spawn(async move {
            let read = move || replica.entries_after(from, usize::MAX);
            match tokio::task::spawn_blocking(read).await {
                // The replica may lack deletes that far back: the peer waits for the origin.
                Ok(Ok(None)) => {
                    tracing::debug!("peer {peer} pulled from {from}, below this replica's floor")
                }
                Ok(Ok(Some((entries, _)))) => {
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
                Ok(Err(err)) => {
                    tracing::error!("reading the KV replica for peer {peer} failed: {err}")
                }
                Err(err) => tracing::error!("reading the KV replica for peer {peer} failed: {err}"),
            }
        });
    }
}
