//! A small HTTPS client on hyper and rustls, with the control tests need: which SNI name to
//! send, which ALPN protocol to offer, and what certificate the server presented.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Which HTTP version a connection offers by ALPN and speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 (ALPN `http/1.1`).
    H1,
    /// HTTP/2 (ALPN `h2`); connecting fails unless the server agrees to it.
    H2,
}

/// A whole response, read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The HTTP version the response came back with.
    pub version: http::Version,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
}

impl Reply {
    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A TLS client for one server address, trusting the CA it was made with. Cheap to clone;
/// [`Client::send`] and [`Client::connect`] each open a new connection.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    roots: Arc<rustls::RootCertStore>,
    /// The local address to connect from (another loopback address is another client).
    source: Option<std::net::IpAddr>,
    /// A small socket receive buffer, for a client that reads slowly.
    recv_buffer: Option<u32>,
}

/// An open connection that can carry several requests (one at a time on HTTP/1.1, many at
/// once on HTTP/2).
pub enum Conn {
    /// An HTTP/1.1 connection.
    H1(http1::SendRequest<Full<Bytes>>),
    /// An HTTP/2 connection; clones of the sender share it.
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// A client for the server at `addr` that trusts the CA in `ca_pem`.
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        Client {
            addr,
            roots: Arc::new(roots),
            source: None,
            recv_buffer: None,
        }
    }

    /// The same client, with a socket receive buffer of `bytes` (a small TCP window).
    pub fn with_recv_buffer(&self, bytes: u32) -> Self {
        Client {
            recv_buffer: Some(bytes),
            ..self.clone()
        }
    }

    /// The same client, connecting from `source` (e.g. 127.0.0.2: another client to the server).
    pub fn from_source(&self, source: std::net::IpAddr) -> Self {
        Client {
            source: Some(source),
            ..self.clone()
        }
    }

    /// A TCP connection to the server (from the source address, if set).
    pub async fn tcp(&self) -> anyhow::Result<TcpStream> {
        if self.source.is_none() && self.recv_buffer.is_none() {
            return TcpStream::connect(self.addr).await.context("connecting");
        }
        let socket = if self.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(source) = self.source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        if let Some(bytes) = self.recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect(self.addr).await.context("connecting")
    }

    /// A bare TLS stream that offered only `alpn` (say `b"h2"`), for tests that write raw bytes
    /// or none at all.
    pub async fn tls_alpn(
        &self,
        server_name: &str,
        alpn: &[u8],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.handshake(server_name, alpn).await
    }

    /// The server address this client connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A bare TLS stream to the server, for tests that write raw bytes.
    pub async fn tls(
        &self,
        server_name: &str,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.handshake(server_name, b"http/1.1").await
    }

    /// Write `bytes` on a fresh TLS connection and read until the server closes it (at most
    /// ten seconds): what a raw, possibly malformed, exchange got back.
    pub async fn exchange(&self, server_name: &str, bytes: &[u8]) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.tls(server_name).await?;
        tls.write_all(bytes).await?;
        let mut response = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tls.read_to_end(&mut response),
        )
        .await;
        Ok(String::from_utf8_lossy(&response).into_owned())
    }

    async fn handshake(
        &self,
        server_name: &str,
        alpn: &[u8],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = self.tcp().await?;
        let name = ServerName::try_from(server_name.to_string())?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .context("TLS handshake")
    }

    /// Connect, handshake with SNI `server_name`, offering only `proto` by ALPN.
    pub async fn connect(
        &self,
        server_name: &str,
        proto: Proto,
    ) -> anyhow::Result<(Conn, Vec<u8>)> {
        let alpn: &[u8] = match proto {
            Proto::H1 => b"http/1.1",
            Proto::H2 => b"h2",
        };
        let tls = self.handshake(server_name, alpn).await?;
        let peer_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let negotiated = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let io = TokioIo::new(tls);
        let conn = match proto {
            Proto::H1 => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Conn::H1(sender)
            }
            Proto::H2 => {
                if negotiated.as_deref() != Some(b"h2") {
                    bail!("the server did not agree to h2 by ALPN");
                }
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(connection);
                Conn::H2(sender)
            }
        };
        Ok((conn, peer_cert))
    }

    /// One request on a fresh connection.
    pub async fn send(
        &self,
        server_name: &str,
        proto: Proto,
        request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<Reply> {
        let (mut conn, peer_cert) = self.connect(server_name, proto).await?;
        let mut reply = conn.send(server_name, request).await?;
        reply.peer_cert = peer_cert;
        Ok(reply)
    }

    /// `GET path` over HTTP/1.1 to `localhost`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send("localhost", Proto::H1, get(path)).await
    }
}

impl Conn {
    /// Send a request as [`Conn::send`] does, and return the response as soon as its head
    /// arrives, its body still to be read (for streamed bodies).
    pub async fn open(
        &mut self,
        host: &str,
        request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        Ok(match self {
            Conn::H1(sender) => {
                parts.uri = path.parse()?;
                if !parts.headers.contains_key(http::header::HOST) {
                    parts.headers.insert(http::header::HOST, host.parse()?);
                }
                sender.ready().await?;
                sender
                    .send_request(http::Request::from_parts(parts, body))
                    .await?
            }
            Conn::H2(sender) => {
                parts.uri = format!("https://{host}{path}").parse()?;
                parts.version = http::Version::HTTP_2;
                sender.ready().await?;
                sender
                    .send_request(http::Request::from_parts(parts, body))
                    .await?
            }
        })
    }

    /// Send a request whose URI is a path; host and scheme are filled in per protocol.
    pub async fn send(
        &mut self,
        host: &str,
        request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<Reply> {
        let response = self.open(host, request).await?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
            peer_cert: Vec::new(),
        })
    }
}

/// A `GET` request for `path`.
pub fn get(path: &str) -> http::Request<Full<Bytes>> {
    request("GET", path, Bytes::new())
}

/// A request with a body.
pub fn request(method: &str, path: &str, body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(body.into()))
        .expect("valid request")
}

/// One HTTP/1.1 request over plain TCP (for servers without TLS, such as `wasmtime serve`).
pub async fn plain(addr: SocketAddr, request: http::Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    plain_connection(addr)
        .await?
        .send(&addr.to_string(), request)
        .await
}

/// An HTTP/1.1 connection over plain TCP, kept open for request after request.
pub async fn plain_connection(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(addr).await.context("connecting")?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(Conn::H1(sender))
}
