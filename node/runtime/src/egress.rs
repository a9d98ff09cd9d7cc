//! Outbound requests on the wire, under the node's egress policy: resolve the host, check
//! every address it resolved to, connect only to an address that passed (so a name that
//! re-resolves elsewhere between check and connect reaches nothing new), TLS with the host's
//! own name, HTTP/1.1, and the connect, first-byte and between-bytes timeouts.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use outpost_core::config::EgressPolicy;

/// What `send` gives back: the response, and a future that ends with its connection.
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Send `request` (absolute URI) within `options`' timeouts, if `policy` lets it reach an
/// address its host resolves to. `permit` (the app's share of outbound connections) is held
/// until the connection closes.
pub(crate) async fn send(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    policy: Arc<EgressPolicy>,
    permit: OwnedSemaphorePermit,
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect_timeout = options.connect_timeout.unwrap_or(Duration::from_secs(10));

    let candidates = resolve(host, port, connect_timeout).await?;
    let permitted: Vec<SocketAddr> = candidates
        .iter()
        .copied()
        .filter(|address| match policy.check(*address) {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!("outbound request to {host}:{port} refused: {reason}");
                false
            }
        })
        .collect();
    if permitted.is_empty() {
        return Err(Error::DestinationIpProhibited);
    }
    let stream = connect(&permitted, connect_timeout).await?;

    // Only the path goes on the wire; the host travels in the Host header.
    *request.uri_mut() = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let first_byte = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(30));
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_nanos(1));

    let (mut sender, connection) = if tls {
        let name = server_name(host)?;
        let stream = tokio::time::timeout(
            connect_timeout,
            tokio_rustls::TlsConnector::from(tls_config()).connect(name, stream),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Tls)?;
        handshake(stream, connect_timeout).await?
    } else {
        handshake(stream, connect_timeout).await?
    };
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let io = async move {
        let ended = connection.await;
        drop(permit);
        match ended {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(err)) if err.is_timeout() => Err(Error::HttpResponseTimeout),
            Ok(Err(err)) => Err(Error::from(err)),
        }
    };
    let response = response.map(|incoming| {
        TimedBody {
            incoming,
            between_bytes,
            deadline: Box::pin(tokio::time::sleep(between_bytes)),
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(io)))
}

type Connection = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// An HTTP/1.1 client over `stream`, its connection driven by a task of its own.
async fn handshake<S>(
    stream: S,
    timeout: Duration,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<WasiBody>,
        Connection,
    ),
    Error,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::from)?;
    Ok((sender, tokio::spawn(connection)))
}

/// The addresses `host` names: itself if it is one, else what DNS answers.
async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(err)) => Err(Error::DnsError {
            rcode: Some(err.to_string()),
            info_code: None,
        }),
        Ok(Ok(found)) => {
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                Err(Error::DestinationNotFound)
            } else {
                Ok(found)
            }
        }
    }
}

/// A connection to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => last = Error::Connect(err),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, Error> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(rustls_pki_types::ServerName::from(ip)),
        Err(_) => rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| Error::HttpRequestUriInvalid),
    }
}

/// One TLS client configuration for every outbound request: the Web PKI roots.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// A response body that fails if the next bytes take longer than `between_bytes`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
