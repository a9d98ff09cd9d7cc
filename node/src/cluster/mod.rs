//! The cluster link: QUIC with mutual TLS from a cluster CA between the origin and every node.
//! It carries the desired deployment state, component blobs, KV replication (node to origin and
//! node to node) and tail records.

pub mod head_proof;
pub mod node_link;
pub mod origin_link;
pub mod peer_link;
pub mod tls;
pub mod wire;

pub use node_link::OriginLink;
pub use origin_link::{NodeDirectory, NodeEntry};
pub use tls::ClusterIdentity;
