//! What a handler may import, and linking a component against it once per deployment.
//!
//! Link everything standard, grant nothing. The linker holds the whole WASI 0.2 command world
//! that real toolchains import (componentize-js and componentize-py import wasi:filesystem and
//! wasi:sockets whether or not the handler uses them), `wasi:http` (types and outgoing-handler),
//! `wasi:config`, and the edge KV (`wasi:keyvalue@0.2.0-draft` store/atomics/batch and
//! `outpost:kv/extras`, see `super::kv_host`). What a request may *do* with them is set in its
//! `WasiCtx` (see `super::host`): no preopened directory, every socket and name lookup denied,
//! stdin empty; the network is `wasi:http/outgoing-handler` under the app's allow-list. Only an
//! import that nothing here provides is refused, naming the interface. wasmtime matches imports
//! by semver, so a component built against any WASI 0.2.x links against these 0.2.12
//! implementations.

use anyhow::{anyhow, bail};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_config::WasiConfig;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::host::HostState;

const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";

pub(crate) fn build(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // The WASI 0.2 command world: io, clocks, random, cli, filesystem, sockets.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // wasi:http types and outgoing-handler (the rest of the proxy world is in the above).
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let l = &mut linker;
    wasmtime_wasi_config::add_to_linker(l, |h: &mut HostState| WasiConfig::from(h.config()))?;
    super::kv_host::add_to_linker(l)?;
    Ok(linker)
}

/// Link `component` once, so each request only instantiates. Errors say what the component
/// lacks or asks for that the host does not give.
pub(crate) fn prelink(
    linker: &Linker<HostState>,
    component: &Component,
) -> anyhow::Result<ProxyPre<HostState>> {
    let ty = component.component_type();
    let engine = linker.engine();
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
