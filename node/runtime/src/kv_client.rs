//! What request handlers hold: reads straight from the replica, writes through the driver.

use std::sync::{Arc, Weak};

use outpost_kv::{Entry, KeyInfo, ReplicaStore, WriteError, WriteOp, WriteOutcome};
use tokio::sync::{mpsc, oneshot};

/// A request to the driver.
pub enum Command {
    /// Send a write to the origin and report its outcome.
    Write {
        /// The write to make.
        op: WriteOp,
        /// Where the driver sends the outcome, once the origin has answered or the write failed.
        reply: oneshot::Sender<WriteOutcome>,
    },
}

/// A handler's way into the node's KV. It does not keep the replica open: the node closes it
/// when it stops, whatever requests or instances still hold a client (so a process taking
/// over can open it at once); a read after that is an error for its request.
#[derive(Clone)]
pub struct KvClient {
    replica: Weak<dyn ReplicaStore>,
    commands: mpsc::Sender<Command>,
}

impl KvClient {
    /// A client that reads `replica` (without keeping it open) and sends writes to the driver
    /// on `commands`.
    pub fn new(replica: &Arc<dyn ReplicaStore>, commands: mpsc::Sender<Command>) -> Self {
        KvClient {
            replica: Arc::downgrade(replica),
            commands,
        }
    }

    fn replica(&self) -> Result<Arc<dyn ReplicaStore>, String> {
        self.replica
            .upgrade()
            .ok_or_else(|| "the node's KV is closed".to_string())
    }

    /// A key's latest entry from the local replica (tombstones and expired entries included:
    /// callers ask the entry whether it is live).
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<Arc<Entry>>, String> {
        self.replica()?
            .get(namespace, key)
            .map_err(|e| e.to_string())
    }

    /// Keys by prefix from the local replica, without their values (tombstones and expired
    /// keys included: callers ask whether each is live).
    pub fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, String> {
        self.replica()?
            .list_keys(namespace, prefix, after, limit)
            .map_err(|e| e.to_string())
    }

    /// Send a write to the origin and wait for its outcome.
    pub async fn write(&self, op: WriteOp) -> WriteOutcome {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Write { op, reply })
            .await
            .is_err()
        {
            return Err(WriteError::Unavailable(
                "the node's KV driver has stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(WriteError::Unavailable(
                "the node's KV driver has stopped".into(),
            ))
        })
    }
}
