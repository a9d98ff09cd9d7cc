//! The process-wide wasmtime `Engine`: component model, pooling allocator, copy-on-write memory
//! images and epoch interruption, plus the thread that advances the epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::address_space::{self, PoolLayout};
use outpost_core::config::PoolSettings;

/// How often the epoch advances. CPU limits are enforced to within about one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Build the engine for these pool settings, or say which setting to lower. Also returns the
/// configuration to compile with: the same code generation settings without the pool, so a
/// short-lived engine can compile and take all its scratch memory with it when dropped.
pub(crate) fn build_engine(pool: &PoolSettings) -> anyhow::Result<(Engine, Config, PoolLayout)> {
    let user_space = address_space::user_address_space().unwrap_or(1 << 47);
    let layout = address_space::plan(pool, user_space).map_err(|m| anyhow!(m))?;

    let instances = pool.instances;
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(
            instances.saturating_mul(address_space::CORE_INSTANCES_PER_INSTANCE as u32),
        )
        .total_memories(instances.saturating_mul(address_space::MEMORIES_PER_INSTANCE as u32))
        .total_tables(instances.saturating_mul(address_space::TABLES_PER_INSTANCE as u32))
        .total_stacks(instances)
        .max_memories_per_component(address_space::MEMORIES_PER_INSTANCE as u32)
        .max_tables_per_component(address_space::TABLES_PER_INSTANCE as u32)
        .max_core_instances_per_component(address_space::CORE_INSTANCES_PER_INSTANCE as u32)
        .table_elements(address_space::TABLE_ELEMENTS as usize)
        .max_memory_size(pool.max_memory_bytes as usize)
        .decommit_batch_size(pool.decommit_batch)
        .linear_memory_keep_resident(pool.keep_resident_bytes as usize)
        .table_keep_resident(pool.keep_resident_bytes as usize)
        // Reset only the pages a request dirtied, when the kernel can tell us which (Linux 6.7+).
        .pagemap_scan(Enabled::Auto);

    let mut compile = Config::new();
    compile
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // JavaScript and Python components pre-initialize their engine's heap into data
        // segments of 10-30 MB spread over the memory; past wasmtime's 16 MiB default such a
        // sparse image is not made and every instantiation copies the segments. Any image up
        // to the largest memory an instance may have is made (and mapped copy-on-write).
        .memory_guaranteed_dense_image_size(pool.max_memory_bytes)
        .memory_reservation(layout.memory_reservation)
        .memory_guard_size(address_space::MEMORY_GUARD_BYTES)
        .memory_reservation_for_growth(0)
        .cranelift_opt_level(OptLevel::Speed)
        // On the deploying thread only: worker threads would keep the compiler's memory.
        .parallel_compilation(false);
    let mut config = compile.clone();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));

    let engine = Engine::new(&config).map_err(anyhow::Error::from).with_context(|| {
        format!(
            "creating the wasmtime engine failed: the instance pool of {} instances reserves about {} MiB \
             of address space; if the machine refused it, lower pool.instances or pool.memory_mb",
            pool.instances,
            layout.total_bytes >> 20
        )
    })?;
    Ok((engine, compile, layout))
}

/// How long the ticker goes on after the last store is gone before it sleeps: a node under
/// steady load never stops it, and an idle one stops waking 1,000 times a second.
const IDLE_GRACE_TICKS: u32 = 250;

/// Advances the engine's epoch every [`EPOCH_TICK`] while any store exists (guest code runs
/// only in a store), and sleeps once none has for [`IDLE_GRACE_TICKS`] ticks, until dropped.
/// An idle node then spends nothing on it (it took about 2% of a core, a wake-up every
/// millisecond); the first store made wakes it again.
pub(crate) struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    /// Stores alive now (each holds a [`TickerHold`]).
    stores: AtomicUsize,
    /// Set while the ticker is parked, or about to park.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Keeps the epoch advancing while it lives: every store holds one.
pub(crate) struct TickerHold {
    shared: Arc<TickerShared>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let shared = Arc::new(TickerShared {
            stores: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("outpost-epoch".into())
            .spawn({
                let shared = shared.clone();
                move || tick(&engine, &shared)
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            shared,
            thread: Some(thread),
        }
    }

    /// A hold that keeps the epoch advancing until dropped, waking the ticker if it sleeps.
    pub(crate) fn hold(&self) -> TickerHold {
        // SeqCst on both sides (here and in `tick`): either this sees the ticker parked and
        // wakes it, or the ticker sees this store before it parks.
        self.shared.stores.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst)
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
        TickerHold {
            shared: self.shared.clone(),
        }
    }
}

fn tick(engine: &Engine, shared: &TickerShared) {
    let mut idle_ticks = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        if shared.stores.load(Ordering::SeqCst) > 0 {
            idle_ticks = 0;
            continue;
        }
        idle_ticks += 1;
        if idle_ticks < IDLE_GRACE_TICKS {
            continue;
        }
        shared.parked.store(true, Ordering::SeqCst);
        // Park only if no store came since the count above: one that comes later sees
        // `parked` and unparks (a wake-up before the park makes the park return at once).
        if shared.stores.load(Ordering::SeqCst) == 0 && !shared.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        shared.parked.store(false, Ordering::SeqCst);
        idle_ticks = 0;
    }
}

impl Drop for TickerHold {
    fn drop(&mut self) {
        // The ticker notices within its grace; nothing to wake.
        self.shared.stores.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
