//! `outpost new NAME [--lang rust|js|python]`: an app that builds and deploys as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use outpost_core::config::{Language, validate_name};

/// The SDK's source directory, when this binary was built from the Outpost repository.
fn sdk_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    std::fs::canonicalize(path)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
}

pub(super) fn new_app(name: &str, dir: Option<&Path>, language: Language) -> anyhow::Result<()> {
    validate_name(name).map_err(anyhow::Error::msg)?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let files = match language {
        Language::Rust => rust_files(name),
        Language::Js => js_files(name),
        Language::Python => python_files(name),
    };
    for (file, contents) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} (app {name}, {})",
        dir.display(),
        language.as_str()
    );
    println!("  build:  cd {} && outpost build", dir.display());
    println!("  run:    outpost dev");
    println!("  deploy: outpost deploy --activate");
    Ok(())
}

/// For JavaScript and Python: reuse instances, as Workers reuses isolates.
const REUSE: &str = r#"
# One instance serves request after request of this version, as a Worker's isolate does: far
# faster for a JavaScript or Python engine than a fresh instance each time, and module-level
# state lives on between requests. Remove it for a fresh instance per request.
[instance]
reuse = true
"#;

/// The part of outpost.toml every language shares, after `name` and `component`, with
/// `extra` after the limits.
fn manifest(name: &str, component: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
component = "{component}"
routes = ["*"]

[limits]
cpu_ms = 50
memory_mb = 128
body_kb = 1024
{extra}
# [outbound]
# allow = ["https://api.example.com"]

# [config]
# GREETING = "hello"

# [kv]
# namespaces = ["cache"]

# [deploy]
# origin = "https://origin.example.com:9443"   # or OUTPOST_ORIGIN; the token comes from OUTPOST_TOKEN
"#
    )
}

fn rust_files(name: &str) -> Vec<(&'static str, String)> {
    let crate_file = name.replace('-', "_");
    let sdk = match sdk_path() {
        Some(path) => format!(
            "outpost-sdk = {{ path = {:?} }}",
            path.display().to_string()
        ),
        None => "outpost-sdk = \"0.1\"".to_string(),
    };
    vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}

# Its own workspace. `outpost build` compiles it to a wasm32-wasip2 component; `cargo test`
# runs its unit tests on this machine.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#
            ),
        ),
        (".gitignore", "/target\n".to_string()),
        (
            "src/lib.rs",
            format!(
                r#"//! The {name} handler.

use outpost_sdk::prelude::*;
use outpost_sdk::{{Handler, Request, Response, Result, Router}};

struct App;

impl Handler for App {{
    async fn handle(request: Request) -> Result<Response> {{
        Router::new()
            .get("/greet/{{name}}", greet)
            .get("/", home)
            .get("/{{*path}}", home)
            .handle(request)
            .await
    }}
}}

async fn home(request: Request) -> Result<Response> {{
    Ok(Response::text(format!("hello from {name} at {{}}\n", request.uri().path())))
}}

async fn greet(request: Request) -> Result<Response> {{
    let who = request.param("name").unwrap_or_default();
    Ok(Response::text(format!("hello, {{who}}\n")))
}}

outpost_sdk::export!(App);

// `cargo test` runs these on this machine: off wasm the SDK's KV is in memory, config values
// come from `testing::set_config` and fetches go to `testing::on_fetch`.
#[cfg(test)]
mod tests {{
    use super::*;
    use outpost_sdk::testing;

    fn get(path: &str) -> String {{
        let response = testing::call::<App>(Request::get(path).body(().into()).unwrap());
        assert_eq!(response.status(), 200);
        testing::block_on(response.into_body().text()).unwrap()
    }}

    #[test]
    fn answers_every_path() {{
        assert_eq!(get("/some/where"), "hello from {name} at /some/where\n");
    }}

    #[test]
    fn greets_by_name_percent_decoded() {{
        assert_eq!(get("/greet/Ada%20L"), "hello, Ada L\n");
    }}
}}
"#
            ),
        ),
        (
            "outpost.toml",
            manifest(
                name,
                &format!("target/wasm32-wasip2/release/{crate_file}.wasm"),
                "",
            ),
        ),
    ]
}

fn js_files(name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "package.json",
            format!(
                r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "main": "src/index.js",
  "scripts": {{
    "build": "outpost build",
    "dev": "outpost dev",
    "deploy": "outpost deploy --activate"
  }}
}}
"#
            ),
        ),
        (
            "src/index.js",
            format!(
                r#"// The {name} handler, in the shape of a Cloudflare Worker: `env` holds the app's [config]
// values (env.vars.NAME) and its [kv] namespaces (env.KV is the first).
export default {{
  async fetch(request, env, ctx) {{
    const url = new URL(request.url);
    return new Response(`hello from {name} at ${{url.pathname}}\n`, {{
      headers: {{ "content-type": "text/plain; charset=utf-8" }},
    }});
  }},
}};
"#
            ),
        ),
        (
            ".gitignore",
            "/dist\n/.outpost\n/node_modules\n".to_string(),
        ),
        (
            "outpost.toml",
            manifest(name, &format!("dist/{name}.wasm"), REUSE),
        ),
    ]
}

fn python_files(name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "app.py",
            format!(
                r#""""The {name} handler: `env.vars` holds the app's [config] values and each [kv] namespace is
`env.NAME` (env.KV is the first)."""

from outpost import Response


def on_fetch(request, env):
    return Response(f"hello from {name} at {{request.path}}\n")
"#
            ),
        ),
        (".gitignore", "/dist\n/.outpost\n__pycache__/\n".to_string()),
        (
            "outpost.toml",
            manifest(name, &format!("dist/{name}.wasm"), REUSE),
        ),
    ]
}
