//! The origin's half of one node's replication session, as a sans-IO state machine beside
//! [`crate::Authority`] and [`crate::Follower`].
//!
//! A node subscribes from the version it has applied. The session then catches it up in
//! bounded steps ([`CatchUp`]) and, once it has everything committed so far, passes on each new
//! commit as it happens (and the origin's signed head after it). The one rule that makes this
//! lose nothing: the caller hears of commits from the moment of the subscription (it listens
//! before the first step), and every step runs on the authority's thread, between commits. A
//! commit heard during the catch-up is then covered by it (the catch-up ends only when it has
//! reached the authority's last version), so the session drops it; one heard after is new.
//!
//! The origin's signed head goes before what it covers, and again whenever it is newer than the
//! last one sent: a node that follows a relay believes only what a signed head covers (see
//! [`crate::Follower`]), and the same session serves a relay's followers from its replica
//! ([`crate::ReplicaFeed`], [`crate::Relay`]).
//!
//! Whatever carries the session (a QUIC stream and the authority's thread on the origin, a
//! simulated network in `tests/simulation.rs`) calls [`OriginSession::subscribe`],
//! [`OriginSession::step`] while [`OriginSession::catching_up`], [`OriginSession::committed`]
//! for each commit, and [`OriginSession::lagged`] if it missed some, and sends the messages
//! they return in order.

use crate::catch_up::{CatchUp, CatchUpSource};
use crate::error::StorageError;
use crate::model::Entry;
use crate::ops::{WriteError, WriteOutcome};
use crate::protocol::{Batch, FromOrigin, Head};

/// The cluster protocol a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProtocol {
    /// Nodes not yet upgraded: a snapshot reaches them as one batch in version order, gathered
    /// in the session (the authority still reads it in bounded parts), and no heads.
    V1,
    /// Snapshots in parts as the authority reads them, and signed heads after batches.
    V2,
}

impl LinkProtocol {
    /// `outcome` as a node on this protocol can decode it: protocol 1 predates
    /// `WriteError::RateLimited` and gets it as unavailable (to it, both mean "not now").
    pub fn outcome(self, outcome: WriteOutcome) -> WriteOutcome {
        match (self, outcome) {
            (LinkProtocol::V1, Err(WriteError::RateLimited(reason))) => {
                Err(WriteError::Unavailable(reason))
            }
            (_, outcome) => outcome,
        }
    }
}

/// One node's session, as the origin sees it.
#[derive(Debug)]
pub struct OriginSession {
    protocol: LinkProtocol,
    /// Largest batch or snapshot part per message, in bytes of entries.
    max_bytes: usize,
    /// Whether the node has subscribed (before that it hears of no commit).
    subscribed: bool,
    catch_up: Option<CatchUp>,
    /// A protocol 1 node's snapshot, gathered until its last part.
    gathered: Vec<Entry>,
    /// The node has been sent everything up to here.
    sent_through: u64,
    /// The newest head sent.
    head_sent: u64,
}

impl OriginSession {
    /// A session for a node on `protocol`, sending batches of about `max_bytes` each.
    pub fn new(protocol: LinkProtocol, max_bytes: usize) -> OriginSession {
        OriginSession {
            protocol,
            max_bytes,
            subscribed: false,
            catch_up: None,
            gathered: Vec::new(),
            sent_through: 0,
            head_sent: 0,
        }
    }

    /// How far the node has been sent everything.
    pub fn sent_through(&self) -> u64 {
        self.sent_through
    }

    /// Whether a catch-up is under way: call [`OriginSession::step`] until it is not.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// The node asks for everything after `from` (the caller listens for commits from now on).
    /// A subscription during a catch-up starts over from the new `from`.
    pub fn subscribe(&mut self, from: u64) {
        self.subscribed = true;
        self.gathered.clear();
        self.catch_up = Some(CatchUp::new(from));
    }

    /// The caller missed commits (it fell behind its feed of them): catch up from where the
    /// node stands.
    pub fn lagged(&mut self) {
        if self.subscribed && self.catch_up.is_none() {
            self.catch_up = Some(CatchUp::new(self.sent_through));
        }
    }

    /// `head`, as a message for the node, if it is newer than every head sent so far
    /// (protocol 2; protocol 1 has no heads). A relay sends one ahead of a write's answer so
    /// its follower believes the write's entries.
    pub fn pass_head(&mut self, head: Option<&Head>) -> Option<FromOrigin> {
        let head = head.filter(|h| h.version > self.head_sent)?;
        if self.protocol == LinkProtocol::V1 {
            return None;
        }
        self.head_sent = head.version;
        Some(FromOrigin::Head(head.clone()))
    }

    /// The newest head sent to the node (0 before any).
    pub fn head_sent(&self) -> u64 {
        self.head_sent
    }

    /// One bounded step of the catch-up from `source` (on the authority's thread, at the
    /// origin): the messages for the node. `head` is the newest signed head, covering
    /// everything `source` serves: it goes first when it is newer than the last one sent.
    pub fn step(
        &mut self,
        source: &(impl CatchUpSource + ?Sized),
        head: Option<Head>,
    ) -> Result<Vec<FromOrigin>, StorageError> {
        let Some(catch_up) = self.catch_up.as_mut() else {
            return Ok(Vec::new());
        };
        let next = catch_up.next(source, self.max_bytes)?;
        let through = catch_up.through();
        let mut messages: Vec<FromOrigin> = self.pass_head(head.as_ref()).into_iter().collect();
        let Some(message) = next else {
            self.sent_through = self.sent_through.max(through);
            self.catch_up = None;
            return Ok(messages);
        };
        match (message, self.protocol) {
            (FromOrigin::SnapshotPart(part), LinkProtocol::V1) => {
                self.gathered.extend(part.entries);
                if part.last {
                    let entries = std::mem::take(&mut self.gathered);
                    messages.extend(self.parts(whole_snapshot(entries, part.started_at)));
                }
            }
            (FromOrigin::Batch(batch), _) => messages.extend(self.parts(batch)),
            (message, _) => messages.push(message),
        }
        Ok(messages)
    }

    /// The authority committed `batch` (signed as `head`, if the origin signs): what to send
    /// the node now. Nothing during a catch-up, which covers it, or before a subscription. A
    /// batch that starts past what the node was sent leaves versions out (an origin sharing
    /// its database relays what others committed, and may have to skip some): the node then
    /// catches up from the store, which holds them all.
    pub fn committed(&mut self, batch: &Batch, head: Option<&Head>) -> Vec<FromOrigin> {
        if !self.subscribed || self.catch_up.is_some() || batch.through <= self.sent_through {
            return Vec::new();
        }
        if batch.from > self.sent_through {
            self.catch_up = Some(CatchUp::new(self.sent_through));
            return Vec::new();
        }
        self.sent_through = batch.through;
        let mut messages: Vec<FromOrigin> = self.pass_head(head).into_iter().collect();
        messages.extend(self.parts(batch.clone()));
        messages
    }

    /// `batch` in parts small enough for one message each.
    fn parts(&self, batch: Batch) -> Vec<FromOrigin> {
        batch
            .split(self.max_bytes)
            .into_iter()
            .map(FromOrigin::Batch)
            .collect()
    }
}

/// A snapshot as protocol 1 has it: one batch from 0 to `started_at` in version order. Entries
/// read after the snapshot began are left out (a batch claims only versions up to its
/// `through`); the log that follows carries them.
fn whole_snapshot(mut entries: Vec<Entry>, started_at: u64) -> Batch {
    entries.retain(|e| e.version <= started_at);
    entries.sort_by_key(|e| e.version);
    Batch {
        from: 0,
        through: started_at,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{Authority, IncomingWrite, MemoryAuthorityStore};
    use crate::ops::WriteOp;

    fn authority_with(keys: usize) -> Authority<MemoryAuthorityStore> {
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        for i in 0..keys {
            let write = IncomingWrite {
                writer: "n".into(),
                id: i as u64,
                op: WriteOp::Put {
                    namespace: "app/ns".into(),
                    key: format!("k{i:03}"),
                    value: vec![b'v'; 100],
                    metadata: None,
                    ttl_secs: None,
                },
            };
            authority.write_all(vec![write], 0, 0).unwrap();
        }
        authority
    }

    fn head(version: u64) -> Head {
        Head {
            version,
            proof: vec![1],
        }
    }

    fn catch_up(
        session: &mut OriginSession,
        authority: &Authority<MemoryAuthorityStore>,
    ) -> Vec<FromOrigin> {
        let mut sent = Vec::new();
        while session.catching_up() {
            sent.extend(
                session
                    .step(authority, Some(head(authority.last_version())))
                    .unwrap(),
            );
        }
        sent
    }

    fn through(messages: &[FromOrigin]) -> u64 {
        messages
            .iter()
            .filter_map(|m| match m {
                FromOrigin::Batch(batch) => Some(batch.through),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn commits_before_a_subscription_or_during_its_catch_up_are_not_sent_twice() {
        let authority = authority_with(10);
        let mut session = OriginSession::new(LinkProtocol::V2, 1 << 20);
        let batch = Batch {
            from: 9,
            through: 10,
            entries: Vec::new(),
        };
        assert!(session.committed(&batch, None).is_empty(), "not subscribed");
        session.subscribe(0);
        assert!(session.committed(&batch, None).is_empty(), "catching up");
        let sent = catch_up(&mut session, &authority);
        assert_eq!(through(&sent), 10);
        assert_eq!(sent.first(), Some(&FromOrigin::Head(head(10))));
        assert_eq!(session.sent_through(), 10);
        // Old news once caught up; a new commit goes out with its head.
        assert!(session.committed(&batch, Some(&head(10))).is_empty());
        let next = Batch {
            from: 10,
            through: 11,
            entries: Vec::new(),
        };
        let sent = session.committed(&next, Some(&head(11)));
        assert_eq!(
            sent,
            vec![FromOrigin::Head(head(11)), FromOrigin::Batch(next)]
        );
    }

    #[test]
    fn a_protocol_1_node_gets_a_compacted_store_as_one_batch_and_no_heads() {
        let mut authority = authority_with(30);
        authority.compact(0).unwrap();
        let mut session = OriginSession::new(LinkProtocol::V1, 1000);
        session.subscribe(0);
        let sent = catch_up(&mut session, &authority);
        let batches: Vec<&Batch> = sent
            .iter()
            .map(|m| match m {
                FromOrigin::Batch(batch) => batch,
                other => panic!("protocol 1 got {other:?}"),
            })
            .collect();
        // One snapshot batch, split for the wire, in version order.
        assert!(batches.len() > 1);
        let versions: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.version))
            .collect();
        assert_eq!(versions, (1..=30).collect::<Vec<_>>());
        assert_eq!(session.sent_through(), 30);
    }

    #[test]
    fn a_lagging_feed_catches_up_from_where_the_node_stands() {
        let mut authority = authority_with(5);
        let mut session = OriginSession::new(LinkProtocol::V2, 1 << 20);
        session.subscribe(5);
        assert_eq!(
            catch_up(&mut session, &authority),
            vec![FromOrigin::Head(head(5))]
        );
        // Commits the caller never heard of.
        for i in 0..3 {
            let write = IncomingWrite {
                writer: "n".into(),
                id: 100 + i,
                op: WriteOp::Delete {
                    namespace: "app/ns".into(),
                    key: format!("k{i:03}"),
                },
            };
            authority.write_all(vec![write], 0, 0).unwrap();
        }
        session.lagged();
        let sent = catch_up(&mut session, &authority);
        assert_eq!(through(&sent), 8);
        match &sent[..2] {
            [FromOrigin::Head(h), FromOrigin::Batch(batch)] => {
                assert_eq!((h.version, batch.from), (8, 5))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_that_skips_versions_sends_the_node_to_the_store_for_them() {
        let mut authority = authority_with(5);
        let mut session = OriginSession::new(LinkProtocol::V2, 1 << 20);
        session.subscribe(5);
        catch_up(&mut session, &authority);
        // Another origin committed 6..=8, and this one could not relay them: it announces an
        // empty batch from 8.
        for i in 0..3 {
            let write = IncomingWrite {
                writer: "n".into(),
                id: 200 + i,
                op: WriteOp::Delete {
                    namespace: "app/ns".into(),
                    key: format!("k{i:03}"),
                },
            };
            authority.write_all(vec![write], 0, 0).unwrap();
        }
        let skipping = Batch {
            from: 8,
            through: 8,
            entries: Vec::new(),
        };
        assert!(session.committed(&skipping, None).is_empty());
        assert!(session.catching_up());
        let sent = catch_up(&mut session, &authority);
        match &sent[..] {
            [FromOrigin::Head(_), FromOrigin::Batch(batch)] => {
                assert_eq!((batch.from, batch.through), (5, 8))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(session.sent_through(), 8);
    }

    #[test]
    fn write_outcomes_as_each_protocol_decodes_them() {
        let limited = Err(WriteError::RateLimited("slow down".into()));
        assert_eq!(
            LinkProtocol::V1.outcome(limited.clone()),
            Err(WriteError::Unavailable("slow down".into()))
        );
        assert_eq!(LinkProtocol::V2.outcome(limited.clone()), limited);
    }
}
