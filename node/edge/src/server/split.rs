//! A gradual deployment on the request path: an app's traffic shared between versions by
//! percent, each client kept on one version.
//!
//! A request's version follows from its affinity key: the `outpost-version-key` header, else
//! the `outpost-version-key` cookie, else the client's address. The key and the app's name hash
//! (SHA-256, the same on every node and every build) to a bucket from 0 to 99, and the buckets
//! are dealt to the versions in order of the split: with `3=90 4=10`, buckets 0-89 get version 3
//! and 90-99 version 4. So every node sends a key to the same version, a key stays on its
//! version while the split holds, and moving a share from 10% to 20% moves only the keys of
//! buckets 80-89 (from the base version to the new one) when the split is written base first.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use outpost_core::wire::VersionShare;
use outpost_runtime::Deployment;
use sha2::{Digest, Sha256};

/// The header (and the cookie) a client names its affinity key in.
pub const VERSION_KEY: &str = "outpost-version-key";

/// An app's traffic shared between versions (deployed ones, `T`).
pub struct Split<T = Arc<Deployment>> {
    /// Each version with the upper end (exclusive) of its buckets, in the split's order.
    versions: Vec<(u32, VersionShare, T)>,
    /// The sum of the shares: 100 from any origin, but a node does not count on it.
    total: u32,
}

impl<T> Split<T> {
    /// A split by `shares`, in order (the app's active version first); `None` if no share is
    /// above 0.
    pub fn new(shares: Vec<(VersionShare, T)>) -> Option<Split<T>> {
        let mut total = 0u32;
        let versions: Vec<_> = shares
            .into_iter()
            .filter(|(share, _)| share.percent > 0)
            .map(|(share, deployment)| {
                total += u32::from(share.percent);
                (total, share, deployment)
            })
            .collect();
        (total > 0).then_some(Split { versions, total })
    }

    /// The version a request of `app` with affinity key `key` goes to.
    pub fn pick(&self, app: &str, key: &[u8]) -> &T {
        self.in_bucket(bucket(app, key))
    }

    fn in_bucket(&self, bucket: u32) -> &T {
        // Scaled onto the shares' sum (100, but a node does not count on it).
        let point = bucket.min(99) * self.total / 100;
        let (_, _, deployment) = self
            .versions
            .iter()
            .find(|(end, _, _)| point < *end)
            .unwrap_or_else(|| self.versions.last().expect("a split has a version"));
        deployment
    }

    /// The versions and their shares, in the split's order.
    pub fn shares(&self) -> impl Iterator<Item = VersionShare> + '_ {
        self.versions.iter().map(|(_, share, _)| *share)
    }

    /// The deployments the split sends requests to.
    pub fn deployments(&self) -> impl Iterator<Item = &T> {
        self.versions.iter().map(|(_, _, deployment)| deployment)
    }
}

/// The bucket (0 to 99) of affinity key `key` for `app`.
pub fn bucket(app: &str, key: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(app.as_bytes())
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (head % 100) as u32
}

/// The affinity key a request names: the `outpost-version-key` header, else the cookie of that
/// name; `None` if it names none (the client's address is the key then).
pub fn named_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(VERSION_KEY) {
        return Some(value.as_bytes());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == VERSION_KEY).then(|| value.trim().as_bytes())
        })
}

/// The client's address as an affinity key.
pub fn address_key(client: IpAddr) -> AddressKey {
    match client {
        IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
        IpAddr::V6(v6) => AddressKey::V6(v6.octets()),
    }
}

/// An address's bytes, held without allocating.
pub enum AddressKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 address.
    V6([u8; 16]),
}

impl AsRef<[u8]> for AddressKey {
    fn as_ref(&self) -> &[u8] {
        match self {
            AddressKey::V4(bytes) => bytes,
            AddressKey::V6(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split of version numbers standing for deployments.
    fn split(shares: &[(u64, u8)]) -> Split<u64> {
        Split::new(
            shares
                .iter()
                .map(|&(version, percent)| (VersionShare { version, percent }, version))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn buckets_go_to_versions_in_the_order_of_the_split() {
        let s = split(&[(3, 90), (4, 10)]);
        assert_eq!(*s.in_bucket(0), 3);
        assert_eq!(*s.in_bucket(89), 3);
        assert_eq!(*s.in_bucket(90), 4);
        assert_eq!(*s.in_bucket(99), 4);
        // Shares that do not add up to 100 still cover every bucket; 0% gets none.
        let odd = split(&[(1, 30), (2, 0), (3, 30)]);
        let got: Vec<u64> = (0..100).map(|b| *odd.in_bucket(b)).collect();
        assert!(got.iter().all(|v| *v != 2));
        assert_eq!(got.iter().filter(|v| **v == 1).count(), 50);
        assert!(
            Split::<u64>::new(vec![(
                VersionShare {
                    version: 1,
                    percent: 0
                },
                1
            )])
            .is_none()
        );
    }

    #[test]
    fn buckets_are_stable_and_spread_evenly() {
        assert_eq!(bucket("shop", b"user-1"), bucket("shop", b"user-1"));
        // The app is part of the hash: one key is not in the same bucket in every app.
        let differs = (0..100).any(|i| {
            let key = format!("k{i}");
            bucket("a", key.as_bytes()) != bucket("b", key.as_bytes())
        });
        assert!(differs);
        let mut counts = [0u32; 100];
        for i in 0..100_000 {
            counts[bucket("shop", format!("key-{i}").as_bytes()) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "{min}..{max}");
    }

    #[test]
    fn a_wider_share_only_takes_keys_from_the_base() {
        // 10% then 20% for version 4: keys move from 3 to 4 only, never back.
        for i in 0..10_000 {
            let b = bucket("shop", format!("key-{i}").as_bytes());
            let (before, after) = (
                *split(&[(3, 90), (4, 10)]).in_bucket(b),
                *split(&[(3, 80), (4, 20)]).in_bucket(b),
            );
            assert!(before == after || (before == 3 && after == 4));
        }
    }

    #[test]
    fn the_key_comes_from_the_header_then_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(named_key(&headers), None);
        headers.insert(
            http::header::COOKIE,
            "theme=dark; outpost-version-key=c-42; x=y".parse().unwrap(),
        );
        assert_eq!(named_key(&headers), Some(&b"c-42"[..]));
        headers.insert(VERSION_KEY, "h-7".parse().unwrap());
        assert_eq!(named_key(&headers), Some(&b"h-7"[..]));
        let v4 = address_key("192.0.2.1".parse().unwrap());
        assert_eq!(v4.as_ref(), &[192, 0, 2, 1]);
    }
}
