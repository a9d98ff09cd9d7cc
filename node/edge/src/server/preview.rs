//! Preview hosts: every version a node runs, reachable before (and besides) its activation, at
//! `v{VERSION}--{APP}.{preview domain}` (as Workers' preview URLs are), so an uploaded version
//! is tried in place, on the fleet, with its own config and the fleet's KV.
//!
//! One label under the domain keeps every preview under one wildcard certificate
//! (`*.preview.example.com`); a host label is at most 63 characters, so an app name longer than
//! 63 less `v{VERSION}--` has no preview host.

use super::redirect::strip_port;

/// The preview domain and how to read a preview host under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewHosts {
    /// `.` and the domain, lowercase.
    suffix: String,
}

impl PreviewHosts {
    /// Preview hosts under `domain` (such as `preview.example.com`).
    pub fn new(domain: &str) -> Self {
        PreviewHosts {
            suffix: format!(".{}", domain.trim_matches('.').to_ascii_lowercase()),
        }
    }

    /// Whether `host` (a Host header, perhaps with a port) is under the preview domain; if it
    /// is, the app and version it names, if it names one.
    pub fn parse(&self, host: &str) -> Option<Option<(String, u64)>> {
        let host = strip_port(host);
        let cut = host.len().checked_sub(self.suffix.len())?;
        let (label, suffix) = (host.get(..cut)?, host.get(cut..)?);
        if !suffix.eq_ignore_ascii_case(&self.suffix) {
            return None;
        }
        Some(named_version(&label.to_ascii_lowercase()))
    }
}

/// `v4--shop` as app `shop`, version 4.
fn named_version(label: &str) -> Option<(String, u64)> {
    let (version, app) = label.strip_prefix('v')?.split_once("--")?;
    if app.is_empty() || app.contains('.') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((app.to_string(), version.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_host_names_an_app_and_a_version() {
        let hosts = PreviewHosts::new("Preview.Example.com");
        let named = |app: &str, v| Some(Some((app.to_string(), v)));
        assert_eq!(
            hosts.parse("v4--shop.preview.example.com"),
            named("shop", 4)
        );
        assert_eq!(
            hosts.parse("V12--My-App.PREVIEW.example.com:8443"),
            named("my-app", 12)
        );
        assert_eq!(
            hosts.parse("v1--a--b.preview.example.com"),
            named("a--b", 1)
        );
        // Under the domain, but no version named: refused there, not routed elsewhere.
        for odd in [
            "shop.preview.example.com",
            "v--shop.preview.example.com",
            "vx--shop.preview.example.com",
            "v4--.preview.example.com",
            "v4--a.b.preview.example.com",
            "v99999999999999999999--a.preview.example.com",
        ] {
            assert_eq!(hosts.parse(odd), Some(None), "{odd}");
        }
        // Not under the domain at all.
        for other in [
            "shop.example.com",
            "preview.example.com",
            "v4--shopxpreview.example.com",
        ] {
            assert_eq!(hosts.parse(other), None, "{other}");
        }
    }
}
