//! What to load: a URL on loopback. Anything that resolves elsewhere is refused, so the tool
//! cannot be pointed at someone else's server.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, anyhow, bail};

/// Whether the target is reached over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP; port 80 unless the URL gives one.
    Http,
    /// HTTPS; port 443 unless the URL gives one.
    Https,
}

/// A parsed load target, resolved to a loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`, from the URL.
    pub scheme: Scheme,
    /// The first address the host resolved to; every address it resolved to is loopback.
    pub addr: SocketAddr,
    /// Host header, and the TLS server name.
    pub host: String,
    /// The path and query sent in each request; `/` when the URL has none.
    pub path_and_query: String,
}

impl Target {
    /// Parse an `http(s)://` URL and resolve its host; fails unless every address is loopback.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => bail!("{url:?}: the URL must start with http:// or https://"),
        };
        let host = uri.host().ok_or_else(|| anyhow!("{url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let bare_host = host.trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = (bare_host, port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .collect();
        check_loopback(host, &addrs)?;
        Ok(Target {
            scheme,
            addr: addrs[0],
            host: bare_host.to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

/// Only 127.0.0.0/8 and ::1 may be loaded.
pub fn check_loopback(host: &str, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    if addrs.is_empty() {
        bail!("{host} resolves to no address");
    }
    if let Some(outside) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to load {host}: it resolves to {}, which is not loopback (127.0.0.0/8 or ::1)",
            outside.ip()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_only() {
        let t = Target::parse("https://127.0.0.1:8443/hello?x=1").unwrap();
        assert_eq!(
            (t.scheme, t.addr.port(), t.path_and_query.as_str()),
            (Scheme::Https, 8443, "/hello?x=1")
        );
        assert!(Target::parse("http://[::1]:8080/").is_ok());
        assert!(Target::parse("http://127.3.4.5:8080").is_ok());
        for outside in [
            "http://10.0.0.1/",
            "https://192.168.1.1:443/",
            "http://8.8.8.8/",
        ] {
            let err = Target::parse(outside).unwrap_err().to_string();
            assert!(err.contains("not loopback"), "{outside}: {err}");
        }
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
    }
}
