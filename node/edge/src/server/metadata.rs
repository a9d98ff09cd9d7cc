//! What the edge tells a handler about its request, as request headers the handler reads like
//! any other (as `cf-connecting-ip` and `request.cf` do on Workers):
//!
//! | header | value |
//! | --- | --- |
//! | `outpost-client-ip` | the client's address (behind trusted proxies, the one they forwarded) |
//! | `outpost-protocol` | `HTTP/1.1`, `HTTP/2` or `HTTP/3` |
//! | `outpost-tls-version` | `TLSv1.3` or `TLSv1.2`; absent on plain HTTP |
//! | `outpost-node` | the node's name |
//! | `outpost-region` | the region the operator gave the node (`region` in node.toml), if any |
//! | `outpost-request-id` | the request's id, as in the access log and `outpost tail` |
//! | `outpost-trigger` | on a request a cron trigger sent, its schedule (`*/5 * * * *`) |
//! | `outpost-scheduled-time` | on a trigger's request, the tick's time (ms since the Unix epoch) |
//!
//! Whatever a client sent under these names is removed first: a handler can believe them (a
//! request with `outpost-trigger` came from a trigger, never from a client).
//!
//! The client's address is the connection's peer unless that peer is one of `[http]
//! trusted_proxies`. Then the chain the proxies appended (`forwarded`, else `x-forwarded-for`)
//! is walked from the right past every trusted hop, and the first address no trusted proxy
//! stands for is the client: the entries left of it are whatever the client wrote. A malformed
//! or obfuscated entry stops the walk at the last proxy that can be believed.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use outpost_net::listener::Connection;

/// The client's address.
pub const CLIENT_IP: HeaderName = HeaderName::from_static("outpost-client-ip");
/// The HTTP version the client spoke.
pub const PROTOCOL: HeaderName = HeaderName::from_static("outpost-protocol");
/// The TLS version of the client's connection.
pub const TLS_VERSION: HeaderName = HeaderName::from_static("outpost-tls-version");
/// The node that serves the request.
pub const NODE: HeaderName = HeaderName::from_static("outpost-node");
/// The node's region.
pub const REGION: HeaderName = HeaderName::from_static("outpost-region");
/// The request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("outpost-request-id");

/// On a request a trigger sent: the trigger's schedule.
pub const TRIGGER: HeaderName = HeaderName::from_static("outpost-trigger");
/// On a request a trigger sent: when its tick was due, in ms since the Unix epoch.
pub const SCHEDULED_TIME: HeaderName = HeaderName::from_static("outpost-scheduled-time");

/// Every header the edge sets, each removed from what the client sent.
const SET_BY_THE_EDGE: [HeaderName; 8] = [
    CLIENT_IP,
    PROTOCOL,
    TLS_VERSION,
    NODE,
    REGION,
    REQUEST_ID,
    TRIGGER,
    SCHEDULED_TIME,
];

/// The most forwarded hops walked: a chain longer than any real path of proxies is a client's
/// invention past this point.
const MAX_HOPS: usize = 32;

/// The node's side of the request metadata: who it is, and whom it believes.
pub struct RequestMetadata {
    node: Option<HeaderValue>,
    region: Option<HeaderValue>,
    trusted_proxies: Vec<IpNet>,
}

impl RequestMetadata {
    /// Metadata from the node `node` (in `region`, if set), believing forwarded addresses from
    /// peers in `trusted_proxies`.
    pub fn new(node: &str, region: Option<&str>, trusted_proxies: Vec<IpNet>) -> Self {
        RequestMetadata {
            node: HeaderValue::from_str(node).ok(),
            region: region.and_then(|r| HeaderValue::from_str(r).ok()),
            trusted_proxies,
        }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address.to_canonical()))
    }

    /// The client's address for a request with `headers` that came from `peer` (see the
    /// module doc).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let (lines, parse): (_, EntryParser) = match headers.contains_key(http::header::FORWARDED) {
            true => (headers.get_all(http::header::FORWARDED), forwarded_entries),
            false => (headers.get_all("x-forwarded-for"), x_forwarded_for_entries),
        };
        // Lines in order, each left to right: one list, the nearest hop last. A line that is
        // not text is one bad entry.
        let hops: Vec<Option<IpAddr>> = lines
            .iter()
            .flat_map(|line| line.to_str().map_or_else(|_| vec![None], parse))
            .collect();
        self.walk(peer, hops.into_iter().rev())
    }

    /// From the peer leftwards along `hops` (nearest first): the first address no trusted
    /// proxy stands for, else the farthest trusted one.
    fn walk(&self, peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut client = peer;
        for hop in hops.take(MAX_HOPS) {
            let Some(address) = hop else {
                // Unknown, obfuscated or malformed: only the proxy that added it can be
                // believed.
                return client;
            };
            client = address.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }

    /// Replace the client's own versions of the edge's headers with the edge's: `client` is
    /// the client's address, `version` the request's HTTP version, `request_id` its id.
    pub fn stamp(
        &self,
        headers: &mut HeaderMap,
        client: IpAddr,
        connection: &Connection,
        version: http::Version,
        request_id: &str,
    ) {
        remove_clients_copies(headers);
        // Room for the edge's headers at once, instead of the map growing as they go in.
        headers.reserve(SET_BY_THE_EDGE.len());
        if let Some(value) = owned_value(client.to_string()) {
            headers.insert(CLIENT_IP, value);
        }
        headers.insert(PROTOCOL, HeaderValue::from_static(protocol(version)));
        if let Some(tls) = connection.tls_version() {
            headers.insert(TLS_VERSION, HeaderValue::from_static(tls));
        }
        self.stamp_node(headers, request_id);
    }

    /// The node's name and region, and the request's id.
    fn stamp_node(&self, headers: &mut HeaderMap, request_id: &str) {
        if let Some(node) = &self.node {
            headers.insert(NODE, node.clone());
        }
        if let Some(region) = &self.region {
            headers.insert(REGION, region.clone());
        }
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID, id);
        }
    }

    /// The headers of a request the trigger with `schedule` sends for `tick` (unix seconds):
    /// the node's, the request id, and the trigger's marker; no client, protocol or TLS.
    pub fn stamp_trigger(
        &self,
        headers: &mut HeaderMap,
        schedule: &str,
        tick: u64,
        request_id: &str,
    ) {
        if let Some(value) = owned_value(schedule.to_string()) {
            headers.insert(TRIGGER, value);
        }
        headers.insert(SCHEDULED_TIME, HeaderValue::from(tick.saturating_mul(1000)));
        self.stamp_node(headers, request_id);
    }
}

/// Remove whatever the client sent under the edge's names. Most requests carry none, and one
/// pass over the names (no hashing) finds that out; only a request that has one is searched
/// for each name.
fn remove_clients_copies(headers: &mut HeaderMap) {
    let has_ours = headers
        .keys()
        .any(|name| name.as_str().starts_with(EDGE_PREFIX));
    if has_ours {
        for name in &SET_BY_THE_EDGE {
            headers.remove(name);
        }
    }
}

/// What every header the edge sets begins with.
const EDGE_PREFIX: &str = "outpost-";

/// A header value that takes `text`'s buffer as it is: one allocation per header.
fn owned_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// The HTTP version as written in a request line (and in the `outpost-protocol` header).
pub fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Reads one header line's addresses, left to right.
type EntryParser = fn(&str) -> Vec<Option<IpAddr>>;

/// The `for=` addresses of a `forwarded` line (RFC 7239), left to right; `None` for an entry
/// without one, an unknown or obfuscated one, or one that does not parse.
fn forwarded_entries(line: &str) -> Vec<Option<IpAddr>> {
    rfc7239::parse(line)
        .map(|entry| {
            entry
                .ok()
                .and_then(|e| e.forwarded_for)
                .and_then(|node| node.ip().copied())
        })
        .collect()
}

/// The addresses of an `x-forwarded-for` line, left to right (a port or IPv6 brackets, which
/// some proxies add, are allowed).
fn x_forwarded_for_entries(line: &str) -> Vec<Option<IpAddr>> {
    line.split(',')
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                .or_else(|| {
                    entry
                        .strip_prefix('[')
                        .and_then(|e| e.strip_suffix(']'))
                        .and_then(|e| e.parse().ok())
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(trusted: &[&str]) -> RequestMetadata {
        RequestMetadata::new(
            "edge-1",
            Some("fra"),
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_claims() {
        let m = metadata(&[]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(m.client_address(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn from_a_trusted_proxy_the_first_untrusted_hop_from_the_right_is_the_client() {
        let m = metadata(&["10.0.0.0/8"]);
        // The client wrote 6.6.6.6 itself; 198.51.100.7 is who reached the outer proxy.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(m.client_address(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Several header lines read as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:4711"),
        ]);
        assert_eq!(m.client_address(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // No header: the proxy itself is all there is.
        assert_eq!(
            m.client_address(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(m.client_address(ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn forwarded_is_preferred_and_read_by_rfc_7239() {
        let m = metadata(&["10.0.0.0/8", "2001:db8:1::/48"]);
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.1.1.1",
            ),
        ]);
        assert_eq!(
            m.client_address(ip("2001:db8:1::2"), &h),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn a_chain_of_trusted_hops_ends_at_the_farthest_and_garbage_stops_the_walk() {
        let m = metadata(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.8")]);
        assert_eq!(m.client_address(ip("10.0.0.1"), &h), ip("10.0.0.9"));
        // Garbage right of the proxies: the nearest proxy's word ends there.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-address, 10.0.0.8")]);
        assert_eq!(m.client_address(ip("10.0.0.1"), &h), ip("10.0.0.8"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(m.client_address(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.3")]);
        assert_eq!(m.client_address(ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }

    #[test]
    fn a_mapped_ipv4_peer_is_matched_and_reported_as_ipv4() {
        let m = metadata(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(
            m.client_address(ip("::ffff:10.0.0.2"), &h),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn stamping_replaces_what_the_client_sent() {
        let m = metadata(&[]);
        let mut h = headers(&[
            ("outpost-client-ip", "1.1.1.1"),
            ("outpost-node", "forged"),
            ("outpost-tls-version", "TLSv1.3"),
            ("Outpost-Region", "nowhere"),
            ("outpost-trigger", "* * * * *"),
            ("outpost-scheduled-time", "0"),
            ("accept", "*/*"),
        ]);
        let plain = Connection {
            peer: "192.0.2.4:5000".parse().unwrap(),
            tls: None,
        };
        m.stamp(
            &mut h,
            ip("192.0.2.4"),
            &plain,
            http::Version::HTTP_11,
            "r-1",
        );
        assert_eq!(h["outpost-client-ip"], "192.0.2.4");
        assert_eq!(h["outpost-node"], "edge-1");
        assert_eq!(h["outpost-region"], "fra");
        assert_eq!(h["outpost-protocol"], "HTTP/1.1");
        assert_eq!(h["outpost-request-id"], "r-1");
        assert!(
            !h.contains_key("outpost-tls-version"),
            "plain HTTP has none"
        );
        assert_eq!(h.get_all("outpost-node").iter().count(), 1);
        assert!(
            !h.contains_key("outpost-trigger") && !h.contains_key("outpost-scheduled-time"),
            "a client cannot pass for a trigger"
        );
        assert_eq!(h["accept"], "*/*");

        let tls = Connection {
            tls: Some(rustls::ProtocolVersion::TLSv1_3),
            ..plain
        };
        m.stamp(&mut h, ip("192.0.2.4"), &tls, http::Version::HTTP_2, "r-2");
        assert_eq!(h["outpost-tls-version"], "TLSv1.3");
        assert_eq!(h["outpost-protocol"], "HTTP/2");
    }

    #[test]
    fn every_edge_header_has_the_prefix_the_removal_looks_for() {
        for name in &SET_BY_THE_EDGE {
            assert!(name.as_str().starts_with(EDGE_PREFIX), "{name}");
        }
    }

    #[test]
    fn a_trigger_request_is_marked_and_names_no_client() {
        let m = metadata(&[]);
        let mut h = HeaderMap::new();
        m.stamp_trigger(&mut h, "*/5 * * * *", 1_796_342_400, "r-3");
        assert_eq!(h["outpost-trigger"], "*/5 * * * *");
        assert_eq!(h["outpost-scheduled-time"], "1796342400000");
        assert_eq!(h["outpost-node"], "edge-1");
        assert_eq!(h["outpost-request-id"], "r-3");
        assert!(!h.contains_key("outpost-client-ip") && !h.contains_key("outpost-protocol"));
    }
}
