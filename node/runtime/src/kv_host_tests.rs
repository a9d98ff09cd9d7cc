//! The KV host in process: the host calls a guest's `wasi:keyvalue` imports land on, called as
//! the component model would call them, on a deployment of the real runtime whose KV client
//! reads a real replica and whose writes a real authority decides (the origin's rules: versions,
//! increments, compare-and-swap), applied back to the replica as a node's driver would. No
//! socket, no guest toolchain.

use std::sync::Arc;

use outpost_core::config::{AppSpec, PoolSettings};
use outpost_kv::authority::IncomingWrite;
use outpost_kv::{Authority, MemoryAuthorityStore, MemoryReplica, ReplicaStore};
use tokio::sync::mpsc;
use wasmtime::component::Resource;

use crate::kv_client::{Command, KvClient};
use crate::kv_host::outpost::kv::extras::Host as _;
use crate::kv_host::wasi::keyvalue::atomics::Host as _;
use crate::kv_host::wasi::keyvalue::batch::Host as _;
use crate::kv_host::wasi::keyvalue::store::{Error, Host as _, HostBucket as _};
use crate::kv_host::{Bucket, MAX_OPS_PER_REQUEST};
use crate::request_id::RequestId;
use crate::{HostState, Runtime};

/// A node's KV in one process: the replica handlers read, and a driver that has the authority
/// decide each write and applies the committed batch to the replica before answering.
fn node_kv() -> (KvClient, Arc<dyn ReplicaStore>) {
    let replica: Arc<dyn ReplicaStore> = Arc::new(MemoryReplica::default());
    let (commands, mut inbox) = mpsc::channel::<Command>(16);
    let applied = replica.clone();
    tokio::spawn(async move {
        let mut authority = Authority::new(MemoryAuthorityStore::default());
        let mut id = 0;
        while let Some(Command::Write { op, reply }) = inbox.recv().await {
            id += 1;
            let write = IncomingWrite {
                writer: "node".into(),
                id,
                op,
            };
            let micros = outpost_core::clock::unix_micros();
            let (mut outcomes, batch) = authority
                .write_all(vec![write], micros / 1000, micros)
                .unwrap();
            if let Some(batch) = batch {
                applied.apply(&batch.entries, Some(batch.through)).unwrap();
            }
            let _ = reply.send(outcomes.remove(0));
        }
    });
    (KvClient::new(&replica, commands), replica)
}

/// A request's host state for `app`, which binds the namespaces `binds`, on a node whose KV
/// is `client` (none: a node that runs no KV store).
fn request_state(client: Option<&KvClient>, app: &str, binds: &[&str]) -> HostState {
    let dir = outpost_core::test_support::temp_dir("kv-host");
    let wat = include_str!("../tests/components/trapping-proxy.wat").replace(";; EXTRA", "");
    let component = dir.join("app.wasm");
    std::fs::write(&component, wat::parse_str(&wat).unwrap()).unwrap();
    let runtime = Runtime::new(
        &PoolSettings::default(),
        &dir.join("cache"),
        client.cloned(),
        Default::default(),
    )
    .unwrap();
    let mut spec = AppSpec::from_component(&component).unwrap();
    spec.settings.name = app.into();
    spec.settings.kv_namespaces = binds.iter().map(|n| n.to_string()).collect();
    let deployment = runtime.deploy(&spec).unwrap();
    HostState::new(&deployment.app, RequestId::next(), None)
}

/// Another handle on the same open bucket (the guest passes a borrow for each method call).
fn again(bucket: &Resource<Bucket>) -> Resource<Bucket> {
    Resource::new_borrow(bucket.rep())
}

async fn open(state: &mut HostState, name: &str) -> Result<Resource<Bucket>, Error> {
    state.open(name.into()).await.unwrap()
}

#[tokio::test]
async fn a_handler_reads_its_writes_and_the_authoritys_rules_hold() {
    let (client, _) = node_kv();
    let mut state = request_state(Some(&client), "shop", &["carts"]);
    let carts = open(&mut state, "carts").await.unwrap();

    state
        .set(again(&carts), "a".into(), b"1".to_vec())
        .await
        .unwrap()
        .unwrap();
    let got = state.get(again(&carts), "a".into()).await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"1"[..]));
    assert!(
        state
            .exists(again(&carts), "a".into())
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        state.get(again(&carts), "b".into()).await.unwrap().unwrap(),
        None
    );

    // Increments and compare-and-swap are decided by the authority.
    for expected in [5, 10] {
        let counter = state
            .increment(again(&carts), "n".into(), 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counter, expected);
    }
    let swapped = state
        .compare_and_swap(
            again(&carts),
            "a".into(),
            Some(b"1".to_vec()),
            b"2".to_vec(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(swapped);
    let lost = state
        .compare_and_swap(
            again(&carts),
            "a".into(),
            Some(b"1".to_vec()),
            b"3".to_vec(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!lost, "a swap against a value no longer there must fail");

    state
        .delete(again(&carts), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !state
            .exists(again(&carts), "a".into())
            .await
            .unwrap()
            .unwrap()
    );

    // Batches.
    state
        .set_many(
            again(&carts),
            vec![("x".into(), b"X".to_vec()), ("y".into(), b"Y".to_vec())],
        )
        .await
        .unwrap()
        .unwrap();
    let many = state
        .get_many(again(&carts), vec!["x".into(), "gone".into(), "y".into()])
        .await
        .unwrap()
        .unwrap();
    let values: Vec<_> = many
        .iter()
        .map(|kv| kv.as_ref().map(|(k, _)| k.as_str()))
        .collect();
    assert_eq!(values, [Some("x"), None, Some("y")]);
}

#[tokio::test]
async fn an_app_opens_only_its_own_namespaces_and_never_sees_another_apps_data() {
    let (client, replica) = node_kv();
    let mut shop = request_state(Some(&client), "shop", &["carts"]);
    let mut other = request_state(Some(&client), "other", &["carts"]);

    assert!(matches!(
        open(&mut shop, "sessions").await,
        Err(Error::AccessDenied)
    ));

    let mine = open(&mut shop, "carts").await.unwrap();
    shop.set(again(&mine), "k".into(), b"shop's".to_vec())
        .await
        .unwrap()
        .unwrap();
    // The same name in another app is another namespace.
    let theirs = open(&mut other, "carts").await.unwrap();
    assert_eq!(
        other
            .get(again(&theirs), "k".into())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    // Stored under the app's name.
    assert!(replica.get("shop/carts", "k").unwrap().is_some());
    assert!(replica.get("other/carts", "k").unwrap().is_none());
}

#[tokio::test]
async fn listing_pages_through_every_key_and_cursors_belong_to_the_request() {
    let (client, _) = node_kv();
    let mut state = request_state(Some(&client), "shop", &["carts"]);
    let carts = open(&mut state, "carts").await.unwrap();
    let keys: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    state
        .set_many(
            again(&carts),
            keys.iter().map(|k| (k.clone(), b"v".to_vec())).collect(),
        )
        .await
        .unwrap()
        .unwrap();

    // list-prefix, ten at a time.
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = state
            .list_prefix(again(&carts), "k".into(), cursor, 10)
            .await
            .unwrap()
            .unwrap();
        assert!(page.len() <= 10);
        seen.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, keys);

    // list-keys: one page holds all 25.
    let all = state.list_keys(again(&carts), None).await.unwrap().unwrap();
    assert_eq!(all.keys, keys);
    assert_eq!(all.cursor, None);
    // A cursor this request never handed out is an error, not a trap.
    assert!(matches!(
        state.list_keys(again(&carts), Some(7)).await.unwrap(),
        Err(Error::Other(_))
    ));
}

#[tokio::test]
async fn bad_keys_and_too_many_operations_are_errors_with_the_limit_advice() {
    let (client, _) = node_kv();
    let mut state = request_state(Some(&client), "shop", &["carts"]);
    let carts = open(&mut state, "carts").await.unwrap();

    let too_long = "k".repeat(outpost_kv::model::MAX_KEY_BYTES + 1);
    match state.get(again(&carts), too_long).await.unwrap() {
        Err(Error::Other(message)) => assert!(message.starts_with("limit: "), "{message}"),
        other => panic!("an oversized key read as {other:?}"),
    }

    for _ in 1..MAX_OPS_PER_REQUEST {
        state.get(again(&carts), "k".into()).await.unwrap().unwrap();
    }
    match state.get(again(&carts), "k".into()).await.unwrap() {
        Err(Error::Other(message)) => {
            assert!(message.starts_with("limit: "), "{message}")
        }
        other => panic!("operation {} read as {other:?}", MAX_OPS_PER_REQUEST + 1),
    }
    // The next request of a reused instance starts with a fresh allowance.
    state.begin_request(RequestId::next(), None);
    state.get(again(&carts), "k".into()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_node_without_a_kv_store_says_unavailable() {
    let mut state = request_state(None, "shop", &["carts"]);
    match open(&mut state, "carts").await {
        Err(Error::Other(message)) => assert!(message.starts_with("unavailable: "), "{message}"),
        other => panic!("opening with no KV read as {:?}", other.map(|b| b.rep())),
    }
}
