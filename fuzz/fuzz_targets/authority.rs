//! The origin's authority fed an arbitrary run of writes (every kind, from several writers,
//! retried ids included), compactions, reclaiming sweeps and clock moves, under small quotas.
//! Invariants: versions follow one another; each app's counted bytes equal what its keys take;
//! a replica that followed every commit, and one that left and came back through a catch-up
//! (log or snapshot, in small steps, through the real Follower), both read as the origin does.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_kv::authority::{AuthorityStore, IncomingWrite};
use outpost_kv::protocol::encode;
use outpost_kv::quota::{Quota, QuotaPolicy};
use outpost_kv::scope::tenant_of;
use outpost_kv::{
    Authority, CatchUp, Entry, Follower, FollowerConfig, MemoryAuthorityStore, MemoryReplica,
    Output, ReplicaStore, WriteOp,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Put { key: u8, len: u8, ttl: Option<u8> },
    Delete { key: u8 },
    Increment { key: u8, delta: i8 },
    Swap { key: u8, expected: Option<u8>, value: u8 },
    PutMany { keys: Vec<u8> },
    DeleteMany { keys: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Step {
    Write { writer: bool, id: u8, app: bool, op: Op },
    Compact { keep: u8 },
    Reclaim { keys: u8 },
    Advance { ms: u16 },
    /// The late replica stops following (it comes back at the end).
    Leave,
}

fn namespace(app: bool) -> String {
    if app { "a/ns".into() } else { "b/ns".into() }
}

fn op(app: bool, op: Op) -> WriteOp {
    let namespace = namespace(app);
    let key = |k: u8| format!("k{}", k % 16);
    match op {
        Op::Put { key: k, len, ttl } => WriteOp::Put {
            namespace,
            key: key(k),
            value: vec![k; usize::from(len) * 4],
            metadata: None,
            ttl_secs: ttl.map(u64::from),
        },
        Op::Delete { key: k } => WriteOp::Delete { namespace, key: key(k) },
        Op::Increment { key: k, delta } => WriteOp::Increment {
            namespace,
            key: key(k),
            delta: delta.into(),
        },
        Op::Swap { key: k, expected, value } => WriteOp::CompareAndSwap {
            namespace,
            key: key(k),
            expected: expected.map(|e| vec![e]),
            value: vec![value],
        },
        Op::PutMany { keys } => WriteOp::PutMany {
            namespace,
            items: keys.iter().map(|k| (key(*k), vec![*k])).collect(),
        },
        Op::DeleteMany { keys } => WriteOp::DeleteMany {
            namespace,
            keys: keys.iter().map(|k| key(*k)).collect(),
        },
    }
}

fn live(entries: impl IntoIterator<Item = Entry>, now_ms: u64) -> BTreeMap<(String, String), Entry> {
    entries
        .into_iter()
        .filter(|e| e.is_live(now_ms))
        .map(|e| ((e.namespace.clone(), e.key.clone()), e))
        .collect()
}

fn current(authority: &Authority<MemoryAuthorityStore>) -> Vec<Entry> {
    authority.snapshot_after(None, usize::MAX).unwrap().0
}

fuzz_target!(|steps: Vec<Step>| {
    let quotas = QuotaPolicy {
        default: Quota { max_bytes: 4_000, writes_per_second: 40 },
        ..Default::default()
    };
    let mut authority = Authority::with_quotas(MemoryAuthorityStore::default(), quotas);
    let following = MemoryReplica::default();
    let late = MemoryReplica::default();
    let mut late_follows = true;
    let mut now_ms = 1_000u64;
    for step in steps {
        match step {
            Step::Write { writer, id, app, op: o } => {
                let write = IncomingWrite {
                    writer: if writer { "edge-1".into() } else { "edge-2".into() },
                    id: id.into(),
                    op: op(app, o),
                };
                let before = authority.last_version();
                let (outcomes, batch) = authority.write_all(vec![write], now_ms, now_ms * 1000).unwrap();
                assert_eq!(outcomes.len(), 1);
                match &batch {
                    Some(batch) => {
                        assert_eq!(batch.from, before);
                        assert_eq!(batch.through, authority.last_version());
                        let versions: Vec<u64> = batch.entries.iter().map(|e| e.version).collect();
                        assert_eq!(versions, (before + 1..=batch.through).collect::<Vec<_>>());
                        following.apply(&batch.entries, Some(batch.through)).unwrap();
                        if late_follows {
                            late.apply(&batch.entries, Some(batch.through)).unwrap();
                        }
                    }
                    None => assert_eq!(authority.last_version(), before),
                }
            }
            Step::Compact { keep } => authority.compact(keep.into()).unwrap(),
            Step::Reclaim { keys } => {
                authority.reclaim(None, usize::from(keys).max(1), now_ms).unwrap();
            }
            Step::Advance { ms } => now_ms += u64::from(ms) * 10,
            Step::Leave => late_follows = false,
        }
        // Each app's bytes are exactly what its keys take.
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for entry in current(&authority) {
            *counted.entry(tenant_of(&entry.namespace).to_string()).or_default() +=
                encode(&entry).len() as u64;
        }
        for tenant in ["a", "b"] {
            let used = authority.store().used_bytes(tenant).unwrap();
            assert_eq!(used, counted.get(tenant).copied().unwrap_or(0), "{tenant}");
        }
    }
    let truth = live(current(&authority), now_ms);
    assert_eq!(live(following.dump().into_values(), now_ms), truth);

    // The late replica comes back, through the real follower, in small steps.
    let mut follower = Follower::new(FollowerConfig::default(), late.applied(), 0);
    follower.origin_connected(0);
    let mut catch_up = CatchUp::new(late.applied());
    while let Some(message) = catch_up.next(&authority, 64).unwrap() {
        follower.on_origin(message, 1);
        while let Some(output) = follower.poll_output() {
            match output {
                Output::ApplyPart(part) => {
                    late.apply_part(&part).unwrap();
                }
                Output::Apply(batch) => {
                    late.apply(&batch.entries, Some(batch.through)).unwrap();
                    follower.applied(batch.through, 1);
                }
                Output::ApplyEarly(entries) => late.apply(&entries, None).unwrap(),
                _ => {}
            }
        }
    }
    assert_eq!(late.applied(), authority.last_version());
    assert_eq!(live(late.dump().into_values(), now_ms), truth);
});
