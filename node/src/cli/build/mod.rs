//! `outpost build`: compile the app in a directory to its component, in the app's language:
//! Rust through cargo (rustup's `wasm32-wasip2` target, or Debian's toolchain as set up by
//! `scripts/guest-toolchain install`), JavaScript or TypeScript through esbuild and
//! componentize-js, Python through componentize-py. The JS and Python tools are pinned and
//! installed on first use into the tools cache; the SDK parts they need travel inside this
//! binary. `[build] command` replaces all of it with the author's own command.

mod js;
mod python;
mod rust;
mod sdk;
mod tools;
mod world;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use outpost_core::blobs::sha256_hex;
use outpost_core::config::{AppSpec, Language};

/// What a build made.
#[derive(Debug, serde::Serialize)]
pub(super) struct Built {
    /// The component, as outpost.toml names it.
    pub component: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// Whether this build wrote it (`false`: it was up to date).
    pub fresh: bool,
}

impl Built {
    /// The line a person reads.
    pub(super) fn line(&self) -> String {
        format!(
            "{} {} ({} bytes, sha256 {})",
            if self.fresh { "built" } else { "up to date:" },
            self.component.display(),
            self.bytes,
            &self.sha256[..16]
        )
    }
}

pub(super) fn build(path: &Path) -> anyhow::Result<Built> {
    let spec = AppSpec::load(path)?;
    let dir = app_dir(&spec);
    if let Some(parent) = spec.component.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let fresh = match &spec.build.command {
        Some(command) => {
            let mut shell = Command::new("sh");
            shell.arg("-c").arg(command).current_dir(&dir);
            tools::run(&mut shell, &format!("the build command `{command}`"))?;
            true
        }
        None => match language(&spec, &dir)? {
            Language::Rust => rust::build(&dir).map(|()| true)?,
            Language::Js => js::build(&spec, &dir)?,
            Language::Python => python::build(&spec, &dir)?,
        },
    };
    let wasm = std::fs::read(&spec.component).with_context(|| {
        format!(
            "the build finished but {} (the component in outpost.toml) is not there",
            spec.component.display()
        )
    })?;
    outpost_runtime::check_header(&wasm)?;
    Ok(Built {
        component: spec.component,
        bytes: wasm.len() as u64,
        sha256: sha256_hex(&wasm),
        fresh,
    })
}

/// The directory of the app's outpost.toml, where its build runs.
pub(super) fn app_dir(spec: &AppSpec) -> PathBuf {
    match spec.source.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether there is something to build the app from: `[build] command`, or sources whose
/// language can be told. An outpost.toml that only names a component has none.
pub(super) fn has_sources(spec: &AppSpec) -> bool {
    spec.build.command.is_some() || language(spec, &app_dir(spec)).is_ok()
}

/// The app's language: `[build] language`, else what its files say.
pub(super) fn language(spec: &AppSpec, dir: &Path) -> anyhow::Result<Language> {
    if let Some(language) = spec.build.language {
        return Ok(language);
    }
    if let Some(entry) = &spec.build.entry {
        match entry.extension().and_then(|e| e.to_str()) {
            Some("py") => return Ok(Language::Python),
            Some("js" | "mjs" | "cjs" | "ts" | "mts" | "jsx" | "tsx") => return Ok(Language::Js),
            _ => {}
        }
    }
    let has = |name: &str| dir.join(name).exists();
    if has("Cargo.toml") {
        return Ok(Language::Rust);
    }
    if has("package.json") || js::DEFAULT_ENTRIES.iter().any(|e| has(e)) {
        return Ok(Language::Js);
    }
    if has("pyproject.toml") || has(python::DEFAULT_ENTRY) {
        return Ok(Language::Python);
    }
    bail!(
        "cannot tell the language of the app in {}: it has no Cargo.toml, package.json or app.py; \
         set `[build] language = \"rust\" | \"js\" | \"python\"` in outpost.toml",
        dir.display()
    )
}
