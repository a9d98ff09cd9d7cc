//! The per-request path on the edge: route, enforce the body cap, run the app, answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body::Body;

use super::front::{FrontBuffered, FrontBuffering};
use super::metadata::RequestMetadata;
use super::preview::PreviewHosts;
use super::routes::LiveRoutes;
use super::split;
use crate::tail_tap::TailTap;
use outpost_core::cron::Trigger;
use outpost_core::metrics::HttpProtocol;
use outpost_core::wire::RequestRecord;
use outpost_net::listener::Connection;
use outpost_runtime::body::{LimitedBody, ResponseBody, host_response};
use outpost_runtime::request_id::RequestId;
use outpost_runtime::{Deployment, GuestCpu, GuestFailure, Runtime, Scheme, StderrCapture};

/// Serves requests for a set of routed deployments.
pub struct Edge {
    runtime: Arc<Runtime>,
    routes: Arc<LiveRoutes>,
    /// Requests of apps someone tails (`outpost tail`) go here too.
    tap: Arc<TailTap>,
    settings: EdgeSettings,
}

/// How an edge serves, beyond what it serves.
pub struct EdgeSettings {
    /// Put the reason for a guest failure in the response body (dev); otherwise only in logs.
    pub expose_errors: bool,
    /// Log one line per request (target `outpost::access`).
    pub access_log: bool,
    /// Request bodies are read ahead before they take an instance.
    pub front: FrontBuffering,
    /// What handlers are told of their requests (client address, protocol, node).
    pub metadata: RequestMetadata,
    /// Where versions are reached by preview host, if anywhere.
    pub previews: Option<PreviewHosts>,
    /// The `alt-svc` value HTTPS responses over HTTP/1.1 and HTTP/2 carry when the node
    /// serves HTTP/3 too (`h3=":443"; ma=86400`).
    pub alt_svc: Option<http::HeaderValue>,
}

impl Edge {
    /// An edge running the apps of `routes` on `runtime`, giving `tap` the records of tailed
    /// apps.
    pub fn new(
        runtime: Arc<Runtime>,
        routes: Arc<LiveRoutes>,
        tap: Arc<TailTap>,
        settings: EdgeSettings,
    ) -> Self {
        Edge {
            runtime,
            routes,
            tap,
            settings,
        }
    }

    /// The live route table requests are looked up in.
    pub fn routes(&self) -> &Arc<LiveRoutes> {
        &self.routes
    }

    /// The runtime that runs the apps.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// What HTTPS responses advertise of HTTP/3, if the node serves it.
    pub fn alt_svc(&self) -> Option<&http::HeaderValue> {
        self.settings.alt_svc.as_ref()
    }

    /// Answer one request that came on `connection`: route it by host and path, tell the
    /// handler what it may know of it (see `metadata`), cap and read ahead its body, run the
    /// app, then record metrics, the access log line and any tail record.
    pub async fn serve<B>(
        &self,
        request: http::Request<B>,
        connection: Connection,
    ) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let request_id = RequestId::next();
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default();
        if host.is_empty() {
            return host_response(400, "outpost: the request has no Host header");
        }
        if outpost_runtime::hops(request.headers()) >= outpost_runtime::MAX_HOPS {
            return host_response(
                508,
                "outpost: this request has been through Outpost too many times (a fetch loop)",
            );
        }
        let metadata = &self.settings.metadata;
        let client = metadata.client_address(connection.peer.ip(), request.headers());
        let deployment = match self.pick(host, request.uri().path(), request.headers(), client) {
            Ok(deployment) => deployment,
            Err(unrouted) => return unrouted.response(host, request.uri().path()),
        };
        let limits = &deployment.app.limits;

        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.body_bytes) {
            return too_large(limits.body_bytes);
        }
        let (mut parts, body) = request.into_parts();
        metadata.stamp(
            &mut parts.headers,
            client,
            &connection,
            parts.version,
            std::str::from_utf8(&request_id.hex()).expect("hex digits"),
        );
        let (body, tripped) = LimitedBody::new(body, limits.body_bytes);
        // The body's front arrives before the request takes an instance: a slow client holds
        // its connection, not a guest. A request without a body (most GETs) has nothing to
        // wait for, and takes no timer.
        let body = if body.is_end_stream() {
            FrontBuffered::streaming(body)
        } else {
            let read_ahead = self.settings.front.read(body, limits.body_bytes);
            match tokio::time::timeout(limits.timeout, read_ahead).await {
                Ok(Ok(body)) => body,
                Ok(Err(_)) if tripped.load(Ordering::Acquire) => {
                    return too_large(limits.body_bytes);
                }
                Ok(Err(err)) => {
                    return host_response(
                        400,
                        &format!("outpost: reading the request body failed: {err}"),
                    );
                }
                Err(_) => {
                    return host_response(
                        408,
                        &format!(
                            "outpost: the request body did not arrive within this app's {} ms",
                            limits.timeout.as_millis()
                        ),
                    );
                }
            }
        };
        let request = http::Request::from_parts(parts, body);
        let seen = Seen {
            started,
            request_id,
            client: &client,
            tls: connection.tls.is_some(),
            tripped: Some(&tripped),
            trigger: None,
        };
        self.run(&deployment, request, seen).await
    }

    /// Send `deployment` the request of one tick of `trigger` (the edge's marker headers on
    /// it, the client's address not) and wait for its whole answer. Returns its status (the
    /// failure's, if the handler failed); the request is recorded as a client's is (metrics,
    /// access log, tail).
    pub async fn fire(&self, deployment: &Arc<Deployment>, trigger: &Trigger, tick: u64) -> u16 {
        use http_body_util::BodyExt;
        let started = Instant::now();
        let request_id = RequestId::next();
        let mut request = http::Request::post(trigger.path.as_str())
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("a trigger's path is a valid URI path");
        self.settings.metadata.stamp_trigger(
            request.headers_mut(),
            trigger.schedule.as_str(),
            tick,
            &request_id.to_string(),
        );
        let seen = Seen {
            started,
            request_id,
            client: &"trigger",
            tls: false,
            tripped: None,
            trigger: Some(trigger.schedule.as_str()),
        };
        let response = self.run(deployment, request, seen).await;
        let status = response.status().as_u16();
        // The handler runs until its body is done (within its limits): read it to the end.
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return 500;
            }
        }
        status
    }

    /// Run `request` on `deployment`, then record it: metrics, the access log line and any
    /// tail record.
    async fn run<B>(
        &self,
        deployment: &Arc<Deployment>,
        request: http::Request<B>,
        seen: Seen<'_>,
    ) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = &deployment.app.limits;
        let tripped = || seen.tripped.is_some_and(|t| t.load(Ordering::Acquire));
        let protocol = match request.version() {
            http::Version::HTTP_2 => HttpProtocol::H2,
            http::Version::HTTP_3 => HttpProtocol::H3,
            _ => HttpProtocol::H1,
        };
        let tls = seen.tls;
        let tailed = self.tap.wants(&deployment.app.name);
        let access_log = self.settings.access_log;
        let method_path = (access_log || tailed)
            .then(|| (request.method().clone(), request.uri().path().to_string()));
        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        let request_id = seen.request_id;
        // Under `outpost dev`, failure pages show what the handler wrote to stderr.
        let stderr = self.settings.expose_errors.then(StderrCapture::default);
        let response = match self
            .runtime
            .handle(deployment, request, scheme, request_id, stderr.clone())
            .await
        {
            _ if tripped() => too_large(limits.body_bytes),
            Ok(response) => match &stderr {
                Some(stderr) if is_bare_server_error(&response) => {
                    dev_bare_server_error(response, stderr, request_id).await
                }
                _ => response,
            },
            Err(failure) => self.failure_response(&failure, request_id, stderr.as_ref()),
        };
        let status = response.status().as_u16();
        let elapsed = seen.started.elapsed();
        let metrics = &deployment.app.metrics;
        metrics.request(status, protocol, tls);
        metrics.request_seconds.observe(elapsed.as_secs_f64());
        if let Some((method, path)) = method_path {
            let guest_us = response
                .extensions()
                .get::<GuestCpu>()
                .map_or(0, |cpu| cpu.0.as_micros() as u64);
            let version = deployment.digest.get(..12).unwrap_or_default();
            let micros = elapsed.as_micros() as u64;
            let client = seen.client;
            if access_log {
                tracing::info!(
                    target: "outpost::access",
                    app = %deployment.app.name,
                    version,
                    %request_id,
                    %client,
                    %method,
                    path,
                    status,
                    micros,
                    guest_us,
                    trigger = seen.trigger,
                    "request"
                );
            }
            if tailed {
                self.tap.offer(RequestRecord {
                    node: String::new(),
                    app: deployment.app.name.to_string(),
                    version: version.to_string(),
                    at_ms: outpost_core::clock::unix_millis(),
                    request_id: request_id.to_string(),
                    client: client.to_string(),
                    method: method.to_string(),
                    path,
                    status,
                    micros,
                    guest_us,
                    trigger: seen.trigger.map(str::to_string),
                });
            }
        }
        response
    }

    /// The deployment a request for `host` and `path` goes to: the version its preview host
    /// names, or the app routed there (in a split, the version its affinity key falls to).
    fn pick(
        &self,
        host: &str,
        path: &str,
        headers: &http::HeaderMap,
        client: std::net::IpAddr,
    ) -> Result<Arc<Deployment>, Unrouted> {
        let routes = self.routes.load();
        if let Some(named) = self.settings.previews.as_ref().and_then(|p| p.parse(host)) {
            let (app, version) = named.ok_or(Unrouted::PreviewHost)?;
            return match routes.preview(&app, version) {
                Some(deployment) => Ok(deployment.clone()),
                None => Err(Unrouted::NoPreview(app, version)),
            };
        }
        let base = routes.lookup(host, path).ok_or(Unrouted::NoRoute)?;
        let Some(split) = routes.split(&base.app.name) else {
            return Ok(base.clone());
        };
        let picked = match split::named_key(headers) {
            Some(key) => split.pick(&base.app.name, key),
            None => split.pick(&base.app.name, split::address_key(client).as_ref()),
        };
        Ok(picked.clone())
    }

    fn failure_response(
        &self,
        failure: &GuestFailure,
        request_id: RequestId,
        stderr: Option<&StderrCapture>,
    ) -> http::Response<ResponseBody> {
        let message = match failure {
            GuestFailure::PoolBusy => "outpost: the node is at capacity; retry shortly".to_string(),
            GuestFailure::AppBusy => {
                "outpost: this app is at its capacity on this node; retry shortly".to_string()
            }
            _ if self.settings.expose_errors => format!(
                "outpost: {failure}\nrequest id: {request_id}{}",
                stderr_section(stderr)
            ),
            GuestFailure::CpuLimit(_) | GuestFailure::MemoryLimit(_) => {
                format!(
                    "outpost: the handler exceeded its resource limits\nrequest id: {request_id}"
                )
            }
            GuestFailure::Timeout(_) => {
                format!("outpost: the handler timed out\nrequest id: {request_id}")
            }
            _ => format!("outpost: the handler failed\nrequest id: {request_id}"),
        };
        let mut response = host_response(failure.status(), &message);
        if matches!(failure, GuestFailure::PoolBusy | GuestFailure::AppBusy) {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// What the edge saw of a request before it runs, for its records.
struct Seen<'a> {
    /// When it arrived.
    started: Instant,
    request_id: RequestId,
    /// Who sent it: the client's address, or `trigger`.
    client: &'a (dyn std::fmt::Display + Sync),
    /// Whether it came over TLS.
    tls: bool,
    /// Set when its body went over the app's limit, for a client's request.
    tripped: Option<&'a std::sync::atomic::AtomicBool>,
    /// The schedule of the trigger that sent it, if one did.
    trigger: Option<&'a str>,
}

/// Why a request reaches no app.
enum Unrouted {
    /// No app is routed at its host and path.
    NoRoute,
    /// Its host is under the preview domain but names no version.
    PreviewHost,
    /// The preview host names a version this node does not run.
    NoPreview(String, u64),
}

impl Unrouted {
    /// The 404 that says so, for a request to `host` and `path`.
    fn response(&self, host: &str, path: &str) -> http::Response<ResponseBody> {
        let message = match self {
            Unrouted::NoRoute => format!("outpost: no app is routed at {host}{path}"),
            Unrouted::PreviewHost => {
                "outpost: a preview host is v{VERSION}--{APP} under the preview domain".into()
            }
            Unrouted::NoPreview(app, version) => format!(
                "outpost: version {version} of app {app} is not available for preview \
                 (previews reach the active version, those in a split and the newest uploaded \
                 since)"
            ),
        };
        host_response(404, &message)
    }
}

/// The handler's stderr, as a section to append to a dev failure page (empty if it said nothing).
fn stderr_section(stderr: Option<&StderrCapture>) -> String {
    match stderr.map(StderrCapture::text) {
        Some(text) if !text.is_empty() => format!("\n\nthe handler wrote to stderr:\n{text}"),
        _ => String::new(),
    }
}

/// A 5xx from the guest with no content type: what engines send for an uncaught exception
/// (StarlingMonkey answers 500 with an empty body and reports the exception on stderr).
fn is_bare_server_error(response: &http::Response<ResponseBody>) -> bool {
    response.status().is_server_error()
        && !response.headers().contains_key(http::header::CONTENT_TYPE)
}

/// Under `outpost dev`: wait for a bare 5xx's body (the guest is still bounded by its limits);
/// if it is empty, answer with a page that shows the handler's stderr instead.
async fn dev_bare_server_error(
    response: http::Response<ResponseBody>,
    stderr: &StderrCapture,
    request_id: RequestId,
) -> http::Response<ResponseBody> {
    use http_body_util::BodyExt;
    const KEEP: usize = 1 << 20;
    let (parts, body) = response.into_parts();
    let status = parts.status;
    match http_body_util::Limited::new(body, KEEP).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            if !bytes.is_empty() {
                let body = http_body_util::Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                return http::Response::from_parts(parts, body);
            }
            host_response(
                status.as_u16(),
                &format!(
                    "outpost: the handler answered {status} with an empty body\nrequest id: {request_id}{}",
                    stderr_section(Some(stderr))
                ),
            )
        }
        Err(err) => host_response(
            status.as_u16(),
            &format!(
                "outpost: the handler answered {status} and its body failed: {err}\nrequest id: {request_id}{}",
                stderr_section(Some(stderr))
            ),
        ),
    }
}

fn too_large(limit: u64) -> http::Response<ResponseBody> {
    host_response(
        413,
        &format!("outpost: the request body is larger than this app's limit of {limit} bytes"),
    )
}
