//! What the replication simulations share: a seedable generator, the simulated origin's
//! signature on heads, the writes nodes make, and the checks every run ends with (replicas
//! converged to the origin's state, no acknowledged write lost, counters exact within what is
//! unknown).

#![allow(dead_code, unreachable_pub)] // each simulation uses its own part; `pub` is for them

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_kv::{
    Entry, Head, HeadCheck, MemoryReplica, OpResult, ReplicaStore, WriteError, WriteOp,
    WriteOutcome,
};

/// A small, fast, seedable generator (splitmix64): the simulation must not depend on a crate's
/// idea of randomness across versions.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
}

/// Run seed `seed` with `run`; a panic fails the test naming the seed and how to replay it
/// (`replay`: the command, with the seed variable set).
pub fn seeded<T>(seed: u64, replay: &str, run: impl FnOnce() -> T + std::panic::UnwindSafe) -> T {
    match std::panic::catch_unwind(run) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("seed {seed} failed: {message}\nreplay: {replay}");
        }
    }
}

/// The simulated origin's signature on a head: nodes check it, a Byzantine peer or relay
/// cannot make it.
pub fn proof_for(version: u64) -> Vec<u8> {
    (version ^ 0x0123_4567_89ab_cdef).to_le_bytes().to_vec()
}

pub fn signed_head(version: u64) -> Head {
    Head {
        version,
        proof: proof_for(version),
    }
}

/// How nodes check heads: against [`proof_for`].
pub fn head_check() -> HeadCheck {
    Arc::new(|head: &Head| head.proof == proof_for(head.version))
}

pub const NAMESPACE: &str = "app/ns";
pub const COUNTERS: [&str; 2] = ["counter0", "counter1"];

/// A random write over `keys` keys and the two counters, as a handler at a node with
/// `replica` would make it (a compare-and-swap expects what the replica holds).
pub fn random_op(rng: &mut Rng, keys: u64, replica: &MemoryReplica) -> WriteOp {
    let namespace = NAMESPACE.to_string();
    let key = format!("k{}", rng.below(keys));
    match rng.below(7) {
        0 => WriteOp::Delete { namespace, key },
        6 => WriteOp::Put {
            namespace,
            key,
            value: rng.next().to_le_bytes().to_vec(),
            metadata: None,
            ttl_secs: Some(1),
        },
        1 | 2 => WriteOp::Increment {
            namespace,
            key: COUNTERS[rng.below(2) as usize].to_string(),
            delta: 1 + rng.below(5) as i64,
        },
        3 => {
            let expected = replica
                .get(&namespace, &key)
                .unwrap()
                .and_then(|e| e.value.clone());
            WriteOp::CompareAndSwap {
                namespace,
                key,
                expected,
                value: rng.next().to_le_bytes().to_vec(),
            }
        }
        _ => WriteOp::Put {
            namespace,
            key,
            value: rng.next().to_le_bytes().to_vec(),
            metadata: None,
            ttl_secs: None,
        },
    }
}

/// What reads see at `now`: the stores may differ in the dead entries each has yet to reclaim.
pub fn live(
    state: &BTreeMap<(String, String), Entry>,
    now: u64,
) -> BTreeMap<(String, String), Entry> {
    state
        .iter()
        .filter(|(_, e)| e.is_live(now))
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect()
}

/// No acknowledged write is lost: the origin's state `truth` holds each acked entry or a newer
/// one for its key (or the key was reclaimed, dead, at or after the acked version, as
/// `reclaimed` records); and each counter lies between the sum of acknowledged increments and
/// that plus the increments whose outcome is unknown.
pub fn check_acked<K: Ord>(
    truth: &BTreeMap<(String, String), Entry>,
    reclaimed: &BTreeMap<(String, String), u64>,
    submitted: &BTreeMap<K, WriteOp>,
    outcomes: &BTreeMap<K, WriteOutcome>,
) {
    let mut acked_sum: BTreeMap<String, i64> = BTreeMap::new();
    let mut unknown_sum: BTreeMap<String, i64> = BTreeMap::new();
    for (key, op) in submitted {
        match outcomes.get(key) {
            Some(Ok(ack)) => {
                for entry in &ack.entries {
                    let key = (entry.namespace.clone(), entry.key.clone());
                    let Some(now) = truth.get(&key) else {
                        assert!(
                            reclaimed.get(&key).is_some_and(|v| *v >= entry.version),
                            "acked write {key:?} lost: {entry:?}"
                        );
                        continue;
                    };
                    assert!(
                        now.version >= entry.version,
                        "acked write {key:?} lost: {entry:?} vs {now:?}"
                    );
                    if now.version == entry.version {
                        assert_eq!(now, entry, "acked entry changed");
                    }
                }
                if let (
                    WriteOp::Increment {
                        key: counter,
                        delta,
                        ..
                    },
                    OpResult::Counter(_),
                ) = (op, &ack.result)
                {
                    *acked_sum.entry(counter.clone()).or_default() += delta;
                }
            }
            Some(Err(WriteError::Unavailable(_))) | None => {
                if let WriteOp::Increment {
                    key: counter,
                    delta,
                    ..
                } = op
                {
                    *unknown_sum.entry(counter.clone()).or_default() += delta;
                }
            }
            Some(Err(_)) => {}
        }
    }
    for counter in COUNTERS {
        let value: i64 = truth
            .get(&(NAMESPACE.to_string(), counter.to_string()))
            .and_then(|e| e.value.as_ref())
            .map(|v| String::from_utf8_lossy(v).parse().unwrap())
            .unwrap_or(0);
        let acked = acked_sum.get(counter).copied().unwrap_or(0);
        let unknown = unknown_sum.get(counter).copied().unwrap_or(0);
        assert!(
            acked <= value && value <= acked + unknown,
            "{counter}: value {value}, acked increments {acked}, unknown {unknown}"
        );
    }
}
