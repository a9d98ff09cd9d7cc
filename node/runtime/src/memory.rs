//! The machine's memory: how much it has, and returning memory to the operating system after
//! bursts of allocation.
//!
//! Compiling a component allocates tens of MiB that are free again once it is done; the
//! allocator keeps such pages for reuse unless asked to give them back, which would leave an
//! idle node holding the memory of its last compile.

/// Hand freed heap memory back to the OS now. Cheap enough to call after each deploy.
pub fn release_unused() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps and arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The machine's physical memory (`MemTotal`), if it can be read.
pub fn machine_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb << 10)
}
