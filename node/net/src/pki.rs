//! Small certificate authorities made with rcgen: the `outpost dev` CA and the cluster CA
//! (`outpost ca init` / `outpost ca issue`).
//!
//! A CA is a key plus a self-signed certificate on disk. Signing later needs only the key and
//! the CA's subject, which is rebuilt from the same fixed parameters, so no certificate parser
//! is needed to load a CA back.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A CA on disk: `<stem>.pem` and `<stem>-key.pem` in a directory.
pub struct CertAuthority {
    /// The CA's certificate (`<stem>.pem`), for peers and clients to trust.
    pub cert_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// What an issued certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server only, such as the HTTPS listeners of `outpost dev`.
    Server,
    /// Both ends of mutual TLS (cluster members).
    ServerAndClient,
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Outpost");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params
}

impl CertAuthority {
    /// Create a CA in `dir` named `stem`; refuses to overwrite an existing one.
    pub fn create(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<Self> {
        let (cert_path, key_path) = paths(dir, stem);
        if cert_path.exists() || key_path.exists() {
            bail!(
                "{} already exists; refusing to replace a CA",
                cert_path.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = KeyPair::generate()?;
        let cert = ca_params(common_name).self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        std::fs::write(&cert_path, cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        Ok(CertAuthority {
            cert_path,
            issuer: Issuer::new(ca_params(common_name), key),
        })
    }

    /// Load the CA named `stem` from `dir`.
    pub fn load(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<Self> {
        let (cert_path, key_path) = paths(dir, stem);
        if !cert_path.exists() {
            bail!("{} does not exist", cert_path.display());
        }
        let pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a usable key", key_path.display()))?;
        Ok(CertAuthority {
            cert_path,
            issuer: Issuer::new(ca_params(common_name), key),
        })
    }

    /// Load the CA, or create it if it does not exist yet.
    pub fn load_or_create(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<Self> {
        if paths(dir, stem).0.exists() {
            Self::load(dir, stem, common_name)
        } else {
            Self::create(dir, stem, common_name)
        }
    }

    /// Issue a certificate for `names` (DNS names or IP addresses; the first is the subject),
    /// written with its key as `<dir>/<stem>.pem` (leaf then CA) and `<dir>/<stem>-key.pem`.
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[String],
        usage: Usage,
        days: i64,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let Some(subject) = names.first() else {
            bail!("a certificate needs at least one name");
        };
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, subject.as_str());
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;

        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert_path, key_path) = paths(dir, stem);
        let ca_pem = std::fs::read_to_string(&self.cert_path)?;
        std::fs::write(&cert_path, format!("{}{ca_pem}", cert.pem()))
            .with_context(|| format!("writing {}", cert_path.display()))?;
        write_private(&key_path, &key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    )
}

/// Write a secret readable by the owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_issue_and_refuse_to_overwrite() {
        let dir = outpost_core::test_support::temp_dir("pki");
        std::fs::remove_dir(&dir).unwrap();
        let ca = CertAuthority::create(&dir, "ca", "Test CA").unwrap();
        assert!(CertAuthority::create(&dir, "ca", "Test CA").is_err());
        let (cert, key) = ca
            .issue(
                &dir,
                "edge-1",
                &["edge-1".into(), "127.0.0.1".into()],
                Usage::ServerAndClient,
                30,
            )
            .unwrap();
        let reloaded = CertAuthority::load(&dir, "ca", "Test CA").unwrap();
        reloaded
            .issue(&dir, "edge-2", &["edge-2".into()], Usage::Server, 30)
            .unwrap();
        let certified = crate::tls::load_certified_key(&cert, &key).unwrap();
        assert_eq!(certified.cert.len(), 2);
        let mode = std::fs::metadata(dir.join("ca-key.pem"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
