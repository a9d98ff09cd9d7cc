//! The KV on the node, through `wasi:keyvalue` and `outpost:kv/extras`.

use http::StatusCode;

use super::{Entry, KeyValue, Page};
use crate::bindings::outpost::kv::extras;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::{Error, Result};

pub(super) struct Bucket(store::Bucket);

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
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the KV store cannot take writes right now: {reason}"),
                )
                .with_header("retry-after", "1")
            } else if let Some(reason) = message.strip_prefix("rate-limited: ") {
                Error::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many KV writes: {reason}"),
                )
                .with_header("retry-after", "1")
            } else if let Some(reason) = message.strip_prefix("limit: ") {
                Error::payload_too_large(reason.to_string())
            } else {
                Error::internal(format!("KV error: {message}"))
            }
        }
    }
}

impl Bucket {
    pub(super) fn open(namespace: &str) -> Result<Bucket> {
        store::open(namespace).map(Bucket).map_err(|err| match err {
            store::Error::AccessDenied => Error::internal(format!(
                "KV namespace {namespace:?} is not bound to this app (add it to [kv] namespaces in outpost.toml)"
            )),
            other => kv_error(other),
        })
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.get(key).map_err(kv_error)
    }

    pub(super) fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(extras::get_entry(&self.0, key)
            .map_err(kv_error)?
            .map(|e| Entry {
                value: e.value,
                metadata: e.metadata,
                expires_at_ms: e.expires_at_ms,
                version: e.version,
            }))
    }

    pub(super) fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(key).map_err(kv_error)
    }

    pub(super) fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.0.set(key, value).map_err(kv_error)
    }

    pub(super) fn set_with(
        &self,
        key: &str,
        value: &[u8],
        metadata: Option<&[u8]>,
        ttl_seconds: Option<u64>,
    ) -> Result<()> {
        extras::set_with_options(&self.0, key, value, metadata, ttl_seconds).map_err(kv_error)
    }

    pub(super) fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).map_err(kv_error)
    }

    pub(super) fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        atomics::increment(&self.0, key, delta).map_err(kv_error)
    }

    pub(super) fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool> {
        extras::compare_and_swap(&self.0, key, expected, value).map_err(kv_error)
    }

    pub(super) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>> {
        batch::get_many(&self.0, keys).map_err(kv_error)
    }

    pub(super) fn set_many(&self, items: &[KeyValue]) -> Result<()> {
        batch::set_many(&self.0, items).map_err(kv_error)
    }

    pub(super) fn delete_many(&self, keys: &[String]) -> Result<()> {
        batch::delete_many(&self.0, keys).map_err(kv_error)
    }

    pub(super) fn list_keys(&self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>)> {
        let page = self.0.list_keys(cursor).map_err(kv_error)?;
        Ok((page.keys, page.cursor))
    }

    pub(super) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page> {
        let (keys, cursor) =
            extras::list_prefix(&self.0, prefix, cursor, limit).map_err(kv_error)?;
        Ok(Page { keys, cursor })
    }
}
