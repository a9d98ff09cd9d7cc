//! A throwaway certificate authority for tests that run `outpost node` with real PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A self-signed CA (common name "outpost test CA"), made fresh per test, that issues leaf
/// certificates for the hosts a test serves.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Generate a new CA key and self-signed certificate.
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "outpost test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA certificate as PEM, for a [`crate::Client`] to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Write the CA certificate to `dir/ca.pem`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("writing ca.pem");
        path
    }

    /// Issue a certificate for `hosts`, written as `dir/NAME.pem` and `dir/NAME-key.pem`.
    pub fn issue(&self, dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("writing cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("writing key");
        (cert_path, key_path)
    }
}
