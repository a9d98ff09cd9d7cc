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
use super::limits::GuestLimits;
use crate::config::{AppLimits, AppSettings, OutboundPolicy};
use crate::kv::KvClient;
use crate::kv::host::AppKv;
use crate::metrics::AppMetrics;
use crate::request_id::RequestId;

/// What every request of one app shares: built once per deployment, never per request.
pub struct AppShared {
    pub name: Arc<str>,
    pub routes: Vec<RoutePattern>,
    pub limits: AppLimits,
    pub outbound: OutboundPolicy,
    /// Config values as the guest's environment.
    pub env: Vec<(String, String)>,
    /// The same values for `wasi:config/store`.
    pub config: WasiConfigVariables,
    /// The KV namespaces the app's handlers may open, if this node runs a KV store.
    pub kv: Option<AppKv>,
    pub metrics: AppMetrics,
    /// With instance reuse, how many requests one instance serves.
    pub reuse_requests: Option<u32>,
    /// The app's share of the instance pool (shared by all its deployments on this node).
    pub(super) share: Arc<super::gate::PoolGate>,
}

impl AppShared {
    pub(super) fn new(
        settings: &AppSettings,
        kv: Option<&KvClient>,
        share: Arc<super::gate::PoolGate>,
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
            limits: settings.limits.clone(),
            outbound: settings.outbound.clone(),
            config: settings.config.iter().cloned().collect(),
            env: settings.config.clone(),
            reuse_requests: settings.reuse_requests,
            share,
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
    /// `wasi:keyvalue` list cursors handed out in this request (see `kv::host`).
    pub(crate) kv_cursors: Vec<String>,
    /// KV operations this request has made (see `kv::host`).
    pub(crate) kv_ops: u32,
}

impl HostState {
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
        let stdout = GuestLog::new(app.name.clone(), request_id, Stream::Stdout);
        let stderr = GuestLog::capturing(app.name.clone(), request_id, Stream::Stderr, capture);
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
            },
            stdout,
            stderr,
            limits: GuestLimits::new(app.limits.memory_bytes),
            cpu: CpuClock::new(app.limits.cpu),
            app: app.clone(),
            kv_cursors: Vec::new(),
            kv_ops: 0,
        }
    }

    /// Renew what belongs to one request, for the next request of a reused instance: its id
    /// (on log lines and outbound calls), a fresh CPU budget, the stderr capture, KV cursors.
    pub fn begin_request(&mut self, request_id: RequestId, capture: Option<StderrCapture>) {
        self.stdout.set_request(request_id, None);
        self.stderr.set_request(request_id, capture);
        self.hooks.request_id = request_id;
        self.cpu = CpuClock::new(self.app.limits.cpu);
        self.kv_cursors.clear();
        self.kv_ops = 0;
    }

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

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

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
        if !self.app.outbound.allows(&scheme, &authority) {
            tracing::warn!(
                app = %self.app.name,
                request_id = %self.request_id,
                "outbound request to {scheme}://{authority} denied: not in [outbound] allow"
            );
            return Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) });
        }
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: options.connect_timeout.or(Some(CONNECT_TIMEOUT)),
            first_byte_timeout: options.first_byte_timeout.or(Some(FIRST_BYTE_TIMEOUT)),
            between_bytes_timeout: options
                .between_bytes_timeout
                .or(Some(BETWEEN_BYTES_TIMEOUT)),
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
