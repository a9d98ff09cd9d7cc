//! What a handler may import, and linking a component against it once per deployment.
//!
//! The linker holds the `wasi:http/proxy` world plus the WASI 0.2 interfaces real toolchains
//! emit beside it (random, clocks, cli stdio/environment/exit/terminal), `wasi:config`, and the
//! edge KV (`wasi:keyvalue@0.2.0-draft` store/atomics/batch and `outpost:kv/extras`, see
//! `crate::kv::host`). Never filesystem or sockets. wasmtime matches imports by semver, so a component built
//! against any WASI 0.2.x links against these 0.2.12 implementations.

use anyhow::{anyhow, bail};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings::{cli, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi_config::WasiConfig;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::host::HostState;

const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";

pub fn build(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // wasi:http/proxy: http types + outgoing-handler, io, clocks, random, stdio.
    wasmtime_wasi_http::p2::add_to_linker_async(&mut linker)?;
    let l = &mut linker;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, |h| h.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, |h| h.ctx().ctx.random())?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    wasmtime_wasi_config::add_to_linker(l, |h: &mut HostState| WasiConfig::from(h.config()))?;
    crate::kv::host::add_to_linker(l)?;
    Ok(linker)
}

/// Link `component` once, so each request only instantiates. Errors say what the component
/// lacks or asks for that the host does not give.
pub fn prelink(
    linker: &Linker<HostState>,
    component: &Component,
) -> anyhow::Result<ProxyPre<HostState>> {
    let ty = component.component_type();
    let engine = linker.engine();
    let refused: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| name.starts_with("wasi:filesystem/") || name.starts_with("wasi:sockets/"))
        .collect();
    if !refused.is_empty() {
        bail!(
            "the component imports {}; handlers get no filesystem or sockets at the edge \
             (use wasi:http/outgoing-handler for the network, wasi:config for settings)",
            refused.join(", ")
        );
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports
        .iter()
        .any(|name| name.starts_with(INCOMING_HANDLER))
    {
        let found = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        if exports
            .iter()
            .any(|name| name.starts_with("wasi:http/handler@0.3"))
        {
            bail!(
                "this is a WASI 0.3 (wasi:http/handler) component; Outpost serves WASI 0.2 proxy components"
            );
        }
        bail!(
            "the component does not export {INCOMING_HANDLER}.x (it exports {found}); \
             a handler is a wasi:http/proxy component"
        );
    }
    let pre = linker.instantiate_pre(component).map_err(|err| {
        anyhow!("the component asks for something the host does not provide: {err:#}")
    })?;
    ProxyPre::new(pre).map_err(|err| {
        anyhow!("the component's {INCOMING_HANDLER}.x export does not match: {err:#}")
    })
}
