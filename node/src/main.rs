//! The `outpost` binary: see `outpost --help`.

/// mimalloc rather than glibc's malloc: about 8% fewer instructions per request
/// (`loadtest/gauge`: hello over HTTPS 212,686 -> 195,454) and 10-15% less CPU per request in
/// side-by-side runs; with the option below, no more memory held at idle (28.5 MiB against
/// 26.7) and less after a burst of 1,000 connections (38.8 MiB against 40.9).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (in its v3 numbering; the -sys crate has no
/// constant for it).
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commit arena memory as it is used, and give it back when freed, instead of committing whole
/// arenas (mimalloc's default where the kernel overcommits): an idle node otherwise holds about
/// 16 MiB more. It must be set before the first arena exists, and the Rust runtime allocates
/// before `main`, so it runs as an ELF constructor.
#[cfg(target_os = "linux")]
extern "C" fn set_allocator_options() {
    // SAFETY: setting an option has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

fn main() -> std::process::ExitCode {
    outpost_node::cli::main()
}
