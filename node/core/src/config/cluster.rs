//! The cluster settings a member's configuration names: its credentials, how a node reaches its
//! origin, and its peers. Plain data: the cluster links (`outpost-edge`, `outpost-origin`) act on them.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A cluster member's credentials: the cluster CA, its own certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// The cluster CA certificate (PEM) that the other members' certificates must chain to.
    pub ca: PathBuf,
    /// This member's certificate chain (PEM), issued by the cluster CA for its name.
    pub cert: PathBuf,
    /// The private key (PEM) of `cert`.
    pub key: PathBuf,
}

/// How a node reaches its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLink {
    /// The origin's cluster address (QUIC, UDP).
    pub addr: SocketAddr,
    /// The name the origin's cluster certificate is issued for.
    pub server_name: String,
    /// The credentials the node presents to the origin and checks the origin's certificate with.
    pub identity: ClusterIdentity,
}

/// A peer this node knows of: its name (its certificate's) and its cluster address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node name, which its cluster certificate is issued for.
    pub name: String,
    /// The UDP address where the peer accepts links from other nodes.
    pub addr: SocketAddr,
}

impl Peer {
    /// `edge-2@10.0.0.2:7444`.
    pub fn parse(text: &str) -> Result<Peer, String> {
        let (name, addr) = text.split_once('@').ok_or_else(|| {
            format!("{text:?} should be NAME@ADDRESS, as in \"edge-2@10.0.0.2:7444\"")
        })?;
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an address such as \"10.0.0.2:7444\""))?;
        if name.is_empty() {
            return Err(format!("{text:?} has no name before '@'"));
        }
        Ok(Peer {
            name: name.to_string(),
            addr,
        })
    }
}
