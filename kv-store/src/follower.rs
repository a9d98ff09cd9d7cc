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
//! * writes need the origin: without it they fail at once, and a write whose connection breaks
//!   before an answer is reported as unavailable (it may or may not have been applied).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::model::Entry;
use crate::ops::{WriteError, WriteOp, WriteOutcome};
use crate::protocol::{Batch, FromOrigin, PeerMsg, ToOrigin};

pub type PeerId = String;

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
    ToOrigin(ToOrigin),
    ToPeer(PeerId, PeerMsg),
    /// Apply durably, then call [`Follower::applied`] with `batch.through`.
    Apply(Batch),
    /// This node's own acknowledged write: apply it now (it does not move `applied`).
    ApplyEarly(Vec<Entry>),
    /// Answer a peer's pull from the replica: send it a batch from `from` to `through` with each
    /// key's latest entry above `from`.
    ServePull {
        peer: PeerId,
        from: u64,
        through: u64,
    },
    /// A write submitted with [`Follower::submit_write`] is decided (or given up on).
    WriteDone {
        id: u64,
        outcome: WriteOutcome,
    },
}

#[derive(Debug, Default, Clone)]
struct PeerState {
    connected: bool,
    through: u64,
}

pub struct Follower {
    config: FollowerConfig,
    applied: u64,
    /// The `through` of the batch being made durable.
    applying: Option<u64>,
    /// Batches that cannot be applied yet, by their `from`.
    held: BTreeMap<u64, Batch>,
    gap_since: Option<u64>,
    origin_up: bool,
    pending: BTreeMap<u64, u64>,
    next_id: u64,
    peers: BTreeMap<PeerId, PeerState>,
    pull: Option<(PeerId, u64)>,
    /// Since when a peer has reported being further than this node (the origin's stream may
    /// have stalled without the connection dropping yet).
    behind_since: Option<u64>,
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
            applying: None,
            held: BTreeMap::new(),
            gap_since: None,
            origin_up: false,
            pending: BTreeMap::new(),
            next_id: id_base,
            peers: BTreeMap::new(),
            pull: None,
            behind_since: None,
            last_digest: 0,
            out: VecDeque::new(),
        }
    }

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

    pub fn origin_up(&self) -> bool {
        self.origin_up
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn origin_connected(&mut self, _now_ms: u64) {
        self.origin_up = true;
        self.out
            .push_back(Output::ToOrigin(ToOrigin::Subscribe { from: self.applied }));
    }

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

    pub fn on_origin(&mut self, message: FromOrigin, now_ms: u64) {
        match message {
            FromOrigin::Batch(batch) => self.receive(batch, now_ms),
            FromOrigin::WriteResult { id, outcome } => {
                if let Ok(ack) = &outcome
                    && !ack.entries.is_empty()
                {
                    self.out.push_back(Output::ApplyEarly(ack.entries.clone()));
                }
                if self.pending.remove(&id).is_some() {
                    self.out.push_back(Output::WriteDone { id, outcome });
                }
            }
        }
    }

    pub fn peer_connected(&mut self, peer: &str) {
        self.peers.entry(peer.to_string()).or_default().connected = true;
        self.out.push_back(Output::ToPeer(
            peer.to_string(),
            PeerMsg::Digest {
                through: self.applied,
            },
        ));
    }

    pub fn peer_disconnected(&mut self, peer: &str) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.connected = false;
        }
        if self.pull.as_ref().is_some_and(|(p, _)| p == peer) {
            self.pull = None;
        }
    }

    pub fn on_peer(&mut self, peer: &str, message: PeerMsg, now_ms: u64) {
        match message {
            PeerMsg::Digest { through } => {
                let state = self.peers.entry(peer.to_string()).or_default();
                state.through = state.through.max(through);
                if through > self.applied && self.behind_since.is_none() {
                    self.behind_since = Some(now_ms);
                }
                self.maybe_pull(now_ms);
            }
            PeerMsg::Pull { from } => {
                if from < self.applied {
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
                self.receive(batch, now_ms);
            }
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
            for (peer, state) in &self.peers {
                if state.connected {
                    self.out.push_back(Output::ToPeer(
                        peer.clone(),
                        PeerMsg::Digest {
                            through: self.applied,
                        },
                    ));
                }
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
        if self.applying.is_some() {
            return;
        }
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
        self.gap_since = match (self.held.is_empty(), self.gap_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(now_ms),
        };
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

    #[test]
    fn without_the_origin_a_node_pulls_from_the_peer_ahead() {
        let mut f = Follower::new(FollowerConfig::default(), 2, 0);
        f.peer_connected("b");
        f.peer_connected("c");
        drain(&mut f);
        f.on_peer("b", PeerMsg::Digest { through: 5 }, 0);
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
        // And it serves pulls from behind it.
        f.on_peer("b", PeerMsg::Pull { from: 1 }, 700);
        assert_eq!(
            drain(&mut f),
            vec![Output::ServePull {
                peer: "b".into(),
                from: 1,
                through: 5
            }]
        );
    }
}
