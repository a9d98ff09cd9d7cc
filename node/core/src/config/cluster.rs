//! The cluster settings a member's configuration names: its credentials, how a node reaches its
//! origin, and its peers. Plain data: the cluster links (`outpost-edge`, `outpost-origin`) act on them.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A cluster member's credentials: the cluster CA, its own certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a node reaches its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLink {
    pub addr: SocketAddr,
    /// The name the origin's cluster certificate is issued for.
    pub server_name: String,
    pub identity: ClusterIdentity,
}

/// A peer this node knows of: its name (its certificate's) and its cluster address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
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
