//! A route table shared between the request path and whoever deploys: readers load the
//! current table without a lock; a deploy builds a whole new table and swaps it in at once, so
//! no request ever sees half of a change.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::RouteTable;

/// The current [`RouteTable`] behind an atomic pointer: lookups take no lock, and
/// [`SharedRoutes::swap`] replaces the whole table in one store.
pub struct SharedRoutes<T> {
    current: ArcSwap<RouteTable<T>>,
}

impl<T> SharedRoutes<T> {
    /// Start with `table` as the current table.
    pub fn new(table: RouteTable<T>) -> Self {
        SharedRoutes {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The table as of now. Holding the returned guard keeps that table alive; it does not
    /// block a swap.
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable<T>>> {
        self.current.load()
    }

    /// Replace the whole table.
    pub fn swap(&self, table: RouteTable<T>) {
        self.current.store(Arc::new(table));
    }
}

impl<T: Clone> SharedRoutes<T> {
    /// Look up in the current table and clone the value out.
    pub fn lookup(&self, host: &str, path: &str) -> Option<T> {
        self.current.load().lookup(host, path).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoutePattern;

    fn table(pattern: &str, value: u32) -> RouteTable<u32> {
        let mut builder = RouteTable::builder();
        builder
            .add(&RoutePattern::parse(pattern).unwrap(), value)
            .unwrap();
        builder.build()
    }

    #[test]
    fn swap_replaces_everything_at_once_and_old_guards_stay_valid() {
        let shared = SharedRoutes::new(table("a.com", 1));
        let before = shared.load();
        shared.swap(table("b.com", 2));
        assert_eq!(before.lookup("a.com", "/"), Some(&1));
        assert_eq!(shared.lookup("a.com", "/"), None);
        assert_eq!(shared.lookup("b.com", "/"), Some(2));
    }

    #[test]
    fn readers_on_other_threads_see_one_table_or_the_other() {
        let shared = Arc::new(SharedRoutes::new(table("x.com", 1)));
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    let v = shared.lookup("x.com", "/").unwrap();
                    assert!(v == 1 || v == 2);
                }
            })
        };
        for i in 0..1000 {
            shared.swap(table("x.com", 1 + (i % 2)));
        }
        reader.join().unwrap();
    }
}
