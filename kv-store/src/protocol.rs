//! Messages between a node and the origin, and between nodes, and their binary encoding
//! (postcard: compact, and values are raw bytes, not text).

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::model::Entry;
use crate::ops::{WriteOp, WriteOutcome};

/// Entries that take a replica from `from` to `through`: after applying them, a replica that
/// had applied everything up to `from` has applied everything up to `through`.
///
/// A batch from the origin's log holds every version in `(from, through]`; a catch-up from a
/// snapshot or from a peer holds only each key's latest entry, which brings a replica to the
/// same state. Either way a replica applies an entry only if it is newer than what it has for
/// that key, so batches can be repeated, overlap, or arrive late without harm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The global version the batch starts after: it serves a replica that has applied
    /// everything up to here.
    pub from: u64,
    /// The global version a replica has applied everything up to once it applies the batch.
    pub through: u64,
    /// The entries, in version order.
    pub entries: Vec<Entry>,
}

impl Batch {
    /// The same batch as a run of batches of about `max_bytes` each (an entry larger than that
    /// travels alone), so no message outgrows [`MAX_MESSAGE_BYTES`]. Entries must be in version
    /// order, as every batch's are: each part ends at its last entry's version, and the last
    /// part at `through`, so applying the parts in order reaches the same state.
    pub fn split(self, max_bytes: usize) -> Vec<Batch> {
        let Batch {
            from,
            through,
            entries,
        } = self;
        let mut parts = Vec::new();
        let mut current: Vec<Entry> = Vec::new();
        let mut bytes = 0;
        let mut start = from;
        for entry in entries {
            if !current.is_empty() && bytes + entry.size() > max_bytes {
                let end = current.last().map_or(start, |e| e.version);
                parts.push(Batch {
                    from: start,
                    through: end,
                    entries: std::mem::take(&mut current),
                });
                start = end;
                bytes = 0;
            }
            bytes += entry.size();
            current.push(entry);
        }
        parts.push(Batch {
            from: start,
            through,
            entries: current,
        });
        parts
    }
}

/// Node to origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToOrigin {
    /// Send me everything after `from`, then every new write as it commits.
    Subscribe {
        /// The global version up to which the node's replica has applied everything.
        from: u64,
    },
    /// Commit this write. `id` is unique per node, so a retried write is applied once.
    Write {
        /// The write's id at this node, unique across its runs (see [`crate::Follower::new`]).
        id: u64,
        /// The write to commit.
        op: WriteOp,
    },
}

/// Origin to node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromOrigin {
    /// Committed entries: a catch-up from the log, then each new commit as it happens.
    Batch(Batch),
    /// The answer to a [`ToOrigin::Write`], once the origin has committed or refused it.
    WriteResult {
        /// The id the node gave the write.
        id: u64,
        /// What came of the write; a retry with the same id gets the same answer.
        outcome: WriteOutcome,
    },
    /// Part of a snapshot, for a node further behind than the origin's log reaches. This and
    /// `Head` come after the other variants so their encoding is unchanged (protocol 2).
    SnapshotPart(SnapshotPart),
    /// The origin has committed everything up to this version (sent after each batch).
    Head(Head),
}

/// The origin's signed word that versions up to `version` exist. `proof` is opaque here (the
/// node checks it against the cluster CA); peers pass it on, so a node believes a peer's
/// claims only as far as the origin has vouched for, whoever relayed the word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The global version up to which the origin has committed everything.
    pub version: u64,
    /// The origin's signature over `version` with its certificate, encoded (opaque here).
    pub proof: Vec<u8>,
}

/// Keys as the origin holds them when the part is read, in key order, after the key `after`
/// (the previous part's last). Parts are applied as they come but do not move the node's
/// `applied`; only the last part of an unbroken run does, to `started_at` (see
/// [`crate::catch_up`] for why that holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPart {
    /// The last global version committed when the snapshot began: the version the run's last
    /// part brings the node's `applied` to.
    pub started_at: u64,
    /// The (namespace, key) this part's entries follow; `None` for the first part.
    pub after: Option<(String, String)>,
    /// Each key's latest entry in this part, tombstones included, in key order.
    pub entries: Vec<Entry>,
    /// Whether this is the snapshot's last part.
    pub last: bool,
}

/// A range of (namespace, key) pairs, as `BTreeMap::range` takes it.
pub type KeyRange = (Bound<(String, String)>, Bound<(String, String)>);

impl SnapshotPart {
    /// The keys this part speaks for: after `after`, through its last entry's key, or to the end
    /// for the last part. In that range the origin held exactly the part's keys when it read
    /// them; any other key there was deleted or expired and reclaimed (or never existed).
    /// `None` when the part speaks for no key (it is not the last and lists none, or its keys
    /// do not follow `after`).
    pub fn range(&self) -> Option<KeyRange> {
        let end = match (self.last, self.entries.last()) {
            (true, _) => Bound::Unbounded,
            (false, Some(entry)) => Bound::Included((entry.namespace.clone(), entry.key.clone())),
            (false, None) => return None,
        };
        match (&self.after, &end) {
            (Some(after), Bound::Included(last)) if last <= after => None,
            (Some(after), _) => Some((Bound::Excluded(after.clone()), end)),
            (None, _) => Some((Bound::Unbounded, end)),
        }
    }

    /// The keys the part lists.
    pub fn keys(&self) -> std::collections::BTreeSet<(String, String)> {
        self.entries
            .iter()
            .map(|e| (e.namespace.clone(), e.key.clone()))
            .collect()
    }

    /// The key a following part starts after.
    pub fn last_key(&self) -> Option<(String, String)> {
        self.entries
            .last()
            .map(|e| (e.namespace.clone(), e.key.clone()))
            .or_else(|| self.after.clone())
    }
}

/// Node to node, for anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// I have applied everything up to `through`.
    Digest {
        /// The version up to which the sender has applied everything.
        through: u64,
    },
    /// Send me what you have after `from`.
    Pull {
        /// The version up to which the sender has applied everything.
        from: u64,
    },
    /// The answer to a [`PeerMsg::Pull`]: each key's latest entry the sender holds above the
    /// pull's `from`.
    Batch(Batch),
    /// The newest head this node holds from the origin (protocol 2).
    Head(Head),
}

/// Largest encoded message: a 32 MiB batch write or a 25 MiB value, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// What senders aim a batch at (see [`Batch::split`]).
pub const CHUNK_BYTES: usize = 8 << 20;

/// A message (or an entry, as the stores keep it) in its binary encoding.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).expect("KV messages always serialize")
}

/// A message (or an entry) from the bytes [`encode`] made; an error if they are cut short or
/// malformed.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_binary_values() {
        let message = FromOrigin::Batch(Batch {
            from: 4,
            through: 5,
            entries: vec![Entry {
                namespace: "app/ns".into(),
                key: "k".into(),
                value: Some(vec![0, 159, 255]),
                metadata: None,
                expires_at_ms: Some(9),
                version: 5,
                committed_at_us: 7,
            }],
        });
        let bytes = encode(&message);
        assert_eq!(decode::<FromOrigin>(&bytes).unwrap(), message);
        assert!(decode::<FromOrigin>(&bytes[..bytes.len() - 1]).is_err());
    }

    fn entry(version: u64, value_bytes: usize) -> Entry {
        Entry {
            namespace: "a/n".into(),
            key: format!("k{version}"),
            value: Some(vec![7; value_bytes]),
            metadata: None,
            expires_at_ms: None,
            version,
            committed_at_us: 0,
        }
    }

    #[test]
    fn split_batches_cover_the_same_range_within_the_budget() {
        let batch = Batch {
            from: 10,
            through: 20,
            entries: vec![
                entry(11, 600),
                entry(12, 600),
                entry(15, 2000),
                entry(19, 10),
            ],
        };
        let parts = batch.clone().split(1000);
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.from, p.through))
                .collect::<Vec<_>>(),
            vec![(10, 11), (11, 12), (12, 15), (15, 20)]
        );
        assert_eq!(
            parts
                .iter()
                .flat_map(|p| p.entries.clone())
                .collect::<Vec<_>>(),
            batch.entries
        );
        // Small enough: unchanged. Empty: still one batch, carrying the range.
        assert_eq!(batch.clone().split(1 << 20), vec![batch]);
        let empty = Batch {
            from: 3,
            through: 9,
            entries: vec![],
        };
        assert_eq!(empty.clone().split(10), vec![empty]);
    }
}
