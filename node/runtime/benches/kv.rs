//! Reading the edge KV on a node: the replica's hot read, and a handler's `wasi:keyvalue` get
//! through the host API (guest -> host -> replica -> bytes back into the guest).
//!
//!     scripts/guest-toolchain build tests/guests && cargo bench -p outpost-node --bench kv
//!
//! Besides criterion's figures, it prints per-get percentiles measured inside the guest (the
//! probe times each get on its monotonic clock, and empty intervals of that clock beside them).

// `criterion_group!` writes a public `benches` function and takes no doc comment for it.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use outpost_core::config::{AppSpec, PoolSettings};
use outpost_kv::{Entry, RedbReplica, ReplicaStore};
use outpost_runtime::kv_client::KvClient;
use outpost_runtime::request_id::RequestId;
use outpost_runtime::{Deployment, Runtime, Scheme};

const GETS_PER_REQUEST: u64 = 100;

fn probe_component() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/guests/wasm32-wasip2/release/probe.wasm");
    if !wasm.exists() {
        let status = std::process::Command::new(root.join("scripts/guest-toolchain"))
            .args(["build", "tests/guests"])
            .status()
            .expect("running scripts/guest-toolchain");
        assert!(status.success(), "building tests/guests failed");
    }
    wasm
}

async fn call(runtime: &Runtime, deployment: &Arc<Deployment>, path: &str) -> Bytes {
    let request = http::Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = runtime
        .handle(deployment, request, Scheme::Https, RequestId::next(), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("outpost-bench-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let replica = Arc::new(RedbReplica::open(&dir.join("replica.redb")).unwrap());
    let entry = Entry {
        namespace: "probe/data".into(),
        key: "greeting".into(),
        value: Some(b"hello from the edge KV".to_vec()),
        metadata: None,
        expires_at_ms: None,
        version: 1,
        committed_at_us: 0,
    };
    replica.apply(&[entry], Some(1)).unwrap();

    c.bench_function("kv_replica_get", |b| {
        b.iter(|| replica.get("probe/data", "greeting").unwrap().unwrap())
    });

    // Reads never reach the driver, so nothing serves the write channel here.
    let (commands, _unserved) = tokio::sync::mpsc::channel(1);
    let store: Arc<dyn ReplicaStore> = replica.clone();
    let client = KvClient::new(&store, commands);
    let runtime = Runtime::new(
        &PoolSettings::default(),
        &dir.join("cache"),
        Some(client),
        Default::default(),
    )
    .unwrap();
    let mut app = AppSpec::from_component(&probe_component()).unwrap();
    app.settings.name = "probe".into();
    app.settings.kv_namespaces = vec!["data".into()];
    // The one long timing run below needs more than the default 50 ms of CPU.
    app.settings.limits.cpu = std::time::Duration::from_secs(10);
    app.settings.limits.timeout = std::time::Duration::from_secs(30);
    let deployment = runtime.deploy(&app).unwrap();

    let path = format!("/kv/time-get?ns=data&key=greeting&n={GETS_PER_REQUEST}");
    let mut group = c.benchmark_group("kv_handler");
    group.throughput(Throughput::Elements(GETS_PER_REQUEST));
    group.bench_function("request_with_100_gets", |b| {
        b.to_async(&tokio)
            .iter(|| call(&runtime, &deployment, &path))
    });
    group.finish();

    let timed = tokio.block_on(call(
        &runtime,
        &deployment,
        "/kv/time-get?ns=data&key=greeting&n=100000",
    ));
    println!(
        "wasi:keyvalue get inside the guest, 100000 gets: {}",
        String::from_utf8_lossy(&timed)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
