//! Instance reuse, for apps that ask for it (`[instance] reuse`): an instance that answered a
//! request cleanly waits, idle, for the next request of the same deployment (one app version),
//! instead of going back to the pool. It never serves another deployment, and the request path
//! puts it back only after a clean return: a trap, a limit breach, a timeout or a client that
//! went away drops it.
//!
//! Idle instances keep their pool slot (and its permit), so they are bounded per deployment
//! (`[pool] idle_per_app`), dropped after [`IDLE_TTL`] without a request, and evicted, oldest
//! first, whenever a request finds every slot taken.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::host::HostState;

/// How long an idle instance waits for its next request before it is dropped.
pub(crate) const IDLE_TTL: Duration = Duration::from_secs(30);

/// A live instance: its store, its bindings, and the pool slot it holds.
pub(crate) struct Instance {
    pub store: Store<HostState>,
    pub proxy: Proxy,
    pub permit: OwnedSemaphorePermit,
}

/// Something waiting between two requests of its deployment.
pub(crate) struct Idle<T> {
    pub item: T,
    /// Requests it has served.
    pub served: u32,
    since: Instant,
}

impl<T> Idle<T> {
    pub(crate) fn new(item: T, served: u32) -> Self {
        Idle {
            item,
            served,
            since: Instant::now(),
        }
    }
}

/// One deployment's idle instances, most recently used last.
pub(crate) struct IdleInstances<T = Instance> {
    /// How many requests one instance serves; `None` when the app does not reuse instances.
    max_requests: Option<u32>,
    capacity: usize,
    idle: Mutex<Vec<Idle<T>>>,
}

impl<T> IdleInstances<T> {
    pub(crate) fn new(max_requests: Option<u32>, capacity: usize) -> Self {
        IdleInstances {
            max_requests: max_requests.filter(|_| capacity > 0),
            capacity,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_requests.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<T>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle instance (its pages are the likeliest to be warm).
    pub(crate) fn take(&self) -> Option<Idle<T>> {
        if !self.enabled() {
            return None;
        }
        self.lock().pop()
    }

    /// Keep `instance` for the next request, if it may serve more and there is room.
    pub(crate) fn put(&self, instance: Idle<T>) {
        let Some(max) = self.max_requests else {
            return;
        };
        if instance.served >= max {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.capacity {
            idle.push(instance);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drop instances idle for longer than `ttl`; how many.
    fn expire(&self, ttl: Duration) -> usize {
        let expired: Vec<Idle<T>> = {
            let mut idle = self.lock();
            let keep = idle.iter().position(|i| i.since.elapsed() < ttl);
            let cut = keep.unwrap_or(idle.len());
            idle.drain(..cut).collect()
        };
        expired.len()
    }

    /// Drop the least recently used instance; when it went idle, if there was one.
    fn evict_oldest(&self) -> Option<Instant> {
        let mut idle = self.lock();
        if idle.is_empty() {
            return None;
        }
        Some(idle.remove(0).since)
    }

    fn oldest(&self) -> Option<Instant> {
        self.lock().first().map(|i| i.since)
    }
}

/// A thread that drops instances idle for longer than [`IDLE_TTL`], so an app that stopped
/// getting requests gives its slots and memory back.
pub(crate) struct Sweeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    pub(crate) fn start(registry: Arc<IdleRegistry>) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("outpost-idle".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(Duration::from_secs(1));
                        registry.expire();
                    }
                }
            })
            .expect("spawning the idle-instance sweeper");
        Sweeper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Every deployment's idle instances on this node, for eviction and expiry.
pub(crate) struct IdleRegistry<T = Instance> {
    deployments: Mutex<Vec<Weak<IdleInstances<T>>>>,
}

impl<T> Default for IdleRegistry<T> {
    fn default() -> Self {
        IdleRegistry {
            deployments: Mutex::new(Vec::new()),
        }
    }
}

impl<T> IdleRegistry<T> {
    pub(crate) fn register(&self, idle: &Arc<IdleInstances<T>>) {
        if idle.enabled() {
            let mut list = self.deployments.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(idle));
        }
    }

    fn live(&self) -> Vec<Arc<IdleInstances<T>>> {
        let mut list = self.deployments.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    /// Free one pool slot: drop the idle instance that has waited longest, of any deployment.
    pub(crate) fn evict_one(&self) -> bool {
        let live = self.live();
        let oldest = live
            .iter()
            .filter_map(|d| d.oldest().map(|since| (since, d)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, deployment)) => deployment.evict_oldest().is_some(),
            None => false,
        }
    }

    /// Drop instances idle longer than [`IDLE_TTL`]; how many.
    pub(crate) fn expire(&self) -> usize {
        self.live().iter().map(|d| d.expire(IDLE_TTL)).sum()
    }

    /// Idle instances on this node.
    pub(crate) fn idle(&self) -> usize {
        self.live().iter().map(|d| d.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_most_recent_and_respects_capacity_and_max_requests() {
        let idle = IdleInstances::new(Some(3), 2);
        idle.put(Idle::new("a", 1));
        idle.put(Idle::new("b", 1));
        idle.put(Idle::new("c", 1)); // over capacity: dropped
        assert_eq!(idle.len(), 2);
        assert_eq!(idle.take().map(|i| i.item), Some("b"));
        idle.put(Idle::new("worn", 3)); // served its maximum: dropped
        assert_eq!(idle.len(), 1);
        assert_eq!(idle.take().map(|i| i.item), Some("a"));
        assert!(idle.take().is_none());
    }

    #[test]
    fn nothing_is_kept_without_reuse_or_without_room() {
        for idle in [
            IdleInstances::new(None, 16),
            IdleInstances::new(Some(100), 0),
        ] {
            assert!(!idle.enabled());
            idle.put(Idle::new((), 0));
            assert_eq!(idle.len(), 0);
        }
    }

    #[test]
    fn eviction_takes_the_longest_idle_of_any_deployment_and_expiry_the_stale() {
        let registry = IdleRegistry::default();
        let (first, second) = (
            Arc::new(IdleInstances::new(Some(10), 4)),
            Arc::new(IdleInstances::new(Some(10), 4)),
        );
        registry.register(&first);
        registry.register(&second);
        first.put(Idle::new("old", 1));
        std::thread::sleep(Duration::from_millis(5));
        second.put(Idle::new("new", 1));
        assert_eq!(registry.idle(), 2);
        assert!(registry.evict_one());
        assert_eq!((first.len(), second.len()), (0, 1));
        assert_eq!(second.expire(Duration::ZERO), 1);
        assert!(!registry.evict_one());
        drop(second);
        assert_eq!(registry.idle(), 0);
    }
}
