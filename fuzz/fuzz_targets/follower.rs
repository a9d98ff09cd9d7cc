//! A node's replication state machine fed an arbitrary run of events: messages from the origin
//! and from peers (any of them lying), writes, applies that succeed or fail, and clock ticks.
//! Invariants: `applied` never goes back and never passes what the origin said or signed; one
//! batch is handed out at a time; a node never claims or serves more than it has applied.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_kv::{
    Batch, Entry, Follower, FollowerConfig, FromOrigin, Head, Output, PeerMsg, SnapshotPart,
    WriteAck, WriteOp,
};

#[derive(Arbitrary, Debug)]
enum Event {
    OriginUp,
    OriginDown,
    OriginBatch { from: u16, through: u16, keys: Vec<u8> },
    OriginPart { after: Option<u8>, keys: Vec<u8>, started_at: u16, last: bool },
    OriginHead { version: u16, signed: bool },
    WriteResult { id: u8, version: Option<u16> },
    PeerUp(u8),
    PeerDown(u8),
    PeerDigest { peer: u8, through: u64 },
    PeerBatch { peer: u8, from: u64, through: u64, versions: Vec<u64> },
    PeerHead { peer: u8, version: u64, signed: bool },
    PeerPull { peer: u8, from: u64 },
    Submit { key: u8 },
    Applied,
    ApplyFailed,
    Tick { ms: u16 },
}

fn entry(key: u8, version: u64) -> Entry {
    Entry {
        namespace: "app/ns".into(),
        key: format!("k{key}"),
        value: Some(vec![key]),
        metadata: None,
        expires_at_ms: None,
        version,
        committed_at_us: 0,
    }
}

fn head(version: u64, signed: bool) -> Head {
    Head {
        version,
        proof: if signed { b"origin".to_vec() } else { b"forged".to_vec() },
    }
}

fuzz_target!(|events: Vec<Event>| {
    let config = FollowerConfig {
        write_timeout: Duration::from_millis(300),
        gap_timeout: Duration::from_millis(60),
        digest_interval: Duration::from_millis(40),
    };
    let mut follower =
        Follower::new(config, 0, 0).with_head_check(Arc::new(|h: &Head| h.proof == b"origin"));
    let mut now = 0u64;
    // The most the origin has said exists, by any channel, or signed.
    let mut vouched = 0u64;
    let mut applied = 0u64;
    let mut outstanding: Option<u64> = None;
    for event in events {
        match event {
            Event::OriginUp => follower.origin_connected(now),
            Event::OriginDown => follower.origin_disconnected(now),
            Event::OriginBatch { from, through, keys } => {
                let (from, through) = (u64::from(from), u64::from(through));
                vouched = vouched.max(through);
                let entries = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| entry(*k, from + 1 + i as u64))
                    .filter(|e| e.version <= through)
                    .collect();
                follower.on_origin(FromOrigin::Batch(Batch { from, through, entries }), now);
            }
            Event::OriginPart { after, keys, started_at, last } => {
                let started_at = u64::from(started_at);
                vouched = vouched.max(started_at);
                let mut keys = keys;
                keys.sort_unstable();
                keys.dedup();
                let part = SnapshotPart {
                    started_at,
                    after: after.map(|k| ("app/ns".to_string(), format!("k{k}"))),
                    entries: keys.iter().map(|k| entry(*k, started_at)).collect(),
                    last,
                };
                follower.on_origin(FromOrigin::SnapshotPart(part), now);
            }
            Event::OriginHead { version, signed } => {
                // The node's own link is authenticated by TLS: the origin's heads are believed
                // whatever their proof; only heads passed on by peers are checked.
                vouched = vouched.max(u64::from(version));
                follower.on_origin(FromOrigin::Head(head(version.into(), signed)), now);
            }
            Event::WriteResult { id, version } => {
                let outcome = match version {
                    Some(v) => {
                        vouched = vouched.max(u64::from(v));
                        Ok(WriteAck {
                            entries: vec![entry(id, v.into())],
                            result: outpost_kv::OpResult::Done,
                        })
                    }
                    None => Err(outpost_kv::WriteError::Unavailable("fuzz".into())),
                };
                follower.on_origin(FromOrigin::WriteResult { id: id.into(), outcome }, now);
            }
            Event::PeerUp(p) => follower.peer_connected(&p.to_string()),
            Event::PeerDown(p) => follower.peer_disconnected(&p.to_string()),
            Event::PeerDigest { peer, through } => {
                follower.on_peer(&peer.to_string(), PeerMsg::Digest { through }, now)
            }
            Event::PeerBatch { peer, from, through, versions } => {
                let entries = versions.iter().map(|v| entry((*v % 7) as u8, *v)).collect();
                let batch = Batch { from, through, entries };
                follower.on_peer(&peer.to_string(), PeerMsg::Batch(batch), now);
            }
            Event::PeerHead { peer, version, signed } => {
                if signed {
                    vouched = vouched.max(version);
                }
                follower.on_peer(&peer.to_string(), PeerMsg::Head(head(version, signed)), now);
            }
            Event::PeerPull { peer, from } => {
                follower.on_peer(&peer.to_string(), PeerMsg::Pull { from }, now)
            }
            Event::Submit { key } => {
                let op = WriteOp::Delete {
                    namespace: "app/ns".into(),
                    key: format!("k{key}"),
                };
                let _ = follower.submit_write(op, now);
            }
            Event::Applied => {
                if let Some(through) = outstanding.take() {
                    follower.applied(through, now);
                    applied = applied.max(through);
                }
            }
            Event::ApplyFailed => {
                if let Some(through) = outstanding.take() {
                    follower.apply_failed(through, now);
                }
            }
            Event::Tick { ms } => {
                now += u64::from(ms);
                follower.tick(now);
            }
        }
        while let Some(output) = follower.poll_output() {
            match output {
                Output::Apply(batch) => {
                    assert!(outstanding.is_none(), "a second batch while one is applying");
                    assert!(batch.through > applied, "{batch:?} brings nothing past {applied}");
                    assert!(batch.through <= vouched, "{batch:?} past what the origin vouched ({vouched})");
                    outstanding = Some(batch.through);
                }
                Output::ServePull { through, .. } => assert!(through <= applied),
                Output::ToPeer(_, PeerMsg::Digest { through }) => assert!(through <= applied),
                _ => {}
            }
        }
        assert_eq!(follower.applied_version(), applied);
        assert!(follower.known_version() <= vouched.max(applied));
    }
});
