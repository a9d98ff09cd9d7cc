//! Parsing route patterns such as `*.example.com/api/*` into a host part and a path part.

use std::fmt;

/// Which hosts a route applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Every host.
    Any,
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any subdomain of this suffix (lowercase, without the leading `*.`); not the suffix itself.
    Subdomains(String),
}

/// Which paths a route applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// This path and every path below it, by whole segments. Stored without a trailing slash,
    /// so the root prefix is the empty string.
    Prefix(String),
    /// Exactly this path.
    Exact(String),
}

/// A parsed route pattern: see the crate documentation for the language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    /// The hosts the route applies to.
    pub host: HostPattern,
    /// The paths it applies to on those hosts.
    pub path: PathPattern,
}

/// Why a route pattern was rejected. The message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePatternError {
    /// The pattern as written, before trimming.
    pub pattern: String,
    /// What is wrong with it and what to write instead.
    pub reason: String,
}

impl fmt::Display for RoutePatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid route {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for RoutePatternError {}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Exact(host) => f.write_str(host)?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
        }
        match &self.path {
            PathPattern::Prefix(prefix) => write!(f, "{prefix}/*"),
            PathPattern::Exact(path) => f.write_str(path),
        }
    }
}

impl RoutePattern {
    /// Parse a pattern such as `shop.example.com/api/*`, `*.example.com` or `/static/*`.
    pub fn parse(pattern: &str) -> Result<Self, RoutePatternError> {
        let fail = |reason: &str| RoutePatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let text = pattern.trim();
        if text.is_empty() {
            return Err(fail(
                "a route cannot be empty; use \"*\" to match everything",
            ));
        }
        if text.contains("://") {
            return Err(fail(
                "routes have no scheme: write \"example.com/path\", not \"https://example.com/path\"",
            ));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(fail("a route cannot contain whitespace"));
        }
        let (host_text, path_text) = match text.find('/') {
            Some(slash) => (&text[..slash], &text[slash..]),
            None => (text, ""),
        };
        let host = parse_host(host_text).map_err(|reason| fail(&reason))?;
        let path = parse_path(path_text).map_err(|reason| fail(&reason))?;
        Ok(RoutePattern { host, path })
    }
}

fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text.is_empty() || text == "*" {
        return Ok(HostPattern::Any);
    }
    let lower = text.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(suffix) = lower.strip_prefix("*.") {
        validate_hostname(suffix)?;
        return Ok(HostPattern::Subdomains(suffix.to_string()));
    }
    if lower.contains('*') {
        return Err(
            "a host wildcard must be the whole first label, as in \"*.example.com\"".to_string(),
        );
    }
    if lower.contains(':') {
        return Err("routes match hosts without a port: drop the \":port\"".to_string());
    }
    validate_hostname(lower)?;
    Ok(HostPattern::Exact(lower.to_string()))
}

fn validate_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("a host must have between 1 and 253 characters".to_string());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("host {host:?} has an empty label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "host {host:?} may hold only letters, digits, '-', '_' and '.'"
            ));
        }
    }
    Ok(())
}

fn parse_path(text: &str) -> Result<PathPattern, String> {
    if text.is_empty() || text == "/" || text == "/*" {
        return Ok(PathPattern::Prefix(String::new()));
    }
    if let Some(prefix) = text.strip_suffix("/*") {
        if prefix.contains('*') {
            return Err("'*' may appear only once, at the end of the path".to_string());
        }
        return Ok(PathPattern::Prefix(
            prefix.trim_end_matches('/').to_string(),
        ));
    }
    if text.contains('*') {
        return Err("a path wildcard must be a whole last segment, as in \"/api/*\"".to_string());
    }
    if text.contains('?') || text.contains('#') {
        return Err("a route path cannot hold a query or a fragment".to_string());
    }
    Ok(PathPattern::Exact(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RoutePattern {
        RoutePattern::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn host_only_matches_every_path() {
        assert_eq!(
            parse("Shop.Example.com"),
            RoutePattern {
                host: HostPattern::Exact("shop.example.com".into()),
                path: PathPattern::Prefix(String::new()),
            }
        );
    }

    #[test]
    fn any_host_forms() {
        for text in ["*", "/", "/*", "*/*", "*/"] {
            assert_eq!(
                parse(text),
                RoutePattern {
                    host: HostPattern::Any,
                    path: PathPattern::Prefix(String::new()),
                },
                "{text}"
            );
        }
    }

    #[test]
    fn wildcard_host_and_prefix_path() {
        assert_eq!(
            parse("*.example.com/api/*"),
            RoutePattern {
                host: HostPattern::Subdomains("example.com".into()),
                path: PathPattern::Prefix("/api".into()),
            }
        );
    }

    #[test]
    fn exact_path_and_trailing_dot() {
        assert_eq!(
            parse("example.com./health"),
            RoutePattern {
                host: HostPattern::Exact("example.com".into()),
                path: PathPattern::Exact("/health".into()),
            }
        );
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (text, shown) in [
            ("Shop.example.com", "shop.example.com/*"),
            ("*.example.com/api/*", "*.example.com/api/*"),
            ("/", "*/*"),
            ("a.com/health", "a.com/health"),
        ] {
            let pattern = parse(text);
            assert_eq!(pattern.to_string(), shown);
            assert_eq!(parse(shown), pattern);
        }
    }

    #[test]
    fn rejects_what_it_cannot_match() {
        for (text, needle) in [
            ("", "empty"),
            ("https://example.com/", "scheme"),
            ("exa*mple.com", "first label"),
            ("example.com:8443/", "port"),
            ("example.com/api*", "whole last segment"),
            ("example.com/a/*/b/*", "only once"),
            ("example..com", "empty label"),
            ("ex ample.com", "whitespace"),
            ("exa$mple.com", "letters"),
            ("example.com/a?b=1", "query"),
        ] {
            let err = RoutePattern::parse(text).expect_err(text);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
