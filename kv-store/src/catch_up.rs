//! A catch-up: what the origin sends a node that asks for everything after a version, as a run
//! of bounded steps, so that no step holds the authority's one thread for long or more than
//! about `max_bytes` of entries in memory, however large the store or however far behind the
//! node.
//!
//! From the log while it reaches back far enough: batches of consecutive versions. Past the
//! compacted log, a snapshot read in key order, one part per step, at whatever versions the keys
//! hold when their part is read; its last part brings the node only to the version the snapshot
//! started at. That claim holds: every key as it stood at that version was either sent or
//! superseded by a newer entry that was sent, and anything committed since comes after it, from
//! the log or as it commits. The steps go on from there until the node has everything.
//!
//! What a catch-up reads is a [`CatchUpSource`]: the origin's [`Authority`], or a relay's
//! replica ([`crate::replica::ReplicaFeed`]) serving the nodes that follow the relay.

use crate::authority::{Authority, AuthorityStore};
use crate::error::StorageError;
use crate::model::Entry;
use crate::protocol::{Batch, FromOrigin, SnapshotPart};

/// What a catch-up reads from: everything committed up to [`CatchUpSource::last_version`],
/// as batches while it reaches back far enough and as a snapshot in key order past that.
pub trait CatchUpSource {
    /// Everything up to this version can be served.
    fn last_version(&self) -> u64;
    /// A batch from `from` (below [`CatchUpSource::last_version`]) of about `max_bytes` of
    /// entries (at least one), or `None` when the source no longer reaches back to `from`.
    fn batch_after(&self, from: u64, max_bytes: usize) -> Result<Option<Batch>, StorageError>;
    /// Every key's latest entry, tombstones included, in key order after the key `after`,
    /// stopping after about `max_bytes` (at least one entry); and whether keys remain past
    /// them.
    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError>;
}

/// The origin's log: batches of consecutive versions.
impl<S: AuthorityStore> CatchUpSource for Authority<S> {
    fn last_version(&self) -> u64 {
        Authority::last_version(self)
    }

    fn batch_after(&self, from: u64, max_bytes: usize) -> Result<Option<Batch>, StorageError> {
        let last = Authority::last_version(self);
        Ok(self.log_after(from, max_bytes)?.map(|entries| Batch {
            from,
            through: entries.last().map_or(last, |e| e.version),
            entries,
        }))
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        Authority::snapshot_after(self, after, max_bytes)
    }
}

/// One node's catch-up under way: how far it has been sent everything, and the snapshot being
/// read when the log does not reach back far enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// Where the node stands once it has applied everything sent so far.
    from: u64,
    snapshot: Option<SnapshotCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SnapshotCursor {
    /// The last version committed when the snapshot began: what it brings a node to.
    started_at: u64,
    /// The last key sent.
    after: Option<(String, String)>,
}

impl CatchUp {
    /// A catch-up for a node that has applied everything up to version `from`.
    pub fn new(from: u64) -> Self {
        CatchUp {
            from,
            snapshot: None,
        }
    }

    /// How far a node is once it has applied every message this catch-up has produced.
    pub fn through(&self) -> u64 {
        self.from
    }

    /// Whether a snapshot is under way (its parts do not move the node's `applied`).
    pub fn in_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// The next message for the node, or `None` once it has everything committed so far.
    pub fn next(
        &mut self,
        source: &(impl CatchUpSource + ?Sized),
        max_bytes: usize,
    ) -> Result<Option<FromOrigin>, StorageError> {
        if self.snapshot.is_none() {
            let last = source.last_version();
            if self.from >= last {
                return Ok(None);
            }
            if let Some(batch) = source.batch_after(self.from, max_bytes)? {
                self.from = batch.through;
                return Ok(Some(FromOrigin::Batch(batch)));
            }
            self.snapshot = Some(SnapshotCursor {
                started_at: last,
                after: None,
            });
        }
        let cursor = self.snapshot.as_mut().expect("set above");
        let (entries, more) = source.snapshot_after(cursor.after.as_ref(), max_bytes)?;
        let part = SnapshotPart {
            started_at: cursor.started_at,
            after: cursor.after.take(),
            entries,
            last: !more,
        };
        if more {
            cursor.after = part.last_key();
        } else {
            self.from = self.from.max(part.started_at);
            self.snapshot = None;
        }
        Ok(Some(FromOrigin::SnapshotPart(part)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{IncomingWrite, MemoryAuthorityStore};
    use crate::ops::WriteOp;

    fn put(authority: &mut Authority<MemoryAuthorityStore>, id: u64, key: &str, value: &str) {
        let write = IncomingWrite {
            writer: "n".into(),
            id,
            op: WriteOp::Put {
                namespace: "ns".into(),
                key: key.into(),
                value: value.as_bytes().to_vec(),
                metadata: None,
                ttl_secs: None,
            },
        };
        authority.write_all(vec![write], 0, 0).unwrap();
    }

    fn all(
        catch_up: &mut CatchUp,
        authority: &Authority<MemoryAuthorityStore>,
        max_bytes: usize,
    ) -> Vec<FromOrigin> {
        std::iter::from_fn(|| catch_up.next(authority, max_bytes).unwrap()).collect()
    }

    /// The range of each message, which must all be batches.
    fn ranges(messages: &[FromOrigin]) -> Vec<(u64, u64)> {
        messages
            .iter()
            .map(|m| match m {
                FromOrigin::Batch(b) => (b.from, b.through),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn from_the_log_in_bounded_batches() {
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        for i in 1..=5 {
            put(&mut authority, i, &format!("k{i}"), "v");
        }
        let mut catch_up = CatchUp::new(1);
        let messages = all(&mut catch_up, &authority, 1);
        assert_eq!(ranges(&messages), vec![(1, 2), (2, 3), (3, 4), (4, 5)]);
        assert_eq!(catch_up.through(), 5);
        assert!(catch_up.next(&authority, 1).unwrap().is_none());
    }

    #[test]
    fn past_the_compacted_log_a_snapshot_in_parts_then_the_log_again() {
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        for i in 1..=6 {
            put(&mut authority, i, &format!("k{}", i % 4), &format!("{i}"));
        }
        authority.compact(1).unwrap(); // the log now starts after version 5
        let mut catch_up = CatchUp::new(0);
        // One part read, then writes land mid-snapshot: one to a key already sent, one to a
        // key still to come.
        let first = catch_up.next(&authority, 1).unwrap().unwrap();
        assert!(
            matches!(&first, FromOrigin::SnapshotPart(p)
                if p.after.is_none() && p.entries.len() == 1 && p.entries[0].key == "k0" && !p.last),
            "{first:?}"
        );
        assert!(catch_up.in_snapshot());
        put(&mut authority, 7, "k0", "7");
        put(&mut authority, 8, "k3", "8");
        let rest = all(&mut catch_up, &authority, 1);
        let (parts, after) = rest.split_at(3);
        let parts: Vec<(Option<&str>, &str, bool)> = parts
            .iter()
            .map(|m| match m {
                FromOrigin::SnapshotPart(p) => (
                    p.after.as_ref().map(|(_, k)| k.as_str()),
                    p.entries[0].key.as_str(),
                    p.last,
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (Some("k0"), "k1", false),
                (Some("k1"), "k2", false),
                (Some("k2"), "k3", true)
            ]
        );
        // The last part brings the node to where the snapshot started (6), with k3 as it is
        // now; the log then carries what came since.
        match &rest[2] {
            FromOrigin::SnapshotPart(p) => {
                assert_eq!(p.started_at, 6);
                assert_eq!(p.entries[0].value.as_deref(), Some(&b"8"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ranges(after), vec![(6, 7), (7, 8)]);
        assert_eq!(catch_up.through(), 8);
    }

    #[test]
    fn a_node_back_from_past_the_log_forgets_keys_deleted_and_reclaimed_meanwhile() {
        use crate::follower::{Follower, FollowerConfig, Output};
        use crate::replica::{MemoryReplica, ReplicaStore};
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        for i in 1..=3 {
            put(&mut authority, i, &format!("k{i}"), "v");
        }
        // A node has everything so far, then goes away.
        let replica = MemoryReplica::default();
        for message in all(&mut CatchUp::new(0), &authority, 1 << 20) {
            if let FromOrigin::Batch(batch) = message {
                replica.apply(&batch.entries, Some(batch.through)).unwrap();
            }
        }
        // Meanwhile k2 is deleted, the log compacted past the delete and the tombstone
        // reclaimed: the origin keeps no trace of k2.
        let delete = IncomingWrite {
            writer: "n".into(),
            id: 9,
            op: WriteOp::Delete {
                namespace: "ns".into(),
                key: "k2".into(),
            },
        };
        authority.write_all(vec![delete], 0, 0).unwrap();
        put(&mut authority, 10, "k4", "v");
        authority.compact(0).unwrap();
        assert_eq!(authority.reclaim(None, 100, 0).unwrap().removed, 1);
        // The node comes back: past the log, it gets a snapshot, which says k2 is gone.
        let mut follower = Follower::new(FollowerConfig::default(), replica.applied(), 0);
        follower.origin_connected(0);
        let mut catch_up = CatchUp::new(replica.applied());
        while let Some(message) = catch_up.next(&authority, 1).unwrap() {
            follower.on_origin(message, 1);
            while let Some(output) = follower.poll_output() {
                match output {
                    Output::ApplyPart(part) => {
                        replica.apply_part(&part).unwrap();
                    }
                    Output::Apply(batch) => {
                        replica.apply(&batch.entries, Some(batch.through)).unwrap();
                        follower.applied(batch.through, 1);
                    }
                    _ => {}
                }
            }
        }
        let keys: Vec<String> = replica.dump().into_keys().map(|(_, k)| k).collect();
        assert_eq!(keys, vec!["k1", "k3", "k4"]);
        assert_eq!(replica.applied(), authority.last_version());
    }

    #[test]
    fn nothing_to_send_to_a_node_at_or_past_the_last_version() {
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        put(&mut authority, 1, "k", "v");
        for from in [1, 7] {
            assert!(CatchUp::new(from).next(&authority, 64).unwrap().is_none());
        }
    }
}
