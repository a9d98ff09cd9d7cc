//! The request path in process: a component written in WAT, deployed by the real runtime and
//! served through `Edge::serve` (host and route lookup, a fresh instance, a guest that traps,
//! the error answer), with no socket, no TLS and no guest toolchain.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use outpost_core::config::{AppSpec, PoolSettings};
use outpost_edge::server::front::FrontBuffering;
use outpost_edge::server::metadata::RequestMetadata;
use outpost_edge::server::{Edge, EdgeSettings, LiveRoutes, routes};
use outpost_edge::tail_tap::TailTap;
use outpost_net::listener::Connection;
use outpost_router::RoutePattern;

/// The test component: a handler that traps at once.
const TRAPPING: &str = include_str!("../../runtime/tests/components/trapping-proxy.wat");

fn edge(dir: &std::path::Path) -> Edge {
    edge_serving(dir, TRAPPING)
}

/// An edge serving the component `wat` at `trap.localhost`, with a CPU limit of 50 ms.
fn edge_serving(dir: &std::path::Path, wat: &str) -> Edge {
    let wasm = wat::parse_str(wat).unwrap();
    let component = dir.join("trap.wasm");
    std::fs::write(&component, wasm).unwrap();
    let runtime = outpost_runtime::Runtime::new(
        &PoolSettings::default(),
        &dir.join("cache"),
        None,
        Default::default(),
    )
    .unwrap();
    let mut app = AppSpec::from_component(&component).unwrap();
    app.settings.name = "trap".into();
    app.settings.routes = vec![RoutePattern::parse("trap.localhost/*").unwrap()];
    app.settings.limits.cpu = std::time::Duration::from_millis(50);
    let deployment = runtime.deploy(&app).unwrap();
    let routes = Arc::new(LiveRoutes::new(routes::build([&deployment]).unwrap()));
    Edge::new(
        runtime,
        routes,
        Arc::new(TailTap::default()),
        EdgeSettings {
            expose_errors: true,
            access_log: false,
            front: FrontBuffering::new(64 << 10, 1 << 20),
            metadata: RequestMetadata::new("test-node", None, Vec::new()),
            previews: None,
            alt_svc: None,
        },
    )
}

async fn get(edge: &Edge, uri: &str) -> (u16, String) {
    let request = http::Request::builder()
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let connection = Connection {
        peer: "127.0.0.1:50000".parse().unwrap(),
        tls: Some(rustls::ProtocolVersion::TLSv1_3),
    };
    let response = edge.serve(request, connection).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_request_is_routed_instantiated_and_a_trap_answers_500() {
    let dir = std::env::temp_dir().join(format!("outpost-request-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let edge = edge(&dir);

    let (status, body) = get(&edge, "https://trap.localhost/anything").await;
    assert_eq!(status, 500, "{body}");
    // Each request gets a fresh instance: the next one traps the same way, and nothing leaks.
    for _ in 0..3 {
        assert_eq!(get(&edge, "https://trap.localhost/again").await.0, 500);
    }
    let (status, body) = get(&edge, "https://elsewhere.localhost/").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no app is routed at elsewhere.localhost/"),
        "{body}"
    );
    let (status, _) = get(&edge, "/no-host").await;
    assert_eq!(status, 400);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_spinning_guest_is_stopped_at_its_cpu_limit_after_the_node_was_idle() {
    let dir = std::env::temp_dir().join(format!("outpost-request-spin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spinning = TRAPPING.replace("unreachable", "(loop (br 0))");
    // The guest runs on a task of its own and the test waits on another worker, so a guest
    // nothing interrupts fails the test instead of hanging it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        let edge = Arc::new(edge_serving(&dir, &spinning));
        let mut answers = Vec::new();
        for _ in 0..2 {
            // Long enough for the epoch ticker to go to sleep (no store lives): the
            // request's store must wake it, or nothing would ever interrupt the loop.
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            let edge = edge.clone();
            let request =
                tokio::spawn(async move { get(&edge, "https://trap.localhost/spin").await });
            let answer = tokio::time::timeout(std::time::Duration::from_secs(20), request)
                .await
                .map(Result::unwrap);
            let stuck = answer.is_err();
            answers.push(answer);
            if stuck {
                // Its worker is lost to the guest: stop here, with one worker left.
                break;
            }
        }
        answers
    });
    runtime.shutdown_background();
    for answer in answers {
        let (status, body) = answer.expect("the spinning guest was stopped within 20 s");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("CPU time limit"), "{body}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
