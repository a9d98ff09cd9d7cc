//! Listing keys a page at a time, the one way every lister does it: the guest's
//! `wasi:keyvalue` calls on a node and the origin's admin API (which `outpost kv list` follows).
//!
//! A page holds at most [`MAX_PAGE`] keys. The store is asked for one entry more than the page
//! holds ([`fetch_limit`]), which says whether another page follows without a second read. Dead
//! entries (tombstones, expired keys) take a place in the walk but are not shown, so a page may
//! hold fewer keys than asked and still not be the last one; the cursor is the last key walked,
//! shown or not, and the next page starts after it.

use crate::model::{Entry, KeyInfo};

/// The most keys one page holds.
pub const MAX_PAGE: usize = 1000;

/// What a listed item says about itself.
pub trait Listed {
    /// Its key, which the cursor is made of.
    fn key(&self) -> &str;
    /// Whether it is shown at `now_ms` (not a tombstone, not expired).
    fn is_live(&self, now_ms: u64) -> bool;
}

impl Listed for Entry {
    fn key(&self) -> &str {
        &self.key
    }

    fn is_live(&self, now_ms: u64) -> bool {
        Entry::is_live(self, now_ms)
    }
}

impl Listed for KeyInfo {
    fn key(&self) -> &str {
        &self.key
    }

    fn is_live(&self, now_ms: u64) -> bool {
        KeyInfo::is_live(self, now_ms)
    }
}

/// One page of a listing.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The live items of the page, in key order.
    pub items: Vec<T>,
    /// Where the next page starts (after this key); `None` on the last page.
    pub next: Option<String>,
}

/// How many entries to fetch for a page of `limit` keys.
pub fn fetch_limit(limit: usize) -> usize {
    limit + 1
}

/// The page of `limit` keys in `fetched`, which the store returned for [`fetch_limit`]`(limit)`.
pub fn page<T: Listed>(fetched: Vec<T>, limit: usize, now_ms: u64) -> Page<T> {
    let more = fetched.len() > limit;
    let mut next = None;
    let mut items = Vec::new();
    for item in fetched.into_iter().take(limit) {
        if more {
            next = Some(item.key().to_string());
        }
        if item.is_live(now_ms) {
            items.push(item);
        }
    }
    Page { items, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, present: bool, expires_at_ms: Option<u64>) -> KeyInfo {
        KeyInfo {
            key: name.into(),
            present,
            expires_at_ms,
            metadata: None,
            version: 1,
        }
    }

    #[test]
    fn a_full_page_points_past_its_last_key_shown_or_not() {
        let fetched = vec![
            key("a", true, None),
            key("b", false, None),
            key("c", true, Some(5)),
            key("d", true, None),
        ];
        let page = page(fetched, 3, 10);
        let shown: Vec<_> = page.items.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(shown, ["a"]);
        assert_eq!(page.next.as_deref(), Some("c"));
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let page = page(vec![key("a", true, None), key("b", true, None)], 2, 0);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next, None);
        assert_eq!(fetch_limit(2), 3);
    }
}
