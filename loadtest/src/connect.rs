//! Opening one client connection (TCP, then TLS if asked, or QUIC) and an HTTP/1.1, HTTP/2
//! or HTTP/3 sender on it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::target::{Scheme, Target};

/// The HTTP version the load is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (ALPN `http/1.1` over TLS): one request in flight per connection.
    Http1,
    /// HTTP/2 (ALPN `h2` over TLS, prior knowledge over plain HTTP): many streams per connection.
    Http2,
    /// HTTP/3 (QUIC to the target's port over UDP, ALPN `h3`; HTTPS only): many streams per
    /// connection.
    Http3,
}

impl Protocol {
    /// Whether one connection carries many requests at once.
    pub(crate) fn multiplexed(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Http3)
    }
}

pub(crate) enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
    H3(h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>),
}

impl Sender {
    /// Another handle on the same connection, for one more lane (HTTP/2 and HTTP/3).
    pub(crate) fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(sender) => Some(Sender::H2(sender.clone())),
            Sender::H3(sender) => Some(Sender::H3(sender.clone())),
        }
    }
}

/// How to check the server's certificate.
pub(crate) fn tls_config(
    ca: Option<&Path>,
    protocol: Protocol,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots.add(cert?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // Loopback only, so skipping verification risks nothing but is never the default.
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![match protocol {
        Protocol::Http1 => b"http/1.1".to_vec(),
        Protocol::Http2 => b"h2".to_vec(),
        Protocol::Http3 => b"h3".to_vec(),
    }];
    Ok(Arc::new(config))
}

pub(crate) async fn connect(
    target: &Target,
    protocol: Protocol,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<Sender> {
    if protocol == Protocol::Http3 {
        return connect_quic(target, tls).await;
    }
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| anyhow!("connect: {e}"))?;
    tcp.set_nodelay(true)?;
    match target.scheme {
        Scheme::Http => handshake(TokioIo::new(tcp), protocol).await,
        Scheme::Https => {
            let name = ServerName::try_from(target.host.clone())?;
            let stream = TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| anyhow!("tls: {e}"))?;
            handshake(TokioIo::new(stream), protocol).await
        }
    }
}

/// A QUIC connection of its own (its own UDP socket, as a separate client's would be) and an
/// HTTP/3 sender on it.
async fn connect_quic(target: &Target, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Sender> {
    if target.scheme != Scheme::Https {
        anyhow::bail!("tls: HTTP/3 needs an https:// target");
    }
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.clone())
        .map_err(|e| anyhow!("tls: {e}"))?;
    let bind = if target.addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let mut endpoint =
        quinn::Endpoint::client(bind.parse()?).map_err(|e| anyhow!("connect: {e}"))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint
        .connect(target.addr, &target.host)
        .map_err(|e| anyhow!("connect: {e}"))?
        .await
        .map_err(|e| anyhow!("tls: {e}"))?;
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(connection))
        .await
        .map_err(|e| anyhow!("connect: {e}"))?;
    tokio::task::spawn_local(async move {
        let _closed = driver.wait_idle().await;
        drop(endpoint);
    });
    Ok(Sender::H3(sender))
}

async fn handshake<I>(io: I, protocol: Protocol) -> anyhow::Result<Sender>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Ok(match protocol {
        Protocol::Http1 => {
            let (sender, connection) = http1::handshake(io).await?;
            tokio::spawn(connection);
            Sender::H1(sender)
        }
        Protocol::Http2 | Protocol::Http3 => {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            Sender::H2(sender)
        }
    })
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
