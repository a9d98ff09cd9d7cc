//! HTTP/3: the HTTPS listener's UDP side (h3 over quinn), with the limits of the TCP serve loop
//! (`listener`): at most `max_connections`, and `max_connections_per_client` per client
//! address, the TLS handshake and each request's headers within the header timeout, a
//! connection with no request in flight closed after the idle timeout, and on shutdown a
//! GOAWAY, then the requests in flight given up to the drain timeout.
//!
//! Requests reach an [`Http3Handler`] as `http::Request`s with HTTP/3 as their version and a
//! [`RequestBody`] streamed from the QUIC stream; responses stream back frame by frame.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http_body::{Body, Frame};
use rustls::server::ResolvesServerCert;
use tokio::sync::Semaphore;

use crate::client_cap::ClientCap;
use crate::listener::{Connection, OpenConnection, ShutdownSignal, drain, wait_for_shutdown};
use outpost_core::config::HttpSettings;
use outpost_core::metrics::metrics;

/// Streams a client may have open at once on one connection: requests in flight.
const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Something that answers HTTP/3 requests (the edge).
pub trait Http3Handler: Send + Sync + 'static {
    /// The body of its responses.
    type Body: Body<Data = Bytes, Error: std::fmt::Display + Send> + Send + Unpin + 'static;

    /// Answer one request, which arrived on `connection`.
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: Connection,
    ) -> impl Future<Output = http::Response<Self::Body>> + Send;
}

/// A QUIC endpoint on `addr` (UDP) serving HTTP/3 with the certificates of `resolver`. The
/// port may still be held by a process handing over its listeners: binding is retried for up
/// to `wait`.
pub async fn endpoint(
    addr: SocketAddr,
    resolver: Arc<dyn ResolvesServerCert>,
    settings: &HttpSettings,
    wait: Duration,
) -> anyhow::Result<quinn::Endpoint> {
    let mut tls = (*crate::tls::server_config(resolver)?).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("TLS for QUIC (TLS 1.3 only)")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let transport = Arc::get_mut(&mut config.transport).expect("a new config is not shared");
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS_PER_CONNECTION.into())
        // The client's control stream and its QPACK encoder and decoder streams.
        .max_concurrent_uni_streams(3u32.into())
        .max_idle_timeout(Some(
            settings
                .idle_timeout
                .try_into()
                .context("[http] idle_timeout_ms for QUIC")?,
        ));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(socket) => {
                let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
                return quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(config),
                    socket,
                    runtime,
                )
                .context("starting the HTTP/3 endpoint");
            }
            Err(err)
                if err.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err).with_context(|| format!("binding UDP {addr} for HTTP/3")),
        }
    }
}

/// Serve HTTP/3 on `endpoint` until `shutdown`, then drain (see the module doc).
pub async fn serve<H: Http3Handler>(
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    settings: HttpSettings,
    mut shutdown: ShutdownSignal,
) {
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let clients = ClientCap::new(settings.max_connections_per_client);
    let settings = Arc::new(settings);
    loop {
        let incoming = tokio::select! {
            biased;
            _ = wait_for_shutdown(&mut shutdown) => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        let refused = |reason: &str| {
            metrics()
                .connections_refused
                .with_label_values(&[reason])
                .inc();
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused("max_connections");
            incoming.refuse();
            continue;
        };
        let Some(slot) = clients.admit(incoming.remote_address().ip()) else {
            refused("per_client");
            incoming.refuse();
            continue;
        };
        let (handler, settings, shutdown) = (handler.clone(), settings.clone(), shutdown.clone());
        let open = OpenConnection::counted();
        tokio::spawn(async move {
            serve_connection(incoming, handler, &settings, shutdown).await;
            drop((open, slot, permit));
        });
    }
    // New connections are refused from here; those open finish their requests.
    drain(&connections, &settings).await;
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
}

async fn serve_connection<H: Http3Handler>(
    incoming: quinn::Incoming,
    handler: Arc<H>,
    settings: &HttpSettings,
    mut shutdown: ShutdownSignal,
) {
    let handshakes = &metrics().tls_handshakes;
    let quic = match tokio::time::timeout(settings.header_timeout, incoming).await {
        Ok(Ok(connection)) => {
            handshakes.inc();
            connection
        }
        Ok(Err(err)) => {
            tracing::debug!("QUIC handshake failed: {err}");
            return handshake_failed("error");
        }
        Err(_) => return handshake_failed("timeout"),
    };
    let about = Connection {
        peer: quic.remote_address(),
        tls: Some(rustls::ProtocolVersion::TLSv1_3),
    };
    let mut connection = match h3::server::builder()
        .max_field_section_size(settings.max_header_bytes as u64)
        .build(h3_quinn::Connection::new(quic.clone()))
        .await
    {
        Ok(connection) => connection,
        Err(err) => {
            tracing::debug!("HTTP/3 connection setup failed: {err}");
            return;
        }
    };
    // The connection's requests in flight, each its own task.
    let mut requests = tokio::task::JoinSet::new();
    // The first request must come within the header timeout; later, a connection with no
    // request in flight may wait the idle timeout for the next.
    let mut wait = settings.header_timeout;
    loop {
        while requests.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(wait, connection.accept()) => accepted,
            _ = wait_for_shutdown(&mut shutdown) => {
                // GOAWAY: no new requests; those in flight finish (the drain bounds them).
                let _ = connection.shutdown(0).await;
                break;
            }
        };
        let resolver = match accepted {
            Ok(Ok(Some(resolver))) => resolver,
            Ok(Ok(None)) => break,
            Ok(Err(err)) => {
                tracing::debug!("HTTP/3 connection ended: {err}");
                break;
            }
            Err(_) if !requests.is_empty() => continue,
            Err(_) => {
                let reason = if wait == settings.header_timeout {
                    "no_first_request"
                } else {
                    "idle"
                };
                metrics()
                    .connections_closed
                    .with_label_values(&[reason])
                    .inc();
                quic.close(0u32.into(), b"idle");
                break;
            }
        };
        wait = settings.idle_timeout;
        let (handler, header_timeout) = (handler.clone(), settings.header_timeout);
        requests.spawn(async move {
            match tokio::time::timeout(header_timeout, resolver.resolve_request()).await {
                Ok(Ok((request, stream))) => answer(&*handler, request, stream, about).await,
                Ok(Err(err)) => tracing::debug!("HTTP/3 request refused: {err}"),
                Err(_) => tracing::debug!("HTTP/3 request headers did not arrive in time"),
            }
        });
    }
    // What is in flight finishes: each request within its app's limits, and on shutdown
    // within the drain.
    while requests.join_next().await.is_some() {}
}

fn handshake_failed(reason: &str) {
    metrics()
        .tls_handshake_failures
        .with_label_values(&[reason])
        .inc();
}

/// Headers that belong to one HTTP/1.1 connection; HTTP/3 forbids them.
const CONNECTION_HEADERS: [http::HeaderName; 4] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::HeaderName::from_static("keep-alive"),
];

/// Run one request through `handler` and stream its response back.
async fn answer<H: Http3Handler>(
    handler: &H,
    request: http::Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    about: Connection,
) {
    let (mut send, recv) = stream.split();
    let request = request.map(|()| RequestBody::new(recv));
    let response = handler.handle(request, about).await;
    let (mut parts, mut body) = response.into_parts();
    for name in &CONNECTION_HEADERS {
        parts.headers.remove(name);
    }
    let sent = async {
        send.send_response(http::Response::from_parts(parts, ()))
            .await?;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => {
                    // The body failed after the head went out: the client sees the stream reset.
                    tracing::debug!("response body failed: {err}");
                    send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                    return Ok(());
                }
            };
            match frame.into_data() {
                Ok(data) => send.send_data(data).await?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.send_trailers(trailers).await?;
                    }
                }
            }
        }
        send.finish().await
    };
    if let Err(err) = sent.await {
        tracing::debug!("HTTP/3 response not sent: {err}");
    }
}

/// A request's body, read from its QUIC stream as the handler asks for it.
pub struct RequestBody {
    stream: RequestStream<h3_quinn::RecvStream, Bytes>,
    data_done: bool,
    done: bool,
}

impl RequestBody {
    fn new(stream: RequestStream<h3_quinn::RecvStream, Bytes>) -> Self {
        RequestBody {
            stream,
            data_done: false,
            done: false,
        }
    }
}

/// Why a request's body could not be read: the client reset its stream or the connection.
#[derive(Debug)]
pub struct BodyError(h3::error::StreamError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the HTTP/3 request body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.stream.poll_recv_data(cx)) {
                Ok(Some(mut data)) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(None) => this.data_done = true,
                Err(err) => return Poll::Ready(Some(Err(BodyError(err)))),
            }
        }
        if this.done {
            return Poll::Ready(None);
        }
        let trailers = ready!(this.stream.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(BodyError(err)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
