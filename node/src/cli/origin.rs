//! `outpost origin --config origin.toml`: the deployment authority of a fleet.

use std::path::Path;

use anyhow::Context;

use outpost_core::config::OriginConfig;
use outpost_net::listener::ShutdownSignal;

pub(super) async fn run(config: &Path, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let config = OriginConfig::load(config)?;
    let running = outpost_origin::start(config, shutdown).await?;
    running.done.await.context("the origin task failed")?;
    tracing::info!("origin stopped");
    Ok(())
}
