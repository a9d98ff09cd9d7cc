//! The `outpost` binary: see `outpost --help`.

fn main() -> std::process::ExitCode {
    outpost_node::cli::main()
}
