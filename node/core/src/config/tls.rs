//! `[tls]` of node.toml: the certificates a node serves, each with the host names it is for.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::FieldError;

/// One certificate with the host names it serves (exact or `*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertSpec {
    /// The host names the certificate is chosen for: exact, or `*.example.com` for any subdomain.
    pub hosts: Vec<String>,
    /// The certificate chain (PEM), resolved against node.toml's directory.
    pub cert: PathBuf,
    /// The private key (PEM) of `cert`, resolved against node.toml's directory.
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[tls]` as written.
pub(super) struct TlsFile {
    certs: Vec<CertFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[tls.certs]]` as written.
struct CertFile {
    hosts: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFile {
    /// The certificates, their paths taken from `base`; each must list its hosts and name
    /// files that are there.
    pub(super) fn certs(self, base: &Path) -> Result<Vec<TlsCertSpec>, FieldError> {
        if self.certs.is_empty() {
            return Err(FieldError::new(
                "tls.certs",
                "at least one [[tls.certs]] entry is needed",
            ));
        }
        self.certs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if c.hosts.is_empty() {
                    return Err(FieldError::new(
                        format!("tls.certs[{i}].hosts"),
                        "list the host names this certificate serves",
                    ));
                }
                for (j, host) in c.hosts.iter().enumerate() {
                    validate_cert_host(host)
                        .map_err(|m| FieldError::new(format!("tls.certs[{i}].hosts[{j}]"), m))?;
                }
                for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
                    let path = base.join(path);
                    if !path.is_file() {
                        return Err(FieldError::new(
                            format!("tls.certs[{i}].{field}"),
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                Ok(TlsCertSpec {
                    hosts: c.hosts,
                    cert: base.join(c.cert),
                    key: base.join(c.key),
                })
            })
            .collect()
    }
}

/// Check a host name a certificate is listed for: `example.com` or `*.example.com`.
pub fn validate_cert_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name (or a *.domain wildcard)"
        ))
    }
}
