//! The edge KV, through `wasi:keyvalue` (and `outpost:kv/extras` for what the proposal lacks).
//!
//! A handler opens the namespaces its app binds in `outpost.toml` (`[kv] namespaces`); no other.
//! Reads are served from the node's replica; writes go to the origin, which decides them (so
//! [`Store::increment`] and [`Store::compare_and_swap`] never lose an update made elsewhere)
//! and the writing node sees its own writes at once. With the origin out of reach, reads keep
//! working and writes fail with a 503 error.
//!
//! ```ignore
//! let views = outpost_sdk::kv::Store::open("stats")?.increment("page-views", 1)?;
//! ```

use crate::bindings::outpost::kv::extras;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::{Error, Result};

/// A key and its value.
pub type KeyValue = (String, Vec<u8>);

/// An open namespace.
pub struct Store {
    bucket: store::Bucket,
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

/// Turn a KV error into the response it deserves: 503 when the origin is out of reach and 429
/// when the app is over its write rate (both with Retry-After), 413 for a key, value or
/// metadata over its limit or an app over its storage quota, 500 otherwise.
fn kv_error(err: store::Error) -> Error {
    match err {
        store::Error::NoSuchStore => Error::internal("no such KV namespace"),
        store::Error::AccessDenied => Error::internal(
            "this KV namespace is not bound to the app (add it to [kv] namespaces in outpost.toml)",
        ),
        store::Error::Other(message) => {
            if let Some(reason) = message.strip_prefix("unavailable: ") {
                Error::new(
                    503,
                    format!("the KV store cannot take writes right now: {reason}"),
                )
                .with_header("retry-after", "1")
            } else if let Some(reason) = message.strip_prefix("rate-limited: ") {
                Error::new(429, format!("too many KV writes: {reason}"))
                    .with_header("retry-after", "1")
            } else if let Some(reason) = message.strip_prefix("limit: ") {
                Error::payload_too_large(reason.to_string())
            } else {
                Error::internal(format!("KV error: {message}"))
            }
        }
    }
}

impl Store {
    /// Open a namespace bound to this app.
    pub fn open(namespace: &str) -> Result<Store> {
        store::open(namespace)
            .map(|bucket| Store { bucket })
            .map_err(|err| match err {
                store::Error::AccessDenied => Error::internal(format!(
                    "KV namespace {namespace:?} is not bound to this app (add it to [kv] namespaces in outpost.toml)"
                )),
                other => kv_error(other),
            })
    }

    /// The value at `key` as bytes, or `None` if it is absent or expired. Read from the node's
    /// replica, so it works while the origin is out of reach.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket.get(key).map_err(kv_error)
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
        Ok(extras::get_entry(&self.bucket, key)
            .map_err(kv_error)?
            .map(|e| Entry {
                value: e.value,
                metadata: e.metadata,
                expires_at_ms: e.expires_at_ms,
                version: e.version,
            }))
    }

    /// Whether `key` holds a value, without returning the value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.bucket.exists(key).map_err(kv_error)
    }

    /// Store `value` at `key` with no metadata or expiry (see [`Store::set_with`]), replacing what
    /// was there. Sent to the origin; fails with 503 while it is out of reach.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.bucket.set(key, value.as_ref()).map_err(kv_error)
    }

    /// Set with metadata and/or an expiration.
    pub fn set_with(&self, key: &str, value: impl AsRef<[u8]>, options: SetOptions) -> Result<()> {
        extras::set_with_options(
            &self.bucket,
            key,
            value.as_ref(),
            options.metadata.as_deref(),
            options.ttl_seconds,
        )
        .map_err(kv_error)
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
        self.bucket.delete(key).map_err(kv_error)
    }

    /// Add `delta` to the counter at `key` (absent counts as 0) and return the new value.
    /// Decided at the origin: increments from every node add up.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        atomics::increment(&self.bucket, key, delta).map_err(kv_error)
    }

    /// Set `value` only if the current value is `expected` (`None`: only if absent); returns
    /// whether it was set. Decided at the origin.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool> {
        extras::compare_and_swap(&self.bucket, key, expected, value.as_ref()).map_err(kv_error)
    }

    /// Each key's value, in order (`None` where absent).
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>> {
        batch::get_many(&self.bucket, keys).map_err(kv_error)
    }

    /// Store every `(key, value)` pair in one write to the origin, as [`Store::set`] does for one.
    pub fn set_many(&self, items: &[KeyValue]) -> Result<()> {
        batch::set_many(&self.bucket, items).map_err(kv_error)
    }

    /// Remove every key in `keys` in one write to the origin; absent keys are not an error.
    pub fn delete_many(&self, keys: &[String]) -> Result<()> {
        batch::delete_many(&self.bucket, keys).map_err(kv_error)
    }

    /// Every key in the namespace, in order, through the standard `list-keys` paging.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor).map_err(kv_error)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Keys starting with `prefix`, in order, a page at a time.
    pub fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page> {
        let (keys, cursor) =
            extras::list_prefix(&self.bucket, prefix, cursor, limit).map_err(kv_error)?;
        Ok(Page { keys, cursor })
    }
}
