//! Paths of the guest components, built once per test binary with the project's own script.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
}

/// The component built from the guest crate `name` (e.g. `hello`, `probe`).
pub fn wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("scripts/guest-toolchain");
        let output = Command::new(&script)
            .arg("build")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "building the guests failed (is the toolchain installed? scripts/guest-toolchain install):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
    let path = repo_root()
        .join("target/guests/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}
