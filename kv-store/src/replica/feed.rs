//! A relay's replica as a [`CatchUpSource`]: what a relay serves the nodes that follow it.
//!
//! A relay has applied everything up to its `applied`, and its followers believe it only as far
//! as a head the origin signed ([`crate::Follower`]'s rule for anyone but the origin), so it
//! serves up to the lower of the two. Its replica keeps each key's latest entry only, so a
//! batch from it holds each key's latest entry above `from`, as a peer's pull does; past the
//! replica's floor (deletes it may no longer hold) it serves a snapshot in key order instead,
//! and the follower's last part brings it to where the snapshot started.

use crate::catch_up::CatchUpSource;
use crate::error::StorageError;
use crate::model::Entry;
use crate::protocol::Batch;

use super::ReplicaStore;

/// A replica read for catching up a follower (or answering a peer's pull).
pub struct ReplicaFeed<'a> {
    replica: &'a dyn ReplicaStore,
    /// Everything up to here can be served.
    through: u64,
    /// Entries above this are left out: the reader would not believe them.
    vouched: u64,
}

impl<'a> ReplicaFeed<'a> {
    /// `replica` served up to `through` (at most its `applied`), with no entry above `vouched`
    /// (the newest signed head the relay holds and passes on before what it serves).
    pub fn new(replica: &'a dyn ReplicaStore, through: u64, vouched: u64) -> Self {
        ReplicaFeed {
            replica,
            through: through.min(replica.applied()).min(vouched),
            vouched,
        }
    }
}

impl CatchUpSource for ReplicaFeed<'_> {
    fn last_version(&self) -> u64 {
        self.through
    }

    fn batch_after(&self, from: u64, max_bytes: usize) -> Result<Option<Batch>, StorageError> {
        let Some((mut entries, more)) = self.replica.entries_after(from, max_bytes)? else {
            return Ok(None);
        };
        // Cut short, the batch speaks only up to its last entry: keys changed in between and
        // again later come in a later batch, at their latest.
        let through = match entries.last() {
            Some(last) if more => last.version.min(self.through),
            _ => self.through,
        };
        // Entries past `through` the relay has (its own writes, acknowledged before their
        // batch) go too, as long as a head covers them: they are each key's latest.
        entries.retain(|e| e.version <= self.vouched);
        Ok(Some(Batch {
            from,
            through: through.max(from),
            entries,
        }))
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let (mut entries, more) = self.replica.snapshot_after(after, max_bytes)?;
        entries.retain(|e| e.version <= self.vouched);
        Ok((entries, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catch_up::CatchUp;
    use crate::protocol::FromOrigin;
    use crate::replica::MemoryReplica;
    use crate::replica::tests::entry;

    fn messages(feed: &ReplicaFeed<'_>, from: u64, max_bytes: usize) -> Vec<FromOrigin> {
        let mut catch_up = CatchUp::new(from);
        std::iter::from_fn(|| catch_up.next(feed, max_bytes).unwrap()).collect()
    }

    #[test]
    fn serves_each_keys_latest_up_to_the_lower_of_applied_and_the_head() {
        let replica = MemoryReplica::default();
        replica
            .apply(
                &[
                    entry("a", Some("1"), 1),
                    entry("b", Some("2"), 2),
                    entry("a", Some("3"), 3),
                ],
                Some(3),
            )
            .unwrap();
        // Its own write, acknowledged before its batch came.
        replica.apply(&[entry("c", Some("5"), 5)], None).unwrap();
        // Signed up to 5, applied to 3: it serves to 3, with c (covered by the head).
        let feed = ReplicaFeed::new(&replica, u64::MAX, 5);
        assert_eq!(feed.last_version(), 3);
        let sent = messages(&feed, 1, 1 << 20);
        let FromOrigin::Batch(batch) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!((batch.from, batch.through), (1, 3));
        let versions: Vec<u64> = batch.entries.iter().map(|e| e.version).collect();
        assert_eq!(versions, vec![2, 3, 5]);
        // A head at 2 covers neither a's 3 nor c: it serves to 2 and leaves them out.
        let feed = ReplicaFeed::new(&replica, u64::MAX, 2);
        let sent = messages(&feed, 1, 1 << 20);
        let FromOrigin::Batch(batch) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!((batch.through, batch.entries.len()), (2, 1));
    }

    #[test]
    fn bounded_batches_end_at_their_last_entry() {
        let replica = MemoryReplica::default();
        let entries: Vec<Entry> = (1..=4)
            .map(|v| entry(&format!("k{v}"), Some("v"), v))
            .collect();
        replica.apply(&entries, Some(4)).unwrap();
        let feed = ReplicaFeed::new(&replica, 4, 4);
        let ranges: Vec<(u64, u64)> = messages(&feed, 0, 1)
            .iter()
            .map(|m| match m {
                FromOrigin::Batch(b) => (b.from, b.through),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ranges, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
    }

    #[test]
    fn below_the_floor_a_snapshot_in_key_order() {
        let replica = MemoryReplica::default();
        replica
            .apply(&[entry("b", Some("1"), 1), entry("a", None, 2)], Some(2))
            .unwrap();
        replica.reclaim(None, 10, 2, 0).unwrap(); // a's tombstone goes; the floor is 2
        let feed = ReplicaFeed::new(&replica, 2, 2);
        let sent = messages(&feed, 0, 1 << 20);
        match &sent[..] {
            [FromOrigin::SnapshotPart(part)] => {
                assert_eq!(part.started_at, 2);
                assert!(part.last);
                let keys: Vec<&str> = part.entries.iter().map(|e| e.key.as_str()).collect();
                assert_eq!(keys, vec!["b"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
