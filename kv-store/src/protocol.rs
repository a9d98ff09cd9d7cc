//! Messages between a node and the origin, and between nodes, and their binary encoding
//! (postcard: compact, and values are raw bytes, not text).

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
    pub from: u64,
    pub through: u64,
    pub entries: Vec<Entry>,
}

/// Node to origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToOrigin {
    /// Send me everything after `from`, then every new write as it commits.
    Subscribe { from: u64 },
    /// Commit this write. `id` is unique per node, so a retried write is applied once.
    Write { id: u64, op: WriteOp },
}

/// Origin to node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromOrigin {
    Batch(Batch),
    WriteResult { id: u64, outcome: WriteOutcome },
}

/// Node to node, for anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// I have applied everything up to `through`.
    Digest { through: u64 },
    /// Send me what you have after `from`.
    Pull { from: u64 },
    Batch(Batch),
}

/// Largest encoded message: a 25 MiB value and its envelope, with room for a batch of them.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).expect("KV messages always serialize")
}

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
}
