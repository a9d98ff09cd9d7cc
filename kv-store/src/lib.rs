//! `outpost-kv`: the edge key-value store.
//!
//! This crate owns the KV's data and its consistency rules, and none of its networking:
//!
//! * [`model`]: namespaces, keys, values, metadata, expiration, versions, tombstones, and the
//!   Workers-KV-style limits, enforced with clear errors;
//! * [`scope`]: the isolation rule between apps (whose namespace is whose);
//! * [`error`]: the storage error every store reports;
//! * [`paging`]: listing keys a page at a time, the same for every lister;
//! * [`ops`]: the writes a handler can ask for (put, delete, increment, compare-and-swap, batches);
//! * [`authority`]: the origin's single writer. It assigns every committed entry the next global
//!   version, commits durably before acknowledging, keeps a write log with compaction, and
//!   deduplicates retried writes;
//! * [`catch_up`]: what the origin sends a node that is behind, from the log or, past it, a
//!   snapshot, in bounded steps;
//! * [`session`]: the origin's half of one node's session (subscribe, catch up, then pass on
//!   each commit), as a sans-IO state machine;
//! * [`replica`]: a node's durable copy (redb) with an in-memory layer for hot reads, and the
//!   feed a relay serves its followers from;
//! * [`relay`]: a relay's side of the nodes that follow it instead of the origin (fleets in
//!   tiers), as a sans-IO state machine;
//! * [`follower`]: the replication protocol on a node, as a sans-IO state machine. It is fed
//!   messages and clock ticks and answers with messages to send and batches to apply; it
//!   tolerates duplicates, reordering, gaps and restarts, and falls back to peers (anti-entropy)
//!   when the origin is out of reach;
//! * [`protocol`]: the messages between node, origin and peers, and their binary encoding.
//!
//! Because [`follower::Follower`], [`session::OriginSession`] and [`authority::Authority`] do
//! no I/O, the simulation in `tests/simulation.rs` drives them over a simulated network with
//! drops, reordering, duplicates, partitions and crashes, deterministically from a seed.

pub mod authority;
pub mod catch_up;
pub mod error;
pub mod follower;
pub mod model;
mod open;
pub mod ops;
pub mod paging;
pub mod protocol;
pub mod quota;
pub mod relay;
pub mod replica;
mod scan;
pub mod scope;
pub mod session;

pub use authority::{Authority, AuthorityStore, MemoryAuthorityStore, RedbAuthorityStore};
pub use catch_up::{CatchUp, CatchUpSource};
pub use follower::{Follower, FollowerConfig, HeadCheck, Output, PeerId};
pub use model::{Entry, KeyInfo, LimitError, Sweep, validate_key, validate_namespace};
pub use ops::{OpResult, WriteAck, WriteError, WriteOp, WriteOutcome};
pub use protocol::{Batch, FromOrigin, Head, PeerMsg, SnapshotPart, ToOrigin};
pub use relay::Relay;
pub use replica::{MemoryReplica, RedbReplica, ReplicaFeed, ReplicaStore};
pub use session::{LinkProtocol, OriginSession};
