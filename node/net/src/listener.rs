//! Accepting connections: TLS with a handshake deadline, HTTP/1.1 or HTTP/2 by ALPN, and a
//! graceful drain on shutdown.
//!
//! Every connection, whatever its protocol, must bring its first request within the header
//! timeout and is closed after the idle timeout with no request in flight (see `activity`): a
//! client that opens connections and sends nothing cannot hold them. One client address holds at
//! most `max_connections_per_client` of them (see `client_cap`).
//!
//! On shutdown a connection finishes what it is serving and closes (HTTP/1.1 with
//! `connection: close`, HTTP/2 with GOAWAY). One that has not brought its first request yet gets
//! a moment to do so: its client connected while the node was still accepting and has most
//! likely sent the request already, so closing it would fail a request the node took on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::activity::{Activity, TrackedBody, Verdict};
use crate::client_cap::{ClientCap, ClientSlot};
use outpost_core::config::HttpSettings;
use outpost_core::metrics::metrics;

/// How long a connection closed for a deadline gets to say goodbye (HTTP/2 GOAWAY) before its
/// socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Something that answers requests: the edge, the HTTP-to-HTTPS redirect, the admin
/// listener, the origin's API.
pub trait Handler: Send + Sync + 'static {
    /// The body of its responses (the edge's streams a guest's).
    type Body: http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static;

    /// Answer one request, which arrived on `connection`.
    fn handle(
        &self,
        request: http::Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = http::Response<Self::Body>> + Send;
}

/// What the serve loop knows of the connection a request came on (the request's own version
/// says HTTP/1.1, HTTP/2 or HTTP/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The client's address: the TCP (or QUIC) peer, which is a balancer's behind one.
    pub peer: SocketAddr,
    /// The TLS version the connection negotiated; `None` on a plain-HTTP listener.
    pub tls: Option<rustls::ProtocolVersion>,
}

impl Connection {
    /// `https` over TLS, else `http`.
    pub fn scheme(&self) -> http::uri::Scheme {
        match self.tls {
            Some(_) => http::uri::Scheme::HTTPS,
            None => http::uri::Scheme::HTTP,
        }
    }

    /// The TLS version as people write it (`TLSv1.3`), `None` on plain HTTP.
    pub fn tls_version(&self) -> Option<&'static str> {
        self.tls.map(|version| match version {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            // rustls speaks only the two above.
            _ => "TLS",
        })
    }
}

/// Resolves when the process should stop accepting and drain.
pub type ShutdownSignal = watch::Receiver<bool>;

/// Wait until `signal` says stop (forever, if its sender is gone).
pub async fn wait_for_shutdown(signal: &mut ShutdownSignal) {
    while !*signal.borrow_and_update() {
        if signal.changed().await.is_err() {
            // The sender is gone: nobody can ask us to stop any more, so run on.
            std::future::pending::<()>().await;
        }
    }
}

/// Which protocol stack a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// Plain-text listener: detect HTTP/2 prior knowledge, else HTTP/1.1.
    Detect,
}

fn builder(settings: &HttpSettings, protocol: Protocol) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
        Protocol::Detect => builder,
    }
}

/// One open connection in `outpost_connections_open`, until dropped (however its task ends).
pub(crate) struct OpenConnection;

impl OpenConnection {
    pub(crate) fn counted() -> OpenConnection {
        metrics().connections_open.inc();
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics().connections_open.dec();
    }
}

/// Serve HTTPS (or plain HTTP when `tls` is `None`) on `listener` until `shutdown`, then stop
/// accepting and give in-flight requests up to the drain timeout.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    settings: HttpSettings,
    mut shutdown: ShutdownSignal,
) {
    // One permit per open connection: the drain waits until all are back.
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let clients = ClientCap::new(settings.max_connections_per_client);
    let settings = Arc::new(settings);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = wait_for_shutdown(&mut shutdown) => break,
            accepted = accept(&listener, &connections, &clients) => accepted,
        };
        let Some((stream, peer, permit, slot)) = accepted else {
            continue;
        };
        let (handler, settings, tls, shutdown) = (
            handler.clone(),
            settings.clone(),
            tls.clone(),
            shutdown.clone(),
        );
        let open = OpenConnection::counted();
        tokio::spawn(async move {
            serve_connection(stream, peer, tls, handler, &settings, shutdown).await;
            drop(open);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    // Connections still in their TLS handshake hold a permit too, and are waited for alike.
    drain(&connections, &settings).await;
}

/// Wait until every connection has given its permit of `connections` back, for at most the
/// drain timeout.
pub(crate) async fn drain(connections: &Semaphore, settings: &HttpSettings) {
    let all = settings.max_connections as u32;
    if tokio::time::timeout(settings.drain_timeout, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing the remaining connections");
    }
}

/// How long a connection that has not sent a request yet may still bring one once the node
/// is shutting down.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Notes when a connection's first request arrives.
#[derive(Default)]
struct FirstRequest {
    arrived: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn mark(&self) {
        if !self.arrived.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    fn arrived(&self) -> bool {
        self.arrived.load(std::sync::atomic::Ordering::Acquire)
    }
}

async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    clients: &Arc<ClientCap>,
) -> Option<(
    TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
    ClientSlot,
)> {
    let permit = connections.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => {
            let Some(slot) = clients.admit(peer.ip()) else {
                // Closed at once: this client already holds its share of connections.
                metrics()
                    .connections_refused
                    .with_label_values(&["per_client"])
                    .inc();
                return None;
            };
            let _ = stream.set_nodelay(true);
            Some((stream, peer, permit, slot))
        }
        Err(err) => {
            // Out of file descriptors and the like: back off instead of spinning.
            tracing::warn!("accept failed: {err}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    settings: &HttpSettings,
    shutdown: ShutdownSignal,
) {
    let activity = Activity::new();
    let Some(tls) = tls else {
        let first = Arc::new(FirstRequest::default());
        let about = Connection { peer, tls: None };
        let service = service(handler.clone(), about, first.clone(), activity.clone());
        let builder = builder(settings, Protocol::Detect);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        drive(connection, first, activity, settings, shutdown).await;
        return;
    };
    let handshakes = &metrics().tls_handshakes;
    let stream = match tokio::time::timeout(settings.header_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            handshakes.inc();
            stream
        }
        Ok(Err(err)) => {
            tracing::debug!("TLS handshake failed: {err}");
            handshake_failed("error");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            handshake_failed("timeout");
            return;
        }
    };
    let session = stream.get_ref().1;
    let protocol = match session.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let about = Connection {
        peer,
        tls: session.protocol_version(),
    };
    let first = Arc::new(FirstRequest::default());
    let service = service(handler.clone(), about, first.clone(), activity.clone());
    let builder = builder(settings, protocol);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    drive(connection, first, activity, settings, shutdown).await;
}

/// Serve a connection to its end, closing it at its deadlines; on shutdown, let it finish
/// gracefully (see the module doc).
async fn drive<C>(
    connection: C,
    first: Arc<FirstRequest>,
    activity: Arc<Activity>,
    settings: &HttpSettings,
    mut shutdown: ShutdownSignal,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let (first_request, idle) = (settings.header_timeout, settings.idle_timeout);
    let ended = loop {
        let check = tokio::time::sleep(activity.next_check(first_request, idle));
        tokio::select! {
            ended = connection.as_mut() => break Some(ended),
            _ = wait_for_shutdown(&mut shutdown) => break None,
            _ = check => {
                let reason = match activity.verdict(first_request, idle) {
                    Verdict::Keep => continue,
                    Verdict::NoFirstRequest => "no_first_request",
                    Verdict::Idle => "idle",
                };
                metrics().connections_closed.with_label_values(&[reason]).inc();
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await;
                return;
            }
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            let mut ended = None;
            if !first.arrived() {
                let grace = tokio::time::sleep(FIRST_REQUEST_GRACE);
                tokio::select! {
                    result = connection.as_mut() => ended = Some(result),
                    _ = first.notify.notified() => {}
                    _ = grace => {}
                }
            }
            match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!("connection ended with an error: {err}");
    }
}

fn handshake_failed(reason: &str) {
    metrics()
        .tls_handshake_failures
        .with_label_values(&[reason])
        .inc();
}

/// A handler's response, its body watched until done (see `activity`).
type Tracked<H> = http::Response<TrackedBody<<H as Handler>::Body>>;

fn service<H: Handler>(
    handler: Arc<H>,
    connection: Connection,
    first: Arc<FirstRequest>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = Tracked<H>,
    Error = Infallible,
    Future = impl Future<Output = Result<Tracked<H>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: http::Request<Incoming>| {
        first.mark();
        // In flight until the response body is done.
        let in_flight = activity.begin();
        let handler = handler.clone();
        async move {
            let response = handler.handle(request, connection).await;
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
        }
    })
}
