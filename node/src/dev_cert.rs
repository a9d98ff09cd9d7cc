//! The local development CA of `outpost dev`, and the localhost certificate it signs.
//!
//! The CA is made once and kept in the data directory so a browser or `curl --cacert` trusts it
//! across runs; the localhost certificate is reissued at every start (it is cheap, and it never
//! expires under a long-lived CA).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::config::TlsCertSpec;

/// Names the dev certificate serves.
pub const DEV_HOSTS: &[&str] = &["localhost", "*.localhost", "127.0.0.1", "::1"];

/// Where the dev CA and certificate live.
pub struct DevCertificates {
    pub ca_cert: PathBuf,
    pub cert: TlsCertSpec,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Outpost development CA");
    name.push(DnType::OrganizationName, "Outpost dev (local only)");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params
}

/// Make (or reuse) the dev CA in `dir` and issue a fresh localhost certificate from it.
pub fn ensure(dir: &Path) -> anyhow::Result<DevCertificates> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_cert_path = dir.join("dev-ca.pem");
    let ca_key_path = dir.join("dev-ca-key.pem");

    let ca_key = if ca_cert_path.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a usable key", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_cert_path, cert.pem())?;
        key
    };
    // The issuer is rebuilt from the same fixed parameters the CA was made with: same subject,
    // same key, so what it signs chains to the CA certificate on disk.
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut params =
        CertificateParams::new(DEV_HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let cert_path = dir.join("localhost.pem");
    let key_path = dir.join("localhost-key.pem");
    std::fs::write(
        &cert_path,
        format!("{}{}", cert.pem(), std::fs::read_to_string(&ca_cert_path)?),
    )?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(DevCertificates {
        ca_cert: ca_cert_path,
        cert: TlsCertSpec {
            hosts: vec!["localhost".into(), "*.localhost".into()],
            cert: cert_path,
            key: key_path,
        },
    })
}

/// Write a secret readable by the owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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
    fn ca_is_kept_and_certificate_reissued() {
        let dir = std::env::temp_dir().join(format!("outpost-devcert-{}", std::process::id()));
        let first = ensure(&dir).unwrap();
        let ca_before = std::fs::read(&first.ca_cert).unwrap();
        let second = ensure(&dir).unwrap();
        assert_eq!(ca_before, std::fs::read(&second.ca_cert).unwrap());
        let key =
            crate::server::tls::load_certified_key(&second.cert.cert, &second.cert.key).unwrap();
        assert_eq!(key.cert.len(), 2, "leaf and CA");
        let mode = std::fs::metadata(dir.join("dev-ca-key.pem"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
