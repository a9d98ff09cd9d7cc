//! The edge KV, through `wasi:keyvalue` (and `outpost:kv/extras` for what the proposal lacks).
//!
//! A handler opens the namespaces its app binds in `outpost.toml` (`[kv] namespaces`); no other.
//! Reads are served from the node's replica; writes go to the origin, which decides them (so
//! [`Store::increment`] and [`Store::compare_and_swap`] never lose an update made elsewhere)
//! and the writing node sees its own writes at once. With the origin out of reach, reads keep
//! working and writes fail with a 503 error.
//!
//! The calls are synchronous: a read is a lookup in the node's memory, a write one round trip
//! to the origin.
//!
//! Off wasm (a handler's unit tests) the same API works on an in-memory store of the test's own
//! thread, with the same semantics (versions, expiry, prefix paging), so a handler that uses KV
//! can be tested with `cargo test`; [`crate::testing::reset`] empties it.
//!
//! ```
//! # use outpost_sdk::kv::Store;
//! let views = Store::open("stats")?.increment("page-views", 1)?;
//! assert_eq!(views, 1);
//! # Ok::<(), outpost_sdk::Error>(())
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod memory;
#[cfg(target_arch = "wasm32")]
mod wasi;

#[cfg(not(target_arch = "wasm32"))]
use memory as backend;
#[cfg(target_arch = "wasm32")]
use wasi as backend;

use crate::{Error, Result};

/// A key and its value.
pub type KeyValue = (String, Vec<u8>);

/// An open namespace.
pub struct Store {
    bucket: backend::Bucket,
}

/// One page of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The keys on this page, in order.
    pub keys: Vec<String>,
    /// Pass to the next call to continue; `None` on the last page.
    pub cursor: Option<String>,
}

/// A value with what was stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The metadata given in [`SetOptions::metadata`], if any.
    pub metadata: Option<Vec<u8>>,
    /// Unix milliseconds after which the entry reads as absent.
    pub expires_at_ms: Option<u64>,
    /// The origin's version of the write; later writes have larger versions.
    pub version: u64,
}

/// Options for [`Store::set_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Up to 1 KiB kept beside the value.
    pub metadata: Option<Vec<u8>>,
    /// Seconds until the entry expires.
    pub ttl_seconds: Option<u64>,
}

impl Store {
    /// Open a namespace bound to this app.
    pub fn open(namespace: &str) -> Result<Store> {
        backend::Bucket::open(namespace).map(|bucket| Store { bucket })
    }

    /// The value at `key` as bytes, or `None` if it is absent or expired. Read from the node's
    /// replica, so it works while the origin is out of reach.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket.get(key)
    }

    /// The value as UTF-8 text.
    pub fn get_text(&self, key: &str) -> Result<Option<String>> {
        self.get(key)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|e| Error::internal(format!("KV value is not UTF-8: {e}")))
            })
            .transpose()
    }

    /// The value parsed as JSON.
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::internal(format!("KV value is not the JSON expected: {e}")))
            })
            .transpose()
    }

    /// The value at `key` with its metadata, expiry and version, or `None` if it is absent.
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.bucket.get_entry(key)
    }

    /// Whether `key` holds a value, without returning the value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.bucket.exists(key)
    }

    /// Store `value` at `key` with no metadata or expiry (see [`Store::set_with`]), replacing what
    /// was there. Sent to the origin; fails with 503 while it is out of reach.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.bucket.set(key, value.as_ref())
    }

    /// Set with metadata and/or an expiration.
    pub fn set_with(&self, key: &str, value: impl AsRef<[u8]>, options: SetOptions) -> Result<()> {
        self.bucket.set_with(
            key,
            value.as_ref(),
            options.metadata.as_deref(),
            options.ttl_seconds,
        )
    }

    /// Store `value` at `key` serialized as JSON; read it back with [`Store::get_json`].
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("serializing for KV: {e}")))?;
        self.set(key, bytes)
    }

    /// Remove `key`; removing an absent key succeeds.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key)
    }

    /// Add `delta` to the counter at `key` (absent counts as 0) and return the new value.
    /// Decided at the origin: increments from every node add up.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        self.bucket.increment(key, delta)
    }

    /// Set `value` only if the current value is `expected` (`None`: only if absent); returns
    /// whether it was set. Decided at the origin.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool> {
        self.bucket.compare_and_swap(key, expected, value.as_ref())
    }

    /// Each key's value, in order (`None` where absent).
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>> {
        self.bucket.get_many(keys)
    }

    /// Store every `(key, value)` pair in one write to the origin, as [`Store::set`] does for one.
    pub fn set_many(&self, items: &[KeyValue]) -> Result<()> {
        self.bucket.set_many(items)
    }

    /// Remove every key in `keys` in one write to the origin; absent keys are not an error.
    pub fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.bucket.delete_many(keys)
    }

    /// Every key in the namespace, in order, through the standard `list-keys` paging.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.bucket.list_keys(cursor)?;
            keys.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Keys starting with `prefix`, in order, a page of at most `limit` at a time.
    pub fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page> {
        self.bucket.list(prefix, cursor, limit)
    }
}
