//! One request through one deployment: a fresh store and instance, the guest's handler under
//! CPU, memory and wall-clock limits, and the response streamed back while the guest runs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::cpu::{CpuLimitExceeded, Metered};
use super::gate::PoolBusy;
use super::host::{AppShared, HostState};
use super::limits::MemoryLimitExceeded;
use super::{Deployment, Runtime};
use crate::request_id::RequestId;

/// Why a request got no response from its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// Every pool slot stayed busy: try again shortly.
    PoolBusy,
    CpuLimit(Duration),
    MemoryLimit(String),
    /// The whole request took longer than the app's `limits.timeout_ms`.
    Timeout(Duration),
    /// The guest trapped (a panic, `unreachable`, a stack overflow...).
    Trap(String),
    /// The guest answered with a `wasi:http` error code instead of a response.
    ErrorCode(String),
    /// The guest returned without setting a response.
    NoResponse,
    /// Instantiation or the host failed.
    Host(String),
}

impl GuestFailure {
    pub fn status(&self) -> u16 {
        match self {
            GuestFailure::PoolBusy | GuestFailure::CpuLimit(_) | GuestFailure::MemoryLimit(_) => {
                503
            }
            GuestFailure::Timeout(_) => 504,
            GuestFailure::Trap(_)
            | GuestFailure::ErrorCode(_)
            | GuestFailure::NoResponse
            | GuestFailure::Host(_) => 500,
        }
    }

    /// A short kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::PoolBusy => "pool_busy",
            GuestFailure::CpuLimit(_) => "cpu_limit",
            GuestFailure::MemoryLimit(_) => "memory_limit",
            GuestFailure::Timeout(_) => "timeout",
            GuestFailure::Trap(_) => "trap",
            GuestFailure::ErrorCode(_) => "error_code",
            GuestFailure::NoResponse => "no_response",
            GuestFailure::Host(_) => "host_error",
        }
    }

    fn classify(err: wasmtime::Error) -> GuestFailure {
        if let Some(cpu) = err.downcast_ref::<CpuLimitExceeded>() {
            return GuestFailure::CpuLimit(cpu.budget);
        }
        if let Some(memory) = err.downcast_ref::<MemoryLimitExceeded>() {
            return GuestFailure::MemoryLimit(memory.to_string());
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return GuestFailure::PoolBusy;
        }
        if err.downcast_ref::<wasmtime::Trap>().is_some() {
            return GuestFailure::Trap(format!("{err:?}"));
        }
        GuestFailure::Host(format!("{err:#}"))
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::PoolBusy => write!(f, "every instance slot is busy; retry shortly"),
            GuestFailure::CpuLimit(budget) => {
                write!(
                    f,
                    "handler exceeded its CPU time limit of {} ms",
                    budget.as_millis()
                )
            }
            GuestFailure::MemoryLimit(detail) => write!(f, "{detail}"),
            GuestFailure::Timeout(limit) => {
                write!(f, "handler did not finish within {} ms", limit.as_millis())
            }
            GuestFailure::Trap(detail) => write!(f, "handler trapped: {detail}"),
            GuestFailure::ErrorCode(code) => write!(f, "handler answered with error {code}"),
            GuestFailure::NoResponse => write!(f, "handler returned without a response"),
            GuestFailure::Host(detail) => write!(f, "host error: {detail}"),
        }
    }
}

impl From<PoolBusy> for GuestFailure {
    fn from(_: PoolBusy) -> Self {
        GuestFailure::PoolBusy
    }
}

pub type GuestResponse = http::Response<HyperOutgoingBody>;

impl Runtime {
    /// A fresh store for one request of `app`, its memory limit and CPU deadline armed.
    pub fn new_store(&self, app: &Arc<AppShared>, request_id: RequestId) -> Store<HostState> {
        let mut store = Store::new(&self.engine, HostState::new(app, request_id));
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(store.data().cpu.initial_ticks());
        store.epoch_deadline_callback(|ctx| ctx.data().cpu.on_deadline());
        store
    }

    /// Run `request` through `deployment`. The response body streams from the guest, which keeps
    /// running (within its limits) on a task of its own until it has written all of it.
    pub async fn handle<B>(
        &self,
        deployment: &Arc<Deployment>,
        request: http::Request<B>,
        scheme: Scheme,
        request_id: RequestId,
    ) -> Result<GuestResponse, GuestFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let permit = self.gate.enter().await?;
        let app = &deployment.app;
        let mut store = self.new_store(app, request_id);
        let cpu = store.data().cpu.clone();

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(scheme, request);
            let outparam = http.new_response_outparam(sender);
            match (incoming, outparam) {
                (Ok(i), Ok(o)) => (i, o),
                (Err(err), _) | (_, Err(err)) => {
                    return Err(GuestFailure::Host(format!("{err:#}")));
                }
            }
        };

        let deployment = deployment.clone();
        let timeout = app.limits.timeout;
        let log_app = app.name.clone();
        let guest = tokio::spawn(async move {
            let run = async {
                let proxy = deployment.instantiate(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let outcome = match tokio::time::timeout(timeout, Metered::new(run, cpu)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(GuestFailure::classify(err)),
                Err(_) => Err(GuestFailure::Timeout(timeout)),
            };
            if let Err(failure) = &outcome {
                tracing::warn!(app = %log_app, %request_id, kind = failure.kind(), "{failure}");
            }
            // The instance goes back to the pool before the slot is released.
            drop(store);
            drop(permit);
            outcome
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(GuestFailure::ErrorCode(format!("{code:?}"))),
            // The guest dropped the response-outparam: its task knows why.
            Err(_) => match guest.await {
                Ok(Err(failure)) => Err(failure),
                Ok(Ok(())) => Err(GuestFailure::NoResponse),
                Err(join) => Err(GuestFailure::Host(format!("guest task failed: {join}"))),
            },
        }
    }
}
