//! The cluster link: QUIC with mutual TLS from a cluster CA between the origin and every node.
//! It carries the desired deployment state, component blobs, KV replication (node to origin and
//! node to node) and tail records. This module holds what both ends share (TLS, frames, head
//! proofs) and the node's end (its origin link and its peer links); the origin's end is
//! `crate::origin::link`.

pub mod head_proof;
pub mod node_link;
pub mod peer_link;
pub mod tls;
pub use outpost_core::wire;
