//! The runtime's hot path without the network: instantiating `examples/hello` from its
//! pre-linked component in the pooling allocator, and a whole in-process handler call.
//!
//!     scripts/guest-toolchain build examples && cargo bench -p outpost-runtime --bench runtime
//!
//! `OUTPOST_BENCH_HELLO=path/to/hello.wasm` measures another build of the hello component.

// `criterion_group!` writes a public `benches` function and takes no doc comment for it.
#![allow(missing_docs)]

use std::path::PathBuf;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use outpost_core::config::{AppSpec, PoolSettings};
use outpost_runtime::request_id::RequestId;
use outpost_runtime::{Runtime, Scheme};

/// `examples/hello`, or the component `OUTPOST_BENCH_HELLO` names (to compare two builds of
/// it side by side, e.g. before and after an SDK change).
fn hello_component() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTPOST_BENCH_HELLO") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = root.join("target/guests/wasm32-wasip2/release/hello.wasm");
    if !wasm.exists() {
        let status = std::process::Command::new(root.join("scripts/guest-toolchain"))
            .args(["build", "examples"])
            .status()
            .expect("running scripts/guest-toolchain");
        assert!(status.success(), "building examples/hello failed");
    }
    wasm
}

fn bench(c: &mut Criterion) {
    // One thread, as each worker of the node runs: the guest task spawned per request runs on
    // the thread that spawned it.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()));
    let runtime = Runtime::new(&PoolSettings::default(), &cache, None, Default::default()).unwrap();
    let app = AppSpec::from_component(&hello_component()).unwrap();
    let deployment = runtime.deploy(&app).unwrap();

    c.bench_function("instantiate_hello", |b| {
        b.to_async(&tokio).iter(|| {
            let (runtime, deployment) = (runtime.clone(), deployment.clone());
            async move {
                let mut store = runtime.new_store(&deployment.app, RequestId::next(), None);
                deployment.instantiate(&mut store).await.unwrap();
                // Dropping the store returns the instance to the pool: part of the cost.
                drop(store);
            }
        })
    });

    let minimal = AppSpec::from_component(&std::path::PathBuf::from(
        std::env::var("OUTPOST_BENCH_EXTRA").unwrap_or_default(),
    ))
    .ok();
    if let Some(extra) = minimal.filter(|s| s.component.exists()) {
        let d2 = runtime.deploy(&extra).unwrap();
        c.bench_function("instantiate_extra", |b| {
            b.to_async(&tokio).iter(|| {
                let (runtime, deployment) = (runtime.clone(), d2.clone());
                async move {
                    let mut store = runtime.new_store(&deployment.app, RequestId::next(), None);
                    deployment.instantiate(&mut store).await.unwrap();
                    drop(store);
                }
            })
        });
    }

    c.bench_function("handle_hello", |b| {
        b.to_async(&tokio).iter(|| {
            let (runtime, deployment) = (runtime.clone(), deployment.clone());
            async move {
                let request = http::Request::builder()
                    .uri("https://localhost/bench")
                    .header("user-agent", "criterion")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = runtime
                    .handle(&deployment, request, Scheme::Https, RequestId::next(), None)
                    .await
                    .unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert!(body.starts_with(b"hello from outpost"));
            }
        })
    });

    let _ = std::fs::remove_dir_all(&cache);
}

criterion_group!(benches, bench);
criterion_main!(benches);
