//! Does the instance pool fit this machine's virtual address space?
//!
//! The pooling allocator reserves every slot up front. With 4 GiB per linear memory (which lets
//! compiled code skip bounds checks) 1,000 slots need about 4 TiB of address space: fine on an
//! x86_64 server (128 TiB of user space), impossible on a Raspberry Pi-class board whose kernel
//! gives user space 39 bits (512 GiB). This module sizes the pool's layout and explains, before
//! wasmtime's mmap fails, what to lower.

use outpost_core::config::PoolSettings;

/// Guard region wasmtime places after each linear memory (its default on 64-bit hosts).
pub(crate) const MEMORY_GUARD_BYTES: u64 = 32 << 20;
/// The reservation that lets compiled code elide bounds checks on 32-bit memories.
pub(crate) const FAST_MEMORY_RESERVATION: u64 = 4 << 30;
/// Stack for each async (fiber) call, plus its guard page.
pub(crate) const ASYNC_STACK_BYTES: u64 = (2 << 20) + 4096;
/// Linear memories, tables and core instances one component may hold. Components built by
/// today's toolchains have one memory and a handful of core instances and tables.
pub(crate) const MEMORIES_PER_INSTANCE: u64 = 1;
pub(crate) const TABLES_PER_INSTANCE: u64 = 4;
pub(crate) const CORE_INSTANCES_PER_INSTANCE: u64 = 16;
pub(crate) const TABLE_ELEMENTS: u64 = 20_000;
/// Only this share of user space goes to the pool; the rest is for the process itself.
const USABLE_FRACTION: u64 = 2;

/// The memory layout chosen for the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLayout {
    /// Address space reserved for each linear memory, in bytes (4 GiB when the pool fits, so
    /// compiled code skips bounds checks).
    pub memory_reservation: u64,
    /// Address space the whole pool takes, in bytes.
    pub total_bytes: u64,
}

/// Bytes of address space one pool slot takes with this reservation.
fn per_instance_bytes(reservation: u64) -> u64 {
    MEMORIES_PER_INSTANCE * (reservation + MEMORY_GUARD_BYTES)
        + ASYNC_STACK_BYTES
        + TABLES_PER_INSTANCE * TABLE_ELEMENTS * 8
}

/// Pick the memory reservation and check the pool fits in `user_space` bytes.
pub(crate) fn plan(pool: &PoolSettings, user_space: u64) -> Result<PoolLayout, String> {
    let budget = user_space / USABLE_FRACTION;
    let instances = u64::from(pool.instances);
    let fits =
        |reservation: u64| instances.saturating_mul(per_instance_bytes(reservation)) <= budget;
    let smallest = round_up_to_wasm_page(pool.max_memory_bytes);
    let reservation = match pool.memory_reservation_bytes {
        Some(explicit) if explicit < pool.max_memory_bytes => {
            return Err(format!(
                "pool.memory_reservation_mb ({} MiB) is smaller than pool.memory_mb ({} MiB); raise it or lower memory_mb",
                explicit >> 20,
                pool.max_memory_bytes >> 20
            ));
        }
        Some(explicit) => explicit,
        None if fits(FAST_MEMORY_RESERVATION.max(smallest)) => {
            FAST_MEMORY_RESERVATION.max(smallest)
        }
        None => smallest,
    };
    let total = instances.saturating_mul(per_instance_bytes(reservation));
    if total > budget {
        let most = budget / per_instance_bytes(reservation);
        return Err(format!(
            "the instance pool needs {} of virtual address space ({} instances x {} each) but this machine's \
             user address space is {} and the pool may use half of it; lower pool.instances to at most {most}, \
             or lower pool.memory_mb / pool.memory_reservation_mb",
            human(total),
            instances,
            human(per_instance_bytes(reservation)),
            human(user_space),
        ));
    }
    Ok(PoolLayout {
        memory_reservation: reservation,
        total_bytes: total,
    })
}

fn round_up_to_wasm_page(bytes: u64) -> u64 {
    bytes.div_ceil(65536) * 65536
}

/// The size of this process's user address space, read off the highest mapping in
/// `/proc/self/maps` (the stack sits near the top), rounded up to a power of two.
pub(crate) fn user_address_space() -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    user_space_from_maps(&maps)
}

fn user_space_from_maps(maps: &str) -> Option<u64> {
    let highest = maps
        .lines()
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (_, end) = range.split_once('-')?;
            u64::from_str_radix(end, 16).ok()
        })
        // [vsyscall] and other kernel-half mappings are not user space.
        .filter(|end| *end < (1 << 63))
        .max()?;
    Some(highest.next_power_of_two())
}

fn human(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    if bytes >= 1 << 40 {
        format!("{:.1} TiB", bytes as f64 / (1u64 << 40) as f64)
    } else if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: u64 = 1 << 47;
    const ARM_39_BIT: u64 = 1 << 39;

    fn pool(instances: u32) -> PoolSettings {
        PoolSettings {
            instances,
            ..PoolSettings::default()
        }
    }

    #[test]
    fn reads_user_space_from_maps() {
        let x86 = "55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 1 /usr/bin/cat\n\
                   7ffc1c3f2000-7ffc1c413000 rw-p 00000000 00:00 0 [stack]\n\
                   ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n";
        assert_eq!(user_space_from_maps(x86), Some(X86_64));
        let arm = "5581a00000-5581a21000 r-xp 00000000 b3:02 1 /usr/bin/cat\n\
                   7fe7c8c000-7fe7cad000 rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(user_space_from_maps(arm), Some(ARM_39_BIT));
        assert_eq!(user_space_from_maps(""), None);
    }

    #[test]
    fn big_machine_gets_fast_memories() {
        let layout = plan(&pool(1000), X86_64).unwrap();
        assert_eq!(layout.memory_reservation, FAST_MEMORY_RESERVATION);
    }

    #[test]
    fn small_board_falls_back_to_compact_memories() {
        let layout = plan(&pool(1000), ARM_39_BIT).unwrap();
        assert_eq!(layout.memory_reservation, 128 << 20);
        assert!(layout.total_bytes <= ARM_39_BIT / 2);
    }

    #[test]
    fn too_many_instances_say_what_to_lower() {
        let err = plan(&pool(100_000), ARM_39_BIT).unwrap_err();
        assert!(err.contains("lower pool.instances to at most"), "{err}");
        assert!(err.contains("512.0 GiB"), "{err}");
    }

    #[test]
    fn explicit_reservation_is_checked() {
        let mut p = pool(1000);
        p.memory_reservation_bytes = Some(4 << 30);
        assert!(plan(&p, ARM_39_BIT).unwrap_err().contains("pool.instances"));
        p.memory_reservation_bytes = Some(64 << 20);
        assert!(
            plan(&p, X86_64)
                .unwrap_err()
                .contains("smaller than pool.memory_mb")
        );
    }
}
