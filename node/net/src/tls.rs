//! TLS termination: certificates from PEM files, chosen per connection by SNI.
//!
//! A certificate serves the hosts listed for it, exactly or through `*.example.com`. A client
//! that sends no SNI, or a name no certificate lists, gets the first certificate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use outpost_core::config::TlsCertSpec;
#[cfg(test)]
use outpost_core::config::validate_cert_host;

/// Picks the certificate for each handshake.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Load every certificate; the first is the default.
    pub fn load(specs: &[TlsCertSpec]) -> anyhow::Result<Self> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for spec in specs {
            let key = Arc::new(load_certified_key(&spec.cert, &spec.key)?);
            default.get_or_insert_with(|| key.clone());
            for host in &spec.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_string(), key.clone()),
                    None => exact.insert(host, key.clone()),
                };
            }
        }
        Ok(SniResolver {
            exact,
            wildcard,
            default: default.ok_or_else(|| anyhow!("no TLS certificate configured"))?,
        })
    }

    /// The certificate for a server name (or for none).
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        // A wildcard covers exactly one label: a.example.com, not a.b.example.com.
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return key.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// Read a PEM certificate chain and private key, and check that they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertifiedKey> {
    let cert_pem = std::fs::read(cert_path)
        .with_context(|| format!("reading certificate {}", cert_path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow!(
                "{}: not a PEM certificate chain: {err}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        bail!("{}: holds no PEM certificate", cert_path.display());
    }
    let key_pem = std::fs::read(key_path)
        .with_context(|| format!("reading private key {}", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| anyhow!("{}: not a PEM private key: {err}", key_path.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|err| {
        anyhow!(
            "{} and {} do not make a usable certificate: {err}",
            cert_path.display(),
            key_path.display()
        )
    })
}

/// The rustls server configuration: SNI resolver, ALPN h2 and http/1.1, session tickets.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption saves returning clients a full handshake.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_host_validation() {
        assert!(validate_cert_host("example.com").is_ok());
        assert!(validate_cert_host("*.example.com").is_ok());
        assert!(validate_cert_host("localhost").is_ok());
        assert!(validate_cert_host("a.*.example.com").is_err());
        assert!(validate_cert_host("").is_err());
        assert!(validate_cert_host("exa mple.com").is_err());
    }
}
