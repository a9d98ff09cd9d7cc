//! The `outpost` binary: see `outpost --help`.

// Every request allocates a little (a store, resource tables, header maps) on whichever worker
// thread serves it; mimalloc's per-thread free lists make that cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    outpost_node::cli::main()
}
