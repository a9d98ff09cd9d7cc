//! The outbound allow-list: which origins a handler may fetch from.
//!
//! Entries are origins (`https://api.example.com`, `http://127.0.0.1:9000`), optionally with a
//! leading wildcard label (`https://*.example.com`). A request is allowed when its scheme, host
//! and port match one entry; a port left out means the scheme's default port.

use std::fmt;

/// One allow-list entry: a scheme, a host (exact, or any subdomain of a suffix) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    scheme: Scheme,
    host: HostMatch,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// Any subdomain of this suffix, not the suffix itself.
    Subdomains(String),
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl AllowedOrigin {
    /// Parse one allow-list entry; the error says what an entry looks like.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
            format!("{entry:?} needs a scheme, as in \"https://api.example.com\"")
        })?;
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| format!("{entry:?}: only http and https origins can be allowed"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{entry:?} must be an origin (scheme, host and optional port) without a path"
            ));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| format!("{entry:?} has an invalid port"))?;
        if host.is_empty() {
            return Err(format!("{entry:?} has no host"));
        }
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostMatch::Subdomains(suffix.to_string())
            }
            _ if host.contains('*') => {
                return Err(format!(
                    "{entry:?}: a wildcard must be the whole first label, as in \"https://*.example.com\""
                ));
            }
            _ => HostMatch::Exact(host),
        };
        Ok(AllowedOrigin {
            scheme,
            host,
            port: port.unwrap_or(scheme.default_port()),
        })
    }

    fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if self.scheme != scheme || self.port != port {
            return false;
        }
        match &self.host {
            HostMatch::Exact(allowed) => allowed.eq_ignore_ascii_case(host),
            HostMatch::Subdomains(suffix) => {
                let host = host.to_ascii_lowercase();
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        match &self.host {
            HostMatch::Exact(host) => write!(f, "{scheme}://{host}:{}", self.port),
            HostMatch::Subdomains(suffix) => write!(f, "{scheme}://*.{suffix}:{}", self.port),
        }
    }
}

/// `host:port` -> (host, Some(port)); `[::1]:80` -> ("[::1]", Some(80)); `host` -> (host, None).
/// `None` when a port is present but not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let port_at = if authority.starts_with('[') {
        authority.find(']').map(|end| end + 1)
    } else {
        authority.rfind(':')
    };
    match port_at {
        Some(at) if authority[at..].starts_with(':') => {
            let port = authority[at + 1..].parse().ok()?;
            Some((&authority[..at], Some(port)))
        }
        _ => Some((authority, None)),
    }
}

/// An app's whole allow-list. Empty means the app may not fetch at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    origins: Vec<AllowedOrigin>,
}

impl OutboundPolicy {
    /// A policy that allows exactly `origins`.
    pub fn new(origins: Vec<AllowedOrigin>) -> Self {
        OutboundPolicy { origins }
    }

    /// Whether a request to `scheme://authority` may go out.
    pub fn allows(&self, scheme: &str, authority: &str) -> bool {
        let Some(scheme) = Scheme::parse(scheme) else {
            return false;
        };
        let Some((host, port)) = split_host_port(authority) else {
            return false;
        };
        let port = port.unwrap_or(scheme.default_port());
        self.origins.iter().any(|o| o.allows(scheme, host, port))
    }

    /// The allowed origins, in the order they were listed.
    pub fn origins(&self) -> &[AllowedOrigin] {
        &self.origins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::new(
            entries
                .iter()
                .map(|e| AllowedOrigin::parse(e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn exact_origin_with_default_and_explicit_ports() {
        let p = policy(&["https://api.example.com", "http://127.0.0.1:9000/"]);
        assert!(p.allows("https", "api.example.com"));
        assert!(p.allows("https", "API.example.com:443"));
        assert!(!p.allows("http", "api.example.com"));
        assert!(!p.allows("https", "api.example.com:8443"));
        assert!(p.allows("http", "127.0.0.1:9000"));
        assert!(!p.allows("http", "127.0.0.1:9001"));
        assert!(!p.allows("http", "127.0.0.1"));
        assert!(!p.allows("https", "evil.com"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["https://*.example.com"]);
        assert!(p.allows("https", "a.example.com"));
        assert!(p.allows("https", "a.b.example.com"));
        assert!(!p.allows("https", "example.com"));
        assert!(!p.allows("https", "badexample.com"));
    }

    #[test]
    fn empty_policy_denies_everything() {
        assert!(!OutboundPolicy::default().allows("https", "example.com"));
    }

    #[test]
    fn ipv6_origin() {
        let p = policy(&["http://[::1]:8080"]);
        assert!(p.allows("http", "[::1]:8080"));
        assert!(!p.allows("http", "[::1]"));
    }

    #[test]
    fn rejects_entries_that_are_not_origins() {
        for (entry, needle) in [
            ("api.example.com", "needs a scheme"),
            ("ftp://x.com", "only http and https"),
            ("https://x.com/path", "without a path"),
            ("https://x.com:99999", "invalid port"),
            ("https://a*.x.com", "whole first label"),
            ("https://", "no host"),
        ] {
            let err = AllowedOrigin::parse(entry).unwrap_err();
            assert!(err.contains(needle), "{entry}: {err}");
        }
    }
}
