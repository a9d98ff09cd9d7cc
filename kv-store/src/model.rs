//! What is stored: entries in namespaces, with the limits Workers KV uses.

use serde::{Deserialize, Serialize};

/// Largest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 25 << 20;
/// Largest metadata attached to an entry.
pub const MAX_METADATA_BYTES: usize = 1024;
/// Largest namespace name (the node qualifies it with the app's name).
pub const MAX_NAMESPACE_BYTES: usize = 192;
/// Most keys one batch write (`set-many`, `delete-many`) may touch.
pub const MAX_BATCH_KEYS: usize = 10_000;
/// Largest total of keys and values in one batch write.
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// One key's latest state. A tombstone (`value: None`) records a delete, so a replica that
/// missed the delete still learns of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The namespace as stored, qualified with its app's name (`app/name`, see [`crate::scope`]).
    pub namespace: String,
    /// The key within the namespace, at most [`MAX_KEY_BYTES`] bytes.
    pub key: String,
    /// The value's bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Opaque bytes the writer attached to the value, at most [`MAX_METADATA_BYTES`].
    pub metadata: Option<Vec<u8>>,
    /// Unix milliseconds after which the entry reads as absent.
    pub expires_at_ms: Option<u64>,
    /// The origin's global sequence number for this write; grows with every committed entry.
    pub version: u64,
    /// The origin's clock when it committed this entry, in Unix microseconds.
    pub committed_at_us: u64,
}

impl Entry {
    /// The value, unless deleted or expired at `now_ms`.
    pub fn live_value(&self, now_ms: u64) -> Option<&[u8]> {
        match (&self.value, self.expires_at_ms) {
            (Some(_), Some(at)) if at <= now_ms => None,
            (Some(value), _) => Some(value),
            (None, _) => None,
        }
    }

    /// Whether the entry holds a value at `now_ms` (Unix milliseconds): neither deleted nor
    /// expired.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.live_value(now_ms).is_some()
    }

    /// Roughly how many bytes the entry takes on the wire.
    pub fn size(&self) -> usize {
        const FIXED: usize = 32;
        self.namespace.len()
            + self.key.len()
            + self.value.as_ref().map_or(0, Vec::len)
            + self.metadata.as_ref().map_or(0, Vec::len)
            + FIXED
    }
}

/// Where a sweep that reclaims dead entries stopped: how many it removed, and the last key it
/// looked at (`None` once it reached the end, so the next sweep starts over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// How many entries the sweep removed.
    pub removed: usize,
    /// The (namespace, key) the sweep stopped at, for the next sweep to start after.
    pub next: Option<(String, String)>,
}

/// Whether a sweep may drop a key's entry: it reads as absent at `now_ms` (deleted, or expired)
/// and its version is at most `through`, the horizon below which nobody still needs to learn
/// of it from this store (see docs/kv.md, "Reclaiming deleted and expired keys").
pub fn reclaimable(info: &KeyInfo, through: u64, now_ms: u64) -> bool {
    !info.is_live(now_ms) && info.version <= through
}

/// A limit an operation broke; the message says which and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct LimitError(pub String);

/// A key as a listing reports it: everything about its entry but the value, which a listing
/// never reads (a value may be 25 MiB; a page has up to a thousand keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key within the namespace listed.
    pub key: String,
    /// False for a tombstone.
    pub present: bool,
    /// Opaque bytes the writer attached to the value (a listing returns them).
    pub metadata: Option<Vec<u8>>,
    /// Unix milliseconds after which the key reads as absent.
    pub expires_at_ms: Option<u64>,
    /// The global version the origin gave the key's latest entry.
    pub version: u64,
}

impl KeyInfo {
    /// Whether the key reads as set at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.present && self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

impl From<&Entry> for KeyInfo {
    fn from(entry: &Entry) -> Self {
        KeyInfo {
            key: entry.key.clone(),
            present: entry.value.is_some(),
            metadata: entry.metadata.clone(),
            expires_at_ms: entry.expires_at_ms,
            version: entry.version,
        }
    }
}

/// An encoded [`Entry`] read in place: the value is looked at, not copied.
#[derive(Deserialize)]
struct EntryInPlace<'a> {
    #[serde(borrow)]
    _namespace: &'a str,
    #[serde(borrow)]
    key: &'a str,
    #[serde(borrow)]
    value: Option<&'a [u8]>,
    #[serde(borrow)]
    metadata: Option<&'a [u8]>,
    expires_at_ms: Option<u64>,
    version: u64,
    _committed_at_us: u64,
}

/// The [`KeyInfo`] of an entry encoded with [`crate::protocol::encode`], without copying its
/// value.
pub fn decode_key_info(bytes: &[u8]) -> Result<KeyInfo, postcard::Error> {
    let entry: EntryInPlace<'_> = postcard::from_bytes(bytes)?;
    Ok(KeyInfo {
        key: entry.key.to_string(),
        present: entry.value.is_some(),
        metadata: entry.metadata.map(<[u8]>::to_vec),
        expires_at_ms: entry.expires_at_ms,
        version: entry.version,
    })
}

/// Up to `limit` values of `map` (keyed by namespace and key) in `namespace` whose keys start
/// with `prefix`, in key order, after the key `after` if given, each as `view` makes it: the
/// listing every in-memory store shares.
pub fn list_prefix<T, U>(
    map: &std::collections::BTreeMap<(String, String), T>,
    namespace: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    view: impl Fn(&T) -> U,
) -> Vec<U> {
    map.range((namespace.to_string(), prefix.to_string())..)
        .take_while(|((ns, key), _)| ns == namespace && key.starts_with(prefix))
        .filter(|((_, key), _)| after.is_none_or(|a| key.as_str() > a))
        .take(limit)
        .map(|(_, value)| view(value))
        .collect()
}

/// Look at up to `max_keys` values of `map` in key order after `after`, and remove those
/// `doomed` picks: the reclaiming sweep every in-memory store shares. Returns where it stopped
/// and what it removed.
pub fn sweep_map<T>(
    map: &mut std::collections::BTreeMap<(String, String), T>,
    after: Option<&(String, String)>,
    max_keys: usize,
    doomed: impl Fn(&T) -> bool,
) -> (Sweep, Vec<T>) {
    use std::ops::Bound;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let walked: Vec<((String, String), bool)> = map
        .range::<(String, String), _>((start, Bound::Unbounded))
        .take(max_keys)
        .map(|(key, value)| (key.clone(), doomed(value)))
        .collect();
    let removed: Vec<T> = walked
        .iter()
        .filter(|(_, doomed)| *doomed)
        .filter_map(|(key, _)| map.remove(key))
        .collect();
    let sweep = Sweep {
        removed: removed.len(),
        next: (walked.len() == max_keys)
            .then(|| walked.last().map(|(key, _)| key.clone()))
            .flatten(),
    };
    (sweep, removed)
}

/// Check a namespace name as stored (`app/name`): 1 to [`MAX_NAMESPACE_BYTES`] bytes, with no
/// control characters.
pub fn validate_namespace(namespace: &str) -> Result<(), LimitError> {
    if namespace.is_empty() || namespace.len() > MAX_NAMESPACE_BYTES {
        return Err(LimitError(format!(
            "a namespace needs 1 to {MAX_NAMESPACE_BYTES} bytes (got {})",
            namespace.len()
        )));
    }
    if namespace.bytes().any(|b| b.is_ascii_control()) {
        return Err(LimitError(
            "a namespace cannot hold control characters".into(),
        ));
    }
    Ok(())
}

/// Check a key: 1 to [`MAX_KEY_BYTES`] bytes, and neither `.` nor `..`.
pub fn validate_key(key: &str) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError("a key cannot be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key == "." || key == ".." {
        return Err(LimitError(format!("{key:?} is not a valid key")));
    }
    Ok(())
}

/// Check that a value is at most [`MAX_VALUE_BYTES`] (25 MiB).
pub fn validate_value(value: &[u8]) -> Result<(), LimitError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LimitError(format!(
            "value is {} bytes; the limit is {MAX_VALUE_BYTES} (25 MiB)",
            value.len()
        )));
    }
    Ok(())
}

/// Check that an entry's metadata is at most [`MAX_METADATA_BYTES`].
pub fn validate_metadata(metadata: &[u8]) -> Result<(), LimitError> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(LimitError(format!(
            "metadata is {} bytes; the limit is {MAX_METADATA_BYTES}",
            metadata.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_have_clear_messages() {
        assert!(validate_key(&"k".repeat(512)).is_ok());
        assert_eq!(
            validate_key(&"k".repeat(513)).unwrap_err().0,
            "key is 513 bytes; the limit is 512"
        );
        assert!(validate_key("").is_err());
        assert!(validate_key("..").is_err());
        assert!(validate_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(
            validate_value(&vec![0; MAX_VALUE_BYTES + 1])
                .unwrap_err()
                .0
                .contains("25 MiB")
        );
        assert!(validate_metadata(&[0; 1025]).is_err());
        assert!(validate_namespace("app/ns").is_ok());
        assert!(validate_namespace("").is_err());
    }

    #[test]
    fn expiry_and_tombstones_read_as_absent() {
        let mut e = Entry {
            namespace: "n".into(),
            key: "k".into(),
            value: Some(b"v".to_vec()),
            metadata: None,
            expires_at_ms: Some(1000),
            version: 1,
            committed_at_us: 0,
        };
        assert_eq!(e.live_value(999), Some(b"v".as_slice()));
        assert_eq!(e.live_value(1000), None);
        e.expires_at_ms = None;
        e.value = None;
        assert!(!e.is_live(0));
    }
}

#[cfg(test)]
mod key_info_tests {
    use super::*;

    #[test]
    fn an_encoded_entry_gives_its_key_info_without_its_value() {
        let entry = Entry {
            namespace: "app/ns".into(),
            key: "k".into(),
            value: Some(vec![7; 1 << 20]),
            metadata: Some(b"m".to_vec()),
            expires_at_ms: Some(50),
            version: 9,
            committed_at_us: 1,
        };
        let info = decode_key_info(&crate::protocol::encode(&entry)).unwrap();
        assert_eq!(info, KeyInfo::from(&entry));
        assert!(info.is_live(49) && !info.is_live(50));
        let tombstone = Entry {
            value: None,
            ..entry
        };
        let info = decode_key_info(&crate::protocol::encode(&tombstone)).unwrap();
        assert!(!info.present && !info.is_live(0));
    }
}
