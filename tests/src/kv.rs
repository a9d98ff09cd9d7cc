//! Driving the edge KV end to end through the probe guest (tests/guests/probe): its KV ops
//! over HTTPS, the keys a node holds, and writers that run until told to stop.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2;

use crate::client::{Conn, request};
use crate::fleet::probe;
use crate::{Client, Fleet, Proto, Reply};

/// Run KV op `op` of the probe (see tests/guests/probe) on namespace `data` with `query` and
/// `body`, as app `shop` (every host) or, given `host`, the app routed there.
pub async fn kv_at(
    client: &Client,
    host: Option<&str>,
    op: &str,
    query: &str,
    body: &str,
) -> Reply {
    let path = format!("/kv/{op}?ns=data&{query}");
    let mut request = request("POST", &path, body.to_string());
    if let Some(host) = host {
        request
            .headers_mut()
            .insert(http::header::HOST, host.parse().unwrap());
    }
    client
        .send("localhost", Proto::H1, request)
        .await
        .unwrap_or_else(|e| panic!("{op} {query}: {e:#}"))
}

/// [`kv_at`] as app `shop`.
pub async fn kv(client: &Client, op: &str, query: &str, body: &str) -> Reply {
    kv_at(client, None, op, query, body).await
}

/// Wait until `client` reads `expected` (or, for `None`, a 404) at `key`; how long it took.
pub async fn wait_for_value(
    client: &Client,
    key: &str,
    expected: Option<&str>,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let reply = kv(client, "get", &format!("key={key}"), "").await;
        let seen = (reply.status == 200).then(|| reply.text());
        if seen.as_deref() == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{key}: expected {expected:?}, still {} {} after {timeout:?}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deploy the probe as `app` on `routes` with the KV namespace `data`.
pub async fn deploy_probe(fleet: &Fleet, app: &str, routes: &[&str]) {
    let dir = fleet.app_with_kv(app, &probe(), routes, &[], &["data"]);
    let out = fleet.cli(&dir, &["deploy", "--activate"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
}

/// Every key under `prefix` that `client`'s node holds, through the handler's listing in
/// pages of two keys (so that every listing pages).
pub async fn keys(client: &Client, prefix: &str) -> BTreeSet<String> {
    keys_in_pages(client, prefix, 2).await
}

/// As [`keys`], in pages of `page` keys (a request may make at most 1,000 KV calls).
pub async fn keys_in_pages(client: &Client, prefix: &str, page: usize) -> BTreeSet<String> {
    let reply = kv(client, "list", &format!("prefix={prefix}&page={page}"), "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .text()
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// Wait until `client`'s node holds every key in `want` under `prefix`.
pub async fn wait_for_keys(
    client: &Client,
    prefix: &str,
    want: &BTreeSet<String>,
    timeout: Duration,
) {
    let started = Instant::now();
    loop {
        let have = keys_in_pages(client, prefix, 1000).await;
        if want.is_subset(&have) {
            return;
        }
        let missing: Vec<_> = want.difference(&have).take(5).collect();
        assert!(
            started.elapsed() < timeout,
            "{} keys still missing after {timeout:?}, e.g. {missing:?}",
            want.difference(&have).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets `{prefix}{i}` through `client` one after another until `stop`; the keys acknowledged.
pub fn writer(
    client: Client,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(BTreeSet<String>, Vec<String>)> {
    tokio::spawn(async move {
        let (mut acked, mut refused) = (BTreeSet::new(), Vec::new());
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("{prefix}{i}");
            i += 1;
            let path = format!("/kv/set?ns=data&key={key}");
            match client
                .send("localhost", Proto::H1, request("POST", &path, "v"))
                .await
            {
                Ok(reply) if reply.status == 200 => {
                    acked.insert(key);
                }
                Ok(reply) => {
                    refused.push(format!("{} {}", reply.status, reply.text()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => refused.push(format!("{err:#}")),
            }
        }
        (acked, refused)
    })
}

/// One write of an open-loop run: when it was sent (from the run's start), its key, and the
/// answer (`None` if it was acknowledged).
#[derive(Debug, Clone)]
pub struct Sent {
    /// When the write was sent, from the start of the run.
    pub at: Duration,
    /// The key it set.
    pub key: String,
    /// How long the answer took.
    pub took: Duration,
    /// `None` when it was acknowledged (200), else what came back instead.
    pub refused: Option<String>,
}

/// One HTTP/2 connection to a node that many requests share, made again when it breaks: how
/// a load balancer or a browser reaches a node, without a TLS handshake per request.
struct Shared {
    client: Client,
    sender: tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
}

impl Shared {
    async fn send(&self, request: http::Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let sender = {
            let mut slot = self.sender.lock().await;
            if slot.as_ref().is_none_or(http2::SendRequest::is_closed) {
                let (Conn::H2(sender), _) = self.client.connect("localhost", Proto::H2).await?
                else {
                    anyhow::bail!("an HTTP/2 connection was asked for");
                };
                *slot = Some(sender);
            }
            slot.clone().expect("connected above")
        };
        Conn::H2(sender).send("localhost", request).await
    }
}

/// Set `{prefix}{i}` through `client` at `per_second` for `run`, each write on its own task
/// whatever the others are doing (open loop: a stall does not slow the offered rate), all on
/// one HTTP/2 connection, each given up after `patience`. Every write's fate, in the order
/// sent.
pub async fn open_loop_writes(
    client: Client,
    prefix: &str,
    per_second: u64,
    run: Duration,
    patience: Duration,
) -> Vec<Sent> {
    let shared = Arc::new(Shared {
        client,
        sender: tokio::sync::Mutex::new(None),
    });
    let started = tokio::time::Instant::now();
    let count = per_second * run.as_millis() as u64 / 1000;
    let mut tasks = Vec::new();
    for i in 0..count {
        let at = Duration::from_micros(i * 1_000_000 / per_second);
        tokio::time::sleep_until(started + at).await;
        let (shared, key) = (shared.clone(), format!("{prefix}{i}"));
        tasks.push(tokio::spawn(async move {
            let path = format!("/kv/set?ns=data&key={key}");
            let sent = shared.send(request("POST", &path, "v"));
            let asked = tokio::time::Instant::now();
            let refused = match tokio::time::timeout(patience, sent).await {
                Ok(Ok(reply)) if reply.status == 200 => None,
                Ok(Ok(reply)) => Some(format!("{} {}", reply.status, reply.text())),
                Ok(Err(err)) => Some(format!("{err:#}")),
                Err(_) => Some(format!("no answer within {patience:?}")),
            };
            Sent {
                at,
                key,
                took: asked.elapsed(),
                refused,
            }
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("a write task"));
    }
    sent
}

/// The median and 99th percentile of how long the acknowledged writes in `sent` took.
pub fn ack_latency(sent: &[Sent]) -> (Duration, Duration) {
    let mut took: Vec<Duration> = sent
        .iter()
        .filter(|s| s.refused.is_none())
        .map(|s| s.took)
        .collect();
    took.sort_unstable();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

/// The keys of the writes in `sent` that were acknowledged.
pub fn acked(sent: &[Sent]) -> BTreeSet<String> {
    sent.iter()
        .filter(|s| s.refused.is_none())
        .map(|s| s.key.clone())
        .collect()
}
