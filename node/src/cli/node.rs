//! `outpost node --config node.toml`: an edge node serving several apps with real certificates.

use std::path::Path;

use anyhow::Context;

use crate::config::NodeConfig;
use crate::launch::{ClusterSpec, LaunchSpec, launch};
use crate::server::ShutdownSignal;

pub async fn run(config: &Path, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    let launched = launch(
        LaunchSpec {
            https: config.https,
            http_redirect: config.http_redirect,
            plain: config.plain,
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
        },
        shutdown,
    )
    .await?;
    tracing::info!(
        node = %config.name,
        https = %launched.https,
        http_redirect = ?launched.http_redirect,
        plain = ?launched.plain,
        local_apps = launched.apps.len(),
        "serving"
    );
    launched.done.await.context("the server task failed")?;
    tracing::info!("drained; bye");
    Ok(())
}
