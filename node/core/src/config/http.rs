//! `[http]` of node.toml: the HTTP front end's limits and deadlines.

use std::time::Duration;

use serde::Deserialize;

use super::FieldError;
use super::error::in_range;

/// Limits of the HTTP front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time for a client to finish the TLS handshake and send a request's headers.
    pub header_timeout: Duration,
    /// The most a request's headers may take, in bytes (8 KiB to 1 MiB; default 64 KiB).
    pub max_header_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// Open connections the node accepts at once from all clients (default 10 000).
    pub max_connections: usize,
    /// How long a connection may sit with no request in flight before it is closed, whatever
    /// its protocol (HTTP/2 pings do not count). Its first request must come within
    /// `header_timeout`.
    pub idle_timeout: Duration,
    /// Open connections from one client address (an IPv6 client's /64); 0: no cap (behind a
    /// balancer every connection comes from it).
    pub max_connections_per_client: usize,
    /// How much of a request's body is read before it takes an instance (so a slow client
    /// holds no guest while it sends that much), and how much all requests may hold so at once.
    pub body_read_ahead_bytes: usize,
    /// The request body all requests together may hold read ahead, in bytes (default 64 MiB).
    pub body_read_ahead_total_bytes: usize,
    /// Balancers and proxies in front of the node: from a peer in these networks, the client's
    /// address is taken from `forwarded` / `x-forwarded-for` (empty: the peer is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            max_connections_per_client: 256,
            body_read_ahead_bytes: 1 << 20,
            body_read_ahead_total_bytes: 64 << 20,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[http]` as written.
pub(super) struct HttpFile {
    header_timeout_ms: Option<u64>,
    max_header_kb: Option<u64>,
    drain_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections_per_client: Option<u64>,
    body_read_ahead_kb: Option<u64>,
    body_read_ahead_total_mb: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

pub(super) fn http_settings(file: &HttpFile) -> Result<HttpSettings, FieldError> {
    let d = HttpSettings::default();
    let ms = |v: Duration| v.as_millis() as u64;
    Ok(HttpSettings {
        header_timeout: Duration::from_millis(in_range(
            file.header_timeout_ms,
            "header_timeout_ms",
            100..=600_000,
            ms(d.header_timeout),
        )?),
        max_header_bytes: (in_range(
            file.max_header_kb,
            "max_header_kb",
            8..=1024,
            d.max_header_bytes as u64 >> 10,
        )? << 10) as usize,
        drain_timeout: Duration::from_millis(in_range(
            file.drain_timeout_ms,
            "drain_timeout_ms",
            0..=3_600_000,
            ms(d.drain_timeout),
        )?),
        max_connections: in_range(
            file.max_connections,
            "max_connections",
            1..=1_000_000,
            d.max_connections as u64,
        )? as usize,
        idle_timeout: Duration::from_millis(in_range(
            file.idle_timeout_ms,
            "idle_timeout_ms",
            100..=3_600_000,
            ms(d.idle_timeout),
        )?),
        max_connections_per_client: in_range(
            file.max_connections_per_client,
            "max_connections_per_client",
            0..=1_000_000,
            d.max_connections_per_client as u64,
        )? as usize,
        body_read_ahead_bytes: (in_range(
            file.body_read_ahead_kb,
            "body_read_ahead_kb",
            0..=1 << 20,
            d.body_read_ahead_bytes as u64 >> 10,
        )? << 10) as usize,
        body_read_ahead_total_bytes: (in_range(
            file.body_read_ahead_total_mb,
            "body_read_ahead_total_mb",
            0..=1 << 16,
            d.body_read_ahead_total_bytes as u64 >> 20,
        )? << 20) as usize,
        trusted_proxies: super::egress::networks(&file.trusted_proxies, "trusted_proxies")?,
    })
}
