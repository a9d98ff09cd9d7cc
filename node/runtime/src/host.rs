//! The state each request's `Store` carries, and the host side of outbound HTTP.

use std::sync::Arc;
use std::time::Duration;

use outpost_router::RoutePattern;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::cpu::CpuClock;
use super::guest_log::{GuestLog, StderrCapture, Stream};
use super::kv_host::AppKv;
use super::limits::GuestLimits;
use crate::kv_client::KvClient;
use crate::request_id::RequestId;
use outpost_core::config::{AppLimits, AppSettings, EgressPolicy, OutboundPolicy};
use outpost_core::metrics::AppMetrics;

/// What every request of one app shares: built once per deployment, never per request.
pub struct AppShared {
    /// The app's name, on its metrics and log lines.
    pub name: Arc<str>,
    /// The host and path patterns the app is served at.
    pub routes: Vec<RoutePattern>,
    /// Per-request limits: the manifest's, lowered to the node's ceilings.
    pub limits: AppLimits,
    /// The origins the app may fetch from; empty, it may fetch nothing.
    pub outbound: OutboundPolicy,
    /// Config values as the guest's environment.
    pub env: Vec<(String, String)>,
    /// The same values for `wasi:config/store`.
    pub config: WasiConfigVariables,
    /// The KV namespaces the app's handlers may open, if this node runs a KV store.
    pub kv: Option<AppKv>,
    /// The app's request-path metrics, resolved once per deployment.
    pub metrics: AppMetrics,
    /// With instance reuse, how many requests one instance serves.
    pub reuse_requests: Option<u32>,
    /// The requests the app is sent on a schedule.
    pub triggers: Vec<outpost_core::cron::Trigger>,
    /// The app's shares of the node (shared by all its deployments on it).
    pub(super) shares: AppShares,
}

/// What one app may take of the node, whichever of its versions runs.
#[derive(Clone)]
pub(super) struct AppShares {
    /// Its share of the instance pool.
    pub pool: Arc<super::gate::PoolGate>,
    /// Outbound connections it may have open at once.
    pub outbound: Arc<tokio::sync::Semaphore>,
    /// The node's egress policy (one for every app).
    pub egress: Arc<arc_swap::ArcSwap<EgressPolicy>>,
    /// What its guests may write to stdout and stderr.
    pub log: super::log_budget::LogBudget,
    /// Linear memory its live instances together may hold, and the node's for all apps.
    pub memory: Arc<super::limits::MemoryBudget>,
    pub node_memory: Arc<super::limits::MemoryBudget>,
    /// The worker threads its long-running guests may occupy at once.
    pub cpu: super::cpu_share::CpuLanes,
}

impl AppShared {
    pub(super) fn new(
        settings: &AppSettings,
        limits: AppLimits,
        kv: Option<&KvClient>,
        shares: AppShares,
    ) -> Self {
        let name: Arc<str> = settings.name.as_str().into();
        AppShared {
            kv: kv.map(|client| AppKv {
                client: client.clone(),
                app: name.clone(),
                namespaces: settings.kv_namespaces.clone(),
            }),
            metrics: AppMetrics::new(&name),
            name,
            routes: settings.routes.clone(),
            limits,
            outbound: settings.outbound.clone(),
            config: settings.config.iter().cloned().collect(),
            env: settings.config.clone(),
            reuse_requests: settings.reuse_requests,
            triggers: settings.triggers.clone(),
            shares,
        }
    }
}

/// The `T` of every `Store<T>`: one per request, or one per reused instance, renewed for each
/// of its requests by [`HostState::begin_request`].
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    /// The guest's output streams, kept to retag them for each request.
    stdout: GuestLog,
    stderr: GuestLog,
    pub(super) limits: GuestLimits,
    pub(super) cpu: Arc<CpuClock>,
    pub(crate) app: Arc<AppShared>,
    /// `wasi:keyvalue` list cursors handed out in this request (see `kv_host`).
    pub(crate) kv_cursors: Vec<String>,
    /// KV operations this request has made (see `kv_host`).
    pub(crate) kv_ops: u32,
    /// Keeps the epoch advancing while the store lives (set by `Runtime::new_store`).
    pub(super) ticking: Option<super::engine::TickerHold>,
}

impl HostState {
    /// The state for a new instance of `app`, serving `request_id`; `capture`, if given, keeps
    /// what the guest writes to stderr.
    pub fn new(
        app: &Arc<AppShared>,
        request_id: RequestId,
        capture: Option<StderrCapture>,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        // Grant nothing beyond what the builder already withholds (no preopened directory,
        // stdin closed), and say so rather than rely on its defaults: no socket of any kind,
        // no address, no name lookup. A guest that tries gets WASI's `access-denied`.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES);
        let log = |stream, capture| {
            GuestLog::new(
                app.name.clone(),
                app.shares.log.clone(),
                request_id,
                stream,
                capture,
            )
        };
        let stdout = log(Stream::Stdout, None);
        let stderr = log(Stream::Stderr, capture);
        wasi.envs(&app.env)
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            hooks: OutboundHooks {
                app: app.clone(),
                request_id,
                sent: 0,
                hops: 0,
            },
            stdout,
            stderr,
            limits: GuestLimits::new(
                app.limits.memory_bytes,
                app.shares.memory.clone(),
                app.shares.node_memory.clone(),
            ),
            cpu: CpuClock::new(app.limits.cpu, Some(app.shares.cpu.clone())),
            app: app.clone(),
            kv_cursors: Vec::new(),
            kv_ops: 0,
            ticking: None,
        }
    }

    /// Renew what belongs to one request, for the next request of a reused instance: its id
    /// (on log lines and outbound calls), a fresh CPU budget, the stderr capture, KV cursors.
    pub fn begin_request(&mut self, request_id: RequestId, capture: Option<StderrCapture>) {
        self.stdout.set_request(request_id, None);
        self.stderr.set_request(request_id, capture);
        self.hooks.request_id = request_id;
        self.hooks.sent = 0;
        self.cpu = CpuClock::new(self.app.limits.cpu, Some(self.app.shares.cpu.clone()));
        self.kv_cursors.clear();
        self.kv_ops = 0;
    }

    /// How many Outpost hops the request being served has made (see [`hops`]).
    pub fn set_hops(&mut self, hops: usize) {
        self.hooks.hops = hops;
    }

    /// The app's config values, for `wasi:config/store`.
    pub fn config(&self) -> &WasiConfigVariables {
        &self.app.config
    }

    /// The resource table shared by every host interface of this request.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound requests: only to the app's allow-listed origins, with sane default timeouts.
struct OutboundHooks {
    app: Arc<AppShared>,
    request_id: RequestId,
    /// Outbound requests this request has made.
    sent: u32,
    /// How many Outpost hops the request had made before this node (its `cdn-loop` entries).
    hops: usize,
}

/// The `cdn-loop` token (RFC 8586) each Outpost hop adds to a subrequest: an app that fetches
/// itself, directly or through others, is stopped after [`MAX_HOPS`] hops.
pub(crate) const LOOP_TOKEN: &str = "outpost";
/// Most Outpost hops a request may make: the edge answers 508 to a request that has made
/// this many, and a subrequest that would reach it is refused.
pub const MAX_HOPS: usize = 8;

/// The hops a request has been through Outpost nodes, from its `cdn-loop` header.
pub fn hops(headers: &http::HeaderMap) -> usize {
    headers
        .get_all("cdn-loop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.trim().split(';').next() == Some(LOOP_TOKEN))
        .count()
}

/// Host resources (streams, fields, KV buckets...) a request may hold at once: far more than
/// a handler needs, far fewer than the million wasmtime allows, each of which holds host memory.
const MAX_RESOURCES: usize = 20_000;
/// The most random bytes one call may ask for (wasmtime allows 64 MiB).
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The most a guest's body writes carry at once: the response buffer takes them whole.
const BODY_CHUNK: usize = 64 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

type SendResult = wasmtime_wasi_http::Result<super::egress::Sent>;

/// One outbound request of `app` ended so (`ok`, `refused`, `failed`).
fn count_outbound(app: &str, outcome: &str) {
    outpost_core::metrics::metrics()
        .outbound_requests
        .with_label_values(&[app, outcome])
        .inc();
}

impl WasiHttpHooks for OutboundHooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let refuse = |why: &str, code: ErrorCode| -> Box<dyn Future<Output = SendResult> + Send> {
            tracing::warn!(
                app = %self.app.name,
                request_id = %self.request_id,
                "outbound request to {scheme}://{authority} denied: {why}"
            );
            count_outbound(&self.app.name, "refused");
            Box::new(async move { Err(code.into()) })
        };
        if !self.app.outbound.allows(&scheme, &authority) {
            return refuse("not in [outbound] allow", ErrorCode::HttpRequestDenied);
        }
        let policy = self.app.shares.egress.load_full();
        self.sent += 1;
        if self.sent > policy.max_subrequests {
            return refuse(
                &format!(
                    "more than {} outbound requests in one request",
                    policy.max_subrequests
                ),
                ErrorCode::HttpRequestDenied,
            );
        }
        if self.hops + 1 >= MAX_HOPS {
            return refuse(
                &format!(
                    "the request has been through Outpost {} times already (a loop?)",
                    self.hops
                ),
                ErrorCode::LoopDetected,
            );
        }
        let mut request = request;
        let trail = std::iter::repeat_n(LOOP_TOKEN, self.hops + 1)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = http::HeaderValue::from_str(&trail) {
            request.headers_mut().insert("cdn-loop", value);
        }
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: options.connect_timeout.or(Some(CONNECT_TIMEOUT)),
            first_byte_timeout: options.first_byte_timeout.or(Some(FIRST_BYTE_TIMEOUT)),
            between_bytes_timeout: options
                .between_bytes_timeout
                .or(Some(BETWEEN_BYTES_TIMEOUT)),
        };
        // Past the app's share of outbound connections a fetch waits for one to close (as
        // Workers queues fetches past its six connections), for as long as it may take to
        // connect.
        let share = self.app.shares.outbound.clone();
        let wait = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let (app, request_id) = (self.app.name.clone(), self.request_id);
        Box::new(async move {
            let Ok(Ok(permit)) = tokio::time::timeout(wait, share.acquire_owned()).await else {
                tracing::warn!(
                    %app,
                    %request_id,
                    "outbound request to {scheme}://{authority} failed: the app had as many \
                     outbound connections open as the node allows for {wait:?}"
                );
                count_outbound(&app, "refused");
                return Err(ErrorCode::ConnectionLimitReached.into());
            };
            let started = std::time::Instant::now();
            let sent = super::egress::send(request, options, policy, permit).await;
            let outcome = match &sent {
                Ok(_) => {
                    outpost_core::metrics::metrics()
                        .outbound_seconds
                        .with_label_values(&[&app])
                        .observe(started.elapsed().as_secs_f64());
                    "ok"
                }
                Err(wasmtime_wasi_http::Error::DestinationIpProhibited) => "refused",
                Err(_) => "failed",
            };
            count_outbound(&app, outcome);
            sent
        })
    }
}
