//! Walking a redb table of entries keyed by (namespace, key): the listing, the snapshot read
//! and the reclaiming sweep the replica's and the authority's stores share.

use std::ops::Bound;

use redb::ReadableTable;

use crate::authority::within_budget;
use crate::error::StorageError;
use crate::model::{Entry, KeyInfo, Sweep, decode_key_info};

/// Up to `limit` rows of `table` in `namespace` whose keys start with `prefix`, after the key
/// `after` if given, in key order, each read by `read` from its stored bytes.
pub(crate) fn scan_prefix<T>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    namespace: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    read: impl Fn(&[u8]) -> Result<T, StorageError>,
) -> Result<Vec<T>, StorageError> {
    let start = after.map_or(prefix, |a| a.max(prefix));
    let mut found = Vec::new();
    for item in table.range((namespace, start)..)? {
        let (key, value) = item?;
        let (ns, k) = key.value();
        if ns != namespace || !k.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| k <= a) {
            continue;
        }
        found.push(read(value.value())?);
        if found.len() >= limit {
            break;
        }
    }
    Ok(found)
}

/// Rows of `table` in key order after the key `after`, each read by `read`, stopping after
/// about `max_bytes` of entries (at least one); and whether rows remain past them.
pub(crate) fn snapshot_after(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    after: Option<&(String, String)>,
    max_bytes: usize,
    read: impl Fn(&[u8]) -> Result<Entry, StorageError>,
) -> Result<(Vec<Entry>, bool), StorageError> {
    let start = match after {
        Some((namespace, key)) => Bound::Excluded((namespace.as_str(), key.as_str())),
        None => Bound::Unbounded,
    };
    let entries = table
        .range::<(&str, &str)>((start, Bound::Unbounded))?
        .map(|item| {
            item.map_err(StorageError::from)
                .and_then(|(_, v)| read(v.value()))
        });
    within_budget(entries, max_bytes)
}

/// A key removed by [`sweep`], with the version its entry had and the bytes it took.
pub(crate) struct Removed {
    pub namespace: String,
    pub key: String,
    pub version: u64,
    pub bytes: u64,
}

/// Look at up to `max_keys` rows of `table` in key order after `after`, and remove those whose
/// entry `doomed` picks; the sweep both stores share. Returns where it stopped and what went.
pub(crate) fn sweep(
    table: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    after: Option<&(String, String)>,
    max_keys: usize,
    doomed: impl Fn(&KeyInfo) -> bool,
) -> Result<(Sweep, Vec<Removed>), StorageError> {
    let start = match after {
        Some((namespace, key)) => Bound::Excluded((namespace.as_str(), key.as_str())),
        None => Bound::Unbounded,
    };
    sweep_range(table, start, Bound::Unbounded, max_keys, |_, _, info| {
        doomed(info)
    })
}

/// [`sweep`] over the rows between `start` and `end`, with `doomed` shown each row's namespace
/// and key as well.
pub(crate) fn sweep_range(
    table: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    start: Bound<(&str, &str)>,
    end: Bound<(&str, &str)>,
    max_keys: usize,
    doomed: impl Fn(&str, &str, &KeyInfo) -> bool,
) -> Result<(Sweep, Vec<Removed>), StorageError> {
    let mut walked = 0;
    let mut last = None;
    let mut removed = Vec::new();
    for item in table.range::<(&str, &str)>((start, end))? {
        if walked == max_keys {
            break;
        }
        let (key, value) = item?;
        let (namespace, k) = key.value();
        let info = decode_key_info(value.value())
            .map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))?;
        if doomed(namespace, k, &info) {
            removed.push(Removed {
                namespace: namespace.to_string(),
                key: k.to_string(),
                version: info.version,
                bytes: value.value().len() as u64,
            });
        }
        walked += 1;
        last = Some((namespace.to_string(), k.to_string()));
    }
    for gone in &removed {
        table.remove((gone.namespace.as_str(), gone.key.as_str()))?;
    }
    let sweep = Sweep {
        removed: removed.len(),
        next: if walked == max_keys { last } else { None },
    };
    Ok((sweep, removed))
}
