//! Starting a node's KV: open the replica and run the driver, which the links connect to an
//! authority (the origin's over the cluster link, or one embedded in this process: see
//! `outpost_node::embedded_kv`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use outpost_kv::{HeadCheck, RedbReplica, ReplicaStore};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::driver::{KvStats, LinkEvent, run_driver};
use super::progress::KvProgress;
use outpost_core::clock::write_id_base;
use outpost_runtime::kv_client::KvClient;

/// Handler writes waiting for the driver at most; more wait in the handlers themselves.
const COMMAND_QUEUE: usize = 4096;

/// A node's running KV.
pub struct NodeKv {
    /// The handle apps' KV host calls read and write through.
    pub client: KvClient,
    /// Where links report to the driver.
    pub links: mpsc::UnboundedSender<LinkEvent>,
    /// Write-acknowledgement and propagation latencies, logged when the KV stops.
    pub stats: Arc<Mutex<KvStats>>,
    /// How far the replica is, for readiness and metrics.
    pub progress: Arc<KvProgress>,
    /// The one lasting hold on the replica besides the driver's (clients hold it weakly).
    replica: Arc<dyn ReplicaStore>,
    stop: oneshot::Sender<()>,
    driver: JoinHandle<()>,
}

/// How long [`NodeKv::stop`] waits for the last reads in flight to let go of the replica.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl NodeKv {
    /// Open (or create) the replica in `dir` and start the driver; `head_check` verifies the
    /// origin's heads that peers pass on.
    pub fn start(dir: &Path, head_check: HeadCheck) -> anyhow::Result<NodeKv> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("replica.redb");
        let replica: Arc<dyn ReplicaStore> = Arc::new(
            RedbReplica::open(&path)
                .map_err(|e| anyhow::anyhow!("opening the KV replica {}: {e}", path.display()))?,
        );
        tracing::info!(applied = replica.applied(), path = %path.display(), "KV replica open");
        let (commands, command_inbox) = mpsc::channel(COMMAND_QUEUE);
        let (links, link_inbox) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let stats = Arc::new(Mutex::new(KvStats::default()));
        let progress = Arc::new(KvProgress::default());
        progress.update(replica.applied(), replica.applied());
        let driver = tokio::spawn(run_driver(
            replica.clone(),
            head_check,
            command_inbox,
            link_inbox,
            write_id_base(),
            stats.clone(),
            progress.clone(),
            stopped,
        ));
        Ok(NodeKv {
            client: KvClient::new(&replica, commands),
            links,
            stats,
            progress,
            replica,
            stop,
            driver,
        })
    }

    /// Stop the driver (once nothing serves requests any more), log what it measured, and
    /// close the replica: when this returns, another process may open it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.driver.await;
        {
            let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            if !stats.write_ack_us.is_empty() || !stats.propagation_us.is_empty() {
                tracing::info!(
                    write_ack = %KvStats::summary(&stats.write_ack_us),
                    propagation = %KvStats::summary(&stats.propagation_us),
                    "KV latencies this run"
                );
            }
        }
        // A read in flight holds the replica for as long as one lookup takes.
        let deadline = Instant::now() + CLOSE_WAIT;
        while Arc::strong_count(&self.replica) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&self.replica) > 1 {
            tracing::error!("the KV replica is still in use; it closes when this process exits");
        }
        drop(self.replica);
    }
}
