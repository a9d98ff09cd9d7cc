//! `outpost build`: compile the app in a directory to its component, with whichever guest
//! toolchain the machine has: rustup's `wasm32-wasip2` target, or Debian's rustc-web with
//! `-Zbuild-std` as set up by `scripts/guest-toolchain install`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::config::AppSpec;
use crate::fleet::sha256_hex;

/// The cargo settings for the Debian toolchain: the same file the project's script uses.
const DEBIAN_CONFIG: &str = include_str!("../../../scripts/guest-toolchain.debian.toml");

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
    let tools = std::env::var_os("OUTPOST_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/outpost/tools")))
        .unwrap_or_default();
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

pub fn build(path: &Path) -> anyhow::Result<PathBuf> {
    let spec = AppSpec::load(path)?;
    let dir = spec.source.parent().unwrap_or(Path::new(".")).to_path_buf();
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
    let status = cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed in {}", dir.display());
    }
    let wasm = std::fs::read(&spec.component).with_context(|| {
        format!(
            "the build finished but {} (the component in outpost.toml) is not there",
            spec.component.display()
        )
    })?;
    crate::runtime::check_header(&wasm)?;
    println!(
        "built {} ({} bytes, sha256 {})",
        spec.component.display(),
        wasm.len(),
        &sha256_hex(&wasm)[..16]
    );
    Ok(spec.component)
}
