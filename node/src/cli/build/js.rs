//! JavaScript and TypeScript apps: esbuild bundles the app's module (and what it imports from
//! its node_modules) with the SDK's `serve`, and componentize-js turns the bundle into a
//! component of the app's world (see `world.rs`), on the StarlingMonkey engine. Both are pinned in
//! guest-sdk/js/toolchain (package.json and its lockfile) and installed with `npm ci` on first
//! use. Intermediate files go to `.outpost/build/` in the app's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{sdk, tools, world};
use outpost_core::config::{AppSpec, Language};

/// Where the app's module is looked for when neither `[build] entry` nor package.json's
/// `main` says.
pub(super) const DEFAULT_ENTRIES: &[&str] = &[
    "src/index.ts",
    "src/index.js",
    "src/index.mjs",
    "src/worker.ts",
    "src/worker.js",
    "index.ts",
    "index.js",
];

/// Build the app; `Ok(false)` when the component was already up to date.
pub(super) fn build(spec: &AppSpec, dir: &Path) -> anyhow::Result<bool> {
    tools::require(
        "node",
        "--version",
        "install Node.js 18 or later (https://nodejs.org, or your system's nodejs package)",
    )?;
    tools::require("npm", "--version", "install npm (it comes with Node.js)")?;
    let tools_dir = tools::tools_dir();
    let toolchain = toolchain(&tools_dir)?;
    let sdk = sdk::unpack(&tools_dir)?;
    let entry = entry(spec, dir)?;
    install_app_dependencies(dir)?;

    let work = dir.join(".outpost/build");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let sdk_module = sdk.join("js/src/index.js");
    let entry_js = work.join("entry.js");
    std::fs::write(
        &entry_js,
        entry_module(
            &entry,
            &sdk.join("js/src"),
            &spec.settings.kv_namespaces,
            spec.settings.reuse_requests.is_some(),
        ),
    )
    .with_context(|| format!("writing {}", entry_js.display()))?;

    let bundle = work.join("bundle.js");
    let mut esbuild = Command::new("node");
    esbuild
        .arg(toolchain.join("node_modules/esbuild/bin/esbuild"))
        .arg(&entry_js)
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--main-fields=module,main",
            "--conditions=workerd,worker,browser",
            "--external:wasi:*",
            "--external:outpost:*",
            "--log-level=warning",
        ])
        .arg(format!("--alias:@outpost/sdk={}", sdk_module.display()))
        .arg(format!("--outfile={}", bundle.display()))
        .current_dir(dir);
    tools::run(&mut esbuild, "esbuild (bundling the app)")?;

    let bundled =
        std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(&bundled);
    fingerprint.update(sdk::digest());
    fingerprint.update(sdk::file("js/toolchain/package-lock.json"));
    fingerprint.update(world::world(
        Language::Js,
        !spec.settings.kv_namespaces.is_empty(),
    ));
    let stamp = tools::Stamp::new(&work, &spec.component, hex::encode(fingerprint.finalize()));
    if stamp.is_current(&spec.component) {
        return Ok(false);
    }

    // componentize-js reads the WIT inside a WASI sandbox that sees only the working folder.
    let kv = !spec.settings.kv_namespaces.is_empty();
    let reuse = spec.settings.reuse_requests.is_some();
    world::write(&work.join("wit"), Language::Js, kv)?;
    let mut componentize = Command::new("node");
    componentize
        .arg(toolchain.join("node_modules/@bytecodealliance/componentize-js/src/cli.js"))
        .args(["--wit", "wit", "--world-name", world::WORLD, "--out"])
        .arg(absolute(&spec.component)?)
        .arg("bundle.js")
        .current_dir(&work);
    tools::run(&mut componentize, "componentize-js")?;
    if !reuse {
        // StarlingMonkey's fetch event answers one request per instance: say so, so the node
        // refuses this component for an app that reuses instances.
        let mut wasm = std::fs::read(&spec.component)
            .with_context(|| format!("reading {}", spec.component.display()))?;
        outpost_runtime::mark_one_request_per_instance(&mut wasm);
        std::fs::write(&spec.component, wasm)
            .with_context(|| format!("writing {}", spec.component.display()))?;
    }
    stamp.record()?;
    Ok(true)
}

/// The pinned toolchain, installed with `npm ci` from the embedded lockfile.
fn toolchain(tools_dir: &Path) -> anyhow::Result<PathBuf> {
    let lock = sdk::file("js/toolchain/package-lock.json");
    let dir = tools_dir
        .join("js")
        .join(&hex::encode(Sha256::digest(lock))[..12]);
    tools::install_once(
        &dir,
        "componentize-js and esbuild (npm ci, pinned)",
        |dir| {
            std::fs::write(
                dir.join("package.json"),
                sdk::file("js/toolchain/package.json"),
            )?;
            std::fs::write(dir.join("package-lock.json"), lock)?;
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(dir);
            tools::run(&mut npm, "npm ci")
        },
    )?;
    Ok(dir)
}

/// The app's module: `[build] entry`, else package.json's `main`, else the first of
/// [`DEFAULT_ENTRIES`] that exists.
fn entry(spec: &AppSpec, dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(entry) = &spec.build.entry {
        let path = dir.join(entry);
        if !path.is_file() {
            bail!(
                "[build] entry {} does not exist ({})",
                entry.display(),
                path.display()
            );
        }
        return absolute(&path);
    }
    if let Some(main) = package_json(dir)?.and_then(|p| p["main"].as_str().map(str::to_string)) {
        let path = dir.join(&main);
        if path.is_file() {
            return absolute(&path);
        }
    }
    DEFAULT_ENTRIES
        .iter()
        .map(|e| dir.join(e))
        .find(|p| p.is_file())
        .map(|p| absolute(&p))
        .unwrap_or_else(|| {
            bail!(
                "no JavaScript module to build in {}: looked for {}; set `[build] entry` in outpost.toml",
                dir.display(),
                DEFAULT_ENTRIES.join(", ")
            )
        })
}

fn package_json(dir: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    let path = dir.join("package.json");
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{} is not valid JSON", path.display()))
}

/// `npm install` in the app's directory when it declares packages and has none installed.
fn install_app_dependencies(dir: &Path) -> anyhow::Result<()> {
    let Some(package) = package_json(dir)? else {
        return Ok(());
    };
    let declares = ["dependencies", "devDependencies"].iter().any(|key| {
        package[key]
            .as_object()
            .is_some_and(|deps| !deps.is_empty())
    });
    if declares && !dir.join("node_modules").exists() {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund"])
            .current_dir(dir);
        tools::run(&mut npm, "npm install (the app's dependencies)")?;
    }
    Ok(())
}

/// The module esbuild starts from: the app's module served by the SDK (in `sdk`, its `src/`).
/// A fresh instance per request is served by StarlingMonkey's fetch event (its native request
/// path); an app that reuses instances exports the SDK's own incoming handler instead, since
/// the fetch event serves one request per instance. The KV binding is imported only for an app
/// with KV namespaces, whose world has the KV interfaces. A module without a default export may
/// register its own `fetch` listener (Service Worker syntax).
fn entry_module(app: &Path, sdk: &Path, namespaces: &[String], reuse: bool) -> String {
    let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string");
    let (kv_import, kv_option) = if namespaces.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(
                "import {{ KVNamespace }} from {};\n",
                quote(&sdk.join("kv.js"))
            ),
            ", KVNamespace".to_string(),
        )
    };
    let options = format!(
        "{{ kvNamespaces: {}{kv_option} }}",
        serde_json::to_string(namespaces).expect("strings")
    );
    let serve = if reuse {
        format!(
            "import {{ incomingHandler as handlerFor }} from {};\n\
             export const incomingHandler = handlerFor(app.default, {options});\n",
            quote(&sdk.join("handler.js"))
        )
    } else {
        format!(
            "import {{ serve }} from {};\nserve(app.default, {options});\n",
            quote(&sdk.join("index.js"))
        )
    };
    format!(
        "// Generated by `outpost build`: the app's module, served by the Outpost SDK.\n\
         import * as app from {app};\n{kv_import}{serve}",
        app = quote(app),
    )
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_module_serves_the_apps_default_export_with_its_namespaces() {
        let sdk = Path::new("/tools/sdk/x/js/src");
        let text = entry_module(
            Path::new("/app/src/index.ts"),
            sdk,
            &["counter".into(), "flags".into()],
            false,
        );
        assert!(
            text.contains(r#"import * as app from "/app/src/index.ts";"#),
            "{text}"
        );
        assert!(text.contains(r#"import { serve } from "/tools/sdk/x/js/src/index.js";"#));
        assert!(text.contains(r#"import { KVNamespace } from "/tools/sdk/x/js/src/kv.js";"#));
        assert!(text.contains(
            r#"serve(app.default, { kvNamespaces: ["counter","flags"], KVNamespace });"#
        ));
        let plain = entry_module(Path::new("/app/index.js"), sdk, &[], false);
        assert!(!plain.contains("kv.js"), "{plain}");
        assert!(
            plain.contains("serve(app.default, { kvNamespaces: [] });"),
            "{plain}"
        );
    }

    #[test]
    fn an_app_that_reuses_instances_exports_the_sdks_handler() {
        let sdk = Path::new("/tools/sdk/x/js/src");
        let reused = entry_module(Path::new("/app/index.js"), sdk, &[], true);
        assert!(
            reused.contains(
                r#"import { incomingHandler as handlerFor } from "/tools/sdk/x/js/src/handler.js";"#
            ),
            "{reused}"
        );
        assert!(reused.contains(
            "export const incomingHandler = handlerFor(app.default, { kvNamespaces: [] });"
        ));
        assert!(!reused.contains("serve("), "{reused}");
    }
}
