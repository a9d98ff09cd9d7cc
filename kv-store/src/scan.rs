//! Listing a redb table of entries keyed by (namespace, key): the one range scan the replica's
//! and the authority's stores share.

use redb::ReadableTable;

use crate::authority::StorageError;

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
