//! Python apps: componentize-py (pinned, installed with pip into a virtual environment in the
//! tools cache on first use) builds the app's module, the SDK's `outpost` package and a small
//! generated entry module into a component of the app's world (see `world.rs`), with CPython
//! pre-initialized inside it. Pure-Python packages can sit in the app's directory (it is on the
//! module path).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{sdk, tools, world};
use outpost_core::config::{AppSpec, Language};

pub(super) const DEFAULT_ENTRY: &str = "app.py";
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The module componentize-py starts from (written to the work folder).
const ENTRY_MODULE: &str = "outpost_entry";
/// Python module names the SDK expects for interfaces whose default name depends on the world.
const PINNED_MODULES: &[(&str, &str)] = &[
    ("wasi:config/store@0.2.0-rc.1", "wasi_config_store"),
    ("wasi:keyvalue/store@0.2.0-draft", "wasi_keyvalue_store"),
];

/// Build the app; `Ok(false)` when the component was already up to date.
pub(super) fn build(spec: &AppSpec, dir: &Path) -> anyhow::Result<bool> {
    tools::require(
        "python3",
        "--version",
        "install Python 3.10 or later with venv (Debian: apt install python3-venv)",
    )?;
    let tools_dir = tools::tools_dir();
    let componentize = toolchain(&tools_dir)?;
    let sdk = sdk::unpack(&tools_dir)?;

    let entry = dir.join(
        spec.build
            .entry
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_ENTRY)),
    );
    if !entry.is_file() {
        bail!(
            "no Python module to build: {} does not exist (set `[build] entry` in outpost.toml)",
            entry.display()
        );
    }
    let module = entry
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .with_context(|| format!("{} is not a Python module name", entry.display()))?
        .to_string();
    let module_dir = entry.parent().unwrap_or(dir).to_path_buf();

    let work = dir.join(".outpost/build");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let generated = work.join(format!("{ENTRY_MODULE}.py"));
    std::fs::write(
        &generated,
        entry_module(&module, &spec.settings.kv_namespaces),
    )
    .with_context(|| format!("writing {}", generated.display()))?;

    let kv = !spec.settings.kv_namespaces.is_empty();
    let stamp = tools::Stamp::new(
        &work,
        &spec.component,
        fingerprint(dir, &generated, &world::world(Language::Python, kv))?,
    );
    if stamp.is_current(&spec.component) {
        return Ok(false);
    }
    world::write(&work.join("wit"), Language::Python, kv)?;
    let mut command = Command::new(componentize);
    command
        .arg("--wit-path")
        .arg(work.join("wit"))
        .args(["--world", world::WORLD, "--quiet"]);
    // Fixed module names for the two `store` interfaces, whichever of them the world has (the
    // SDK imports `wit_world.imports.wasi_config_store` and `...wasi_keyvalue_store`).
    for (interface, module) in PINNED_MODULES {
        command
            .arg("--import-interface-name")
            .arg(format!("{interface}={module}"));
    }
    command
        .args(["componentize", ENTRY_MODULE])
        .arg("--python-path")
        .arg(&work)
        .arg("--python-path")
        .arg(&module_dir)
        .arg("--python-path")
        .arg(sdk.join("python"))
        .arg("--output")
        .arg(&spec.component)
        .current_dir(dir);
    tools::run(&mut command, "componentize-py")?;
    stamp.record()?;
    Ok(true)
}

/// componentize-py in its own virtual environment; the path of its command.
fn toolchain(tools_dir: &Path) -> anyhow::Result<PathBuf> {
    let version = COMPONENTIZE_PY.replace("==", "-");
    let dir = tools_dir.join("python").join(version);
    tools::install_once(&dir, COMPONENTIZE_PY, |dir| {
        let venv = dir.join("venv");
        let mut python = Command::new("python3");
        python.args(["-m", "venv"]).arg(&venv);
        tools::run(&mut python, "python3 -m venv")?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]);
        tools::run(&mut pip, "pip install")
    })?;
    Ok(dir.join("venv/bin/componentize-py"))
}

/// The module componentize-py builds: the app's module, served by the SDK. Everything the
/// component will ever import must be imported here, while componentize-py pre-initializes
/// it: there is no file system to import from later. So the KV module comes in only for an
/// app with namespaces (only its world has the KV interfaces).
fn entry_module(module: &str, namespaces: &[String]) -> String {
    let names = namespaces
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let kv = if namespaces.is_empty() {
        ""
    } else {
        "import outpost.kv  # noqa: F401\n"
    };
    format!(
        "# Generated by `outpost build`: the app's module, served by the Outpost SDK.\n\
         {kv}import {module} as _app\n\
         from outpost.serve import incoming_handler\n\n\
         IncomingHandler = incoming_handler(_app, kv_namespaces=[{names}])\n"
    )
}

/// What the component is made of: every Python file of the app (outside its build output),
/// the generated entry, its world, the SDK and the toolchain's version.
fn fingerprint(dir: &Path, generated: &Path, world: &str) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_sources(dir, &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    for file in files
        .iter()
        .chain(std::iter::once(&generated.to_path_buf()))
    {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    }
    hash.update(world);
    hash.update(sdk::digest());
    hash.update(COMPONENTIZE_PY);
    Ok(hex::encode(hash.finalize()))
}

fn collect_sources(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || matches!(name, "__pycache__" | "dist" | "target" | "venv") {
            continue;
        }
        if path.is_dir() {
            collect_sources(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "py") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_module_serves_the_apps_module_with_its_namespaces() {
        let text = entry_module("app", &["counter".into()]);
        assert!(text.contains("import outpost.kv"), "{text}");
        assert!(text.contains("import app as _app\n"), "{text}");
        assert!(!entry_module("app", &[]).contains("outpost.kv"));
        assert!(
            text.contains(r#"incoming_handler(_app, kv_namespaces=["counter"])"#),
            "{text}"
        );
    }
}
