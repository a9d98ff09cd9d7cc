//! The local development CA of `outpost dev`, and the localhost certificate it signs.
//!
//! The CA is made once and kept in the data directory so a browser or `curl --cacert` trusts it
//! across runs; the localhost certificate is reissued at every start (it is cheap, and it never
//! expires under a long-lived CA), naming each app's `NAME.localhost`: clients refuse a
//! wildcard `*.localhost` (a wildcard over a single label), so every name is listed.

use std::path::{Path, PathBuf};

use outpost_core::config::TlsCertSpec;
use outpost_net::pki::{CertAuthority, Usage};

/// Names the dev certificate serves besides the apps'.
pub const DEV_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Where the dev CA and certificate live.
pub struct DevCertificates {
    /// The dev CA's certificate (PEM), for a browser or `curl --cacert` to trust.
    pub ca_cert: PathBuf,
    /// The localhost certificate and key, served for `localhost` and `*.localhost`.
    pub cert: TlsCertSpec,
}

/// Make (or reuse) the dev CA in `dir` and issue a fresh localhost certificate from it, for
/// `NAME.localhost` of each of `apps` too.
pub fn ensure(dir: &Path, apps: &[&str]) -> anyhow::Result<DevCertificates> {
    let ca = CertAuthority::load_or_create(dir, "dev-ca", "Outpost development CA")?;
    let names: Vec<String> = DEV_HOSTS
        .iter()
        .map(|h| h.to_string())
        .chain(apps.iter().map(|app| format!("{app}.localhost")))
        .collect();
    let (cert, key) = ca.issue(dir, "localhost", &names, Usage::Server, 365)?;
    Ok(DevCertificates {
        ca_cert: ca.cert_path.clone(),
        cert: TlsCertSpec {
            hosts: vec!["localhost".into(), "*.localhost".into()],
            cert,
            key,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_kept_and_certificate_reissued() {
        let dir = outpost_core::test_support::temp_dir("devcert");
        let first = ensure(&dir, &[]).unwrap();
        let ca_before = std::fs::read(&first.ca_cert).unwrap();
        let second = ensure(&dir, &["shop"]).unwrap();
        assert_eq!(ca_before, std::fs::read(&second.ca_cert).unwrap());
        let key =
            outpost_net::tls::load_certified_key(&second.cert.cert, &second.cert.key).unwrap();
        assert_eq!(key.cert.len(), 2, "leaf and CA");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
