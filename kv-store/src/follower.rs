//! The replication protocol on a node, as a sans-IO state machine (in the manner of
//! quinn-proto): no sockets, no clocks, no disk. The driver feeds it what happened (a message,
//! a connection coming or going, a batch made durable, the time) and carries out what it asks
//! for ([`Output`]): messages to send, batches to apply, writes to answer.
//!
//! Rules it keeps:
//! * `applied` only moves forward, and only when a batch that starts at or before it has been
//!   made durable, so a replica always holds a prefix of the origin's history (plus, early, this
//!   node's own acknowledged writes, for read-your-writes);
//! * batches that arrive early are held until the gap before them fills; a gap that stays open
//!   makes the node ask again, from the origin or from a peer;
//! * with the origin out of reach, the node learns from peers' digests who is ahead, and pulls;
//! * a peer is believed only as far as the origin has vouched for: its own link's batches, or a
//!   [`Head`] the origin signed, which peers pass on and [`HeadCheck`] verifies. A digest or a
//!   batch claiming more is cut back to that, so a buggy or compromised peer can neither move
//!   `applied` past the origin's history (the node would ignore the origin from then on) nor
//!   make nodes think they are behind;
//! * writes need the origin: without it they fail at once, and a write whose connection breaks
//!   before an answer is reported as unavailable (it may or may not have been applied).
//!
//! The node's upstream, where it subscribes and sends its writes, is the origin or a relay
//! (another node that serves its replica to the nodes that follow it, see [`crate::Relay`]).
//! The origin's link vouches for what it carries; a relay's does not: the node believes a relay
//! as it believes a peer, only as far as a head the origin signed, which the relay sends ahead
//! of what it covers. A relay that lies can then hold a node back (and the node can fail over
//! to another relay or the origin), but never make it apply what the origin never committed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::model::Entry;
use crate::ops::{WriteError, WriteOp, WriteOutcome};
use crate::protocol::{Batch, FromOrigin, Head, PeerMsg, SnapshotPart, ToOrigin};

/// The name of a peer node, as the driver names its link to it.
pub type PeerId = String;

/// Whether a head's proof holds (the origin signed it). A head from a peer counts only if so.
pub type HeadCheck = Arc<dyn Fn(&Head) -> bool + Send + Sync>;

/// The follower's timeouts and intervals.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// A write with no answer from the origin in this long is reported unavailable.
    pub write_timeout: Duration,
    /// A gap in the versions received that stays open this long is asked for again.
    pub gap_timeout: Duration,
    /// How often to tell peers how far this node has got.
    pub digest_interval: Duration,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            write_timeout: Duration::from_secs(2),
            gap_timeout: Duration::from_millis(500),
            digest_interval: Duration::from_millis(500),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this message to the origin.
    ToOrigin(ToOrigin),
    /// Send this message to the named peer.
    ToPeer(PeerId, PeerMsg),
    /// Apply durably, then call [`Follower::applied`] with `batch.through`.
    Apply(Batch),
    /// This node's own acknowledged write: apply it now (it does not move `applied`).
    ApplyEarly(Vec<Entry>),
    /// Part of a snapshot: apply it now with [`crate::ReplicaStore::apply_part`] (it does not
    /// move `applied`; the run's last part is followed by an `Apply` that does).
    ApplyPart(SnapshotPart),
    /// Answer a peer's pull from the replica: send it a batch from `from` to `through` with each
    /// key's latest entry above `from`.
    ServePull {
        /// The peer that asked.
        peer: PeerId,
        /// The version the peer has applied everything up to: send what is newer.
        from: u64,
        /// This node's `applied` when the pull arrived, where the batch ends.
        through: u64,
    },
    /// A write submitted with [`Follower::submit_write`] is decided (or given up on).
    WriteDone {
        /// The id [`Follower::submit_write`] returned for the write.
        id: u64,
        /// What came of the write, from the origin or, if it never answered, unavailable.
        outcome: WriteOutcome,
    },
}

#[derive(Debug, Default, Clone)]
struct PeerState {
    connected: bool,
    through: u64,
    /// When this node last served the peer a pull: reading the replica for it is costly, so a
    /// peer gets one per `gap_timeout`, however often it asks.
    served_at: Option<u64>,
    /// The newest head passed on to the peer.
    head_sent: u64,
    /// When a head from the peer last failed its check: checking costs a signature
    /// verification, so after a failure the peer's heads are ignored for a `gap_timeout`.
    refused_head_at: Option<u64>,
}

/// A node's side of replication: fed messages, link changes and clock ticks, it queues the
/// [`Output`]s the driver must carry out.
pub struct Follower {
    config: FollowerConfig,
    applied: u64,
    /// The newest version the origin has vouched for: what peers are believed up to.
    origin_head: u64,
    /// The newest signed head held, to pass on to peers.
    head: Option<Head>,
    head_check: HeadCheck,
    /// The `through` of the batch being made durable.
    applying: Option<u64>,
    /// Batches that cannot be applied yet, by their `from`.
    held: BTreeMap<u64, Batch>,
    gap_since: Option<u64>,
    /// A snapshot under way from the origin: the version it started at, and the last key
    /// received, which the next part must start after.
    snapshot: Option<(u64, Option<(String, String)>)>,
    /// A snapshot's run broke: it must be asked for again.
    lost_snapshot: bool,
    origin_up: bool,
    /// Whether the upstream is the origin, whose link vouches for what it carries (a relay's
    /// does not).
    upstream_vouches: bool,
    /// When a head from the upstream last failed its check (see [`PeerState`]).
    upstream_refused_head_at: Option<u64>,
    pending: BTreeMap<u64, u64>,
    next_id: u64,
    peers: BTreeMap<PeerId, PeerState>,
    pull: Option<(PeerId, u64)>,
    /// Since when a peer has reported being further than this node (the origin's stream may
    /// have stalled without the connection dropping yet).
    behind_since: Option<u64>,
    /// When the origin's stream (batches, snapshot parts, heads) last brought anything: a
    /// subscription the origin lost (its session failed) shows as a silent stream while a
    /// peer is ahead.
    fed_at: u64,
    last_digest: u64,
    out: VecDeque<Output>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Follower {
    /// `applied` is where the replica stands; `id_base` makes this run's write ids differ from
    /// any earlier run's (the origin recognises retries by id).
    pub fn new(config: FollowerConfig, applied: u64, id_base: u64) -> Self {
        Follower {
            config,
            applied,
            origin_head: applied,
            head: None,
            head_check: Arc::new(|_| false),
            applying: None,
            held: BTreeMap::new(),
            gap_since: None,
            snapshot: None,
            lost_snapshot: false,
            origin_up: false,
            upstream_vouches: true,
            upstream_refused_head_at: None,
            pending: BTreeMap::new(),
            next_id: id_base,
            peers: BTreeMap::new(),
            pull: None,
            behind_since: None,
            fed_at: 0,
            last_digest: 0,
            out: VecDeque::new(),
        }
    }

    /// How to verify the heads peers pass on; without one, peers are believed only as far as
    /// this node's own link to the origin has shown.
    pub fn with_head_check(mut self, check: HeadCheck) -> Self {
        self.head_check = check;
        self
    }

    /// The version up to which the replica has durably applied everything.
    pub fn applied_version(&self) -> u64 {
        self.applied
    }

    /// The newest version this follower knows exists: applied, being applied, held back
    /// waiting for a gap to fill, or reported by a peer.
    pub fn known_version(&self) -> u64 {
        let held = self.held.values().map(|b| b.through).max().unwrap_or(0);
        let peers = self.peers.values().map(|p| p.through).max().unwrap_or(0);
        self.applied
            .max(self.applying.unwrap_or(0))
            .max(held)
            .max(peers)
    }

    /// Whether the link to the origin is up (writes fail at once while it is not).
    pub fn origin_up(&self) -> bool {
        self.origin_up
    }

    /// The newest head the origin signed that this node holds: a relay passes it on to its
    /// followers ahead of what it serves them.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The link to the origin came up at `now_ms`: subscribe from `applied`.
    pub fn origin_connected(&mut self, now_ms: u64) {
        self.upstream_connected(true, now_ms);
    }

    /// The link to a relay came up at `now_ms`, as this node's upstream in place of the origin:
    /// subscribe from `applied`, send writes through it, and believe it only as far as the
    /// origin's signed heads. [`Follower::origin_disconnected`] ends it as it ends the origin's.
    pub fn relay_connected(&mut self, now_ms: u64) {
        self.upstream_connected(false, now_ms);
    }

    fn upstream_connected(&mut self, vouches: bool, now_ms: u64) {
        self.origin_up = true;
        self.upstream_vouches = vouches;
        self.upstream_refused_head_at = None;
        self.fed_at = now_ms;
        self.out
            .push_back(Output::ToOrigin(ToOrigin::Subscribe { from: self.applied }));
    }

    /// The link to the upstream (the origin or a relay) went down: every write still awaiting
    /// an answer is reported unavailable, since it may or may not have been applied.
    pub fn origin_disconnected(&mut self, _now_ms: u64) {
        self.origin_up = false;
        for id in std::mem::take(&mut self.pending).into_keys() {
            self.out.push_back(Output::WriteDone {
                id,
                outcome: Err(WriteError::Unavailable(
                    "the connection to the origin broke before it answered; the write may or may not have been applied".into(),
                )),
            });
        }
    }

    /// Send a write to the origin. Fails at once if the op breaks a limit or the origin is out
    /// of reach; otherwise its outcome comes later as [`Output::WriteDone`].
    pub fn submit_write(&mut self, op: WriteOp, now_ms: u64) -> Result<u64, WriteError> {
        op.validate()?;
        if !self.origin_up {
            return Err(WriteError::Unavailable(
                "the origin is not reachable from this node".into(),
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, now_ms);
        self.out
            .push_back(Output::ToOrigin(ToOrigin::Write { id, op }));
        Ok(id)
    }

    /// A message from the upstream (the origin, or a relay) arrived at `now_ms`.
    pub fn on_origin(&mut self, message: FromOrigin, now_ms: u64) {
        if !matches!(message, FromOrigin::WriteResult { .. }) {
            self.fed_at = now_ms;
        }
        if !self.upstream_vouches {
            return self.on_relay(message, now_ms);
        }
        match message {
            FromOrigin::Batch(batch) => {
                self.vouched(batch.through);
                self.receive(batch, now_ms)
            }
            FromOrigin::SnapshotPart(part) => {
                // Its entries may be newer than its start (read after the snapshot began).
                let newest = part.entries.iter().map(|e| e.version).max().unwrap_or(0);
                self.vouched(part.started_at.max(newest));
                self.receive_snapshot_part(part, now_ms)
            }
            FromOrigin::Head(head) => self.keep_head(head),
            FromOrigin::WriteResult { id, outcome } => {
                if let Ok(ack) = &outcome
                    && !ack.entries.is_empty()
                {
                    if let Some(newest) = ack.entries.iter().map(|e| e.version).max() {
                        self.vouched(newest);
                    }
                    self.out.push_back(Output::ApplyEarly(ack.entries.clone()));
                }
                self.write_done(id, outcome);
            }
        }
    }

    /// A message from a relay: believed as a peer's is, only as far as a signed head.
    fn on_relay(&mut self, message: FromOrigin, now_ms: u64) {
        match message {
            FromOrigin::Batch(batch) => {
                if let Some(batch) = self.believable(batch) {
                    self.receive(batch, now_ms);
                }
            }
            FromOrigin::SnapshotPart(part) => {
                let head = self.origin_head;
                if part.started_at > head || part.entries.iter().any(|e| e.version > head) {
                    // A part claiming more than the origin signed cannot speak for its key
                    // range: the run is broken, and asked for again.
                    self.snapshot_broken(part.entries, now_ms);
                } else {
                    self.receive_snapshot_part(part, now_ms);
                }
            }
            FromOrigin::Head(head) => {
                let mut refused_at = self.upstream_refused_head_at;
                if self.checked_head(head, &mut refused_at, now_ms) {
                    self.maybe_pull(now_ms);
                }
                self.upstream_refused_head_at = refused_at;
            }
            FromOrigin::WriteResult { id, outcome } => {
                if let Ok(ack) = &outcome {
                    let head = self.origin_head;
                    let entries: Vec<Entry> = ack
                        .entries
                        .iter()
                        .filter(|e| e.version <= head)
                        .cloned()
                        .collect();
                    if !entries.is_empty() {
                        self.out.push_back(Output::ApplyEarly(entries));
                    }
                }
                self.write_done(id, outcome);
            }
        }
    }

    fn write_done(&mut self, id: u64, outcome: WriteOutcome) {
        if self.pending.remove(&id).is_some() {
            self.out.push_back(Output::WriteDone { id, outcome });
        }
    }

    /// Keep `head` if it is newer than the one held and its proof holds. A head that fails
    /// costs a signature check, so after one its sender's heads are ignored for a
    /// `gap_timeout` (`refused_at` is when that sender's last one failed). Whether it was kept.
    fn checked_head(&mut self, head: Head, refused_at: &mut Option<u64>, now_ms: u64) -> bool {
        let newer = self.head.as_ref().is_none_or(|h| h.version < head.version);
        let refused_lately =
            refused_at.is_some_and(|at| now_ms.saturating_sub(at) < ms(self.config.gap_timeout));
        if !newer || refused_lately {
            return false;
        }
        if (self.head_check)(&head) {
            self.keep_head(head);
            true
        } else {
            *refused_at = Some(now_ms);
            false
        }
    }

    /// The origin (over this node's own link, which TLS vouches for) has shown `version` exists.
    fn vouched(&mut self, version: u64) {
        self.origin_head = self.origin_head.max(version);
    }

    /// A head from the origin, or one a peer passed on that has been checked.
    fn keep_head(&mut self, head: Head) {
        self.vouched(head.version);
        if self.head.as_ref().is_none_or(|h| h.version < head.version) {
            self.head = Some(head);
        }
    }

    /// Tell a peer how far this node is, with the newest head it has not passed on yet (first,
    /// so the peer believes what follows).
    fn send_progress(&mut self, peer: &str) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if let Some(head) = &self.head
            && head.version > state.head_sent
        {
            state.head_sent = head.version;
            self.out.push_back(Output::ToPeer(
                peer.to_string(),
                PeerMsg::Head(head.clone()),
            ));
        }
        self.out.push_back(Output::ToPeer(
            peer.to_string(),
            PeerMsg::Digest {
                through: self.applied,
            },
        ));
    }

    /// The part of a peer's batch the origin has vouched for. A batch holds each key's latest
    /// entry only, so one entry past `origin_head` hides that key's earlier versions, which may
    /// lie anywhere in the range: then the batch cannot move `applied`, and only its vouched-for
    /// entries are applied (early). `None` when nothing moves `applied`.
    fn believable(&mut self, mut batch: Batch) -> Option<Batch> {
        let head = self.origin_head;
        if batch.entries.iter().any(|e| e.version > head) {
            batch.entries.retain(|e| e.version <= head);
            if !batch.entries.is_empty() {
                self.out.push_back(Output::ApplyEarly(batch.entries));
            }
            return None;
        }
        batch.through = batch.through.min(head);
        (batch.through > batch.from).then_some(batch)
    }

    /// A link to `peer` came up: tell it how far this node is (with the newest head first).
    pub fn peer_connected(&mut self, peer: &str) {
        let state = self.peers.entry(peer.to_string()).or_default();
        state.connected = true;
        state.head_sent = 0;
        self.send_progress(peer);
    }

    /// The link to `peer` went down: it is no longer pulled from, and a pull under way from it
    /// is dropped.
    pub fn peer_disconnected(&mut self, peer: &str) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.connected = false;
        }
        if self.pull.as_ref().is_some_and(|(p, _)| p == peer) {
            self.pull = None;
        }
    }

    /// A message from `peer` arrived at `now_ms`.
    pub fn on_peer(&mut self, peer: &str, message: PeerMsg, now_ms: u64) {
        match message {
            PeerMsg::Digest { through } => {
                let through = through.min(self.origin_head);
                let state = self.peers.entry(peer.to_string()).or_default();
                state.through = state.through.max(through);
                if through > self.applied && self.behind_since.is_none() {
                    self.behind_since = Some(now_ms);
                }
                self.maybe_pull(now_ms);
            }
            PeerMsg::Pull { from } => {
                let state = self.peers.entry(peer.to_string()).or_default();
                let recently = state
                    .served_at
                    .is_some_and(|at| now_ms.saturating_sub(at) < ms(self.config.gap_timeout));
                if from < self.applied && !recently {
                    state.served_at = Some(now_ms);
                    self.send_progress(peer);
                    self.out.push_back(Output::ServePull {
                        peer: peer.to_string(),
                        from,
                        through: self.applied,
                    });
                }
            }
            PeerMsg::Batch(batch) => {
                if self.pull.as_ref().is_some_and(|(p, _)| p == peer) {
                    self.pull = None;
                }
                if let Some(batch) = self.believable(batch) {
                    self.receive(batch, now_ms);
                }
            }
            PeerMsg::Head(head) => {
                let mut refused_at = self.peers.get(peer).and_then(|s| s.refused_head_at);
                if self.checked_head(head, &mut refused_at, now_ms) {
                    self.maybe_pull(now_ms);
                }
                self.peers
                    .entry(peer.to_string())
                    .or_default()
                    .refused_head_at = refused_at;
            }
        }
    }

    /// Each key's entry as the origin holds it, and nothing else in the part's key range:
    /// newer-wins makes applying parts as they come safe, but only the last part of a run with
    /// none missing brings `applied` to the snapshot's version. A run that breaks (a lost or
    /// repeated part) is asked for again.
    fn receive_snapshot_part(&mut self, part: SnapshotPart, now_ms: u64) {
        let joins = match (&part.after, &self.snapshot) {
            (None, _) => true,
            (Some(after), Some((started_at, last_key))) => {
                *started_at == part.started_at && last_key.as_ref() == Some(after)
            }
            (Some(_), None) => false,
        };
        if !joins {
            // Its entries are still each key as the origin held it, but only a whole run may
            // raise the replica's floor (see `crate::replica`): apply them as plain entries.
            return self.snapshot_broken(part.entries, now_ms);
        }
        if part.last {
            self.snapshot = None;
            let through = part.started_at;
            self.out.push_back(Output::ApplyPart(part));
            let batch = Batch {
                from: 0,
                through,
                entries: Vec::new(),
            };
            self.receive(batch, now_ms);
        } else {
            self.snapshot = Some((part.started_at, part.last_key()));
            self.out.push_back(Output::ApplyPart(part));
        }
    }

    /// A snapshot's run broke (a part lost, repeated, or not believable): ask for it again, and
    /// apply what of `entries` the origin has vouched for as plain entries.
    fn snapshot_broken(&mut self, mut entries: Vec<Entry>, now_ms: u64) {
        self.snapshot = None;
        self.lost_snapshot = true;
        self.gap_since.get_or_insert(now_ms);
        entries.retain(|e| e.version <= self.origin_head);
        if !entries.is_empty() {
            self.out.push_back(Output::ApplyEarly(entries));
        }
    }

    /// The batch ending at `through` is durable.
    pub fn applied(&mut self, through: u64, now_ms: u64) {
        if self.applying == Some(through) {
            self.applying = None;
        }
        self.applied = self.applied.max(through);
        self.advance(now_ms);
    }

    /// The batch ending at `through` could not be made durable: forget it, and ask for it
    /// again once the gap timer runs out.
    pub fn apply_failed(&mut self, through: u64, now_ms: u64) {
        if self.applying == Some(through) {
            self.applying = None;
        }
        self.gap_since.get_or_insert(now_ms);
    }

    /// Timers: gaps, write deadlines, digests.
    pub fn tick(&mut self, now_ms: u64) {
        if let Some(since) = self.gap_since
            && now_ms.saturating_sub(since) >= ms(self.config.gap_timeout)
        {
            // Ask again: the origin resends from where we stand; a peer may have it too.
            self.lost_snapshot = false;
            if self.origin_up {
                self.out
                    .push_back(Output::ToOrigin(ToOrigin::Subscribe { from: self.applied }));
            }
            self.gap_since = Some(now_ms);
            self.pull = None;
            self.maybe_pull(now_ms);
        }
        if let Some((_, sent)) = &self.pull
            && now_ms.saturating_sub(*sent) >= ms(self.config.gap_timeout)
        {
            self.pull = None;
        }
        // A peer has long been ahead and the origin has sent nothing meanwhile: ask it again
        // (a catch-up under way keeps sending, so this does not restart one).
        let gap = ms(self.config.gap_timeout);
        if self.origin_up
            && self
                .behind_since
                .is_some_and(|since| now_ms.saturating_sub(since) >= gap)
            && now_ms.saturating_sub(self.fed_at) >= gap
        {
            self.out
                .push_back(Output::ToOrigin(ToOrigin::Subscribe { from: self.applied }));
            self.fed_at = now_ms;
        }
        let deadline = ms(self.config.write_timeout);
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, sent)| now_ms.saturating_sub(**sent) >= deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.out.push_back(Output::WriteDone {
                id,
                outcome: Err(WriteError::Unavailable(format!(
                    "no answer from the origin within {} ms; the write may or may not have been applied",
                    deadline
                ))),
            });
        }
        if now_ms.saturating_sub(self.last_digest) >= ms(self.config.digest_interval) {
            self.last_digest = now_ms;
            let connected: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, state)| state.connected)
                .map(|(peer, _)| peer.clone())
                .collect();
            for peer in connected {
                self.send_progress(&peer);
            }
            self.maybe_pull(now_ms);
        }
    }

    /// Pull from the most advanced connected peer when it is ahead and the origin cannot help:
    /// it is away, a gap has lasted, or a peer has been ahead for a while.
    fn maybe_pull(&mut self, now_ms: u64) {
        let stale = self
            .behind_since
            .is_some_and(|since| now_ms.saturating_sub(since) >= ms(self.config.gap_timeout));
        if self.pull.is_some() || (self.origin_up && self.gap_since.is_none() && !stale) {
            return;
        }
        let target = self.applying.unwrap_or(self.applied);
        let best = self
            .peers
            .iter()
            .filter(|(_, s)| s.connected && s.through > target)
            .max_by_key(|(_, s)| s.through)
            .map(|(p, _)| p.clone());
        if let Some(peer) = best {
            self.out.push_back(Output::ToPeer(
                peer.clone(),
                PeerMsg::Pull { from: self.applied },
            ));
            self.pull = Some((peer, now_ms));
        }
    }

    fn receive(&mut self, batch: Batch, now_ms: u64) {
        let reached = self.applying.unwrap_or(self.applied);
        if batch.through <= reached {
            return; // nothing new
        }
        match self.held.get(&batch.from) {
            Some(held) if held.through >= batch.through => {}
            _ => {
                self.held.insert(batch.from, batch);
            }
        }
        self.advance(now_ms);
    }

    /// Start applying what follows `applied`, merging every held batch that connects.
    fn advance(&mut self, now_ms: u64) {
        if self.peers.values().all(|p| p.through <= self.applied) {
            self.behind_since = None;
        }
        if self.applying.is_none() {
            self.start_applying();
        }
        self.gap_since = match (self.waiting_on_a_gap(), self.gap_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(now_ms),
        };
    }

    fn start_applying(&mut self) {
        self.held.retain(|_, b| b.through > self.applied);
        let mut through = self.applied;
        let mut entries: Vec<Entry> = Vec::new();
        let mut from = None;
        while let Some((&start, _)) = self.held.range(..=through).next_back() {
            let batch = self.held.remove(&start).expect("key just found");
            if batch.through <= through {
                continue;
            }
            from.get_or_insert(batch.from.min(self.applied));
            through = batch.through;
            entries.extend(batch.entries);
            self.held.retain(|_, b| b.through > through);
        }
        if let Some(from) = from {
            self.applying = Some(through);
            self.out.push_back(Output::Apply(Batch {
                from,
                through,
                entries,
            }));
        }
    }

    /// Whether a held batch waits for versions nobody is sending: batches that join on to the
    /// one being applied are only waiting their turn (a long catch-up over a slow disk), and
    /// asking again for them would only make the origin send them twice.
    fn waiting_on_a_gap(&self) -> bool {
        if self.lost_snapshot {
            return true;
        }
        let mut reached = self.applying.unwrap_or(self.applied);
        for (from, batch) in &self.held {
            if *from > reached {
                return true;
            }
            reached = reached.max(batch.through);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{OpResult, WriteAck};

    fn entry(version: u64) -> Entry {
        Entry {
            namespace: "ns".into(),
            key: format!("k{version}"),
            value: Some(vec![version as u8]),
            metadata: None,
            expires_at_ms: None,
            version,
            committed_at_us: 0,
        }
    }

    fn batch(from: u64, through: u64) -> Batch {
        Batch {
            from,
            through,
            entries: (from + 1..=through).map(entry).collect(),
        }
    }

    fn drain(f: &mut Follower) -> Vec<Output> {
        std::iter::from_fn(|| f.poll_output()).collect()
    }

    #[test]
    fn subscribes_from_applied_and_applies_in_order() {
        let mut f = Follower::new(FollowerConfig::default(), 3, 0);
        f.origin_connected(0);
        assert_eq!(
            drain(&mut f),
            vec![Output::ToOrigin(ToOrigin::Subscribe { from: 3 })]
        );
        f.on_origin(FromOrigin::Batch(batch(3, 5)), 0);
        assert_eq!(drain(&mut f), vec![Output::Apply(batch(3, 5))]);
        // While that is being applied, the next batch waits, then both later ones merge.
        f.on_origin(FromOrigin::Batch(batch(5, 6)), 0);
        f.on_origin(FromOrigin::Batch(batch(6, 7)), 0);
        assert!(drain(&mut f).is_empty());
        f.applied(5, 0);
        let merged = Batch {
            from: 5,
            through: 7,
            entries: vec![entry(6), entry(7)],
        };
        assert_eq!(drain(&mut f), vec![Output::Apply(merged)]);
        f.applied(7, 0);
        assert_eq!(f.applied_version(), 7);
    }

    #[test]
    fn duplicates_are_ignored_and_gaps_are_asked_for_again() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 0);
        f.origin_connected(0);
        drain(&mut f);
        f.on_origin(FromOrigin::Batch(batch(2, 3)), 10);
        assert!(drain(&mut f).is_empty(), "2..3 waits for 0..2");
        f.tick(100);
        assert!(drain(&mut f).is_empty(), "not yet");
        f.tick(600);
        assert_eq!(
            drain(&mut f),
            vec![Output::ToOrigin(ToOrigin::Subscribe { from: 0 })]
        );
        f.on_origin(FromOrigin::Batch(batch(0, 2)), 610);
        assert_eq!(
            drain(&mut f),
            vec![Output::Apply(Batch {
                from: 0,
                through: 3,
                entries: vec![entry(1), entry(2), entry(3)]
            })]
        );
        f.applied(3, 620);
        f.on_origin(FromOrigin::Batch(batch(1, 3)), 630);
        assert!(drain(&mut f).is_empty(), "a repeat changes nothing");
    }

    #[test]
    fn writes_fail_fast_without_the_origin_and_when_it_drops() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 100);
        let put = WriteOp::Put {
            namespace: "ns".into(),
            key: "k".into(),
            value: b"v".to_vec(),
            metadata: None,
            ttl_secs: None,
        };
        assert!(matches!(
            f.submit_write(put.clone(), 0),
            Err(WriteError::Unavailable(_))
        ));
        f.origin_connected(0);
        drain(&mut f);
        let id = f.submit_write(put.clone(), 0).unwrap();
        assert_eq!(id, 100);
        assert_eq!(
            drain(&mut f),
            vec![Output::ToOrigin(ToOrigin::Write {
                id,
                op: put.clone()
            })]
        );
        let ack = WriteAck {
            entries: vec![entry(1)],
            result: OpResult::Done,
        };
        f.on_origin(
            FromOrigin::WriteResult {
                id,
                outcome: Ok(ack.clone()),
            },
            1,
        );
        assert_eq!(
            drain(&mut f),
            vec![
                Output::ApplyEarly(vec![entry(1)]),
                Output::WriteDone {
                    id,
                    outcome: Ok(ack)
                }
            ]
        );
        let lost = f.submit_write(put, 2).unwrap();
        drain(&mut f);
        f.origin_disconnected(3);
        assert!(matches!(
            drain(&mut f).as_slice(),
            [Output::WriteDone { id, outcome: Err(WriteError::Unavailable(_)) }] if *id == lost
        ));
    }

    fn signed(version: u64) -> Head {
        Head {
            version,
            proof: b"signed".to_vec(),
        }
    }

    fn checking() -> Follower {
        Follower::new(FollowerConfig::default(), 0, 0)
            .with_head_check(Arc::new(|h| h.proof == b"signed"))
    }

    #[test]
    fn a_silent_origin_stream_while_a_peer_is_ahead_is_asked_again() {
        let mut f = Follower::new(FollowerConfig::default(), 2, 0)
            .with_head_check(Arc::new(|h| h.proof == b"signed"));
        f.origin_connected(0);
        f.peer_connected("b");
        drain(&mut f);
        f.on_peer("b", PeerMsg::Head(signed(9)), 0);
        f.on_peer("b", PeerMsg::Digest { through: 9 }, 0);
        // Write results keep coming, but the stream itself is silent: the subscription was
        // lost on the origin's side.
        f.on_origin(
            FromOrigin::WriteResult {
                id: 77,
                outcome: Err(WriteError::Unavailable("x".into())),
            },
            400,
        );
        f.tick(499);
        assert!(!drain(&mut f).contains(&Output::ToOrigin(ToOrigin::Subscribe { from: 2 })));
        f.tick(500);
        assert!(drain(&mut f).contains(&Output::ToOrigin(ToOrigin::Subscribe { from: 2 })));
        // A stream that keeps sending (a long catch-up) is not restarted.
        f.on_origin(FromOrigin::Head(signed(9)), 900);
        f.tick(1000);
        assert!(!drain(&mut f).contains(&Output::ToOrigin(ToOrigin::Subscribe { from: 2 })));
    }

    #[test]
    fn without_the_origin_a_node_pulls_from_the_peer_ahead() {
        let mut f = Follower::new(FollowerConfig::default(), 2, 0)
            .with_head_check(Arc::new(|h| h.proof == b"signed"));
        f.peer_connected("b");
        f.peer_connected("c");
        drain(&mut f);
        f.on_peer("b", PeerMsg::Head(signed(5)), 0);
        f.on_peer("b", PeerMsg::Digest { through: 5 }, 0);
        f.on_peer("c", PeerMsg::Head(signed(9)), 0);
        f.on_peer("c", PeerMsg::Digest { through: 9 }, 0);
        let out = drain(&mut f);
        assert_eq!(
            out,
            vec![Output::ToPeer("b".into(), PeerMsg::Pull { from: 2 })]
        );
        // One pull at a time; the peer answers with a catch-up.
        f.on_peer("b", PeerMsg::Batch(batch(2, 5)), 1);
        assert_eq!(drain(&mut f), vec![Output::Apply(batch(2, 5))]);
        f.applied(5, 2);
        f.tick(600);
        let out = drain(&mut f);
        assert!(
            out.contains(&Output::ToPeer("c".into(), PeerMsg::Pull { from: 5 })),
            "{out:?}"
        );
        // It passes the newest head on with its digests...
        assert!(
            out.contains(&Output::ToPeer("b".into(), PeerMsg::Head(signed(9)))),
            "{out:?}"
        );
        // ...and serves pulls from behind it, the head first.
        f.on_peer("b", PeerMsg::Pull { from: 1 }, 700);
        assert_eq!(
            drain(&mut f),
            vec![
                Output::ToPeer("b".into(), PeerMsg::Digest { through: 5 }),
                Output::ServePull {
                    peer: "b".into(),
                    from: 1,
                    through: 5
                }
            ]
        );
    }

    #[test]
    fn a_peer_is_believed_only_as_far_as_the_origin_has_vouched() {
        let mut f = checking();
        f.origin_connected(0);
        f.on_origin(FromOrigin::Batch(batch(0, 3)), 0);
        f.applied(3, 0);
        f.peer_connected("b");
        drain(&mut f);
        // A peer claiming the end of time, with a head it forged, makes the node neither
        // behind nor pull.
        let forged = Head {
            version: u64::MAX,
            proof: b"forged".to_vec(),
        };
        f.on_peer("b", PeerMsg::Head(forged), 10);
        f.on_peer("b", PeerMsg::Digest { through: u64::MAX }, 10);
        assert_eq!(f.known_version(), 3);
        f.origin_disconnected(20);
        f.tick(700);
        assert!(
            !drain(&mut f)
                .iter()
                .any(|o| matches!(o, Output::ToPeer(_, PeerMsg::Pull { .. }))),
            "nothing to pull: the origin never vouched for anything past 3"
        );
        // Nor can an unsolicited batch move `applied` past what the origin vouched for.
        let poison = Batch {
            from: 3,
            through: u64::MAX,
            entries: vec![entry(u64::MAX)],
        };
        f.on_peer("b", PeerMsg::Batch(poison), 800);
        let overreach = Batch {
            from: 0,
            through: 10,
            entries: (1..=10).map(entry).collect(),
        };
        f.on_peer("b", PeerMsg::Batch(overreach), 810);
        // (Its entries the origin did vouch for may be applied early: they change nothing here.)
        assert!(
            drain(&mut f)
                .iter()
                .all(|o| matches!(o, Output::ApplyEarly(e) if e.iter().all(|e| e.version <= 3))),
        );
        assert_eq!((f.applied_version(), f.known_version()), (3, 3));
        // The origin's stream goes on where it left off.
        f.origin_connected(900);
        assert_eq!(
            drain(&mut f),
            vec![Output::ToOrigin(ToOrigin::Subscribe { from: 3 })]
        );
        f.on_origin(FromOrigin::Batch(batch(3, 5)), 910);
        assert_eq!(drain(&mut f), vec![Output::Apply(batch(3, 5))]);
    }

    #[test]
    fn a_batch_with_an_entry_past_the_head_does_not_move_applied() {
        let mut f = checking();
        f.peer_connected("b");
        f.on_peer("b", PeerMsg::Head(signed(6)), 0);
        drain(&mut f);
        // The key written at 3 was written again at 8: its entry at 3 is not in the batch, and
        // where it was cannot be told, so the batch cannot claim any prefix.
        let mut merged = batch(0, 9);
        merged.entries.retain(|e| e.version <= 6);
        merged.entries[2].version = 8;
        f.on_peer("b", PeerMsg::Batch(merged), 10);
        assert_eq!(
            drain(&mut f),
            vec![Output::ApplyEarly(vec![
                entry(1),
                entry(2),
                entry(4),
                entry(5),
                entry(6)
            ])]
        );
        assert_eq!(f.applied_version(), 0);
        // Within the head, the same peer's batch counts.
        f.on_peer("b", PeerMsg::Batch(batch(0, 6)), 20);
        assert_eq!(drain(&mut f), vec![Output::Apply(batch(0, 6))]);
    }

    #[test]
    fn a_peer_whose_head_fails_its_check_is_not_checked_again_for_a_while() {
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = checks.clone();
        let mut f =
            Follower::new(FollowerConfig::default(), 0, 0).with_head_check(Arc::new(move |h| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                h.proof == b"signed"
            }));
        f.peer_connected("b");
        for version in 1..100 {
            let forged = Head {
                version,
                proof: vec![],
            };
            f.on_peer("b", PeerMsg::Head(forged), version);
        }
        assert_eq!(checks.load(std::sync::atomic::Ordering::Relaxed), 1);
        f.on_peer("b", PeerMsg::Head(signed(4)), 600);
        assert_eq!(f.known_version(), 0, "no digest yet");
        assert_eq!(checks.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_long_catch_up_is_not_asked_for_again() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 0);
        f.origin_connected(0);
        drain(&mut f);
        f.on_origin(FromOrigin::Batch(batch(0, 2)), 0);
        f.on_origin(FromOrigin::Batch(batch(2, 4)), 1);
        f.on_origin(FromOrigin::Batch(batch(4, 6)), 2);
        assert_eq!(drain(&mut f), vec![Output::Apply(batch(0, 2))]);
        // The disk is slow: the rest waits its turn, which is no gap.
        for now in [600, 1200, 1800] {
            f.tick(now);
        }
        assert!(drain(&mut f).is_empty(), "no re-subscribe");
        f.applied(2, 1900);
        assert_eq!(
            drain(&mut f),
            vec![Output::Apply(Batch {
                from: 2,
                through: 6,
                entries: (3..=6).map(entry).collect(),
            })]
        );
    }

    fn part(after: Option<u64>, versions: &[u64], last: bool) -> FromOrigin {
        FromOrigin::SnapshotPart(SnapshotPart {
            started_at: 9,
            after: after.map(|v| ("ns".into(), format!("k{v}"))),
            entries: versions.iter().map(|v| entry(*v)).collect(),
            last,
        })
    }

    fn snapshot_part(after: Option<u64>, versions: &[u64], last: bool) -> SnapshotPart {
        match part(after, versions, last) {
            FromOrigin::SnapshotPart(part) => part,
            _ => unreachable!(),
        }
    }

    #[test]
    fn snapshot_parts_apply_early_and_the_last_one_moves_applied() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 0);
        f.origin_connected(0);
        drain(&mut f);
        f.on_origin(part(None, &[4, 9], false), 1);
        assert_eq!(
            drain(&mut f),
            vec![Output::ApplyPart(snapshot_part(None, &[4, 9], false))]
        );
        assert_eq!((f.applied_version(), f.known_version()), (0, 0));
        f.on_origin(part(Some(9), &[7], true), 2);
        let closing = Batch {
            from: 0,
            through: 9,
            entries: vec![],
        };
        assert_eq!(
            drain(&mut f),
            vec![
                Output::ApplyPart(snapshot_part(Some(9), &[7], true)),
                Output::Apply(closing)
            ]
        );
        f.applied(9, 3);
        assert_eq!(f.applied_version(), 9);
    }

    #[test]
    fn a_snapshot_missing_a_part_is_asked_for_again() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 0);
        f.origin_connected(0);
        drain(&mut f);
        f.on_origin(part(None, &[4], false), 1);
        // The part after k4 never came.
        f.on_origin(part(Some(6), &[7], true), 2);
        assert_eq!(
            drain(&mut f),
            vec![
                Output::ApplyPart(snapshot_part(None, &[4], false)),
                Output::ApplyEarly(vec![entry(7)])
            ]
        );
        assert_eq!(f.applied_version(), 0, "a broken run does not move applied");
        f.tick(600);
        assert_eq!(
            drain(&mut f),
            vec![Output::ToOrigin(ToOrigin::Subscribe { from: 0 })]
        );
    }

    #[test]
    fn a_peer_is_served_one_pull_per_gap_timeout() {
        let mut f = Follower::new(FollowerConfig::default(), 0, 0);
        f.origin_connected(0);
        f.on_origin(FromOrigin::Batch(batch(0, 5)), 0);
        f.applied(5, 0);
        f.peer_connected("b");
        drain(&mut f);
        let served = |f: &mut Follower| {
            drain(f)
                .iter()
                .filter(|o| matches!(o, Output::ServePull { .. }))
                .count()
        };
        for now in 0..100 {
            f.on_peer("b", PeerMsg::Pull { from: 0 }, 1000 + now);
        }
        assert_eq!(served(&mut f), 1);
        f.on_peer("b", PeerMsg::Pull { from: 0 }, 1600);
        assert_eq!(served(&mut f), 1);
    }
}
