//! Deterministic simulation of KV replication: the real `Authority`, `OriginSession` and
//! `Follower` state machines (the origin's and the nodes' code, not a model of it), in-memory
//! stores, and a simulated network that delays, reorders, duplicates and
//! drops messages, partitions links, and crashes nodes and the origin. Each run is a function of
//! its seed.
//!
//! Beside the honest nodes, a Byzantine peer ("mallory", admitted as a peer of every node)
//! sends digests and batches claiming versions the origin never committed, forged heads, and
//! floods of pulls; and one node has a slow disk (each batch takes a while to be made durable).
//!
//! Invariants checked for every seed:
//! * per replica and per key, versions only grow;
//! * a replica's `applied` never goes back, across crashes too, and never passes the origin's
//!   last committed version (whatever the Byzantine peer claims);
//! * once the faults stop, every replica converges to the origin's state;
//! * no acknowledged write is lost: the origin and every replica hold each acked entry or a
//!   newer one for its key;
//! * counters: the final value lies between the sum of acknowledged increments and that plus
//!   the increments whose outcome is unknown (reported unavailable).
//!
//! `SIM_SEEDS=N` sets how many seeds run (default 2000); `SIM_SEED=S` replays one.

use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{Rng, check_acked, head_check, live, proof_for, random_op, seeded, signed_head};
use outpost_kv::authority::IncomingWrite;
use outpost_kv::{
    Authority, AuthorityStore, Batch, Follower, FollowerConfig, FromOrigin, Head, LinkProtocol,
    MemoryAuthorityStore, MemoryReplica, OriginSession, Output, PeerMsg, ReplicaStore, ToOrigin,
    WriteError, WriteOp, WriteOutcome,
};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Addr {
    Origin,
    Node(usize),
}

#[derive(Clone, Debug)]
enum Payload {
    ToOrigin(ToOrigin),
    FromOrigin(FromOrigin),
    Peer(PeerMsg),
}

const MALLORY: &str = "mallory";
/// The node whose disk is slow: each batch takes this many milliseconds to become durable.
const SLOW_NODE: usize = NODES - 1;
const SLOW_APPLY_MS: u64 = 40;

struct Node {
    follower: Option<Follower>,
    /// Batches being made durable on a slow disk: (done at, through).
    applying: Vec<(u64, u64)>,
    replica: MemoryReplica,
    boots: u64,
    /// key -> highest version ever held, to check versions only grow.
    seen: BTreeMap<(String, String), u64>,
    /// Where this replica's reclaiming sweep goes on from.
    sweep: Option<(String, String)>,
    applied_high: u64,
}

struct Sim {
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    store: MemoryAuthorityStore,
    origin: Option<Authority<MemoryAuthorityStore>>,
    /// The origin's session with each connected node that has subscribed.
    sessions: BTreeMap<usize, OriginSession>,
    queued_writes: Vec<(usize, u64, WriteOp)>,
    /// Links by (lower, higher) address; absent means up.
    cut: BTreeSet<(Addr, Addr)>,
    in_flight: BTreeMap<(u64, u64), (Addr, Addr, Payload)>,
    seq: u64,
    submitted: BTreeMap<(usize, u64), WriteOp>,
    outcomes: BTreeMap<(usize, u64), WriteOutcome>,
    faults: bool,
    /// Snapshot parts the origin sent: the runs must reach past the compacted log too.
    snapshot_parts: u64,
    /// Where the origin's reclaiming sweep goes on from.
    origin_sweep: Option<(String, String)>,
    /// Keys the origin reclaimed, with the version each had then.
    reclaimed_at_origin: BTreeMap<(String, String), u64>,
    /// Dead keys the replicas reclaimed, and keys snapshot parts removed from them.
    reclaimed_by_replicas: u64,
    vacated: u64,
}

/// Bytes of entries per catch-up step and per message: small, so catch-ups take many steps and
/// batches travel in several parts.
const STEP_BYTES: usize = 3 * 64;

/// Tombstones and expired entries a replica keeps: this many versions behind what it applied.
const REPLICA_KEEP: u64 = 6;

const NODES: usize = 4;
const KEYS: u64 = 6;

fn link(a: Addr, b: Addr) -> (Addr, Addr) {
    if a < b { (a, b) } else { (b, a) }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut sim = Sim {
            rng: Rng(seed),
            now: 0,
            nodes: (0..NODES)
                .map(|_| Node {
                    follower: None,
                    applying: Vec::new(),
                    replica: MemoryReplica::default(),
                    boots: 0,
                    seen: BTreeMap::new(),
                    sweep: None,
                    applied_high: 0,
                })
                .collect(),
            store: MemoryAuthorityStore::default(),
            origin: None,
            sessions: BTreeMap::new(),
            queued_writes: Vec::new(),
            cut: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            submitted: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            faults: true,
            snapshot_parts: 0,
            origin_sweep: None,
            reclaimed_at_origin: BTreeMap::new(),
            reclaimed_by_replicas: 0,
            vacated: 0,
        };
        sim.origin = Some(Authority::new(sim.store.clone()));
        for i in 0..NODES {
            sim.boot(i);
        }
        sim
    }

    fn config() -> FollowerConfig {
        FollowerConfig {
            write_timeout: std::time::Duration::from_millis(300),
            gap_timeout: std::time::Duration::from_millis(60),
            digest_interval: std::time::Duration::from_millis(40),
        }
    }

    fn up(&self, a: Addr, b: Addr) -> bool {
        let alive = |x: Addr| match x {
            Addr::Origin => self.origin.is_some(),
            Addr::Node(i) => self.nodes[i].follower.is_some(),
        };
        alive(a) && alive(b) && !self.cut.contains(&link(a, b))
    }

    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.boots += 1;
        let applied = node.replica.applied();
        assert!(
            applied >= node.applied_high,
            "node {i}: applied went back from {} to {applied}",
            node.applied_high
        );
        node.applying.clear();
        node.follower = Some(
            Follower::new(Sim::config(), applied, node.boots << 40).with_head_check(head_check()),
        );
        node.follower.as_mut().unwrap().peer_connected(MALLORY);
        self.connect_links(i);
    }

    fn connect_links(&mut self, i: usize) {
        if self.up(Addr::Node(i), Addr::Origin) {
            self.nodes[i]
                .follower
                .as_mut()
                .unwrap()
                .origin_connected(self.now);
        }
        for j in 0..NODES {
            if j != i && self.up(Addr::Node(i), Addr::Node(j)) {
                self.nodes[i]
                    .follower
                    .as_mut()
                    .unwrap()
                    .peer_connected(&j.to_string());
                self.nodes[j]
                    .follower
                    .as_mut()
                    .unwrap()
                    .peer_connected(&i.to_string());
            }
        }
    }

    fn send(&mut self, from: Addr, to: Addr, payload: Payload) {
        if !self.up(from, to) {
            return;
        }
        let faulty = self.faults;
        if faulty && self.rng.chance(30) {
            return; // dropped
        }
        let copies = if faulty && self.rng.chance(30) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = 1 + if faulty {
                self.rng.below(25)
            } else {
                self.rng.below(3)
            };
            self.seq += 1;
            self.in_flight
                .insert((self.now + delay, self.seq), (from, to, payload.clone()));
        }
    }

    /// Take a link down or bring it up, telling both ends.
    fn set_link(&mut self, a: Addr, b: Addr, up: bool) {
        let was = self.up(a, b);
        if up {
            self.cut.remove(&link(a, b));
        } else {
            self.cut.insert(link(a, b));
        }
        let now_up = self.up(a, b);
        if was == now_up {
            return;
        }
        match (a, b) {
            (Addr::Origin, Addr::Node(i)) | (Addr::Node(i), Addr::Origin) => {
                let follower = self.nodes[i].follower.as_mut().unwrap();
                if now_up {
                    follower.origin_connected(self.now);
                } else {
                    follower.origin_disconnected(self.now);
                    self.sessions.remove(&i);
                }
            }
            (Addr::Node(i), Addr::Node(j)) => {
                for (x, y) in [(i, j), (j, i)] {
                    let follower = self.nodes[x].follower.as_mut().unwrap();
                    if now_up {
                        follower.peer_connected(&y.to_string());
                    } else {
                        follower.peer_disconnected(&y.to_string());
                    }
                }
            }
            _ => unreachable!(),
        }
    }

    fn crash_node(&mut self, i: usize) {
        if self.nodes[i].follower.is_none() {
            return;
        }
        // Everyone connected to it sees the connection drop.
        for j in 0..NODES {
            if j != i && self.up(Addr::Node(i), Addr::Node(j)) {
                self.nodes[j]
                    .follower
                    .as_mut()
                    .unwrap()
                    .peer_disconnected(&i.to_string());
            }
        }
        self.sessions.remove(&i);
        self.nodes[i].follower = None;
        // Its outstanding writes have no answer any more: their outcome is unknown.
        let lost: Vec<(usize, u64)> = self
            .submitted
            .keys()
            .filter(|(n, id)| *n == i && !self.outcomes.contains_key(&(*n, *id)))
            .copied()
            .collect();
        for key in lost {
            self.outcomes
                .insert(key, Err(WriteError::Unavailable("node crashed".into())));
        }
    }

    fn crash_origin(&mut self) {
        if self.origin.is_none() {
            return;
        }
        self.origin = None;
        self.queued_writes.clear();
        self.sessions.clear();
        for node in &mut self.nodes {
            if let Some(follower) = node.follower.as_mut() {
                follower.origin_disconnected(self.now);
            }
        }
    }

    fn restart_origin(&mut self) {
        if self.origin.is_some() {
            return;
        }
        self.origin = Some(Authority::new(self.store.clone()));
        for i in 0..NODES {
            if self.up(Addr::Node(i), Addr::Origin) {
                self.nodes[i]
                    .follower
                    .as_mut()
                    .unwrap()
                    .origin_connected(self.now);
            }
        }
    }

    fn step(&mut self) {
        self.now += 1;

        // Deliver what is due.
        let due: Vec<_> = self
            .in_flight
            .range(..=(self.now, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let (from, to, payload) = self.in_flight.remove(&key).unwrap();
            if !self.up(from, to) {
                continue;
            }
            match (to, payload) {
                (Addr::Origin, Payload::ToOrigin(message)) => {
                    let Addr::Node(i) = from else { unreachable!() };
                    self.origin_receive(i, message);
                }
                (Addr::Node(i), Payload::FromOrigin(message)) => {
                    let now = self.now;
                    self.nodes[i]
                        .follower
                        .as_mut()
                        .unwrap()
                        .on_origin(message, now);
                }
                (Addr::Node(i), Payload::Peer(message)) => {
                    let Addr::Node(j) = from else { unreachable!() };
                    let now = self.now;
                    self.nodes[i]
                        .follower
                        .as_mut()
                        .unwrap()
                        .on_peer(&j.to_string(), message, now);
                }
                _ => unreachable!(),
            }
        }

        // Faults.
        if self.faults {
            if self.rng.chance(8) {
                let i = self.rng.below(NODES as u64) as usize;
                let up = self.rng.chance(500);
                self.set_link(Addr::Node(i), Addr::Origin, up);
            }
            if self.rng.chance(8) {
                let i = self.rng.below(NODES as u64) as usize;
                let j = self.rng.below(NODES as u64) as usize;
                if i != j {
                    let up = self.rng.chance(500);
                    self.set_link(Addr::Node(i), Addr::Node(j), up);
                }
            }
            if self.rng.chance(3) {
                let i = self.rng.below(NODES as u64) as usize;
                if self.nodes[i].follower.is_some() {
                    self.crash_node(i);
                } else {
                    self.boot(i);
                }
            }
            if self.rng.chance(2) {
                if self.origin.is_some() {
                    self.crash_origin();
                } else {
                    self.restart_origin();
                }
            }
        }

        // Load: a write at a random live node now and then.
        if self.faults && self.rng.chance(150) {
            let i = self.rng.below(NODES as u64) as usize;
            if self.nodes[i].follower.is_some() {
                let op = random_op(&mut self.rng, KEYS, &self.nodes[i].replica);
                let now = self.now;
                if let Ok(id) = self.nodes[i]
                    .follower
                    .as_mut()
                    .unwrap()
                    .submit_write(op.clone(), now)
                {
                    self.submitted.insert((i, id), op);
                }
            }
        }

        // The origin commits what it received this millisecond, in one transaction.
        if let Some(origin) = self.origin.as_mut()
            && !self.queued_writes.is_empty()
        {
            let writes: Vec<_> = std::mem::take(&mut self.queued_writes);
            let incoming = writes
                .iter()
                .map(|(i, id, op)| IncomingWrite {
                    writer: format!("node-{i}"),
                    id: *id,
                    op: op.clone(),
                })
                .collect();
            let (outcomes, batch) = origin
                .write_all(incoming, self.now, self.now * 1000)
                .expect("memory store");
            self.store = origin.store().clone();
            if self.rng.chance(100) {
                self.origin
                    .as_mut()
                    .unwrap()
                    .compact(8)
                    .expect("memory store");
                self.store = self.origin.as_ref().unwrap().store().clone();
            }
            for ((i, id, _), outcome) in writes.into_iter().zip(outcomes) {
                self.send(
                    Addr::Origin,
                    Addr::Node(i),
                    Payload::FromOrigin(FromOrigin::WriteResult { id, outcome }),
                );
            }
            if let Some(batch) = batch {
                let head = signed_head(batch.through);
                let mut live = Vec::new();
                for (&i, session) in &mut self.sessions {
                    for message in session.committed(&batch, Some(&head)) {
                        live.push((i, message));
                    }
                }
                for (i, message) in live {
                    self.send(Addr::Origin, Addr::Node(i), Payload::FromOrigin(message));
                }
            }
        }

        // Catch-ups go on one bounded step per millisecond, with writes committing between.
        self.step_catch_ups();

        if self.faults && self.rng.chance(20) {
            self.mallory_attacks();
        }

        // Reclaiming sweeps, a few keys at a time, at the origin and in the replicas.
        if self.rng.chance(50) {
            self.sweep_origin();
        }
        for i in 0..NODES {
            if self.nodes[i].follower.is_some() && self.rng.chance(30) {
                self.sweep_replica(i);
            }
        }

        // Nodes: the slow disk, timers, then everything they asked for.
        for i in 0..NODES {
            let now = self.now;
            let node = &mut self.nodes[i];
            let Some(follower) = node.follower.as_mut() else {
                continue;
            };
            node.applying.retain(|(done_at, through)| {
                if *done_at <= now {
                    follower.applied(*through, now);
                    false
                } else {
                    true
                }
            });
            follower.tick(now);
            while let Some(output) = self.nodes[i]
                .follower
                .as_mut()
                .and_then(Follower::poll_output)
            {
                self.carry_out(i, output);
            }
        }
    }

    fn origin_receive(&mut self, node: usize, message: ToOrigin) {
        match message {
            ToOrigin::Subscribe { from } => self
                .sessions
                .entry(node)
                .or_insert_with(|| OriginSession::new(LinkProtocol::V2, STEP_BYTES))
                .subscribe(from),
            ToOrigin::Write { id, op } => self.queued_writes.push((node, id, op)),
        }
    }

    /// The Byzantine peer: claims past anything the origin committed, heads it cannot sign, and
    /// pulls by the hundred.
    fn mallory_attacks(&mut self) {
        let i = self.rng.below(NODES as u64) as usize;
        let now = self.now;
        let beyond = self.store.last_version() + 1 + self.rng.below(1 << 20);
        let attack = self.rng.below(5);
        let Some(follower) = self.nodes[i].follower.as_mut() else {
            return;
        };
        let from = follower.applied_version();
        let forged_entry = outpost_kv::Entry {
            namespace: "app/ns".into(),
            key: "k0".into(),
            value: Some(b"forged".to_vec()),
            metadata: None,
            expires_at_ms: None,
            version: beyond,
            committed_at_us: 0,
        };
        match attack {
            0 => follower.on_peer(MALLORY, PeerMsg::Digest { through: u64::MAX }, now),
            1 => follower.on_peer(
                MALLORY,
                PeerMsg::Head(Head {
                    version: beyond,
                    proof: proof_for(beyond ^ 1),
                }),
                now,
            ),
            2 => follower.on_peer(
                MALLORY,
                PeerMsg::Batch(Batch {
                    from,
                    through: u64::MAX,
                    entries: vec![forged_entry],
                }),
                now,
            ),
            3 => follower.on_peer(
                MALLORY,
                PeerMsg::Batch(Batch {
                    from: from.saturating_sub(2),
                    through: beyond,
                    entries: vec![forged_entry],
                }),
                now,
            ),
            _ => {
                for _ in 0..100 {
                    follower.on_peer(MALLORY, PeerMsg::Pull { from: 0 }, now);
                }
            }
        }
    }

    fn sweep_origin(&mut self) {
        let Some(origin) = self.origin.as_mut() else {
            return;
        };
        let before = origin.store().clone();
        let sweep = origin
            .reclaim(self.origin_sweep.as_ref(), 3, self.now)
            .expect("memory store");
        self.origin_sweep = sweep.next;
        if sweep.removed == 0 {
            return;
        }
        let (was, _) = AuthorityStore::snapshot_after(&before, None, usize::MAX).unwrap();
        for entry in was {
            if origin.get(&entry.namespace, &entry.key).unwrap().is_none() {
                self.reclaimed_at_origin
                    .insert((entry.namespace, entry.key), entry.version);
            }
        }
        self.store = origin.store().clone();
    }

    fn sweep_replica(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let through = node.replica.applied().saturating_sub(REPLICA_KEEP);
        let sweep = node
            .replica
            .reclaim(node.sweep.as_ref(), 3, through, self.now)
            .unwrap();
        node.sweep = sweep.next;
        self.reclaimed_by_replicas += sweep.removed as u64;
    }

    /// One catch-up step for each session that is catching up, between the origin's commits as
    /// on its thread.
    fn step_catch_ups(&mut self) {
        let Some(origin) = self.origin.as_ref() else {
            return;
        };
        let head = signed_head(origin.last_version());
        let mut messages = Vec::new();
        for (&i, session) in &mut self.sessions {
            if session.catching_up() {
                for message in session
                    .step(origin, Some(head.clone()))
                    .expect("memory store")
                {
                    messages.push((i, message));
                }
            }
        }
        for (i, message) in messages {
            if matches!(message, FromOrigin::SnapshotPart(_)) {
                self.snapshot_parts += 1;
            }
            self.send(Addr::Origin, Addr::Node(i), Payload::FromOrigin(message));
        }
    }

    fn apply(&mut self, i: usize, entries: &[outpost_kv::Entry], through: Option<u64>) {
        let node = &mut self.nodes[i];
        node.replica.apply(entries, through).unwrap();
        Sim::versions_only_grow(i, node, entries);
        let applied = node.replica.applied();
        assert!(applied >= node.applied_high, "node {i}: applied went back");
        assert!(
            applied <= self.store.last_version(),
            "node {i}: applied {applied}, past the origin's {}",
            self.store.last_version()
        );
        node.applied_high = applied;
    }

    /// A key the replica holds after applying `entries` is at a version at least as new as
    /// any it held before (a key it no longer holds was reclaimed or vacated).
    fn versions_only_grow(i: usize, node: &mut Node, entries: &[outpost_kv::Entry]) {
        for entry in entries {
            let key = (entry.namespace.clone(), entry.key.clone());
            let Some(held) = node.replica.get(&entry.namespace, &entry.key).unwrap() else {
                continue;
            };
            let seen = node.seen.entry(key.clone()).or_insert(0);
            assert!(
                held.version >= *seen,
                "node {i}: key {key:?} went from version {seen} to {}",
                held.version
            );
            *seen = held.version;
        }
    }

    fn carry_out(&mut self, i: usize, output: Output) {
        if std::env::var("SIM_TRACE").is_ok_and(|n| n == i.to_string()) {
            eprintln!(
                "{} node {i}: {output:?} (applied {} floor {})",
                self.now,
                self.nodes[i].replica.applied(),
                self.nodes[i].replica.floor()
            );
        }
        match output {
            Output::ToOrigin(message) => {
                self.send(Addr::Node(i), Addr::Origin, Payload::ToOrigin(message))
            }
            Output::ToPeer(peer, message) => {
                if let Ok(j) = peer.parse::<usize>() {
                    self.send(Addr::Node(i), Addr::Node(j), Payload::Peer(message));
                }
            }
            Output::Apply(batch) => {
                self.apply(i, &batch.entries, Some(batch.through));
                let now = self.now;
                if i == SLOW_NODE {
                    self.nodes[i]
                        .applying
                        .push((now + SLOW_APPLY_MS, batch.through));
                } else {
                    self.nodes[i]
                        .follower
                        .as_mut()
                        .unwrap()
                        .applied(batch.through, now);
                }
            }
            Output::ApplyEarly(entries) => self.apply(i, &entries, None),
            Output::ApplyPart(part) => {
                let node = &mut self.nodes[i];
                self.vacated += node.replica.apply_part(&part).unwrap() as u64;
                Sim::versions_only_grow(i, node, &part.entries);
            }
            Output::ServePull {
                peer,
                from,
                through,
            } => {
                let Ok(j) = peer.parse::<usize>() else {
                    return;
                };
                // Below its floor the replica may lack deletes: it serves nothing.
                let Some((entries, _)) = self.nodes[i]
                    .replica
                    .entries_after(from, usize::MAX)
                    .unwrap()
                else {
                    return;
                };
                self.send(
                    Addr::Node(i),
                    Addr::Node(j),
                    Payload::Peer(PeerMsg::Batch(Batch {
                        from,
                        through,
                        entries,
                    })),
                );
            }
            Output::WriteDone { id, outcome } => {
                self.outcomes.entry((i, id)).or_insert(outcome);
            }
        }
    }

    /// Stop the faults, heal everything and let the system settle.
    fn heal(&mut self) {
        self.faults = false;
        self.restart_origin();
        for i in 0..NODES {
            if self.nodes[i].follower.is_none() {
                self.boot(i);
            }
        }
        for a in 0..NODES {
            self.set_link(Addr::Node(a), Addr::Origin, true);
            for b in 0..NODES {
                if a != b {
                    self.set_link(Addr::Node(a), Addr::Node(b), true);
                }
            }
        }
        for _ in 0..5_000 {
            self.step();
            let last = self.origin.as_ref().unwrap().last_version();
            let settled = self.in_flight.is_empty()
                && self.nodes.iter().all(|n| {
                    n.replica.applied() >= last
                        && n.follower.as_ref().unwrap().applied_version() >= last
                });
            if settled {
                return;
            }
        }
        let applied: Vec<u64> = self.nodes.iter().map(|n| n.replica.applied()).collect();
        panic!(
            "did not converge within 5 s after healing: origin at {}, replicas at {applied:?}",
            self.origin.as_ref().unwrap().last_version()
        );
    }

    fn check(&self) {
        let origin = self.origin.as_ref().unwrap();
        let truth: BTreeMap<(String, String), outpost_kv::Entry> =
            AuthorityStore::snapshot_after(origin.store(), None, usize::MAX)
                .expect("memory store")
                .0
                .into_iter()
                .map(|e| ((e.namespace.clone(), e.key.clone()), e))
                .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            assert_eq!(
                live(&node.replica.dump(), self.now),
                live(&truth, self.now),
                "node {i} did not converge to the origin's state"
            );
        }
        check_acked(
            &truth,
            &self.reclaimed_at_origin,
            &self.submitted,
            &self.outcomes,
        );
    }
}

/// What a run exercised, so the test can tell the paths it means to cover were taken.
#[derive(Default)]
struct Coverage {
    snapshot_parts: u64,
    reclaimed_at_origin: u64,
    reclaimed_by_replicas: u64,
    vacated: u64,
}

/// Runs one seed.
fn run(seed: u64) -> Coverage {
    let mut sim = Sim::new(seed);
    for _ in 0..2_000 {
        sim.step();
    }
    sim.heal();
    sim.check();
    if std::env::var("SIM_VERBOSE").is_ok() {
        let acked = sim.outcomes.values().filter(|o| o.is_ok()).count();
        let unknown = sim
            .outcomes
            .values()
            .filter(|o| matches!(o, Err(WriteError::Unavailable(_))))
            .count();
        eprintln!(
            "seed {seed}: {} writes submitted, {acked} acked, {unknown} unknown; origin at version {}; node boots {:?}",
            sim.submitted.len(),
            sim.origin.as_ref().unwrap().last_version(),
            sim.nodes.iter().map(|n| n.boots).collect::<Vec<_>>()
        );
    }
    Coverage {
        snapshot_parts: sim.snapshot_parts,
        reclaimed_at_origin: sim.reclaimed_at_origin.len() as u64,
        reclaimed_by_replicas: sim.reclaimed_by_replicas,
        vacated: sim.vacated,
    }
}

#[test]
fn replication_converges_and_loses_nothing_under_faults() {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        run(seed.parse().expect("SIM_SEED must be a number"));
        return;
    }
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut total = Coverage::default();
    for seed in 0..seeds {
        let replay = format!("SIM_SEED={seed} cargo test -p outpost-kv --test simulation");
        let run = seeded(seed, &replay, || run(seed));
        total.snapshot_parts += run.snapshot_parts;
        total.reclaimed_at_origin += run.reclaimed_at_origin;
        total.reclaimed_by_replicas += run.reclaimed_by_replicas;
        total.vacated += run.vacated;
    }
    eprintln!(
        "{seeds} seeds: the origin sent {} snapshot parts and reclaimed {} dead keys; replicas \
         reclaimed {} and snapshot parts removed {} keys the origin no longer held",
        total.snapshot_parts, total.reclaimed_at_origin, total.reclaimed_by_replicas, total.vacated
    );
    if seeds >= 100 {
        assert!(
            total.snapshot_parts > 0,
            "no seed caught a node up past the compacted log"
        );
        assert!(
            total.reclaimed_at_origin > 0 && total.reclaimed_by_replicas > 0 && total.vacated > 0,
            "no seed reclaimed dead keys and then caught a node up past them"
        );
    }
}
