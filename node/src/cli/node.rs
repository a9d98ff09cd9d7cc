//! `outpost node --config node.toml`: an edge node serving several apps with real certificates.
//! With `--takeover`, it replaces the node running from the same data directory without
//! refusing a connection, and a node whose successor fails before serving serves again (see
//! [`outpost_edge::server::handoff`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::launch::{ClusterSpec, LaunchSpec, launch};
use crate::service_manager;
use outpost_core::config::NodeConfig;
use outpost_edge::server::handoff::{self, Inherited};
use outpost_net::listener::ShutdownSignal;

pub(super) async fn run(
    config: &Path,
    takeover: bool,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    outpost_core::files::private_dir(&config.data_dir)?;
    let mut inherited = if takeover {
        preflight(&config).context("not taking over: this process could not serve")?;
        // The old node finishes its requests in flight first: give it its drain time and some.
        let wait = config.http.drain_timeout + config.health.drain_delay + Duration::from_secs(15);
        let data_dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || handoff::take_over(&data_dir, wait)).await??
    } else if handoff::running_node(&config.data_dir) {
        bail!(
            "a node is already running from {}; to replace it without downtime, start this one with --takeover",
            config.data_dir.display()
        );
    } else {
        Inherited::default()
    };
    service_manager::stopping_on(shutdown.clone());
    // Serve; after a hand-off, exit once the new process serves, or serve again on the
    // listeners it hands back by failing first.
    loop {
        let launched = launch(launch_spec(&config, inherited), shutdown.clone()).await?;
        tracing::info!(
            node = %config.name,
            https = %launched.https,
            http_redirect = ?launched.http_redirect,
            plain = ?launched.plain,
            admin = ?launched.admin,
            local_apps = launched.apps.len(),
            "serving"
        );
        service_manager::ready(&format!("serving on {}", launched.https));
        let handed_off = launched.done.await.context("the server task failed")?;
        let Some(handed_off) = handed_off else {
            break;
        };
        match tokio::task::spawn_blocking(move || handed_off.release()).await? {
            None => break,
            Some(back) => inherited = back,
        }
    }
    tracing::info!("drained; bye");
    Ok(())
}

fn launch_spec(config: &NodeConfig, inherited: Inherited) -> LaunchSpec {
    let config = config.clone();
    LaunchSpec {
        https: config.https,
        http_redirect: config.http_redirect,
        plain: config.plain,
        http3: config.http3,
        certs: config.certs,
        apps: config.apps,
        pool: config.pool,
        http: config.http,
        data_dir: config.data_dir,
        expose_errors: false,
        cluster: config.cluster.map(|link| ClusterSpec {
            link,
            node: config.name.clone(),
            peering: config.peering,
        }),
        admin: config.admin,
        // An operator's node asks a token of every KV write: through its origin.
        local_kv_api: false,
        health: config.health,
        access_log: config.access_log,
        tenancy: config.tenancy,
        inherited,
        name: config.name,
        region: config.region,
        preview_domain: config.preview_domain,
    }
}

/// What a new process must be able to do before it asks a running node for its sockets: once
/// it has them the old process drains and exits, so a failure after that point would leave
/// nothing serving. Its certificates and keys load, its cluster identity loads, and each local
/// app's component can be read and is a component.
fn preflight(config: &NodeConfig) -> anyhow::Result<()> {
    let resolver = outpost_net::cert_reload::ReloadingResolver::load(config.certs.clone())?;
    outpost_net::tls::server_config(std::sync::Arc::new(resolver))?;
    if let Some(link) = &config.cluster {
        outpost_net::cluster_tls::client_config(&link.identity)?;
    }
    for app in &config.apps {
        let wasm = std::fs::read(&app.component)
            .with_context(|| format!("reading {}", app.component.display()))?;
        outpost_runtime::check_header(&wasm)
            .with_context(|| format!("{}", app.component.display()))?;
    }
    Ok(())
}
