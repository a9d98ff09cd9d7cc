//! The process-wide wasmtime `Engine`: component model, pooling allocator, copy-on-write memory
//! images and epoch interruption, plus the thread that advances the epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("outpost-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
