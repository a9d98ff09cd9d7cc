//! `outpost origin --config origin.toml`: the deployment authority of a fleet.

use std::path::Path;

use anyhow::Context;

use crate::config::OriginConfig;
use crate::server::ShutdownSignal;

pub async fn run(config: &Path, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let config = OriginConfig::load(config)?;
    let running = crate::origin::start(config, shutdown).await?;
    running.done.await.context("the origin task failed")?;
    tracing::info!("origin stopped");
    Ok(())
}
