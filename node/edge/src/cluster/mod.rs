//! The node's ends of the cluster links (QUIC, mutual TLS from the cluster CA): its link to the
//! origin (desired state, component blobs, KV writes and the change feed, tail records) and its
//! links to peers (KV replication node to node), and, on a relay, the links of the nodes that
//! follow it instead of the origin. The origin's end is `outpost_origin::link`;
//! what both ends share is in `outpost_net::cluster_tls` and `outpost_core::wire`.

pub mod node_link;
pub mod peer_link;
pub mod relay_link;
