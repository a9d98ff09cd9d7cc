//! Returning memory to the operating system after bursts of allocation.
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
