//! The KV authority at the origin, and the session that serves one node.
//!
//! One thread owns the `Authority` (and its redb file): writes from every node and from the
//! admin API queue up for it, and each round takes all that are waiting and commits them in one
//! fsynced transaction (group commit), then answers them and broadcasts the new entries.
//! Reads (catch-ups, gets, lists) are served between commits, each a bounded step, and only for
//! so long per round, so a node far behind (or many at once) cannot hold up the fleet's writes.
//! Sessions subscribe to that broadcast before sending the node its catch-up.
//!
//! The store is the embedded redb file, or the fleet's PostgreSQL database ([`pg_store`]),
//! which several origins share, all active: each round then begins by taking the database's
//! version lock and reading what the other origins committed since, which this origin relays
//! to its nodes ahead of its own commits, so every origin's feed carries every version in
//! order. An idle origin learns of the others' commits from a notification (or a timer).

pub mod pg_store;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// The cluster protocol a node speaks (see `outpost_net::cluster_tls::ALPN`).
pub use outpost_kv::LinkProtocol;
use outpost_kv::authority::{IncomingWrite, outcome_of_failure};
use outpost_kv::protocol::CHUNK_BYTES;
use outpost_kv::quota::QuotaPolicy;
use outpost_kv::{
    Authority, AuthorityStore, Batch, Entry, FromOrigin, Head, KeyInfo, OriginSession,
    RedbAuthorityStore, Sweep, ToOrigin, WriteError, WriteOp, WriteOutcome,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use outpost_core::metrics::metrics;
use outpost_net::head_proof::HeadSigner;

use crate::database::Database;
use pg_store::PgAuthorityStore;

/// The store the authority thread owns, whichever engine it is.
type Store = Box<dyn AuthorityStore + Send>;

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
/// How much of the log the authority keeps for catch-ups; a node further behind gets a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    /// Versions kept.
    pub keep: u64,
    /// Compact after this many new versions.
    pub compact_every: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            keep: 100_000,
            compact_every: 10_000,
        }
    }
}
/// The writer name of the origin's own writes; no node can have it (node names are DNS labels).
const ORIGIN_WRITER: &str = "@origin";
/// How long the authority serves reads in one round before it commits the writes waiting.
const READ_BUDGET: Duration = Duration::from_millis(20);
/// How often the authority's reclaiming sweep runs, and how many keys each run looks at: deleted
/// and expired keys whose versions the log no longer holds go (see `Authority::reclaim`).
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
const RECLAIM_KEYS: usize = 1000;
/// How often an origin on a shared database looks for the others' commits when no
/// notification has come (one lost costs at most this much delay).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

enum Request {
    /// Another origin may have committed (see [`pg_store`]): relay what it did.
    Follow,
    /// The last handle is gone: stop once the requests before this one are answered.
    Close,
    Write {
        write: IncomingWrite,
        reply: oneshot::Sender<WriteOutcome>,
    },
    /// One step of a session's catch-up (see [`OriginSession::step`]).
    Step {
        session: OriginSession,
        reply: oneshot::Sender<Result<(OriginSession, Vec<FromOrigin>), String>>,
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

/// A group of writes committed, and the origin's signed word on how far it has got.
pub struct Committed {
    batch: Batch,
    head: Option<Head>,
}

/// A handle on the authority thread.
#[derive(Clone)]
pub struct KvAuthority {
    requests: std_mpsc::Sender<Request>,
    committed: broadcast::Sender<Arc<Committed>>,
    /// Ids for writes the origin makes itself (the admin API).
    own_ids: Arc<AtomicU64>,
    closed: watch::Receiver<bool>,
    /// Tells the thread to stop once the last handle is gone (whatever else holds a sender,
    /// such as the task relaying the database's wake-ups).
    _closer: Arc<Closer>,
}

struct Closer(std_mpsc::Sender<Request>);

impl Drop for Closer {
    fn drop(&mut self) {
        let _ = self.0.send(Request::Close);
    }
}

/// Tells when an authority's thread has ended and closed its store (once every
/// [`KvAuthority`] handle is gone). Holding it does not keep the authority running.
pub struct AuthorityClosed(watch::Receiver<bool>);

impl AuthorityClosed {
    /// Whether the store closed within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.0.wait_for(|closed| *closed))
            .await
            .is_ok_and(|closed| closed.is_ok())
    }
}

/// The clock once, in both units the authority stamps: (milliseconds, microseconds).
fn now() -> (u64, u64) {
    let micros = outpost_core::clock::unix_micros();
    (micros / 1000, micros)
}

impl KvAuthority {
    /// Open the store at `path` and start the authority thread.
    pub fn start(path: &Path) -> anyhow::Result<KvAuthority> {
        Self::start_with(path, LogRetention::default(), QuotaPolicy::default(), None)
    }

    /// Start on the redb file at `path`, with the log kept as `retention` says, every app held
    /// to `quotas`, signing heads with `signer` if given.
    pub fn start_with(
        path: &Path,
        retention: LogRetention,
        quotas: QuotaPolicy,
        signer: Option<HeadSigner>,
    ) -> anyhow::Result<KvAuthority> {
        let store = RedbAuthorityStore::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        Self::spawn(Box::new(store), retention, quotas, signer)
    }

    /// Start on the fleet's PostgreSQL database, which other origins may share: as
    /// [`KvAuthority::start_with`], and relaying their commits as they are notified.
    pub async fn start_on_postgres(
        db: Arc<Database>,
        retention: LogRetention,
        quotas: QuotaPolicy,
        signer: Option<HeadSigner>,
    ) -> anyhow::Result<KvAuthority> {
        let store = PgAuthorityStore::open(db.clone()).await?;
        let authority = Self::spawn(Box::new(store), retention, quotas, signer)?;
        let mut woken = db.listen(pg_store::CHANNEL, FOLLOW_EVERY);
        let requests = authority.requests.clone();
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                if requests.send(Request::Follow).is_err() {
                    return;
                }
            }
        });
        Ok(authority)
    }

    fn spawn(
        store: Store,
        retention: LogRetention,
        quotas: QuotaPolicy,
        signer: Option<HeadSigner>,
    ) -> anyhow::Result<KvAuthority> {
        let authority = Authority::with_quotas(store, quotas);
        let (requests, inbox) = std_mpsc::channel::<Request>();
        let (committed, _) = broadcast::channel(4096);
        let head = signer
            .as_ref()
            .and_then(|s| s.sign(authority.last_version()));
        let announce = Announcer {
            committed: committed.clone(),
            head,
            signer,
        };
        let (closing, closed) = watch::channel(false);
        std::thread::Builder::new()
            .name("outpost-kv-authority".into())
            .spawn(move || {
                // Returns once every handle is gone, dropping (closing) the store.
                run_authority(authority, retention, inbox, announce);
                let _ = closing.send(true);
            })?;
        Ok(KvAuthority {
            _closer: Arc::new(Closer(requests.clone())),
            requests,
            committed,
            own_ids: Arc::new(AtomicU64::new(outpost_core::clock::write_id_base())),
            closed,
        })
    }

    /// A way to learn when this authority has closed its store.
    pub fn closed(&self) -> AuthorityClosed {
        AuthorityClosed(self.closed.clone())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).ok()?;
        answer.await.ok()
    }

    /// A write from `writer` (a node's name) with its id there; answered once it is committed
    /// or refused.
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

    /// The stored entry for `key` in `namespace`, if any; it may have expired or be a deletion,
    /// so callers check `Entry::is_live`.
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

    /// The session's next catch-up step, on the authority's thread: the messages to send.
    async fn step(
        &self,
        session: OriginSession,
    ) -> Result<(OriginSession, Vec<FromOrigin>), String> {
        self.ask(|reply| Request::Step { session, reply })
            .await
            .unwrap_or_else(|| Err("the KV authority has stopped".into()))
    }
}

/// How the authority thread tells sessions what it committed.
struct Announcer {
    committed: broadcast::Sender<Arc<Committed>>,
    /// The newest signed head (none without a signer: `outpost dev`, which has no peers).
    head: Option<Head>,
    signer: Option<HeadSigner>,
}

impl Announcer {
    fn announce(&mut self, batch: Batch) {
        let head = self.signer.as_ref().and_then(|s| s.sign(batch.through));
        if head.is_some() {
            self.head.clone_from(&head);
        }
        let _ = self.committed.send(Arc::new(Committed { batch, head }));
    }
}

/// The authority thread: take every request waiting, commit the writes among them in one
/// transaction, answer, announce, then serve reads for up to [`READ_BUDGET`]; the reads left
/// wait for the next round, after its writes.
fn run_authority(
    mut authority: Authority<Store>,
    retention: LogRetention,
    inbox: std_mpsc::Receiver<Request>,
    mut announce: Announcer,
) {
    let mut compacted_at = authority.last_version();
    let mut reads: VecDeque<Request> = VecDeque::new();
    let mut sweep = Sweep::default();
    let mut swept_at = Instant::now();
    loop {
        let first = if reads.is_empty() {
            match inbox.recv_timeout(RECLAIM_EVERY) {
                Ok(request) => Some(request),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            inbox.try_recv().ok()
        };
        let mut writes = Vec::new();
        let (mut follow, mut closing) = (false, false);
        for request in first
            .into_iter()
            .chain(std::iter::from_fn(|| inbox.try_recv().ok()))
            .take(GROUP)
        {
            match request {
                Request::Write { write, reply } => writes.push((write, reply)),
                Request::Follow => follow = true,
                Request::Close => closing = true,
                read => reads.push_back(read),
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
                        announce.announce(batch);
                    }
                }
                Err(err) => {
                    tracing::error!("KV commit failed: {err}");
                    for reply in replies {
                        let _ = reply.send(outcome_of_failure(&err));
                    }
                }
            }
        } else if follow {
            // A round of writes relays the others' commits itself; without one, relay them now.
            match authority.others_committed() {
                Ok(Some(batch)) => announce.announce(batch),
                Ok(None) => {}
                Err(err) => tracing::warn!("reading the other origins' KV commits: {err}"),
            }
        }
        metrics()
            .origin_kv_version
            .set(authority.last_version() as i64);
        if authority.last_version() >= compacted_at + retention.compact_every {
            compacted_at = authority.last_version();
            if let Err(err) = authority.compact(retention.keep) {
                tracing::error!("compacting the KV log failed: {err}");
            }
        }
        if swept_at.elapsed() >= RECLAIM_EVERY {
            swept_at = Instant::now();
            match authority.reclaim(sweep.next.as_ref(), RECLAIM_KEYS, now().0) {
                Ok(done) => sweep = done,
                Err(err) => tracing::error!("reclaiming dead KV entries failed: {err}"),
            }
        }
        let started = Instant::now();
        while let Some(request) = reads.pop_front() {
            serve_read(&authority, &announce.head, request);
            if started.elapsed() >= READ_BUDGET && !closing {
                break;
            }
        }
        if closing {
            break;
        }
    }
}

fn serve_read(authority: &Authority<Store>, head: &Option<Head>, request: Request) {
    match request {
        Request::Step { mut session, reply } => {
            let result = session
                .step(authority, head.clone())
                .map(|messages| (session, messages))
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
        Request::Write { .. } | Request::Follow | Request::Close => {
            unreachable!("writes, follows and the close are taken by the round, not here")
        }
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
    protocol: LinkProtocol,
    mut incoming: mpsc::Receiver<ToOrigin>,
    outgoing: mpsc::Sender<FromOrigin>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT));
    let mut live: Option<broadcast::Receiver<Arc<Committed>>> = None;
    let mut session = OriginSession::new(protocol, CHUNK_BYTES);
    loop {
        let next_live = async {
            match live.as_mut() {
                Some(receiver) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        let messages = tokio::select! {
            message = incoming.recv() => match message {
                None => break,
                Some(ToOrigin::Subscribe { from }) => {
                    // Listen before the catch-up's first step, so nothing committed is missed.
                    live = Some(authority.committed.subscribe());
                    session.subscribe(from);
                    Vec::new()
                }
                Some(ToOrigin::Write { id, op }) => {
                    if let Err(reason) = scope(op.namespace()) {
                        tracing::warn!(node, namespace = op.namespace(), "refused a node's KV write: {reason}");
                        vec![FromOrigin::WriteResult { id, outcome: Err(WriteError::Refused(reason)) }]
                    } else if let Ok(slot) = in_flight.clone().try_acquire_owned() {
                        let (authority, outgoing, node) = (authority.clone(), outgoing.clone(), node.clone());
                        tokio::spawn(async move {
                            let outcome = protocol.outcome(authority.write(&node, id, op).await);
                            let _ = outgoing.send(FromOrigin::WriteResult { id, outcome }).await;
                            drop(slot);
                        });
                        Vec::new()
                    } else {
                        let outcome = Err(WriteError::Unavailable(format!(
                            "{WRITES_IN_FLIGHT} writes from this node are already waiting at the origin"
                        )));
                        vec![FromOrigin::WriteResult { id, outcome }]
                    }
                }
            },
            committed = next_live => match committed {
                Ok(committed) => session.committed(&committed.batch, committed.head.as_ref()),
                // Fell behind the broadcast: catch up from where this session stands.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    live = Some(authority.committed.subscribe());
                    session.lagged();
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if send_all(messages, &outgoing).await.is_err() {
            break;
        }
        // The catch-up runs to its end before anything else is taken in; the commits it
        // covers wait in the broadcast meanwhile, and the session drops them.
        while session.catching_up() {
            let stepped = authority.step(session).await;
            let messages = match stepped {
                Ok((stepped, messages)) => {
                    session = stepped;
                    messages
                }
                Err(err) => {
                    tracing::error!(node, "KV catch-up failed: {err}");
                    return;
                }
            };
            if send_all(messages, &outgoing).await.is_err() {
                return;
            }
        }
    }
}

/// Send `messages` in order, waiting while the node's outbox is full.
async fn send_all(
    messages: Vec<FromOrigin>,
    outgoing: &mpsc::Sender<FromOrigin>,
) -> Result<(), ()> {
    for message in messages {
        outgoing.send(message).await.map_err(|_| ())?;
    }
    Ok(())
}

#[cfg(test)]
mod pg_tests;

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
        let dir = outpost_core::test_support::temp_dir("kv-scope");
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
            LinkProtocol::V2,
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
    async fn an_app_over_its_write_rate_is_told_so_and_an_old_node_hears_unavailable() {
        use outpost_kv::quota::Quota;
        let dir = outpost_core::test_support::temp_dir("kv-rate");
        let quotas = QuotaPolicy {
            default: Quota {
                max_bytes: u64::MAX,
                writes_per_second: 3,
            },
            ..Default::default()
        };
        let authority =
            KvAuthority::start_with(&dir.join("kv.redb"), LogRetention::default(), quotas, None)
                .unwrap();
        // Ids differ between the sessions: both are edge-1's, and the origin answers a repeated
        // id with its first outcome.
        for (protocol, namespace, ids) in [
            (LinkProtocol::V2, "shop/carts", 1..=6),
            (LinkProtocol::V1, "blog/posts", 11..=16),
        ] {
            let (session, mut answers) = subscribed_session(&authority, protocol).await;
            for id in ids {
                let op = WriteOp::Put {
                    namespace: namespace.into(),
                    key: format!("k{id}"),
                    value: b"v".to_vec(),
                    metadata: None,
                    ttl_secs: None,
                };
                session.send(ToOrigin::Write { id, op }).await.unwrap();
            }
            let mut outcomes = std::collections::BTreeMap::new();
            while outcomes.len() < 6 {
                if let Some(FromOrigin::WriteResult { id, outcome }) = answers.recv().await {
                    outcomes.insert(id, outcome);
                }
            }
            let ok = outcomes.values().filter(|o| o.is_ok()).count();
            assert!((3..6).contains(&ok), "{protocol:?}: {outcomes:?}");
            let refused = outcomes.values().find(|o| o.is_err()).unwrap();
            match protocol {
                LinkProtocol::V2 => assert!(
                    matches!(refused, Err(WriteError::RateLimited(m)) if m.contains("\"shop\"")),
                    "{refused:?}"
                ),
                LinkProtocol::V1 => assert!(
                    matches!(refused, Err(WriteError::Unavailable(m)) if m.contains("\"blog\"")),
                    "{refused:?}"
                ),
            }
        }
    }

    /// A session for node "edge-1" that may write anywhere, subscribed from version 0, with
    /// the small channels a slow node would have; returns the session's answers.
    async fn subscribed_session(
        authority: &KvAuthority,
        protocol: LinkProtocol,
    ) -> (mpsc::Sender<ToOrigin>, mpsc::Receiver<FromOrigin>) {
        let (to_session, incoming) = mpsc::channel(8);
        let (outgoing, answers) = mpsc::channel(4);
        tokio::spawn(serve_session(
            "edge-1".into(),
            authority.clone(),
            Arc::new(|_| Ok(())),
            protocol,
            incoming,
            outgoing,
        ));
        to_session
            .send(ToOrigin::Subscribe { from: 0 })
            .await
            .unwrap();
        (to_session, answers)
    }

    #[tokio::test]
    async fn a_node_that_stops_reading_holds_a_bounded_outbox_and_still_gets_everything() {
        let dir = outpost_core::test_support::temp_dir("kv-backpressure");
        let authority = KvAuthority::start(&dir.join("kv.redb")).unwrap();
        let (_session, mut answers) = subscribed_session(&authority, LinkProtocol::V2).await;
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

    /// An authority whose log was compacted past version 0, holding `keys` keys of 40 KiB each
    /// (more than one snapshot part's worth).
    async fn compacted_authority(name: &str, keys: usize) -> KvAuthority {
        let dir = outpost_core::test_support::temp_dir(name);
        let retention = LogRetention {
            keep: 10,
            compact_every: 10,
        };
        let authority = KvAuthority::start_with(
            &dir.join("kv.redb"),
            retention,
            QuotaPolicy::default(),
            None,
        )
        .unwrap();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
            let items = chunk
                .iter()
                .map(|i| (format!("key-{i:05}"), vec![*i as u8; 40 << 10]))
                .collect();
            let op = WriteOp::PutMany {
                namespace: "shop/carts".into(),
                items,
            };
            authority.write_as_origin(op).await.unwrap();
        }
        // Writes one at a time, so the log is compacted past everything above.
        for _ in 0..30 {
            authority.write_as_origin(put("shop/other")).await.unwrap();
        }
        authority
    }

    async fn catch_up_from_zero(
        authority: &KvAuthority,
        protocol: LinkProtocol,
    ) -> Vec<FromOrigin> {
        let (_session, mut answers) = subscribed_session(authority, protocol).await;
        let last = authority
            .get("shop/other", "k")
            .await
            .unwrap()
            .unwrap()
            .version;
        let mut messages = Vec::new();
        loop {
            let message = tokio::time::timeout(std::time::Duration::from_secs(20), answers.recv())
                .await
                .expect("the catch-up stalled")
                .expect("the session ended");
            let done = match &message {
                FromOrigin::Batch(b) => b.through >= last,
                FromOrigin::SnapshotPart(p) => p.last && p.started_at >= last,
                _ => false,
            };
            messages.push(message);
            if done {
                return messages;
            }
        }
    }

    #[tokio::test]
    async fn a_node_behind_the_compacted_log_gets_the_store_in_bounded_parts() {
        let authority = compacted_authority("kv-snapshot-parts", 300).await;
        let messages = catch_up_from_zero(&authority, LinkProtocol::V2).await;
        let parts: Vec<&outpost_kv::SnapshotPart> = messages
            .iter()
            .filter_map(|m| match m {
                FromOrigin::SnapshotPart(p) => Some(p),
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 2, "{} parts", parts.len());
        assert!(parts.last().unwrap().last);
        let mut keys = std::collections::BTreeSet::new();
        for (i, part) in parts.iter().enumerate() {
            let bytes: usize = part.entries.iter().map(Entry::size).sum();
            assert!(bytes <= CHUNK_BYTES + (41 << 10), "part {i}: {bytes} bytes");
            let previous = (i > 0).then(|| parts[i - 1].last_key()).flatten();
            assert_eq!(part.after, previous, "part {i} does not follow the last");
            keys.extend(part.entries.iter().map(|e| e.key.clone()));
        }
        assert_eq!(keys.iter().filter(|k| k.starts_with("key-")).count(), 300);
    }

    #[tokio::test]
    async fn a_node_on_protocol_1_gets_the_snapshot_as_batches_in_version_order() {
        let authority = compacted_authority("kv-snapshot-whole", 300).await;
        let messages = catch_up_from_zero(&authority, LinkProtocol::V1).await;
        let mut reached = 0;
        let mut keys = 0;
        for message in &messages {
            let FromOrigin::Batch(batch) = message else {
                panic!("protocol 1 knows only batches: {message:?}");
            };
            assert!(
                batch.from <= reached && batch.through > reached,
                "{reached} then {}..{}",
                batch.from,
                batch.through
            );
            assert!(
                batch
                    .entries
                    .iter()
                    .all(|e| e.version > batch.from && e.version <= batch.through)
            );
            assert!(
                batch
                    .entries
                    .windows(2)
                    .all(|w| w[0].version < w[1].version)
            );
            reached = batch.through;
            keys += batch
                .entries
                .iter()
                .filter(|e| e.key.starts_with("key-"))
                .count();
        }
        assert_eq!(keys, 300);
    }
}
