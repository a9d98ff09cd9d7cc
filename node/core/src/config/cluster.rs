//! The cluster settings a member's configuration names: its credentials, how a node reaches its
//! origin, and its peers. Plain data: the cluster links (`outpost-edge`, `outpost-origin`) act on them.

use std::fmt;
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

/// An address of another machine: a host (a name, or an IP literal, IPv6 in brackets) and a
/// port. Names are resolved each time it is connected to, so a changed DNS record is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAddr {
    /// The host name or IP literal, without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl RemoteAddr {
    /// `origin-a.internal:7443`, `10.0.0.2:7443`, `[fd00::2]:7443`.
    pub fn parse(text: &str) -> Result<RemoteAddr, String> {
        let bad = || {
            format!(
                "{text:?} is not an address such as \"origin.internal:7443\", \"10.0.0.2:7443\" or \"[fd00::2]:7443\""
            )
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(RemoteAddr {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if port == 0 || !name_ok {
            return Err(bad());
        }
        Ok(RemoteAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The addresses the host stands for now (itself, for an IP literal).
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no address", self.host),
            ));
        }
        Ok(found)
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a node reaches its origins, directly or through relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLink {
    /// Relays (other nodes that serve what they have from the origin) this node follows
    /// instead of the origin, tried in order before the origins (`[cluster] relays`).
    pub relays: Vec<Peer>,
    /// The cluster addresses (QUIC, UDP) of the fleet's origins, in the order they are tried;
    /// the node holds a link to one at a time and moves to the next when it is lost.
    pub origins: Vec<RemoteAddr>,
    /// The name every origin's cluster certificate is issued for.
    pub server_name: String,
    /// The credentials the node presents to the origin and checks the origin's certificate with.
    pub identity: ClusterIdentity,
}

/// Where a node holds its link: a relay, or an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A relay node, whose certificate is issued for its name.
    Relay(Peer),
    /// An origin, whose certificate is issued for [`OriginLink::server_name`].
    Origin(RemoteAddr),
}

impl OriginLink {
    /// Every place the node may hold its link, in the order tried: relays, then origins.
    pub fn upstreams(&self) -> Vec<Upstream> {
        let relays = self.relays.iter().cloned().map(Upstream::Relay);
        relays
            .chain(self.origins.iter().cloned().map(Upstream::Origin))
            .collect()
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Relay(relay) => write!(f, "relay {} at {}", relay.name, relay.addr),
            Upstream::Origin(origin) => write!(f, "origin {origin}"),
        }
    }
}

/// A peer this node knows of: its name (its certificate's) and its cluster address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node name, which its cluster certificate is issued for.
    pub name: String,
    /// The UDP address where the peer accepts links from other nodes.
    pub addr: RemoteAddr,
}

impl Peer {
    /// `edge-2@10.0.0.2:7444` or `edge-2@edge-2.internal:7444`.
    pub fn parse(text: &str) -> Result<Peer, String> {
        let (name, addr) = text.split_once('@').ok_or_else(|| {
            format!("{text:?} should be NAME@ADDRESS, as in \"edge-2@10.0.0.2:7444\"")
        })?;
        let addr = RemoteAddr::parse(addr)?;
        if name.is_empty() {
            return Err(format!("{text:?} has no name before '@'"));
        }
        Ok(Peer {
            name: name.to_string(),
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_are_names_or_ip_literals_with_a_port() {
        for (text, shown) in [
            ("origin-a.internal:7443", "origin-a.internal:7443"),
            ("localhost:7443", "localhost:7443"),
            ("Origin.Example:1", "origin.example:1"),
            ("10.0.0.2:7443", "10.0.0.2:7443"),
            ("[fd00::2]:7443", "[fd00::2]:7443"),
        ] {
            assert_eq!(RemoteAddr::parse(text).unwrap().to_string(), shown);
        }
        for bad in [
            "origin",
            "origin:",
            "origin:0",
            "origin:99999",
            ":7443",
            "a..b:1",
            "a b:1",
            "fd00::2:7443x",
        ] {
            let err = RemoteAddr::parse(bad).unwrap_err();
            assert!(err.contains("is not an address"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn names_resolve_when_connected_to() {
        let local = RemoteAddr::parse("localhost:7443").unwrap();
        let found = local.resolve().await.unwrap();
        assert!(
            found
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 7443),
            "{found:?}"
        );
        let literal = RemoteAddr::parse("[::1]:9").unwrap();
        assert_eq!(
            literal.resolve().await.unwrap(),
            vec!["[::1]:9".parse().unwrap()]
        );
    }
}
