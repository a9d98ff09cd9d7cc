//! Request ids: short, unique within a node's lifetime, cheap to make on the hot path.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A request's id, shown as 16 hex digits on its log lines and tail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The next id: a per-process random start plus a counter, so ids from restarted or
    /// neighbouring nodes do not collide in practice.
    pub fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static START: OnceLock<u64> = OnceLock::new();
        let start = *START.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            // splitmix64 of time and pid: spreads nearby starts far apart.
            let mut z = nanos ^ (u64::from(std::process::id()) << 32);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        });
        RequestId(start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_fixed_width() {
        let a = RequestId::next();
        let b = RequestId::next();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 16);
    }
}
