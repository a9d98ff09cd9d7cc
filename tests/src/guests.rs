//! Paths of the guest components, built once per test binary with the project's own script.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the parent of `tests/`), which guest paths and builds are relative to.
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

/// The component of the app in `dir` (relative to the repository, e.g. `examples/js-counter`),
/// built once per test binary with `outpost build` as an author would: for JavaScript and
/// Python apps that installs the pinned componentize-js or componentize-py on first use, and
/// a later build with nothing changed is a no-op.
pub fn built_app(dir: &str) -> PathBuf {
    build_app(&repo_root().join(dir))
}

/// As [`built_app`], for a copy of the example `dir` whose outpost.toml has `from` replaced by
/// `to` (kept under target/test-apps/LABEL so a later test binary finds it built).
pub fn built_variant(dir: &str, label: &str, from: &str, to: &str) -> PathBuf {
    let source = repo_root().join(dir);
    let copy = repo_root().join("target/test-apps").join(label);
    copy_app(&source, &copy);
    let manifest = std::fs::read_to_string(source.join("outpost.toml")).expect("outpost.toml");
    assert!(
        manifest.contains(from),
        "{dir}/outpost.toml has no {from:?}"
    );
    let edited = manifest.replace(from, to);
    let target = copy.join("outpost.toml");
    if std::fs::read_to_string(&target).ok().as_deref() != Some(edited.as_str()) {
        std::fs::write(&target, edited).expect("writing outpost.toml");
    }
    build_app(&copy)
}

/// Copy an app's sources (not what building it leaves) from `from` to `to`, leaving files that
/// are already the same untouched so the build's up-to-date check holds.
fn copy_app(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("reading the app") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if matches!(name, "dist" | ".outpost" | "node_modules" | "__pycache__") {
            continue;
        }
        let target = to.join(name);
        if path.is_dir() {
            copy_app(&path, &target);
        } else if std::fs::read(&path).ok() != std::fs::read(&target).ok() {
            std::fs::copy(&path, &target).expect("copying a file");
        }
    }
}

fn build_app(app: &Path) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let dir = app.display().to_string();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(&dir) {
        return path.clone();
    }
    let output = Command::new(crate::process::outpost_bin())
        .args(["build", "--path"])
        .arg(app)
        .output()
        .unwrap_or_else(|e| panic!("running outpost build: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "outpost build {dir} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "built PATH (N bytes, ...)" or "up to date: PATH (...)".
    let path = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("built ")
                .or_else(|| l.strip_prefix("up to date: "))
        })
        .and_then(|rest| rest.rsplit_once(" ("))
        .map(|(path, _)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("outpost build {dir} printed no component:\n{stdout}"));
    assert!(path.is_file(), "{} was not built", path.display());
    built.insert(dir, path.clone());
    path
}
