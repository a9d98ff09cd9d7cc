//! A relay's side of the nodes that follow it, as a sans-IO state machine beside
//! [`crate::Follower`] (the relay's own replication, from its upstream) and
//! [`crate::OriginSession`] (one per follower, run here against the relay's replica).
//!
//! A fleet of thousands of nodes fans out in tiers: a node follows a relay (typically one per
//! location or region) instead of the origin, so the origin's work per write does not grow
//! with the fleet. The relay serves what it has made durable: each follower subscribes from
//! its last applied version and gets a catch-up from the relay's replica
//! ([`crate::ReplicaFeed`], a snapshot when the follower is behind the replica's floor), then
//! every batch the relay applies, each preceded by the origin's signed head that covers it,
//! since a follower believes a relay only that far. Writes are forwarded upstream through the
//! relay's own [`crate::Follower`] (the origin sees the relay as the writer; a follower never
//! sends a write twice), and each answer goes back behind a head that covers its entries, so
//! the writing node applies its own write at once (read-your-writes) as it would from the
//! origin.
//!
//! The caller (the node's KV driver, or the simulation) calls [`Relay::applied`] after each
//! batch the relay made durable, [`Relay::part_applied`] after each snapshot part,
//! [`Relay::step`] while [`Relay::catching_up`] (between applies, never during one), and
//! [`Relay::write_done`] with each of its own write outcomes; and sends what
//! [`Relay::poll_output`] gives, in order.

use std::collections::{BTreeMap, VecDeque};

use crate::catch_up::CatchUpSource;
use crate::error::StorageError;
use crate::follower::{Follower, PeerId};
use crate::ops::WriteOutcome;
use crate::protocol::{Batch, FromOrigin, Head, ToOrigin};
use crate::session::{LinkProtocol, OriginSession};

/// A follower's write answered upstream, waiting for a head that covers its entries.
#[derive(Debug)]
struct HeldAnswer {
    follower: PeerId,
    id: u64,
    outcome: WriteOutcome,
    /// The newest version among its entries (0 when it has none).
    newest: u64,
}

/// The relay's half of its followers' sessions.
#[derive(Debug)]
pub struct Relay {
    max_bytes: usize,
    sessions: BTreeMap<PeerId, OriginSession>,
    /// Followers' writes sent upstream: the relay's write id -> the follower and its id.
    forwarded: BTreeMap<u64, (PeerId, u64)>,
    held: Vec<HeldAnswer>,
    /// A snapshot part was applied since the last batch: the batch that ends the run speaks
    /// for every version up to the snapshot's start with none of its entries, so it is not
    /// passed on; followers catch up from the replica instead.
    parts_applied: bool,
    out: VecDeque<(PeerId, FromOrigin)>,
}

impl Relay {
    /// A relay sending batches of about `max_bytes` each.
    pub fn new(max_bytes: usize) -> Relay {
        Relay {
            max_bytes,
            sessions: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            held: Vec::new(),
            parts_applied: false,
            out: VecDeque::new(),
        }
    }

    /// How many followers are connected.
    pub fn followers(&self) -> usize {
        self.sessions.len()
    }

    /// The next message to send, and to which follower.
    pub fn poll_output(&mut self) -> Option<(PeerId, FromOrigin)> {
        self.out.pop_front()
    }

    /// `follower`'s link came up (it hears nothing until it subscribes).
    pub fn follower_connected(&mut self, follower: &str) {
        self.sessions.insert(
            follower.to_string(),
            OriginSession::new(LinkProtocol::V2, self.max_bytes),
        );
    }

    /// `follower`'s link went down: its session ends, and the answers to its writes still
    /// upstream have nowhere to go (it reports them unavailable itself).
    pub fn follower_disconnected(&mut self, follower: &str) {
        self.sessions.remove(follower);
        self.forwarded.retain(|_, (f, _)| f != follower);
        self.held.retain(|h| h.follower != follower);
    }

    /// A message from `follower`: a subscription starts its catch-up from the relay's replica;
    /// a write goes upstream through the relay's own `upstream` follower.
    pub fn on_follower(
        &mut self,
        follower: &str,
        message: ToOrigin,
        upstream: &mut Follower,
        now_ms: u64,
    ) {
        let Some(session) = self.sessions.get_mut(follower) else {
            return; // not (or no longer) connected
        };
        match message {
            ToOrigin::Subscribe { from } => session.subscribe(from),
            ToOrigin::Write { id, op } => match upstream.submit_write(op, now_ms) {
                Ok(forwarded) => {
                    self.forwarded.insert(forwarded, (follower.to_string(), id));
                }
                Err(err) => self.out.push_back((
                    follower.to_string(),
                    FromOrigin::WriteResult {
                        id,
                        outcome: Err(err),
                    },
                )),
            },
        }
    }

    /// The relay's own write `id` is decided ([`crate::Output::WriteDone`]): if it was a
    /// follower's, its answer goes back (once `head` covers its entries) and this returns
    /// `None`; a write the relay made itself gets its outcome back.
    pub fn write_done(
        &mut self,
        id: u64,
        outcome: WriteOutcome,
        head: Option<&Head>,
    ) -> Option<WriteOutcome> {
        let Some((follower, id)) = self.forwarded.remove(&id) else {
            return Some(outcome);
        };
        let newest = outcome
            .as_ref()
            .ok()
            .and_then(|ack| ack.entries.iter().map(|e| e.version).max())
            .unwrap_or(0);
        self.held.push(HeldAnswer {
            follower,
            id,
            outcome,
            newest,
        });
        self.release(head);
        None
    }

    /// The relay applied a snapshot part.
    pub fn part_applied(&mut self) {
        self.parts_applied = true;
    }

    /// The relay made `batch` durable; `head` is the newest signed head it holds. Followers
    /// that are up to date get the batch behind the head; when the head does not cover it (or
    /// it ends a snapshot), they catch up from the replica instead, once it does.
    pub fn applied(&mut self, batch: &Batch, head: Option<&Head>) {
        let covered = head.is_some_and(|h| {
            h.version >= batch.through && batch.entries.iter().all(|e| e.version <= h.version)
        });
        let whole = covered && !std::mem::take(&mut self.parts_applied);
        for (follower, session) in &mut self.sessions {
            if whole {
                for message in session.committed(batch, head) {
                    self.out.push_back((follower.clone(), message));
                }
            } else {
                session.lagged();
            }
        }
        self.release(head);
    }

    /// Whether a follower is catching up: call [`Relay::step`] until none is.
    pub fn catching_up(&self) -> bool {
        self.sessions.values().any(OriginSession::catching_up)
    }

    /// One bounded catch-up step for each follower catching up, from `feed` (the relay's
    /// replica up to what `head` covers), and the answers `head` now covers.
    pub fn step(
        &mut self,
        feed: &(impl CatchUpSource + ?Sized),
        head: Option<&Head>,
    ) -> Result<(), StorageError> {
        for (follower, session) in &mut self.sessions {
            if session.catching_up() {
                for message in session.step(feed, head.cloned())? {
                    self.out.push_back((follower.clone(), message));
                }
            }
        }
        self.release(head);
        Ok(())
    }

    /// Send the held answers `head` covers, each behind it.
    fn release(&mut self, head: Option<&Head>) {
        let covered = head.map_or(0, |h| h.version);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.newest <= covered);
        self.held = waiting;
        for answer in ready {
            if let Some(message) = self
                .sessions
                .get_mut(&answer.follower)
                .and_then(|s| s.pass_head(head))
            {
                self.out.push_back((answer.follower.clone(), message));
            }
            self.out.push_back((
                answer.follower,
                FromOrigin::WriteResult {
                    id: answer.id,
                    outcome: answer.outcome,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::follower::{FollowerConfig, Output};
    use crate::model::Entry;
    use crate::ops::{OpResult, WriteAck, WriteOp};
    use crate::replica::{MemoryReplica, ReplicaFeed, ReplicaStore};

    fn signed(version: u64) -> Head {
        Head {
            version,
            proof: version.to_le_bytes().to_vec(),
        }
    }

    fn follower() -> Follower {
        Follower::new(FollowerConfig::default(), 0, 0)
            .with_head_check(Arc::new(|h: &Head| h.proof == h.version.to_le_bytes()))
    }

    fn entry(key: &str, version: u64) -> Entry {
        Entry {
            namespace: "app/ns".into(),
            key: key.into(),
            value: Some(b"v".to_vec()),
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
            entries: (from + 1..=through).map(|v| entry("k", v)).collect(),
        }
    }

    fn outputs(follower: &mut Follower) -> Vec<Output> {
        std::iter::from_fn(|| follower.poll_output()).collect()
    }

    fn sent(relay: &mut Relay) -> Vec<(PeerId, FromOrigin)> {
        std::iter::from_fn(|| relay.poll_output()).collect()
    }

    #[test]
    fn a_node_believes_its_relay_only_as_far_as_a_signed_head() {
        let mut node = follower();
        node.relay_connected(0);
        outputs(&mut node);
        // A batch with no head behind it, then a forged head: nothing is applied.
        node.on_origin(FromOrigin::Batch(batch(0, 2)), 1);
        node.on_origin(
            FromOrigin::Head(Head {
                version: 2,
                proof: vec![0],
            }),
            2,
        );
        node.on_origin(FromOrigin::Batch(batch(0, 2)), 3);
        assert!(
            !outputs(&mut node)
                .iter()
                .any(|o| matches!(o, Output::Apply(_) | Output::ApplyEarly(_))),
        );
        // After a forged head the relay's heads go unchecked for a gap timeout (each check
        // costs a signature verification); then a signed head, and the batch is applied.
        node.on_origin(FromOrigin::Head(signed(2)), 4);
        node.on_origin(FromOrigin::Batch(batch(0, 2)), 5);
        assert!(outputs(&mut node).is_empty());
        node.on_origin(FromOrigin::Head(signed(2)), 600);
        node.on_origin(FromOrigin::Batch(batch(0, 2)), 601);
        assert!(
            outputs(&mut node)
                .iter()
                .any(|o| matches!(o, Output::Apply(b) if b.through == 2))
        );
        // A snapshot part claiming more than the head speaks for nothing.
        node.on_origin(
            FromOrigin::SnapshotPart(crate::protocol::SnapshotPart {
                started_at: 9,
                after: None,
                entries: vec![entry("k", 9)],
                last: true,
            }),
            602,
        );
        assert!(
            !outputs(&mut node)
                .iter()
                .any(|o| matches!(o, Output::ApplyPart(_) | Output::ApplyEarly(_)))
        );
    }

    #[test]
    fn a_followers_write_goes_upstream_and_its_answer_comes_back_behind_a_covering_head() {
        let mut upstream = follower();
        upstream.origin_connected(0);
        outputs(&mut upstream);
        let mut relay = Relay::new(1 << 20);
        relay.follower_connected("leaf");
        let op = WriteOp::Put {
            namespace: "app/ns".into(),
            key: "k".into(),
            value: b"v".to_vec(),
            metadata: None,
            ttl_secs: None,
        };
        relay.on_follower("leaf", ToOrigin::Write { id: 7, op }, &mut upstream, 1);
        let forwarded = match &outputs(&mut upstream)[..] {
            [Output::ToOrigin(ToOrigin::Write { id, .. })] => *id,
            other => panic!("{other:?}"),
        };
        let ack = Ok(WriteAck {
            entries: vec![entry("k", 5)],
            result: OpResult::Done,
        });
        // The relay's head is at 4: the answer waits.
        assert_eq!(
            relay.write_done(forwarded, ack.clone(), Some(&signed(4))),
            None
        );
        assert!(sent(&mut relay).is_empty());
        relay.applied(&batch(4, 5), Some(&signed(5)));
        let to_leaf: Vec<FromOrigin> = sent(&mut relay).into_iter().map(|(_, m)| m).collect();
        assert_eq!(
            to_leaf,
            vec![
                FromOrigin::Head(signed(5)),
                FromOrigin::WriteResult {
                    id: 7,
                    outcome: ack
                },
            ]
        );
        // The relay's own writes are not its followers'.
        let done = Err(crate::ops::WriteError::Unavailable("no".into()));
        assert_eq!(
            relay.write_done(forwarded + 1, done.clone(), None),
            Some(done)
        );
    }

    #[test]
    fn the_batch_that_ends_a_snapshot_is_not_passed_on() {
        let mut relay = Relay::new(1 << 20);
        relay.follower_connected("leaf");
        let mut upstream = follower();
        relay.on_follower("leaf", ToOrigin::Subscribe { from: 3 }, &mut upstream, 0);
        let replica = MemoryReplica::default();
        replica.apply(&batch(0, 3).entries, Some(3)).unwrap();
        let feed = ReplicaFeed::new(&replica, 3, 3);
        relay.step(&feed, Some(&signed(3))).unwrap();
        assert!(!relay.catching_up());
        sent(&mut relay);
        // A snapshot brought the relay to 9: its closing batch has no entries.
        relay.part_applied();
        let closing = Batch {
            from: 0,
            through: 9,
            entries: Vec::new(),
        };
        relay.applied(&closing, Some(&signed(9)));
        assert!(sent(&mut relay).is_empty());
        assert!(
            relay.catching_up(),
            "the follower catches up from the replica instead"
        );
    }
}
