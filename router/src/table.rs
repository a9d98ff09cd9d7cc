//! The immutable lookup table built from route patterns.
//!
//! Every lookup is a handful of hash probes whose number depends on the number of labels in the
//! host and segments in the path, never on the number of routes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use crate::pattern::{HostPattern, PathPattern, RoutePattern};

type FastMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Routes for one host pattern, keyed by path.
#[derive(Debug)]
struct PathRoutes<T> {
    exact: FastMap<T>,
    /// Keyed by the prefix without its trailing slash: `""` is the root.
    prefix: FastMap<T>,
}

impl<T> Default for PathRoutes<T> {
    fn default() -> Self {
        PathRoutes {
            exact: FastMap::default(),
            prefix: FastMap::default(),
        }
    }
}

impl<T> PathRoutes<T> {
    fn lookup(&self, path: &str) -> Option<&T> {
        if !self.exact.is_empty()
            && let Some(value) = self.exact.get(path)
        {
            return Some(value);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Try the path itself, then each parent by whole segments: /a/b/c, /a/b, /a, "".
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some(value) = self.prefix.get(candidate) {
                return Some(value);
            }
            match candidate.rfind('/') {
                Some(cut) => candidate = &candidate[..cut],
                None => return None,
            }
        }
    }

    fn insert(&mut self, path: &PathPattern, value: T) -> Result<(), T> {
        let (map, key) = match path {
            PathPattern::Exact(p) => (&mut self.exact, p),
            PathPattern::Prefix(p) => (&mut self.prefix, p),
        };
        match map.entry(key.as_str().into()) {
            Entry::Occupied(_) => Err(value),
            Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.exact.values().chain(self.prefix.values())
    }

    fn len(&self) -> usize {
        self.exact.len() + self.prefix.len()
    }
}

/// An immutable route table from patterns to values of type `T`.
#[derive(Debug)]
pub struct RouteTable<T> {
    exact_hosts: FastMap<PathRoutes<T>>,
    subdomain_hosts: FastMap<PathRoutes<T>>,
    any_host: PathRoutes<T>,
}

/// Two routes with the same pattern: the table cannot say which one wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRoute(pub RoutePattern);

impl fmt::Display for DuplicateRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "two routes have the same pattern {:?}", self.0)
    }
}

impl std::error::Error for DuplicateRoute {}

/// Collects routes, then freezes them into a [`RouteTable`].
#[derive(Debug)]
pub struct RouteTableBuilder<T> {
    table: RouteTable<T>,
}

impl<T> Default for RouteTableBuilder<T> {
    fn default() -> Self {
        RouteTableBuilder {
            table: RouteTable {
                exact_hosts: FastMap::default(),
                subdomain_hosts: FastMap::default(),
                any_host: PathRoutes::default(),
            },
        }
    }
}

impl<T> RouteTableBuilder<T> {
    /// An empty builder; the same as [`RouteTable::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a route. A second route with the very same pattern is an error.
    pub fn add(&mut self, pattern: &RoutePattern, value: T) -> Result<(), DuplicateRoute> {
        let routes = match &pattern.host {
            HostPattern::Any => &mut self.table.any_host,
            HostPattern::Exact(host) => self
                .table
                .exact_hosts
                .entry(host.as_str().into())
                .or_default(),
            HostPattern::Subdomains(suffix) => self
                .table
                .subdomain_hosts
                .entry(suffix.as_str().into())
                .or_default(),
        };
        routes
            .insert(&pattern.path, value)
            .map_err(|_| DuplicateRoute(pattern.clone()))
    }

    /// Freeze the routes added so far into a table.
    pub fn build(self) -> RouteTable<T> {
        self.table
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTableBuilder::new().build()
    }
}

impl<T> RouteTable<T> {
    /// Start an empty [`RouteTableBuilder`].
    pub fn builder() -> RouteTableBuilder<T> {
        RouteTableBuilder::new()
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.exact_hosts
            .values()
            .map(PathRoutes::len)
            .sum::<usize>()
            + self
                .subdomain_hosts
                .values()
                .map(PathRoutes::len)
                .sum::<usize>()
            + self.any_host.len()
    }

    /// Whether the table holds no routes, so every lookup misses.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route's value (a value routed at several patterns comes once per pattern).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact_hosts
            .values()
            .chain(self.subdomain_hosts.values())
            .chain(std::iter::once(&self.any_host))
            .flat_map(PathRoutes::values)
    }

    /// Find the value for a request. `host` is the Host header or URI authority as received
    /// (any case, with or without a port); `path` is the URI path without the query.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.lookup_normalized(&host.to_ascii_lowercase(), path)
        } else {
            self.lookup_normalized(host, path)
        }
    }

    fn lookup_normalized(&self, host: &str, path: &str) -> Option<&T> {
        if !host.is_empty() {
            if let Some(value) = self.exact_hosts.get(host).and_then(|r| r.lookup(path)) {
                return Some(value);
            }
            if !self.subdomain_hosts.is_empty() {
                // a.b.example.com -> b.example.com, example.com, com: longest suffix first.
                let mut rest = host;
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    if let Some(value) = self.subdomain_hosts.get(rest).and_then(|r| r.lookup(path))
                    {
                        return Some(value);
                    }
                }
            }
        }
        self.any_host.lookup(path)
    }
}

/// `example.com:8443` -> `example.com`, `[::1]:8443` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &'static str)]) -> RouteTable<&'static str> {
        let mut builder = RouteTable::builder();
        for (pattern, value) in routes {
            builder
                .add(&RoutePattern::parse(pattern).unwrap(), *value)
                .unwrap();
        }
        builder.build()
    }

    fn at<'a>(table: &'a RouteTable<&'static str>, host: &str, path: &str) -> Option<&'a str> {
        table.lookup(host, path).copied()
    }

    #[test]
    fn values_lists_every_route() {
        let t = table(&[
            ("shop.example.com/api", "api"),
            ("*.example.com", "sub"),
            ("/static/*", "static"),
            ("*", "fallback"),
        ]);
        let mut values: Vec<&str> = t.values().copied().collect();
        values.sort();
        assert_eq!(values, ["api", "fallback", "static", "sub"]);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn exact_host_case_and_port_insensitive() {
        let t = table(&[("shop.example.com", "shop")]);
        assert_eq!(at(&t, "shop.example.com", "/"), Some("shop"));
        assert_eq!(at(&t, "SHOP.Example.COM:8443", "/x/y"), Some("shop"));
        assert_eq!(at(&t, "shop.example.com.", "/"), Some("shop"));
        assert_eq!(at(&t, "other.example.com", "/"), None);
    }

    #[test]
    fn subdomain_wildcard_excludes_apex_and_prefers_longest_suffix() {
        let t = table(&[("*.example.com", "any-sub"), ("*.eu.example.com", "eu")]);
        assert_eq!(at(&t, "a.example.com", "/"), Some("any-sub"));
        assert_eq!(at(&t, "x.y.example.com", "/"), Some("any-sub"));
        assert_eq!(at(&t, "shop.eu.example.com", "/"), Some("eu"));
        assert_eq!(at(&t, "eu.example.com", "/"), Some("any-sub"));
        assert_eq!(at(&t, "example.com", "/"), None);
        assert_eq!(at(&t, "badexample.com", "/"), None);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let t = table(&[
            ("*", "fallback"),
            ("*.example.com", "wild"),
            ("www.example.com", "www"),
        ]);
        assert_eq!(at(&t, "www.example.com", "/"), Some("www"));
        assert_eq!(at(&t, "api.example.com", "/"), Some("wild"));
        assert_eq!(at(&t, "elsewhere.org", "/"), Some("fallback"));
        assert_eq!(at(&t, "", "/"), Some("fallback"));
    }

    #[test]
    fn prefix_matches_whole_segments_and_longest_wins() {
        let t = table(&[
            ("a.com/", "root"),
            ("a.com/api/*", "api"),
            ("a.com/api/v2/*", "v2"),
        ]);
        assert_eq!(at(&t, "a.com", "/"), Some("root"));
        assert_eq!(at(&t, "a.com", ""), Some("root"));
        assert_eq!(at(&t, "a.com", "/api"), Some("api"));
        assert_eq!(at(&t, "a.com", "/api/"), Some("api"));
        assert_eq!(at(&t, "a.com", "/api/users/7"), Some("api"));
        assert_eq!(at(&t, "a.com", "/apis"), Some("root"));
        assert_eq!(at(&t, "a.com", "/api/v2"), Some("v2"));
        assert_eq!(at(&t, "a.com", "/api/v2/x"), Some("v2"));
        assert_eq!(at(&t, "a.com", "/api/v20"), Some("api"));
    }

    #[test]
    fn exact_path_beats_prefix_and_matches_only_itself() {
        let t = table(&[("a.com/health", "health"), ("a.com/*", "app")]);
        assert_eq!(at(&t, "a.com", "/health"), Some("health"));
        assert_eq!(at(&t, "a.com", "/health/"), Some("app"));
        assert_eq!(at(&t, "a.com", "/health/x"), Some("app"));
        let only_exact = table(&[("a.com/health", "health")]);
        assert_eq!(at(&only_exact, "a.com", "/"), None);
    }

    #[test]
    fn falls_through_to_less_specific_host_when_path_misses() {
        let t = table(&[
            ("a.com/api/*", "api"),
            ("*.com/static/*", "cdn"),
            ("/", "site"),
        ]);
        assert_eq!(at(&t, "a.com", "/api/x"), Some("api"));
        assert_eq!(at(&t, "a.com", "/static/logo.png"), Some("cdn"));
        assert_eq!(at(&t, "a.com", "/about"), Some("site"));
    }

    #[test]
    fn ipv6_and_ip_hosts() {
        let t = table(&[("127.0.0.1", "v4"), ("*", "other")]);
        assert_eq!(at(&t, "127.0.0.1:8443", "/"), Some("v4"));
        assert_eq!(at(&t, "[::1]:8443", "/"), Some("other"));
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("host"), "host");
    }

    #[test]
    fn duplicate_pattern_is_rejected_but_different_kinds_coexist() {
        let mut builder = RouteTable::builder();
        let p = RoutePattern::parse("a.com/x").unwrap();
        builder.add(&p, 1).unwrap();
        assert_eq!(builder.add(&p, 2), Err(DuplicateRoute(p)));
        builder
            .add(&RoutePattern::parse("a.com/x/*").unwrap(), 3)
            .unwrap();
        let t = builder.build();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("a.com", "/x"), Some(&1));
        assert_eq!(t.lookup("a.com", "/x/y"), Some(&3));
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t: RouteTable<u8> = RouteTable::default();
        assert!(t.is_empty());
        assert_eq!(t.lookup("a.com", "/"), None);
    }
}
