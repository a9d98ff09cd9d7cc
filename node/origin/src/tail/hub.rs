//! The origin's side: who watches which app, and the records nodes send for them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use outpost_core::wire::RequestRecord;

/// Records between the node sessions and the tail clients; a slow client loses the oldest.
const BUFFER: usize = 16_384;

/// Counts tail clients per app and fans the records nodes send out to them.
pub struct TailHub {
    watchers: Mutex<BTreeMap<String, usize>>,
    apps: watch::Sender<Vec<String>>,
    records: broadcast::Sender<Arc<RequestRecord>>,
}

impl Default for TailHub {
    fn default() -> Self {
        TailHub {
            watchers: Mutex::new(BTreeMap::new()),
            apps: watch::channel(Vec::new()).0,
            records: broadcast::channel(BUFFER).0,
        }
    }
}

/// A tail client's subscription; dropping it stops the records if it was the app's last one.
pub struct TailWatch {
    hub: Arc<TailHub>,
    app: String,
    /// Every app's records; the client keeps its own app's (a lagging one loses the oldest).
    pub records: broadcast::Receiver<Arc<RequestRecord>>,
}

impl TailHub {
    /// Start watching `app`.
    pub fn watch(self: &Arc<Self>, app: &str) -> TailWatch {
        let records = self.records.subscribe();
        self.change(app, |count| *count += 1);
        TailWatch {
            hub: self.clone(),
            app: app.to_string(),
            records,
        }
    }

    /// The apps watched now, and every change, for the node sessions.
    pub fn apps(&self) -> watch::Receiver<Vec<String>> {
        self.apps.subscribe()
    }

    /// Pass a node's record to every tail client; dropped if none is listening.
    pub fn publish(&self, record: RequestRecord) {
        let _ = self.records.send(Arc::new(record));
    }

    fn change(&self, app: &str, update: impl FnOnce(&mut usize)) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let count = watchers.entry(app.to_string()).or_insert(0);
        update(count);
        if *count == 0 {
            watchers.remove(app);
        }
        let apps: Vec<String> = watchers.keys().cloned().collect();
        self.apps.send_if_modified(|current| {
            let changed = *current != apps;
            *current = apps;
            changed
        });
    }
}

impl Drop for TailWatch {
    fn drop(&mut self) {
        self.hub
            .change(&self.app, |count| *count = count.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_told_the_watched_apps_until_the_last_watcher_leaves() {
        let hub = Arc::new(TailHub::default());
        let apps = hub.apps();
        let first = hub.watch("shop");
        let second = hub.watch("shop");
        let blog = hub.watch("blog");
        assert_eq!(*apps.borrow(), ["blog", "shop"]);
        drop(first);
        assert_eq!(*apps.borrow(), ["blog", "shop"]);
        drop(second);
        drop(blog);
        assert!(apps.borrow().is_empty());
    }
}
