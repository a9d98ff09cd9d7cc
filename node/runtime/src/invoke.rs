//! One request through one deployment: a fresh store and instance, the guest's handler under
//! CPU, memory and wall-clock limits, and the response streamed back while the guest runs.

use std::pin::Pin;
use std::sync::Arc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::cpu::Metered;
use super::failure::GuestFailure;
use super::gate::PoolBusy;
use super::guest_log::StderrCapture;
use super::host::{AppShared, HostState};
use super::response::BufferedBody;
use super::reuse::{Idle, Instance};
use super::{Deployment, Runtime};
use crate::request_id::RequestId;
use outpost_core::metrics::metrics;

impl From<PoolBusy> for GuestFailure {
    fn from(_: PoolBusy) -> Self {
        GuestFailure::PoolBusy
    }
}

pub(crate) type GuestResponse = http::Response<HyperOutgoingBody>;

/// Bytes one host call may bring from the guest (a 32 MiB KV batch fits).
const HOSTCALL_BYTES: usize = 40 << 20;

impl Runtime {
    /// A fresh store for one request of `app`, its memory limit and CPU deadline armed; the
    /// guest's stderr also goes to `capture` if given.
    pub fn new_store(
        &self,
        app: &Arc<AppShared>,
        request_id: RequestId,
        capture: Option<StderrCapture>,
    ) -> Store<HostState> {
        let mut state = HostState::new(app, request_id, capture);
        // Guest code runs only in a store: while one exists, the epoch must advance.
        state.ticking = Some(self.ticker.hold());
        let mut store = Store::new(&self.engine, state);
        // What one host call may carry from the guest: the largest KV batch and then some,
        // rather than wasmtime's 128 MiB.
        store.set_hostcall_fuel(HOSTCALL_BYTES);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(store.data().cpu.initial_ticks());
        store.epoch_deadline_callback(|ctx| ctx.data().cpu.on_deadline());
        store
    }

    /// A pool slot: a free one, else one an idle instance gives up, else wait in the queue.
    async fn enter_pool(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PoolBusy> {
        if let Some(permit) = self.gate.try_enter() {
            return Ok(permit);
        }
        while self.idle.evict_one() {
            if let Some(permit) = self.gate.try_enter() {
                return Ok(permit);
            }
        }
        self.gate.enter().await
    }

    /// Run `request` through `deployment`. The response body streams from the guest, which keeps
    /// running (within its limits) until it has written all of it. What the guest writes to
    /// stderr is also kept in `capture`, if given.
    pub async fn handle<B>(
        &self,
        deployment: &Arc<Deployment>,
        request: http::Request<B>,
        scheme: Scheme,
        request_id: RequestId,
        capture: Option<StderrCapture>,
    ) -> Result<GuestResponse, GuestFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let app = &deployment.app;
        // The app's share of the pool first: one app cannot have every slot.
        let share = app.shares.pool.enter().await.map_err(|_| {
            app.metrics.failure(GuestFailure::AppBusy.kind());
            GuestFailure::AppBusy
        })?;
        // An instance this deployment kept from an earlier request, or a pool slot and a fresh
        // store to instantiate into.
        let (mut store, reused, permit, served) = match deployment.idle.take() {
            Some(Idle {
                item:
                    Instance {
                        mut store,
                        proxy,
                        permit,
                    },
                served,
                ..
            }) => {
                store.data_mut().begin_request(request_id, capture);
                let ticks = store.data().cpu.initial_ticks();
                store.set_epoch_deadline(ticks);
                (store, Some(proxy), permit, served)
            }
            None => {
                let permit = self.enter_pool().await?;
                (self.new_store(app, request_id, capture), None, permit, 0)
            }
        };
        store
            .data_mut()
            .set_hops(super::host::hops(request.headers()));
        let cpu = store.data().cpu.clone();
        let head_cpu = cpu.clone();

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
        let mut guest: GuestFuture = Box::pin(async move {
            let run = async {
                // An app past its CPU share waits its turn before it runs at all.
                cpu.wait_turn_if_over_share().await;
                let proxy = match reused {
                    Some(proxy) => proxy,
                    None => {
                        let started = Instant::now();
                        let proxy = deployment.instantiate(&mut store).await?;
                        metrics()
                            .instantiate_seconds
                            .observe(started.elapsed().as_secs_f64());
                        proxy
                    }
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
                    .map(|()| proxy)
            };
            let outcome = match tokio::time::timeout(timeout, Metered::new(run, cpu.clone())).await
            {
                Ok(Ok(proxy)) => Ok(proxy),
                Ok(Err(err)) => Err(GuestFailure::classify(err)),
                Err(_) => Err(GuestFailure::Timeout(timeout)),
            };
            let app = &deployment.app;
            app.metrics
                .guest_seconds
                .observe(cpu.used(false).as_secs_f64());
            match outcome {
                // A clean return: an app that reuses instances keeps this one for its next
                // request (if it has room); otherwise it goes back to the pool.
                Ok(proxy) => {
                    deployment.idle.put(Idle::new(
                        Instance {
                            store,
                            proxy,
                            permit,
                        },
                        served + 1,
                    ));
                    Ok(())
                }
                Err(failure) => {
                    app.metrics.failure(failure.kind());
                    tracing::warn!(app = %app.name, %request_id, kind = failure.kind(), "{failure}");
                    // Never reused: the instance goes back to the pool before the slot is released.
                    drop(store);
                    drop(permit);
                    drop(share);
                    Err(failure)
                }
            }
        });

        // The guest runs on this task until it has sent the response head; then on a task of
        // its own, its body buffered up to a bound, so it finishes at its own pace and gives
        // its instance back whether or not the client reads (see `response`).
        let mut receiver = receiver;
        let (sent, finished) = tokio::select! {
            biased;
            sent = &mut receiver => (sent, None),
            outcome = guest.as_mut() => match receiver.await {
                Ok(sent) => (Ok(sent), Some(outcome)),
                // Finished without a response: the outcome says why.
                Err(_) => return Err(outcome.err().unwrap_or(GuestFailure::NoResponse)),
            },
        };
        let cpu_at_head = head_cpu.used(false);
        let mut response = match (sent, finished) {
            (Ok(Ok(response)), None) => {
                response.map(|body| BufferedBody::spawn(guest, body).boxed_unsync())
            }
            // It sent a head and then failed (a trap mid-body) before the head was taken: its
            // body must end broken, as it does when the failure comes later.
            (Ok(Ok(response)), Some(Err(failure))) => response.map(|body| {
                BufferedBody::spawn(std::future::ready(Err(failure)), body).boxed_unsync()
            }),
            (sent, _) => match sent {
                Ok(Ok(response)) => response,
                Ok(Err(code)) => return Err(GuestFailure::ErrorCode(format!("{code:?}"))),
                Err(_) => return Err(guest.await.err().unwrap_or(GuestFailure::NoResponse)),
            },
        };
        response.extensions_mut().insert(GuestCpu(cpu_at_head));
        Ok(response)
    }
}

/// In a guest's response: the CPU time the guest had used when it sent the head.
#[derive(Clone, Copy, Debug)]
pub struct GuestCpu(pub Duration);

type GuestFuture = Pin<Box<dyn Future<Output = Result<(), GuestFailure>> + Send>>;
