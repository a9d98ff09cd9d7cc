//! `outpost origin --config origin.toml`: the deployment authority of a fleet; and
//! `outpost origin migrate --to URL`, which moves its embedded state into PostgreSQL.

use std::path::Path;

use anyhow::Context;

use outpost_core::config::OriginConfig;
use outpost_net::listener::ShutdownSignal;

pub(super) async fn run(config: &Path, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let config = OriginConfig::load(config)?;
    crate::service_manager::stopping_on(shutdown.clone());
    let running = outpost_origin::start(config, shutdown).await?;
    crate::service_manager::ready("serving");
    running.done.await.context("the origin task failed")?;
    tracing::info!("origin stopped");
    Ok(())
}

pub(super) async fn migrate(config: &Path, to: &str, ca: Option<&Path>) -> anyhow::Result<()> {
    let config = OriginConfig::load(config)?;
    if config.database.is_some() {
        anyhow::bail!(
            "{} names a database already ([database]): the move is from an origin on its \
             embedded stores",
            config.source.display()
        );
    }
    let moved = outpost_origin::migrate::to_postgres(
        &config.data_dir,
        to,
        ca,
        config.secrets_key_file.as_deref(),
    )
    .await?;
    println!(
        "moved {} apps ({} versions), {} components and the KV ({} keys, {} log entries, \
         {} write outcomes, version {}) into the database",
        moved.apps,
        moved.versions,
        moved.components,
        moved.kv.entries,
        moved.kv.log,
        moved.kv.outcomes,
        moved.kv.version
    );
    // The URL may hold a password: it is not echoed.
    println!(
        "next: name the database in {} ([database] url = the URL given to --to, and ca = the file given to --ca if one was) and start \
         the origin, and any others, on it",
        config.source.display()
    );
    Ok(())
}
