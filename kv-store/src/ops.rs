//! The writes a handler can ask for, and what they turn into. Every write is decided at the
//! origin, against its current state, so increments and compare-and-swaps from different
//! locations never lose an update.

use serde::{Deserialize, Serialize};

use crate::model::{
    Entry, LimitError, MAX_BATCH_BYTES, MAX_BATCH_KEYS, validate_key, validate_metadata,
    validate_namespace, validate_value,
};

/// A write a handler can ask for. A node sends it to the origin, whose authority decides it
/// against the current state ([`WriteOp::plan`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Set a key's value (and metadata), replacing whatever it held.
    Put {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The key to set.
        key: String,
        /// The new value, at most [`crate::model::MAX_VALUE_BYTES`].
        value: Vec<u8>,
        /// Opaque bytes to keep with the value, at most [`crate::model::MAX_METADATA_BYTES`].
        metadata: Option<Vec<u8>>,
        /// Seconds until the entry expires.
        ttl_secs: Option<u64>,
    },
    /// Delete a key: the origin commits a tombstone, so replicas learn of the delete.
    Delete {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The key to delete.
        key: String,
    },
    /// Add `delta` to a decimal integer value (absent counts as 0); the value is stored as text.
    Increment {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The counter's key.
        key: String,
        /// The amount to add; negative to subtract.
        delta: i64,
    },
    /// Set `value` only if the current value is `expected` (`None`: only if absent).
    CompareAndSwap {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The key to swap.
        key: String,
        /// The live value the key must hold for the swap; `None`: the key must be absent.
        expected: Option<Vec<u8>>,
        /// The value to set if it does.
        value: Vec<u8>,
    },
    /// Set many keys of one namespace at once (`set-many`), with no metadata or expiry.
    PutMany {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The (key, value) pairs: at most [`MAX_BATCH_KEYS`] keys and [`MAX_BATCH_BYTES`] in all.
        items: Vec<(String, Vec<u8>)>,
    },
    /// Delete many keys of one namespace at once (`delete-many`).
    DeleteMany {
        /// The namespace as stored (`app/name`).
        namespace: String,
        /// The keys to delete, at most [`MAX_BATCH_KEYS`] of them.
        keys: Vec<String>,
    },
}

/// What a write reports besides the entries it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Nothing to report (a put, a delete or a batch write).
    Done,
    /// The counter after an increment.
    Counter(i64),
    /// Whether a compare-and-swap swapped.
    Swapped(bool),
}

/// A committed write: its entries, with the versions the origin gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// The entries committed, with the global versions the authority gave them; empty when the
    /// write changed nothing (a compare-and-swap that did not swap).
    pub entries: Vec<Entry>,
    /// What the write reports besides them.
    pub result: OpResult,
}

/// Why a write failed, or (for [`WriteError::Unavailable`]) may not have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// The write breaks a limit (of a key, value, metadata or batch, or the app's byte quota).
    #[error("{0}")]
    Limit(#[from] LimitError),
    /// An increment found a live value that is not a decimal integer.
    #[error("the value of {key:?} is not an integer, so it cannot be incremented")]
    NotAnInteger {
        /// The key whose value is not an integer.
        key: String,
    },
    /// An increment would take the counter past the range of an `i64`.
    #[error("the counter {key:?} would overflow")]
    Overflow {
        /// The counter's key.
        key: String,
    },
    /// The origin cannot be reached, or the connection broke before an answer: the write may or
    /// may not have been applied.
    #[error("the KV origin is unavailable: {0}")]
    Unavailable(String),
    /// The origin itself failed while deciding the write (its storage, or its authority had
    /// stopped).
    #[error("the KV origin failed: {0}")]
    Internal(String),
    /// The writer may not write there (a node writing a namespace no deployed app binds).
    #[error("refused by the KV origin: {0}")]
    Refused(String),
    /// The app is over its write rate at the origin; the write was not applied, and may be
    /// retried shortly. Last, so the encoding of the others is unchanged (protocol 2).
    #[error("rate limited by the KV origin: {0}")]
    RateLimited(String),
}

/// What a write comes to, as the origin answers it: committed, or why not.
pub type WriteOutcome = Result<WriteAck, WriteError>;

fn validate_batch_count(count: usize) -> Result<(), LimitError> {
    if count > MAX_BATCH_KEYS {
        return Err(LimitError(format!(
            "a batch write touches {count} keys; the limit is {MAX_BATCH_KEYS}"
        )));
    }
    Ok(())
}

/// A new entry without its version yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The namespace as stored (`app/name`).
    pub namespace: String,
    /// The key changed.
    pub key: String,
    /// The new value; `None` for a delete (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Opaque bytes to keep with the value.
    pub metadata: Option<Vec<u8>>,
    /// Unix milliseconds after which the entry reads as absent; `None` if it never expires.
    pub expires_at_ms: Option<u64>,
}

impl WriteOp {
    /// The namespace the op writes (each op writes exactly one), as stored.
    pub fn namespace(&self) -> &str {
        match self {
            WriteOp::Put { namespace, .. }
            | WriteOp::Delete { namespace, .. }
            | WriteOp::Increment { namespace, .. }
            | WriteOp::CompareAndSwap { namespace, .. }
            | WriteOp::PutMany { namespace, .. }
            | WriteOp::DeleteMany { namespace, .. } => namespace,
        }
    }

    /// The keys the op writes (and so may read), in its namespace.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Delete { key, .. }
            | WriteOp::Increment { key, .. }
            | WriteOp::CompareAndSwap { key, .. } => vec![key.as_str()],
            WriteOp::PutMany { items, .. } => items.iter().map(|(key, _)| key.as_str()).collect(),
            WriteOp::DeleteMany { keys, .. } => keys.iter().map(String::as_str).collect(),
        }
    }

    /// Check every limit before the op goes anywhere.
    pub fn validate(&self) -> Result<(), LimitError> {
        validate_namespace(self.namespace())?;
        match self {
            WriteOp::Put {
                key,
                value,
                metadata,
                ..
            } => {
                validate_key(key)?;
                validate_value(value)?;
                if let Some(metadata) = metadata {
                    validate_metadata(metadata)?;
                }
            }
            WriteOp::Delete { key, .. } | WriteOp::Increment { key, .. } => validate_key(key)?,
            WriteOp::CompareAndSwap { key, value, .. } => {
                validate_key(key)?;
                validate_value(value)?;
            }
            WriteOp::PutMany { items, .. } => {
                validate_batch_count(items.len())?;
                let mut total = 0;
                for (key, value) in items {
                    validate_key(key)?;
                    validate_value(value)?;
                    total += key.len() + value.len();
                }
                if total > MAX_BATCH_BYTES {
                    return Err(LimitError(format!(
                        "a batch write holds {total} bytes; the limit is {MAX_BATCH_BYTES} (32 MiB)"
                    )));
                }
            }
            WriteOp::DeleteMany { keys, .. } => {
                validate_batch_count(keys.len())?;
                for key in keys {
                    validate_key(key)?;
                }
            }
        }
        Ok(())
    }

    /// Decide the changes this op makes given the current state (`current` reads it), at
    /// `now_ms`. Pure: the authority assigns versions and commits.
    pub fn plan(
        &self,
        now_ms: u64,
        current: impl Fn(&str, &str) -> Option<Entry>,
    ) -> Result<(Vec<Change>, OpResult), WriteError> {
        self.validate()?;
        let change = |namespace: &str, key: &str, value: Option<Vec<u8>>| Change {
            namespace: namespace.to_string(),
            key: key.to_string(),
            value,
            metadata: None,
            expires_at_ms: None,
        };
        Ok(match self {
            WriteOp::Put {
                namespace,
                key,
                value,
                metadata,
                ttl_secs,
            } => (
                vec![Change {
                    metadata: metadata.clone(),
                    expires_at_ms: ttl_secs
                        .map(|ttl| now_ms.saturating_add(ttl.saturating_mul(1000))),
                    ..change(namespace, key, Some(value.clone()))
                }],
                OpResult::Done,
            ),
            WriteOp::Delete { namespace, key } => {
                (vec![change(namespace, key, None)], OpResult::Done)
            }
            WriteOp::Increment {
                namespace,
                key,
                delta,
            } => {
                let existing = current(namespace, key);
                let before = match existing.as_ref().and_then(|e| e.live_value(now_ms)) {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|text| text.trim().parse::<i64>().ok())
                        .ok_or_else(|| WriteError::NotAnInteger { key: key.clone() })?,
                };
                let after = before
                    .checked_add(*delta)
                    .ok_or_else(|| WriteError::Overflow { key: key.clone() })?;
                (
                    vec![change(namespace, key, Some(after.to_string().into_bytes()))],
                    OpResult::Counter(after),
                )
            }
            WriteOp::CompareAndSwap {
                namespace,
                key,
                expected,
                value,
            } => {
                let existing = current(namespace, key);
                let now = existing.as_ref().and_then(|e| e.live_value(now_ms));
                if now == expected.as_deref() {
                    (
                        vec![change(namespace, key, Some(value.clone()))],
                        OpResult::Swapped(true),
                    )
                } else {
                    (Vec::new(), OpResult::Swapped(false))
                }
            }
            WriteOp::PutMany { namespace, items } => (
                items
                    .iter()
                    .map(|(k, v)| change(namespace, k, Some(v.clone())))
                    .collect(),
                OpResult::Done,
            ),
            WriteOp::DeleteMany { namespace, keys } => (
                keys.iter().map(|k| change(namespace, k, None)).collect(),
                OpResult::Done,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &[u8]) -> Entry {
        Entry {
            namespace: "ns".into(),
            key: "k".into(),
            value: Some(value.to_vec()),
            metadata: None,
            expires_at_ms: None,
            version: 1,
            committed_at_us: 0,
        }
    }

    #[test]
    fn increment_counts_from_absent_and_refuses_text() {
        let op = WriteOp::Increment {
            namespace: "ns".into(),
            key: "k".into(),
            delta: 5,
        };
        let (changes, result) = op.plan(0, |_, _| None).unwrap();
        assert_eq!(result, OpResult::Counter(5));
        assert_eq!(changes[0].value.as_deref(), Some(b"5".as_slice()));
        let (_, result) = op.plan(0, |_, _| Some(entry(b"37"))).unwrap();
        assert_eq!(result, OpResult::Counter(42));
        assert_eq!(
            op.plan(0, |_, _| Some(entry(b"hello"))).unwrap_err(),
            WriteError::NotAnInteger { key: "k".into() }
        );
        let max = WriteOp::Increment {
            namespace: "ns".into(),
            key: "k".into(),
            delta: i64::MAX,
        };
        assert!(matches!(
            max.plan(0, |_, _| Some(entry(b"1"))),
            Err(WriteError::Overflow { .. })
        ));
    }

    #[test]
    fn compare_and_swap_on_value_and_absence() {
        let cas = |expected: Option<&[u8]>| WriteOp::CompareAndSwap {
            namespace: "ns".into(),
            key: "k".into(),
            expected: expected.map(<[u8]>::to_vec),
            value: b"new".to_vec(),
        };
        assert_eq!(
            cas(Some(b"old"))
                .plan(0, |_, _| Some(entry(b"old")))
                .unwrap()
                .1,
            OpResult::Swapped(true)
        );
        let (changes, result) = cas(Some(b"other"))
            .plan(0, |_, _| Some(entry(b"old")))
            .unwrap();
        assert_eq!((changes.len(), result), (0, OpResult::Swapped(false)));
        assert_eq!(
            cas(None).plan(0, |_, _| None).unwrap().1,
            OpResult::Swapped(true)
        );
        assert_eq!(
            cas(None).plan(0, |_, _| Some(entry(b"x"))).unwrap().1,
            OpResult::Swapped(false)
        );
    }

    #[test]
    fn put_sets_expiry_and_limits_are_checked_first() {
        let put = WriteOp::Put {
            namespace: "ns".into(),
            key: "k".into(),
            value: b"v".to_vec(),
            metadata: Some(b"{}".to_vec()),
            ttl_secs: Some(60),
        };
        let (changes, _) = put.plan(1_000, |_, _| None).unwrap();
        assert_eq!(changes[0].expires_at_ms, Some(61_000));
        let too_long = WriteOp::Delete {
            namespace: "ns".into(),
            key: "k".repeat(600),
        };
        assert!(matches!(
            too_long.plan(0, |_, _| None),
            Err(WriteError::Limit(_))
        ));
    }
}
