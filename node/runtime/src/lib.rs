//! `outpost-runtime`: the Wasm runtime and the host boundary. One engine per process,
//! deployments compiled once and linked once, and a fresh instance from the pool for every
//! request, under CPU, memory, time and log limits; the host's side of every interface a guest
//! imports (`wasi:http` in and out, `wasi:keyvalue` on the node's replica, `wasi:config`,
//! logging), granting nothing an app's manifest does not.
//!
//! [`Runtime::deploy`] turns an app into a [`Deployment`] (compile through the on-disk cache,
//! then pre-link against the host's interfaces); [`Runtime::handle`] runs one request through it.
//!
//! It may not depend on HTTP serving, the cluster links or the origin: the edge calls it, and
//! the origin uses it only to validate uploaded components.

mod address_space;
pub mod body;
mod compile;
mod cpu;
mod cpu_share;
mod egress;
mod engine;
mod failure;
mod gate;
mod guest_log;
mod host;
mod invoke;
pub mod kv_client;
mod kv_host;
#[cfg(test)]
mod kv_host_tests;
mod limits;
mod linker;
mod log_budget;
pub mod memory;
pub mod request_id;
mod response;
mod reuse;
mod serving;
mod validate;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

pub use address_space::PoolLayout;
pub use compile::{Origin, check_header};
pub use cpu::CpuLimitExceeded;
pub use engine::EPOCH_TICK;
pub use failure::GuestFailure;
pub use guest_log::StderrCapture;
pub use host::{AppShared, HostState, MAX_HOPS, hops};
pub use invoke::GuestCpu;
pub use limits::MemoryLimitExceeded;
pub use serving::{check_reuse, mark_one_request_per_instance};
pub use validate::ComponentValidator;
pub use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::kv_client::KvClient;
use compile::ComponentCache;
use engine::EpochTicker;
use gate::PoolGate;
use outpost_core::config::{
    AppSettings, AppSpec, EgressPolicy, LimitCeilings, PoolSettings, Tenancy,
};
use reuse::{IdleInstances, IdleRegistry};

/// The node's Wasm runtime: one engine, compile cache and instance pool for every app, and
/// the node-wide budgets the apps share.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    gate: PoolGate,
    layout: PoolLayout,
    kv: Option<KvClient>,
    /// Idle instances of apps that reuse them, node-wide.
    idle: Arc<IdleRegistry>,
    idle_per_app: usize,
    /// Each app's shares of the node, by name, shared by its deployments.
    shares: std::sync::Mutex<std::collections::HashMap<String, host::AppShares>>,
    share_size: usize,
    queue_timeout: std::time::Duration,
    /// Where outbound requests may go; the listeners' ports are added once they are bound.
    egress: Arc<arc_swap::ArcSwap<EgressPolicy>>,
    /// The most any app's limits may be.
    ceilings: LimitCeilings,
    /// What all guests together may log.
    log: log_budget::NodeLogBudget,
    /// Linear memory all live instances together may hold, and each app's part of it.
    memory: Arc<limits::MemoryBudget>,
    app_memory: u64,
    /// Worker threads long-running guests may occupy: all apps together, and one app.
    node_lanes: cpu_share::NodeLanes,
    app_lanes: usize,
    /// Advances the epoch while stores exist (see [`EpochTicker`]).
    ticker: EpochTicker,
    _sweeper: reuse::Sweeper,
}

/// One app, compiled and pre-linked: what the router points at.
pub struct Deployment {
    /// What the app's requests share: name, routes, limits, KV and metrics.
    pub app: Arc<AppShared>,
    /// sha256 of the component, hex.
    pub digest: String,
    /// Whether the component was compiled now or loaded from the cache.
    pub origin: Origin,
    pre: ProxyPre<HostState>,
    /// Instances waiting for this deployment's next request, if the app reuses them.
    idle: Arc<IdleInstances>,
}

impl Deployment {
    /// Instantiate the app in `store`, from the pre-linked component and the pool.
    pub async fn instantiate(
        &self,
        store: &mut wasmtime::Store<HostState>,
    ) -> wasmtime::Result<Proxy> {
        self.pre.instantiate_async(store).await
    }
}

impl Runtime {
    /// Build the engine and linker. `cache_dir` keeps compiled components across restarts.
    pub fn new(
        pool: &PoolSettings,
        cache_dir: &Path,
        kv: Option<KvClient>,
        tenancy: Tenancy,
    ) -> anyhow::Result<Arc<Self>> {
        let (engine, compile, layout) = engine::build_engine(pool)?;
        let linker = linker::build(&engine)?;
        let cache = ComponentCache::new(cache_dir, &engine, compile)?;
        let gate = PoolGate::new(
            pool.instances as usize,
            pool.max_queued,
            pool.queue_timeout,
            "node",
        );
        let idle = Arc::new(IdleRegistry::default());
        let memory_budget = pool.memory_budget_bytes.unwrap_or_else(|| {
            crate::memory::machine_bytes()
                .map(|total| total / 4 * 3)
                .unwrap_or(u64::from(pool.instances) * pool.max_memory_bytes)
        });
        // Tokio's runtime runs one worker thread per core, as counted here.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        tracing::info!(
            budget_mb = memory_budget >> 20,
            per_app_mb = (memory_budget / 100 * u64::from(pool.app_share_percent)) >> 20,
            "memory for instances"
        );
        Ok(Arc::new(Runtime {
            ticker: EpochTicker::start(engine.clone()),
            _sweeper: reuse::Sweeper::start(idle.clone()),
            engine,
            linker,
            cache,
            gate,
            layout,
            kv,
            idle,
            idle_per_app: pool.idle_per_app,
            shares: Default::default(),
            share_size: pool.app_share(),
            queue_timeout: pool.queue_timeout,
            egress: Arc::new(arc_swap::ArcSwap::from_pointee(tenancy.egress)),
            ceilings: tenancy.ceilings,
            log: log_budget::NodeLogBudget::new(tenancy.guest_log),
            memory: limits::MemoryBudget::new(memory_budget),
            app_memory: memory_budget / 100 * u64::from(pool.app_share_percent),
            node_lanes: cpu_share::NodeLanes::new(threads),
            app_lanes: cpu_share::app_lane_count(threads, pool.cpu_share_percent),
        }))
    }

    /// The wasmtime engine components are compiled for and run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pool's memory layout, chosen when the runtime was built.
    pub fn layout(&self) -> PoolLayout {
        self.layout
    }

    /// Pool slots serving requests right now.
    pub fn slots_in_use(&self) -> usize {
        self.gate.in_use()
    }

    /// Requests waiting for a pool slot right now.
    pub fn pool_queue_depth(&self) -> usize {
        self.gate.waiting()
    }

    /// Pool slots in all.
    pub fn pool_instances(&self) -> u32 {
        self.gate.capacity() as u32
    }

    /// Linear memory held by live instances.
    pub fn instance_memory(&self) -> u64 {
        self.memory.held()
    }

    /// Pool slots held by idle instances of apps that reuse them.
    pub fn idle_instances(&self) -> usize {
        self.idle.idle()
    }

    /// An app's shared state for its deployments, with this node's KV if it has one and the
    /// app's shares of the node.
    pub fn app(&self, settings: &AppSettings) -> Arc<AppShared> {
        let shares = {
            let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
            shares
                .entry(settings.name.clone())
                .or_insert_with(|| host::AppShares {
                    // Waiting for the app's share queues like waiting for the pool.
                    pool: Arc::new(PoolGate::new(
                        self.share_size,
                        self.share_size,
                        self.queue_timeout,
                        "app",
                    )),
                    outbound: Arc::new(tokio::sync::Semaphore::new(
                        self.egress.load().max_concurrent_per_app,
                    )),
                    egress: self.egress.clone(),
                    memory: limits::MemoryBudget::new(self.app_memory),
                    node_memory: self.memory.clone(),
                    cpu: cpu_share::CpuLanes::new(
                        self.app_lanes,
                        self.node_lanes.clone(),
                        outpost_core::metrics::metrics()
                            .cpu_turns_waited
                            .with_label_values(&[settings.name.as_str()]),
                    ),
                    log: self.log.for_app(
                        outpost_core::metrics::metrics()
                            .guest_log_dropped
                            .with_label_values(&[settings.name.as_str()]),
                    ),
                })
                .clone()
        };
        let (limits, lowered) = self.ceilings.clamp(&settings.limits);
        if !lowered.is_empty() {
            tracing::warn!(
                app = %settings.name,
                "the app's limits are above this node's ceilings ([limits] in node.toml) and run lowered: {}",
                lowered.join(", ")
            );
        }
        Arc::new(AppShared::new(settings, limits, self.kv.as_ref(), shares))
    }

    /// The ports this node listens on, which no outbound request may reach on a local address.
    pub fn set_listening_ports(&self, ports: &[u16]) {
        let mut policy = (**self.egress.load()).clone();
        policy.own_ports.extend_from_slice(ports);
        policy.own_ports.sort_unstable();
        policy.own_ports.dedup();
        self.egress.store(Arc::new(policy));
    }

    /// Compile (or load from cache) and link an app's component from its file.
    pub fn deploy(&self, spec: &AppSpec) -> anyhow::Result<Arc<Deployment>> {
        let name = &spec.settings.name;
        let wasm = std::fs::read(&spec.component).with_context(|| {
            format!(
                "app {name}: cannot read component {} (build it first: outpost build)",
                spec.component.display()
            )
        })?;
        self.deploy_bytes(self.app(&spec.settings), &wasm)
            .with_context(|| format!("app {name}: component {}", spec.component.display()))
    }

    /// Compile (or load from cache) and link component bytes for an app.
    pub fn deploy_bytes(
        &self,
        app: Arc<AppShared>,
        wasm: &[u8],
    ) -> anyhow::Result<Arc<Deployment>> {
        serving::check_reuse(wasm, app.reuse_requests.is_some()).map_err(anyhow::Error::msg)?;
        let (component, digest, origin) = self.cache.load(&self.engine, wasm)?;
        if origin == Origin::Compiled {
            // Compiling happened on this thread: hand its scratch memory back.
            crate::memory::release_unused();
        }
        let pre = linker::prelink(&self.linker, &component)?;
        let idle = Arc::new(IdleInstances::new(app.reuse_requests, self.idle_per_app));
        self.idle.register(&idle);
        Ok(Arc::new(Deployment {
            app,
            digest,
            origin,
            pre,
            idle,
        }))
    }
}
