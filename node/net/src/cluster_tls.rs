//! Mutual TLS for the cluster link: every member holds a certificate from the cluster CA
//! (`outpost ca init`, `outpost ca issue`), and both ends of every QUIC connection check the
//! other's. A peer also proves the name it claims: the origin checks that a node's certificate
//! is issued for the node name it subscribes with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use outpost_core::config::ClusterIdentity;

/// ALPN of the cluster protocol, the newest first: both ends offer every version they speak and
/// the origin (or the accepting peer) picks the newest they share, so a fleet upgrades one
/// member at a time. Version 2 adds snapshot parts (`FromOrigin::SnapshotPart`).
pub const ALPN: &[&[u8]] = &[b"outpost-cluster/2", b"outpost-cluster/1"];

/// The cluster protocol version a connection speaks (1 or 2).
pub fn protocol_version(connection: &quinn::Connection) -> u32 {
    connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .and_then(|protocol| {
            std::str::from_utf8(&protocol)
                .ok()?
                .strip_prefix("outpost-cluster/")?
                .parse()
                .ok()
        })
        .unwrap_or(1)
}

pub(crate) struct Loaded {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// A member's credentials read from their files.
pub(crate) fn load(identity: &ClusterIdentity) -> anyhow::Result<Loaded> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&identity.ca)? {
        roots
            .add(cert)
            .with_context(|| format!("{} is not a usable CA certificate", identity.ca.display()))?;
    }
    let chain = read_certs(&identity.cert)?;
    let key_pem = std::fs::read(&identity.key)
        .with_context(|| format!("reading {}", identity.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("{}: not a PEM private key: {e}", identity.key.display()))?;
    Ok(Loaded {
        roots: Arc::new(roots),
        chain,
        key,
    })
}

/// Keep-alives every half second and a 3-second idle timeout: a crashed origin or a cut link
/// is noticed within 3 s, so a node on a fleet of several origins fails over and takes writes
/// again within about 4 (KV writes fail fast meanwhile, peers take over reads' freshness), yet
/// it takes six keep-alives lost in a row to drop a healthy link.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_millis(500)))
        .max_idle_timeout(Some(
            Duration::from_secs(3)
                .try_into()
                .expect("valid idle timeout"),
        ));
    Arc::new(transport)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The origin's side: present our certificate, require one from the cluster CA.
pub fn server_config(identity: &ClusterIdentity) -> anyhow::Result<quinn::ServerConfig> {
    let loaded = load(identity)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(loaded.roots, provider())
        .build()
        .context("building the cluster client verifier")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(loaded.chain, loaded.key)
        .with_context(|| {
            format!(
                "{} and {} do not match",
                identity.cert.display(),
                identity.key.display()
            )
        })?;
    tls.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// A member's client side: present our certificate, trust only the cluster CA.
pub fn client_config(identity: &ClusterIdentity) -> anyhow::Result<quinn::ClientConfig> {
    let loaded = load(identity)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(loaded.roots)
        .with_client_auth_cert(loaded.chain, loaded.key)
        .with_context(|| {
            format!(
                "{} and {} do not match",
                identity.cert.display(),
                identity.key.display()
            )
        })?;
    tls.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// Check that the peer's (already CA-verified) certificate is issued for `name`.
pub fn verify_peer_name(connection: &quinn::Connection, name: &str) -> anyhow::Result<()> {
    let identity = connection
        .peer_identity()
        .ok_or_else(|| anyhow!("the peer presented no certificate"))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| anyhow!("unexpected peer identity type"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| anyhow!("the peer presented an empty chain"))?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| anyhow!("unreadable peer certificate: {e}"))?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| anyhow!("{name:?} is not a valid name: {e}"))?;
    cert.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| anyhow!("the peer's certificate is not issued for {name:?}"))
}
