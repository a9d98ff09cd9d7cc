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

fn edge(dir: &std::path::Path) -> Edge {
    let wasm = wat::parse_str(include_str!(
        "../../runtime/tests/components/trapping-proxy.wat"
    ))
    .unwrap();
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
