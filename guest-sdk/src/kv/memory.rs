//! The KV off wasm: an in-memory store per test thread with the node's semantics (a version per
//! write, expiry, prefix paging after a cursor), so a handler's unit tests run on the host.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Entry, KeyValue, Page};
use crate::{Error, Result};

/// The most keys one page returns, as on the node.
const PAGE_LIMIT: u32 = 1000;

#[derive(Default)]
struct Memory {
    namespaces: HashMap<String, BTreeMap<String, Entry>>,
    /// The last version given to a write, as the origin numbers them.
    version: u64,
}

std::thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::default();
}

/// Empty every namespace of this thread's store.
pub(crate) fn reset() {
    MEMORY.with(|memory| *memory.borrow_mut() = Memory::default());
}

pub(super) struct Bucket(String);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Bucket {
    pub(super) fn open(namespace: &str) -> Result<Bucket> {
        if namespace.is_empty() {
            return Err(Error::internal("a KV namespace needs a name"));
        }
        Ok(Bucket(namespace.to_string()))
    }

    /// Run `f` on this namespace with expired entries already gone.
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>, &mut u64) -> T) -> T {
        MEMORY.with(|memory| {
            let memory = &mut *memory.borrow_mut();
            let entries = memory.namespaces.entry(self.0.clone()).or_default();
            let now = now_ms();
            entries.retain(|_, entry| entry.expires_at_ms.is_none_or(|at| at > now));
            f(entries, &mut memory.version)
        })
    }

    fn write(&self, key: &str, value: &[u8], metadata: Option<&[u8]>, ttl_seconds: Option<u64>) {
        self.with(|entries, version| {
            *version += 1;
            entries.insert(
                key.to_string(),
                Entry {
                    value: value.to_vec(),
                    metadata: metadata.map(<[u8]>::to_vec),
                    expires_at_ms: ttl_seconds.map(|ttl| now_ms() + ttl * 1000),
                    version: *version,
                },
            );
        })
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key)?.map(|entry| entry.value))
    }

    pub(super) fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.with(|entries, _| entries.get(key).cloned()))
    }

    pub(super) fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.with(|entries, _| entries.contains_key(key)))
    }

    pub(super) fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.write(key, value, None, None);
        Ok(())
    }

    pub(super) fn set_with(
        &self,
        key: &str,
        value: &[u8],
        metadata: Option<&[u8]>,
        ttl_seconds: Option<u64>,
    ) -> Result<()> {
        if metadata.is_some_and(|m| m.len() > 1024) {
            return Err(Error::payload_too_large("KV metadata is larger than 1 KiB"));
        }
        self.write(key, value, metadata, ttl_seconds);
        Ok(())
    }

    pub(super) fn delete(&self, key: &str) -> Result<()> {
        self.with(|entries, version| {
            *version += 1;
            entries.remove(key);
        });
        Ok(())
    }

    pub(super) fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        let current = match self.get(key)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| Error::internal(format!("KV value at {key:?} is not a counter")))?,
        };
        let next = current.wrapping_add(delta);
        self.write(key, next.to_string().as_bytes(), None, None);
        Ok(next)
    }

    pub(super) fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool> {
        if self.get(key)?.as_deref() != expected {
            return Ok(false);
        }
        self.write(key, value, None, None);
        Ok(true)
    }

    pub(super) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>> {
        keys.iter()
            .map(|key| Ok(self.get(key)?.map(|value| (key.clone(), value))))
            .collect()
    }

    pub(super) fn set_many(&self, items: &[KeyValue]) -> Result<()> {
        for (key, value) in items {
            self.write(key, value, None, None);
        }
        Ok(())
    }

    pub(super) fn delete_many(&self, keys: &[String]) -> Result<()> {
        keys.iter().try_for_each(|key| self.delete(key))
    }

    /// `wasi:keyvalue`'s paging: the cursor is the number of keys already returned.
    pub(super) fn list_keys(&self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>)> {
        let skip = cursor.unwrap_or(0) as usize;
        Ok(self.with(|entries, _| {
            let keys: Vec<String> = entries
                .keys()
                .skip(skip)
                .take(PAGE_LIMIT as usize)
                .cloned()
                .collect();
            let next = (skip + keys.len() < entries.len()).then_some((skip + keys.len()) as u64);
            (keys, next)
        }))
    }

    pub(super) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page> {
        let limit = limit.clamp(1, PAGE_LIMIT) as usize;
        Ok(self.with(|entries, _| {
            let mut keys: Vec<String> = entries
                .keys()
                .filter(|key| key.starts_with(prefix) && cursor.is_none_or(|c| key.as_str() > c))
                .take(limit + 1)
                .cloned()
                .collect();
            let more = keys.len() > limit;
            keys.truncate(limit);
            let cursor = if more { keys.last().cloned() } else { None };
            Page { keys, cursor }
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::kv::{SetOptions, Store};

    #[test]
    fn the_in_memory_store_behaves_as_the_node_does() {
        crate::testing::reset();
        let store = Store::open("test").unwrap();
        assert_eq!(store.increment("n", 2).unwrap(), 2);
        assert_eq!(store.increment("n", 3).unwrap(), 5);
        assert!(store.compare_and_swap("k", None, "a").unwrap());
        assert!(!store.compare_and_swap("k", None, "b").unwrap());
        assert!(store.compare_and_swap("k", Some(b"a"), "b").unwrap());
        assert_eq!(store.get_text("k").unwrap().as_deref(), Some("b"));

        store
            .set_with(
                "meta",
                "v",
                SetOptions {
                    metadata: Some(b"m".to_vec()),
                    ttl_seconds: Some(60),
                },
            )
            .unwrap();
        let entry = store.get_entry("meta").unwrap().unwrap();
        assert_eq!(entry.metadata.as_deref(), Some(&b"m"[..]));
        assert!(entry.expires_at_ms.is_some());
        assert!(entry.version > store.get_entry("k").unwrap().unwrap().version);

        for n in 0..5 {
            store.set(&format!("doc/{n}"), "x").unwrap();
        }
        let first = store.list("doc/", None, 2).unwrap();
        assert_eq!(first.keys, ["doc/0", "doc/1"]);
        let second = store.list("doc/", first.cursor.as_deref(), 10).unwrap();
        assert_eq!(second.keys, ["doc/2", "doc/3", "doc/4"]);
        assert_eq!(second.cursor, None);
        assert_eq!(store.keys().unwrap().len(), 8);

        store
            .delete_many(&["doc/0".into(), "absent".into()])
            .unwrap();
        assert!(!store.exists("doc/0").unwrap());
        crate::testing::reset();
        assert_eq!(store.get("n").unwrap(), None);
    }
}
