//! The KV authority at the origin, and the session that serves one node.
//!
//! One thread owns the `Authority` (and its redb file): writes from every node and from the
//! admin API queue up for it, and each round takes all that are waiting and commits them in one
//! fsynced transaction (group commit), then answers them and broadcasts the new entries.
//! Sessions subscribe to that broadcast after sending the node its catch-up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use outpost_kv::authority::IncomingWrite;
use outpost_kv::protocol::CHUNK_BYTES;
use outpost_kv::{
    Authority, Batch, Entry, FromOrigin, KeyInfo, RedbAuthorityStore, ToOrigin, WriteError,
    WriteOp, WriteOutcome,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metrics::metrics;

/// Writes taken per commit at most.
const GROUP: usize = 512;
/// Messages the origin holds for one node before the session waits for the node to read: a
/// node that stops reading costs the origin this much, not everything committed since.
pub const SESSION_OUTBOX: usize = 64;
/// Messages from one node waiting for its session; past this the node is sending faster than
/// the origin takes them in, and its link is closed.
pub const SESSION_INBOX: usize = 4096;
/// One node's writes waiting for the authority at once; past this they are refused as
/// unavailable (the node's callers may retry) rather than queued.
const WRITES_IN_FLIGHT: usize = 1024;
/// Log entries kept for catch-ups; a node further behind gets a snapshot.
const LOG_RETENTION: u64 = 100_000;
/// Compact the log after this many new versions.
const COMPACT_EVERY: u64 = 10_000;
/// The writer name of the origin's own writes; no node can have it (node names are DNS labels).
const ORIGIN_WRITER: &str = "@origin";

enum Request {
    Write {
        write: IncomingWrite,
        reply: oneshot::Sender<WriteOutcome>,
    },
    CatchUp {
        from: u64,
        reply: oneshot::Sender<Result<(Batch, u64), String>>,
    },
    Get {
        namespace: String,
        key: String,
        reply: oneshot::Sender<Result<Option<Entry>, String>>,
    },
    List {
        namespace: String,
        prefix: String,
        after: Option<String>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<KeyInfo>, String>>,
    },
}

/// A handle on the authority thread.
#[derive(Clone)]
pub struct KvAuthority {
    requests: std_mpsc::Sender<Request>,
    committed: broadcast::Sender<Arc<Batch>>,
    /// Ids for writes the origin makes itself (the admin API).
    own_ids: Arc<AtomicU64>,
}

fn now() -> (u64, u64) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_millis() as u64, since.as_micros() as u64)
}

impl KvAuthority {
    /// Open the store at `path` and start the authority thread.
    pub fn start(path: &Path) -> anyhow::Result<KvAuthority> {
        let store = RedbAuthorityStore::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        let authority = Authority::new(store);
        let (requests, inbox) = std_mpsc::channel::<Request>();
        let (committed, _) = broadcast::channel(4096);
        let announce = committed.clone();
        std::thread::Builder::new()
            .name("outpost-kv-authority".into())
            .spawn(move || run_authority(authority, inbox, announce))?;
        Ok(KvAuthority {
            requests,
            committed,
            own_ids: Arc::new(AtomicU64::new(crate::kv::write_id_base())),
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).ok()?;
        answer.await.ok()
    }

    pub async fn write(&self, writer: &str, id: u64, op: WriteOp) -> WriteOutcome {
        let write = IncomingWrite {
            writer: writer.to_string(),
            id,
            op,
        };
        self.ask(|reply| Request::Write { write, reply })
            .await
            .unwrap_or_else(|| Err(WriteError::Internal("the KV authority has stopped".into())))
    }

    /// A write the origin makes itself, such as one from the admin API.
    pub async fn write_as_origin(&self, op: WriteOp) -> WriteOutcome {
        let id = self.own_ids.fetch_add(1, Ordering::Relaxed);
        self.write(ORIGIN_WRITER, id, op).await
    }

    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, String> {
        let (namespace, key) = (namespace.to_string(), key.to_string());
        self.ask(|reply| Request::Get {
            namespace,
            key,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the KV authority has stopped".into()))
    }

    /// Keys by prefix, without their values.
    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, String> {
        let (namespace, prefix) = (namespace.to_string(), prefix.to_string());
        self.ask(|reply| Request::List {
            namespace,
            prefix,
            after,
            limit,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the KV authority has stopped".into()))
    }

    async fn catch_up(&self, from: u64) -> Result<(Batch, u64), String> {
        self.ask(|reply| Request::CatchUp { from, reply })
            .await
            .unwrap_or_else(|| Err("the KV authority has stopped".into()))
    }
}

/// The authority thread: take every request waiting, commit the writes among them in one
/// transaction, answer, announce, then serve the reads.
fn run_authority(
    mut authority: Authority<RedbAuthorityStore>,
    inbox: std_mpsc::Receiver<Request>,
    announce: broadcast::Sender<Arc<Batch>>,
) {
    let mut compacted_at = authority.last_version();
    while let Ok(first) = inbox.recv() {
        let mut writes = Vec::new();
        let mut others = Vec::new();
        for request in std::iter::once(first)
            .chain(std::iter::from_fn(|| inbox.try_recv().ok()))
            .take(GROUP)
        {
            match request {
                Request::Write { write, reply } => writes.push((write, reply)),
                other => others.push(other),
            }
        }
        if !writes.is_empty() {
            let (incoming, replies): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
            let (ms, us) = now();
            match authority.write_all(incoming, ms, us) {
                Ok((outcomes, batch)) => {
                    // Durable now: answer, then tell every subscriber.
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                    if let Some(batch) = batch {
                        let _ = announce.send(Arc::new(batch));
                    }
                }
                Err(err) => {
                    tracing::error!("KV commit failed: {err}");
                    for reply in replies {
                        let _ = reply.send(Err(WriteError::Internal(err.to_string())));
                    }
                }
            }
        }
        metrics()
            .origin_kv_version
            .set(authority.last_version() as i64);
        if authority.last_version() >= compacted_at + COMPACT_EVERY {
            compacted_at = authority.last_version();
            if let Err(err) = authority.compact(LOG_RETENTION) {
                tracing::error!("compacting the KV log failed: {err}");
            }
        }
        for request in others {
            serve_read(&authority, request);
        }
    }
}

fn serve_read(authority: &Authority<RedbAuthorityStore>, request: Request) {
    match request {
        Request::CatchUp { from, reply } => {
            let result = authority
                .catch_up(from, CHUNK_BYTES)
                .map(|b| (b, authority.last_version()))
                .map_err(|e| e.to_string());
            let _ = reply.send(result);
        }
        Request::Get {
            namespace,
            key,
            reply,
        } => {
            let _ = reply.send(authority.get(&namespace, &key).map_err(|e| e.to_string()));
        }
        Request::List {
            namespace,
            prefix,
            after,
            limit,
            reply,
        } => {
            let _ = reply.send(
                authority
                    .list_keys(&namespace, &prefix, after.as_deref(), limit)
                    .map_err(|e| e.to_string()),
            );
        }
        Request::Write { .. } => unreachable!("writes are committed in groups, not here"),
    }
}

/// Which namespaces a node's writes may touch: `Err` with the reason for one it may not.
pub type WriteScope = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Serve one node's KV session: its subscription and its writes. `incoming` and `outgoing` are
/// the session's two directions, whatever carries them (a QUIC stream, or a channel in
/// `outpost dev`). A write outside `scope` is refused without reaching the authority.
pub async fn serve_session(
    node: String,
    authority: KvAuthority,
    scope: WriteScope,
    mut incoming: mpsc::Receiver<ToOrigin>,
    outgoing: mpsc::Sender<FromOrigin>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT));
    let mut live: Option<broadcast::Receiver<Arc<Batch>>> = None;
    let mut sent_through = 0;
    loop {
        let next_live = async {
            match live.as_mut() {
                Some(receiver) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = incoming.recv() => match message {
                None => break,
                Some(ToOrigin::Subscribe { from }) => {
                    // Listen before reading the catch-up, so nothing committed in between is missed.
                    live = Some(authority.committed.subscribe());
                    match send_catch_up(&authority, from, &outgoing).await {
                        Ok(through) => sent_through = through,
                        Err(err) => {
                            tracing::error!(node, "KV catch-up failed: {err}");
                            break;
                        }
                    }
                }
                Some(ToOrigin::Write { id, op }) => {
                    if let Err(reason) = scope(op.namespace()) {
                        tracing::warn!(node, namespace = op.namespace(), "refused a node's KV write: {reason}");
                        let outcome = Err(WriteError::Refused(reason));
                        if outgoing.send(FromOrigin::WriteResult { id, outcome }).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let Ok(slot) = in_flight.clone().try_acquire_owned() else {
                        let outcome = Err(WriteError::Unavailable(format!(
                            "{WRITES_IN_FLIGHT} writes from this node are already waiting at the origin"
                        )));
                        if outgoing.send(FromOrigin::WriteResult { id, outcome }).await.is_err() {
                            break;
                        }
                        continue;
                    };
                    let (authority, outgoing, node) = (authority.clone(), outgoing.clone(), node.clone());
                    tokio::spawn(async move {
                        let outcome = authority.write(&node, id, op).await;
                        let _ = outgoing.send(FromOrigin::WriteResult { id, outcome }).await;
                        drop(slot);
                    });
                }
            },
            batch = next_live => match batch {
                Ok(batch) => {
                    if batch.through > sent_through {
                        sent_through = batch.through;
                        if send_batch((*batch).clone(), &outgoing).await.is_err() {
                            break;
                        }
                    }
                }
                // Fell behind the broadcast: catch up from where this session stands.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    live = Some(authority.committed.subscribe());
                    match send_catch_up(&authority, sent_through, &outgoing).await {
                        Ok(through) => sent_through = through,
                        Err(_) => break,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Send batches from `from` until the node has everything committed so far; returns how far.
async fn send_catch_up(
    authority: &KvAuthority,
    mut from: u64,
    outgoing: &mpsc::Sender<FromOrigin>,
) -> Result<u64, String> {
    loop {
        let (batch, last) = authority.catch_up(from).await?;
        from = batch.through;
        if !batch.entries.is_empty() || batch.through > batch.from {
            send_batch(batch, outgoing).await?;
        }
        if from >= last {
            return Ok(from);
        }
    }
}

/// Send a batch in parts small enough for one message each, waiting while the node's outbox
/// is full.
async fn send_batch(batch: Batch, outgoing: &mpsc::Sender<FromOrigin>) -> Result<(), String> {
    for part in batch.split(CHUNK_BYTES) {
        outgoing
            .send(FromOrigin::Batch(part))
            .await
            .map_err(|_| "the session closed".to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(namespace: &str) -> WriteOp {
        WriteOp::Put {
            namespace: namespace.into(),
            key: "k".into(),
            value: b"v".to_vec(),
            metadata: None,
            ttl_secs: None,
        }
    }

    #[tokio::test]
    async fn a_session_refuses_writes_outside_its_scope_before_the_authority_sees_them() {
        let dir = crate::test_support::temp_dir("kv-scope");
        let authority = KvAuthority::start(&dir.join("kv.redb")).unwrap();
        let scope: WriteScope = Arc::new(|namespace| {
            (namespace == "shop/carts")
                .then_some(())
                .ok_or_else(|| format!("{namespace} is not bound"))
        });
        let (to_session, incoming) = mpsc::channel(SESSION_INBOX);
        let (outgoing, mut answers) = mpsc::channel(SESSION_OUTBOX);
        tokio::spawn(serve_session(
            "edge-1".into(),
            authority.clone(),
            scope,
            incoming,
            outgoing,
        ));
        to_session
            .send(ToOrigin::Write {
                id: 1,
                op: put("bank/accounts"),
            })
            .await
            .unwrap();
        to_session
            .send(ToOrigin::Write {
                id: 2,
                op: put("shop/carts"),
            })
            .await
            .unwrap();
        let mut outcomes = std::collections::BTreeMap::new();
        while outcomes.len() < 2 {
            if let Some(FromOrigin::WriteResult { id, outcome }) = answers.recv().await {
                outcomes.insert(id, outcome);
            }
        }
        assert!(
            matches!(outcomes[&1], Err(WriteError::Refused(_))),
            "{outcomes:?}"
        );
        assert!(outcomes[&2].is_ok(), "{outcomes:?}");
        assert_eq!(authority.get("bank/accounts", "k").await.unwrap(), None);
        assert!(authority.get("shop/carts", "k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_node_that_stops_reading_holds_a_bounded_outbox_and_still_gets_everything() {
        let dir = crate::test_support::temp_dir("kv-backpressure");
        let authority = KvAuthority::start(&dir.join("kv.redb")).unwrap();
        let (to_session, incoming) = mpsc::channel(8);
        let (outgoing, mut answers) = mpsc::channel(4);
        tokio::spawn(serve_session(
            "edge-1".into(),
            authority.clone(),
            Arc::new(|_| Ok(())),
            incoming,
            outgoing,
        ));
        to_session
            .send(ToOrigin::Subscribe { from: 0 })
            .await
            .unwrap();
        // The node reads nothing while 200 writes commit, one batch each.
        for _ in 0..200 {
            assert!(authority.write_as_origin(put("shop/carts")).await.is_ok());
        }
        assert!(answers.len() <= 4, "{} messages held", answers.len());
        // Once it reads, it gets every version.
        let mut through = 0;
        while through < 200 {
            match tokio::time::timeout(std::time::Duration::from_secs(10), answers.recv()).await {
                Ok(Some(FromOrigin::Batch(batch))) => through = through.max(batch.through),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("the session stopped at version {through}"),
            }
        }
    }
}
