//! Rust apps: cargo builds the crate for `wasm32-wasip2` with whichever guest toolchain the
//! machine has: rustup's target, or Debian's rustc-web with `-Zbuild-std` as set up by
//! `scripts/guest-toolchain install`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

/// The cargo settings for the Debian toolchain: the same file the project's script uses.
const DEBIAN_CONFIG: &str = include_str!("../../../../scripts/guest-toolchain.debian.toml");

enum Toolchain {
    Rustup,
    Debian { tools: PathBuf },
}

fn detect() -> anyhow::Result<Toolchain> {
    let rustup_has_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(false);
    if rustup_has_target {
        return Ok(Toolchain::Rustup);
    }
    let tools = super::tools::tools_dir();
    let debian_ready = Path::new("/usr/bin/rustc").exists()
        && Path::new("/usr/lib/rustlib/src/rust/library/std/Cargo.toml").exists()
        && tools.join("bin/wasm-component-ld").exists();
    if debian_ready {
        return Ok(Toolchain::Debian { tools });
    }
    bail!(
        "no guest toolchain: run `rustup target add wasm32-wasip2`, or on a machine without it \
         `scripts/guest-toolchain install` from the Outpost repository"
    )
}

pub(super) fn build(dir: &Path) -> anyhow::Result<()> {
    let mut cargo = match detect()? {
        Toolchain::Rustup => Command::new("cargo"),
        Toolchain::Debian { tools } => {
            let config =
                std::env::temp_dir().join(format!("outpost-guest-{}.toml", std::process::id()));
            std::fs::write(&config, DEBIAN_CONFIG)?;
            let mut cargo = Command::new("/usr/bin/cargo");
            let path = std::env::join_paths(std::iter::once(tools.join("bin")).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))?;
            cargo
                .arg("--config")
                .arg(config)
                .env("PATH", path)
                .env("RUSTC_BOOTSTRAP", "1");
            cargo
        }
    };
    // Variables that would override the toolchain's own settings.
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir);
    super::tools::run(&mut cargo, &format!("cargo build in {}", dir.display()))
}
