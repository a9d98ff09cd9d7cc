//! What one tenant may take of the KV at the origin: bytes stored and writes per second.
//!
//! A tenant is the part of a namespace before its first `/` (nodes qualify every namespace as
//! `APP/NAME`, so a tenant is an app). Bytes are counted as the store holds them (each key's
//! latest entry, encoded; a tombstone or an expired entry counts until it is reclaimed), kept by
//! the store itself in the same commit as the entries. Writes are metered by a token bucket per
//! tenant that refills at the rate and holds one second's worth; each key a write changes takes a
//! token. Neither meter stops a write that frees space: deletes always go through.

use std::collections::HashMap;

/// One tenant's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most bytes the tenant's keys may take in the store (each key's latest entry, encoded).
    pub max_bytes: u64,
    /// Keys the tenant's writes may change per second; a bucket holds one second's worth.
    pub writes_per_second: u32,
}

impl Quota {
    /// No limit on bytes or writes: every tenant's quota unless a policy says otherwise.
    pub const UNLIMITED: Quota = Quota {
        max_bytes: u64::MAX,
        writes_per_second: u32::MAX,
    };
}

/// The allowance of every tenant: a default, and some tenants' own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// The quota of every tenant not listed in `tenants`.
    pub default: Quota,
    /// Quotas of particular tenants (by app name), in place of `default`.
    pub tenants: HashMap<String, Quota>,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            default: Quota::UNLIMITED,
            tenants: HashMap::new(),
        }
    }
}

impl QuotaPolicy {
    /// The quota `tenant` is held to: its own, or else the default.
    pub fn of(&self, tenant: &str) -> Quota {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// The write-rate meters, one token bucket per tenant (in memory: a restarted origin starts
/// every tenant with a full second's allowance).
#[derive(Debug, Default)]
pub struct RateMeters {
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl RateMeters {
    /// Take `count` tokens from `tenant`'s bucket at `now_ms`; false (taking none) if it holds
    /// fewer.
    pub fn take(&mut self, tenant: &str, rate: u32, count: u32, now_ms: u64) -> bool {
        if rate == u32::MAX {
            return true;
        }
        let capacity = f64::from(rate.max(1));
        let bucket = self.buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: capacity,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * f64::from(rate)).min(capacity);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens >= f64::from(count) {
            bucket.tokens -= f64::from(count);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_the_rate() {
        let mut meters = RateMeters::default();
        assert!(meters.take("a", 10, 10, 0));
        assert!(
            !meters.take("a", 10, 1, 0),
            "the second's allowance is spent"
        );
        assert!(meters.take("b", 10, 1, 0), "another tenant has its own");
        assert!(!meters.take("a", 10, 2, 100));
        assert!(meters.take("a", 10, 1, 100), "100 ms refills one");
        assert!(
            meters.take("a", 10, 10, 60_000),
            "never more than a second's worth"
        );
        assert!(!meters.take("a", 10, 1, 60_000));
        assert!(meters.take("u", u32::MAX, 1_000_000, 0));
    }
}
