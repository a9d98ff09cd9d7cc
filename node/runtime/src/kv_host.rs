//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) and `outpost:kv/extras` for handlers.
//!
//! A handler opens only the namespaces its app binds (`[kv] namespaces`); each is stored under
//! the app's name (`app/namespace`), so no app can reach another's data. Reads come from the
//! node's replica; writes go through the driver to the origin. Errors the guest should act on
//! carry a prefix the SDK understands: `unavailable: ` (the origin is out of reach: 503) and
//! `limit: ` (a key, value or metadata too large: 413).

use std::sync::Arc;

use outpost_kv::{OpResult, WriteError, WriteOp, validate_key};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::HostState;
use crate::kv_client::KvClient;
use outpost_core::clock::unix_millis;
use outpost_kv::paging;

wasmtime::component::bindgen!({
    path: "../../guest-sdk/wit",
    world: "outpost:sdk/kv-host",
    imports: { default: async | trappable },
    with: { "wasi:keyvalue/store.bucket": Bucket },
});

use outpost::kv::extras;
use wasi::keyvalue::{atomics, batch, store};

/// An open namespace, as the guest holds it.
// `pub` because the bindings `bindgen!` writes re-export it.
#[allow(unreachable_pub)]
pub struct Bucket {
    /// The stored name: `app/namespace`.
    namespace: String,
}

/// What an app's handlers may reach in the KV.
pub struct AppKv {
    pub client: KvClient,
    /// The app's name, which qualifies its namespaces.
    pub app: Arc<str>,
    /// Namespaces by the names the handler uses.
    pub namespaces: Vec<String>,
}

/// Most keys one `get-many` reads (Workers KV's bulk get takes 100).
const MAX_GET_MANY_KEYS: usize = 100;
/// Most value bytes one `get-many` returns.
const MAX_GET_MANY_BYTES: usize = outpost_kv::model::MAX_BATCH_BYTES;
/// KV operations one request may make (as Workers allows per invocation): each a bounded
/// synchronous host call, so a handler cannot keep the host busy past this inside one request.
pub(crate) const MAX_OPS_PER_REQUEST: u32 = 1000;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    store::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    atomics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    batch::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    extras::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// What the guest should do about a KV error, said as the prefix of its `other` message. Each
/// SDK (Rust, JavaScript, Python) turns each into its HTTP status; a test holds every SDK to
/// this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advice {
    /// The origin cannot take writes now: 503, retry after a second.
    Unavailable,
    /// The app is over its write rate: 429, retry after a second.
    RateLimited,
    /// A key, value, metadata, batch or quota over its limit: 413.
    Limit,
}

impl Advice {
    #[cfg(test)]
    const ALL: [Advice; 3] = [Advice::Unavailable, Advice::RateLimited, Advice::Limit];

    fn prefix(self) -> &'static str {
        match self {
            Advice::Unavailable => "unavailable: ",
            Advice::RateLimited => "rate-limited: ",
            Advice::Limit => "limit: ",
        }
    }

    fn error(self, reason: impl std::fmt::Display) -> store::Error {
        store::Error::Other(format!("{}{reason}", self.prefix()))
    }
}

fn write_error(err: WriteError) -> store::Error {
    match err {
        WriteError::Limit(limit) => Advice::Limit.error(limit),
        WriteError::Unavailable(reason) => Advice::Unavailable.error(reason),
        WriteError::RateLimited(reason) => Advice::RateLimited.error(reason),
        other => store::Error::Other(other.to_string()),
    }
}

fn checked_key(key: &str) -> Result<(), store::Error> {
    validate_key(key).map_err(|limit| Advice::Limit.error(limit))
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl HostState {
    /// Count `ops` KV operations against the request's allowance.
    fn spend_kv_ops(&mut self, ops: u32) -> Result<(), store::Error> {
        self.kv_ops = self.kv_ops.saturating_add(ops);
        if self.kv_ops > MAX_OPS_PER_REQUEST {
            return Err(Advice::Limit.error(format!(
                "more than {MAX_OPS_PER_REQUEST} KV operations in one request"
            )));
        }
        Ok(())
    }

    fn kv(&self) -> Result<&AppKv, store::Error> {
        self.app
            .kv
            .as_ref()
            .ok_or_else(|| Advice::Unavailable.error("this node runs no KV store"))
    }

    fn namespace_of(&mut self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table().get(bucket)?.namespace.clone())
    }

    fn read(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> wasmtime::Result<Result<Option<Arc<outpost_kv::Entry>>, store::Error>> {
        let namespace = self.namespace_of(bucket)?;
        self.app.metrics.kv_reads.inc();
        if let Err(err) = self.spend_kv_ops(1).and_then(|()| checked_key(key)) {
            return Ok(Err(err));
        }
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(err) => return Ok(Err(err)),
        };
        Ok(kv
            .client
            .get(&namespace, key)
            .map(|entry| entry.filter(|e| e.is_live(unix_millis())))
            .map_err(store::Error::Other))
    }

    async fn write(&mut self, op: WriteOp) -> Result<OpResult, store::Error> {
        self.spend_kv_ops(1)?;
        let client = self.kv()?.client.clone();
        let result = client.write(op).await;
        let metrics = &self.app.metrics;
        match &result {
            Ok(_) => metrics.kv_writes_ok.inc(),
            Err(_) => metrics.kv_writes_failed.inc(),
        }
        result.map(|ack| ack.result).map_err(write_error)
    }

    fn keys_page(
        &mut self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), store::Error> {
        self.app.metrics.kv_reads.inc();
        self.spend_kv_ops(1)?;
        let kv = self.kv()?;
        let fetched = kv
            .client
            .list_keys(namespace, prefix, after, paging::fetch_limit(limit))
            .map_err(store::Error::Other)?;
        let page = paging::page(fetched, limit, unix_millis());
        Ok((page.items.into_iter().map(|k| k.key).collect(), page.next))
    }
}

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(err) => return Ok(Err(err)),
        };
        if !kv.namespaces.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        let namespace = outpost_kv::scope::stored_namespace(&kv.app, &identifier);
        Ok(Ok(self.table().push(Bucket { namespace })?))
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        Ok(self
            .read(&bucket, &key)?
            .map(|entry| entry.and_then(|e| e.value.clone())))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let namespace = self.namespace_of(&bucket)?;
        let op = WriteOp::Put {
            namespace,
            key,
            value,
            metadata: None,
            ttl_secs: None,
        };
        Ok(self.write(op).await.map(drop))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let namespace = self.namespace_of(&bucket)?;
        Ok(self
            .write(WriteOp::Delete { namespace, key })
            .await
            .map(drop))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        Ok(self.read(&bucket, &key)?.map(|entry| entry.is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let namespace = self.namespace_of(&bucket)?;
        // Cursors are indexes into this request's list of "resume after this key" markers.
        let after = match cursor {
            None => None,
            Some(index) => match self.kv_cursors.get(index as usize) {
                Some(key) => Some(key.clone()),
                None => return Ok(Err(store::Error::Other(format!("unknown cursor {index}")))),
            },
        };
        let page = self.keys_page(&namespace, "", after.as_deref(), paging::MAX_PAGE);
        Ok(page.map(|(keys, next)| store::KeyResponse {
            keys,
            cursor: next.map(|key| {
                self.kv_cursors.push(key);
                (self.kv_cursors.len() - 1) as u64
            }),
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table().delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let namespace = self.namespace_of(&bucket)?;
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(Advice::Limit.error("the increment is too large")));
        };
        Ok(
            match self
                .write(WriteOp::Increment {
                    namespace,
                    key,
                    delta,
                })
                .await
            {
                Ok(OpResult::Counter(value)) => u64::try_from(value)
                    .map_err(|_| store::Error::Other(format!("the counter is negative ({value})"))),
                Ok(other) => Err(store::Error::Other(format!("unexpected result {other:?}"))),
                Err(err) => Err(err),
            },
        )
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        if keys.len() > MAX_GET_MANY_KEYS {
            return Ok(Err(Advice::Limit.error(format!(
                "get-many reads at most {MAX_GET_MANY_KEYS} keys (asked for {})",
                keys.len()
            ))));
        }
        let mut found = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for key in keys {
            match self.read(&bucket, &key)? {
                Ok(entry) => {
                    let value = entry.and_then(|e| e.value.clone());
                    bytes += value.as_ref().map_or(0, Vec::len);
                    if bytes > MAX_GET_MANY_BYTES {
                        return Ok(Err(Advice::Limit.error(format!(
                            "get-many returns at most {} MiB of values",
                            MAX_GET_MANY_BYTES >> 20
                        ))));
                    }
                    found.push(value.map(|v| (key, v)));
                }
                Err(err) => return Ok(Err(err)),
            }
        }
        Ok(Ok(found))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let namespace = self.namespace_of(&bucket)?;
        Ok(self
            .write(WriteOp::PutMany {
                namespace,
                items: key_values,
            })
            .await
            .map(drop))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let namespace = self.namespace_of(&bucket)?;
        Ok(self
            .write(WriteOp::DeleteMany { namespace, keys })
            .await
            .map(drop))
    }
}

impl extras::Host for HostState {
    async fn get_entry(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> KvResult<Option<extras::Entry>> {
        Ok(self.read(&bucket, &key)?.map(|entry| {
            entry.and_then(|e| {
                e.value.clone().map(|value| extras::Entry {
                    value,
                    metadata: e.metadata.clone(),
                    expires_at_ms: e.expires_at_ms,
                    version: e.version,
                })
            })
        }))
    }

    async fn set_with_options(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        metadata: Option<Vec<u8>>,
        ttl_seconds: Option<u64>,
    ) -> KvResult<()> {
        let namespace = self.namespace_of(&bucket)?;
        let op = WriteOp::Put {
            namespace,
            key,
            value,
            metadata,
            ttl_secs: ttl_seconds,
        };
        Ok(self.write(op).await.map(drop))
    }

    async fn compare_and_swap(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> KvResult<bool> {
        let namespace = self.namespace_of(&bucket)?;
        let op = WriteOp::CompareAndSwap {
            namespace,
            key,
            expected,
            value,
        };
        Ok(match self.write(op).await {
            Ok(OpResult::Swapped(swapped)) => Ok(swapped),
            Ok(other) => Err(store::Error::Other(format!("unexpected result {other:?}"))),
            Err(err) => Err(err),
        })
    }

    async fn list_prefix(
        &mut self,
        bucket: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> KvResult<(Vec<String>, Option<String>)> {
        let namespace = self.namespace_of(&bucket)?;
        let limit = (limit as usize).clamp(1, paging::MAX_PAGE);
        Ok(self.keys_page(&namespace, &prefix, cursor.as_deref(), limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Advice {
        fn status(self) -> &'static str {
            match self {
                Advice::Unavailable => "503",
                Advice::RateLimited => "429",
                Advice::Limit => "413",
            }
        }
    }

    /// Every SDK knows every prefix the host says, and answers the status it stands for.
    #[test]
    fn every_sdk_turns_every_kv_advice_into_its_status() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
        for source in ["src/kv/wasi.rs", "js/src/errors.js", "python/outpost/kv.py"] {
            let text = std::fs::read_to_string(sdk.join(source)).unwrap();
            for advice in Advice::ALL {
                // The Rust SDK names its statuses.
                let status = match (source, advice) {
                    ("src/kv/wasi.rs", Advice::Unavailable) => "SERVICE_UNAVAILABLE",
                    ("src/kv/wasi.rs", Advice::RateLimited) => "TOO_MANY_REQUESTS",
                    ("src/kv/wasi.rs", Advice::Limit) => "payload_too_large",
                    _ => advice.status(),
                };
                assert!(
                    text.contains(advice.prefix()) && text.contains(status),
                    "guest-sdk/{source} does not turn {:?} into {status}",
                    advice.prefix()
                );
            }
        }
    }
}
