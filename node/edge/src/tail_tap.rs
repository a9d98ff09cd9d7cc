//! Live request logs, the node's side: offer a record for each request of a tailed app to the
//! cluster link, and nothing at all (one atomic flag on the request path) for apps nobody tails.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::broadcast;

use outpost_core::wire::RequestRecord;

/// Records waiting for the link at most; beyond, the oldest are dropped (and counted).
const BUFFER: usize = 4096;

/// Which apps the origin says are tailed, and the records of their requests on the way
/// to the cluster link.
pub struct TailTap {
    any: AtomicBool,
    apps: RwLock<HashSet<String>>,
    records: broadcast::Sender<RequestRecord>,
}

impl Default for TailTap {
    fn default() -> Self {
        TailTap {
            any: AtomicBool::new(false),
            apps: RwLock::new(HashSet::new()),
            records: broadcast::channel(BUFFER).0,
        }
    }
}

impl TailTap {
    /// Whether someone tails `app` (one atomic load while nobody tails anything).
    pub fn wants(&self, app: &str) -> bool {
        self.any.load(Ordering::Relaxed)
            && self
                .apps
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(app)
    }

    /// Hand a request's record to the link; dropped if no link is listening.
    pub fn offer(&self, record: RequestRecord) {
        let _ = self.records.send(record);
    }

    /// The apps the origin asks for now.
    pub fn set_apps(&self, apps: Vec<String>) {
        let mut current = self.apps.write().unwrap_or_else(|p| p.into_inner());
        *current = apps.into_iter().collect();
        self.any.store(!current.is_empty(), Ordering::Relaxed);
    }

    /// The records offered from now on, for the link to the origin; a lagging receiver loses
    /// the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<RequestRecord> {
        self.records.subscribe()
    }
}
