//! The node's egress policy (`[outbound]` in node.toml): which addresses any app's outbound
//! requests may reach, whatever its own allow-list says. An app's `[outbound] allow` names the
//! origins it wants; this decides, on the address a name resolved to, whether the node lets it
//! connect. Loopback, private and link-local addresses (the cloud metadata service at
//! 169.254.169.254 among them) and the node's own listeners are refused unless the operator
//! allows them, so an app cannot reach the node's admin port or its neighbours by naming them,
//! nor by a DNS name that resolves (or re-resolves) there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::Deserialize;

use super::FieldError;
use super::error::in_range;

/// A validated egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Whether loopback addresses (127.0.0.0/8, ::1) may be reached; default false.
    pub allow_loopback: bool,
    /// Whether private addresses (RFC 1918, carrier-grade NAT 100.64.0.0/10, fc00::/7) may be
    /// reached; default false.
    pub allow_private: bool,
    /// Whether link-local addresses (169.254.0.0/16, fe80::/10, where the cloud metadata service
    /// lives) may be reached; default false.
    pub allow_link_local: bool,
    /// Networks allowed even if their kind is not.
    pub allow: Vec<IpNet>,
    /// Networks never allowed.
    pub deny: Vec<IpNet>,
    /// Ports the node listens on: never reachable on a local address.
    pub own_ports: Vec<u16>,
    /// Outbound requests one request may make.
    pub max_subrequests: u32,
    /// Outbound requests one app may have open at once on this node.
    pub max_concurrent_per_app: usize,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow_loopback: false,
            allow_private: false,
            allow_link_local: false,
            allow: Vec::new(),
            deny: Vec::new(),
            own_ports: Vec::new(),
            max_subrequests: 50,
            max_concurrent_per_app: 64,
        }
    }
}

/// `[outbound]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EgressFile {
    allow_loopback: Option<bool>,
    allow_private: Option<bool>,
    allow_link_local: Option<bool>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    max_subrequests: Option<u32>,
    max_concurrent_per_app: Option<usize>,
}

impl EgressFile {
    pub(super) fn policy(&self) -> Result<EgressPolicy, FieldError> {
        let d = EgressPolicy::default();
        let max_subrequests = in_range(
            self.max_subrequests.map(u64::from),
            "outbound.max_subrequests",
            1..=10_000,
            d.max_subrequests.into(),
        )? as u32;
        let max_concurrent = in_range(
            self.max_concurrent_per_app.map(|n| n as u64),
            "outbound.max_concurrent_per_app",
            1..=100_000,
            d.max_concurrent_per_app as u64,
        )? as usize;
        Ok(EgressPolicy {
            allow_loopback: self.allow_loopback.unwrap_or(false),
            allow_private: self.allow_private.unwrap_or(false),
            allow_link_local: self.allow_link_local.unwrap_or(false),
            allow: networks(&self.allow, "outbound.allow")?,
            deny: networks(&self.deny, "outbound.deny")?,
            own_ports: Vec::new(),
            max_subrequests,
            max_concurrent_per_app: max_concurrent,
        })
    }
}

/// The list `field` as networks, each a network (`10.0.0.0/8`) or one address (`192.0.2.7`); an
/// error names the entry (`field[i]`).
pub(super) fn networks(list: &[String], field: &str) -> Result<Vec<IpNet>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| parse_net(text).map_err(|m| FieldError::new(format!("{field}[{i}]"), m)))
        .collect()
}

/// A network (`10.0.0.0/8`) or one address (`192.0.2.7`).
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a network such as \"10.0.0.0/8\""))
}

/// What kind of address something is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Loopback,
    Private,
    LinkLocal,
    /// Unspecified, multicast, broadcast, reserved: never a server to fetch from.
    Unusable,
}

fn kind(ip: IpAddr) -> Kind {
    match ip {
        IpAddr::V4(v4) => kind_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothing (mapped, or NAT64's well-known prefix) is
            // judged as the IPv4 address it reaches.
            if let Some(v4) = v6.to_ipv4_mapped().or_else(|| nat64(v6)) {
                return kind_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Kind::Loopback
            } else if v6.is_unspecified() || v6.is_multicast() {
                Kind::Unusable
            } else if first & 0xffc0 == 0xfe80 {
                Kind::LinkLocal
            } else if first & 0xfe00 == 0xfc00 {
                Kind::Private
            } else {
                Kind::Public
            }
        }
    }
}

fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
        .then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

fn kind_v4(v4: Ipv4Addr) -> Kind {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Kind::Loopback
    } else if v4.is_link_local() {
        Kind::LinkLocal
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, and the carrier-grade NAT range.
        Kind::Private
    } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || a == 0 || a >= 240 {
        Kind::Unusable
    } else {
        Kind::Public
    }
}

impl EgressPolicy {
    /// For `outpost dev`: the author's own machine, where fetching a local service is the
    /// point. Loopback and private addresses are allowed; link-local and the node's own ports
    /// are still not.
    pub fn for_development() -> Self {
        EgressPolicy {
            allow_loopback: true,
            allow_private: true,
            ..EgressPolicy::default()
        }
    }

    /// Why `address` may not be reached, or `Ok` if it may.
    pub fn check(&self, address: SocketAddr) -> Result<(), String> {
        let ip = address.ip();
        let in_any = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        if in_any(&self.deny) {
            return Err(format!("{ip} is in the node's outbound deny list"));
        }
        let kind = kind(ip);
        if kind != Kind::Public && self.own_ports.contains(&address.port()) {
            return Err(format!("{address} is one of this node's own listeners"));
        }
        if in_any(&self.allow) {
            return Ok(());
        }
        match kind {
            Kind::Public => Ok(()),
            Kind::Loopback if self.allow_loopback => Ok(()),
            Kind::Private if self.allow_private => Ok(()),
            Kind::LinkLocal if self.allow_link_local => Ok(()),
            Kind::Loopback => Err(format!("{ip} is a loopback address")),
            Kind::Private => Err(format!("{ip} is a private address")),
            Kind::LinkLocal => Err(format!(
                "{ip} is a link-local address (the cloud metadata service lives there)"
            )),
            Kind::Unusable => Err(format!("{ip} is not an address a server can have")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default_in_every_disguise() {
        let policy = EgressPolicy::default();
        for refused in [
            "127.0.0.1:80",
            "127.9.9.9:443",
            "[::1]:443",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "100.64.0.1:80",
            "[fd00:ec2::254]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
        ] {
            assert!(
                policy.check(addr(refused)).is_err(),
                "{refused} was allowed"
            );
        }
        for allowed in ["93.184.216.34:443", "[2606:4700::1111]:443", "8.8.8.8:53"] {
            assert!(policy.check(addr(allowed)).is_ok(), "{allowed} was refused");
        }
        assert!(
            policy
                .check(addr("169.254.169.254:80"))
                .unwrap_err()
                .contains("metadata")
        );
    }

    #[test]
    fn the_operator_opens_kinds_and_networks_and_closes_networks() {
        let file: EgressFile = toml::from_str(
            "allow_private = true\nallow = [\"127.0.0.1\", \"169.254.10.0/24\"]\ndeny = [\"10.9.0.0/16\", \"203.0.113.0/24\"]\n",
        )
        .unwrap();
        let policy = file.policy().unwrap();
        assert!(policy.check(addr("10.1.2.3:80")).is_ok());
        assert!(
            policy.check(addr("10.9.1.1:80")).is_err(),
            "denied beats allowed"
        );
        assert!(policy.check(addr("127.0.0.1:9000")).is_ok());
        assert!(policy.check(addr("127.0.0.2:9000")).is_err());
        assert!(policy.check(addr("169.254.10.7:80")).is_ok());
        assert!(policy.check(addr("169.254.169.254:80")).is_err());
        assert!(
            policy.check(addr("203.0.113.5:443")).is_err(),
            "a public network denied"
        );
    }

    #[test]
    fn the_nodes_own_listeners_stay_closed_even_when_loopback_is_open() {
        let mut policy = EgressPolicy::for_development();
        policy.own_ports = vec![8443, 9901];
        assert!(policy.check(addr("127.0.0.1:9000")).is_ok());
        assert!(policy.check(addr("127.0.0.1:9901")).is_err());
        assert!(policy.check(addr("[::1]:8443")).is_err());
        assert!(
            policy.check(addr("169.254.169.254:80")).is_err(),
            "link-local stays closed"
        );
    }

    #[test]
    fn bad_entries_name_their_field() {
        let file: EgressFile = toml::from_str("allow = [\"example.com\"]\n").unwrap();
        assert_eq!(file.policy().unwrap_err().field, "outbound.allow[0]");
        let file: EgressFile = toml::from_str("max_subrequests = 0\n").unwrap();
        assert_eq!(file.policy().unwrap_err().field, "outbound.max_subrequests");
    }
}
