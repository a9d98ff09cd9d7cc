//! The origin's admin API in process: the real `AdminApi` (registry, blob store, component
//! validation, KV authority, bearer tokens) answering HTTP/1.1 over an in-memory pipe, with no
//! TLS, no socket and no guest toolchain. What a CLI or a stranger sends, and what each gets.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outpost_core::blobs::{BlobStore, sha256_hex};
use outpost_core::config::{Right, TokenSpec};
use outpost_core::sealed::SealKey;
use outpost_kv::quota::QuotaPolicy;
use outpost_net::listener::{Connection, Handler};
use outpost_origin::auth::{Tokens, new_token};
use outpost_origin::components::Components;
use outpost_origin::kv::{KvAuthority, LogRetention};
use outpost_origin::link::NodeDirectory;
use outpost_origin::tail::TailHub;
use outpost_origin::{AdminApi, Registry};
use outpost_runtime::ComponentValidator;
use serde_json::{Value, json};

/// An origin's API with three tokens: `read`, `deploy` (read and deploy) and `admin` (all).
struct Origin {
    api: Arc<AdminApi>,
    read: String,
    deploy: String,
    admin: String,
}

fn origin() -> Origin {
    let dir = outpost_core::test_support::temp_dir("origin-api");
    let mut tokens = Vec::new();
    let mut token = |name: &str, rights: Vec<Right>| {
        let (token, hash) = new_token().unwrap();
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hash, &mut sha256).unwrap();
        tokens.push(TokenSpec {
            name: name.into(),
            sha256,
            rights,
        });
        token
    };
    let read = token("dashboard", vec![Right::Read]);
    let deploy = token("ci", vec![Right::Read, Right::Deploy]);
    let admin = token("ops", vec![Right::Read, Right::Deploy, Right::Admin]);
    let api = AdminApi {
        registry: Arc::new(
            Registry::open(
                &dir.join("registry.redb"),
                Some(Arc::new(SealKey::from_bytes(&[9; 32]))),
            )
            .unwrap(),
        ),
        components: Components::Files(BlobStore::open(&dir.join("blobs")).unwrap()),
        tokens: Tokens::new(tokens),
        nodes: Arc::new(NodeDirectory::default()),
        kv: KvAuthority::start_with(
            &dir.join("kv.redb"),
            LogRetention::default(),
            QuotaPolicy::default(),
            None,
        )
        .unwrap(),
        tail: Arc::new(TailHub::default()),
        validator: Arc::new(ComponentValidator::new().unwrap()),
        max_component_bytes: 1 << 20,
    };
    Origin {
        api: Arc::new(api),
        read,
        deploy,
        admin,
    }
}

/// What the API answered: status, headers and the body (as JSON when it is JSON).
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Origin {
    /// One request over its own HTTP/1.1 connection on an in-memory pipe.
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Bytes) -> Answer {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let api = self.api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let api = api.clone();
                let connection = Connection {
                    peer: "127.0.0.1:50000".parse().unwrap(),
                    tls: Some(rustls::ProtocolVersion::TLSv1_3),
                };
                async move { Ok::<_, Infallible>(api.handle(request, connection).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), service)
                .await;
        });
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "origin.test");
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, body }
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), Bytes::new())
            .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        let body = Bytes::from(serde_json::to_vec(&body).unwrap());
        self.call(Method::POST, path, Some(token), body).await
    }
}

/// A component the validator accepts: a `wasi:http` proxy written in WAT.
fn component() -> Bytes {
    let wat =
        include_str!("../../runtime/tests/components/trapping-proxy.wat").replace(";; EXTRA", "");
    Bytes::from(wat::parse_str(&wat).unwrap())
}

#[tokio::test]
async fn every_call_needs_a_token_with_its_right() {
    let origin = origin();
    let health = origin
        .call(Method::GET, "/healthz", None, Bytes::new())
        .await;
    assert_eq!(health.status, StatusCode::OK);

    let anonymous = origin
        .call(Method::GET, "/v1/apps", None, Bytes::new())
        .await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.error()
    );
    let forged = origin.get("/v1/apps", "opt_not-a-token").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        origin.get("/v1/apps", &origin.read).await.status,
        StatusCode::OK
    );

    // A read token cannot upload, and is refused before the body is read.
    let wasm = component();
    let path = format!("/v1/blobs/{}", sha256_hex(&wasm));
    let refused = origin
        .call(Method::PUT, &path, Some(&origin.read), wasm)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.error().contains("Deploy"), "{}", refused.error());

    // Only an admin token deletes an app.
    let delete = origin.call(
        Method::DELETE,
        "/v1/apps/shop",
        Some(&origin.deploy),
        Bytes::new(),
    );
    assert_eq!(delete.await.status, StatusCode::FORBIDDEN);

    let unknown = origin.get("/v2/anything", &origin.read).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_component_is_uploaded_checked_versioned_activated_rolled_back_and_deleted() {
    let origin = origin();
    let wasm = component();
    let sha = sha256_hex(&wasm);
    let blob = format!("/v1/blobs/{sha}");

    // The body must hash to the name it is put under, and be a component the host can link.
    let wrong = origin
        .call(
            Method::PUT,
            &blob,
            Some(&origin.deploy),
            Bytes::from_static(b"other bytes"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.error());
    let garbage = Bytes::from_static(b"\0asm garbage");
    let garbage_path = format!("/v1/blobs/{}", sha256_hex(&garbage));
    let refused = origin
        .call(Method::PUT, &garbage_path, Some(&origin.deploy), garbage)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.error().starts_with("component refused"),
        "{}",
        refused.error()
    );
    let too_big = Bytes::from(vec![0u8; (1 << 20) + 1]);
    let too_big_path = format!("/v1/blobs/{}", sha256_hex(&too_big));
    let oversized = origin
        .call(Method::PUT, &too_big_path, Some(&origin.deploy), too_big)
        .await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);

    let stored = origin
        .call(Method::PUT, &blob, Some(&origin.deploy), wasm.clone())
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.error());
    let again = origin
        .call(Method::PUT, &blob, Some(&origin.deploy), wasm)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["stored"], json!(false));

    // A manifest's errors name the field.
    let bad = origin
        .post(
            "/v1/apps/shop/versions",
            &origin.deploy,
            json!({ "component": sha, "manifest": { "name": "shop", "limits": { "cpu_ms": 0 } } }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["field"], json!("manifest.limits.cpu_ms"));
    let missing = origin
        .post(
            "/v1/apps/shop/versions",
            &origin.deploy,
            json!({ "component": "ab".repeat(32), "manifest": { "name": "shop" } }),
        )
        .await;
    assert_eq!(missing.json()["field"], json!("component"));

    for (note, activate) in [("first", true), ("second", true)] {
        let created = origin
            .post(
                "/v1/apps/shop/versions",
                &origin.deploy,
                json!({ "component": sha, "manifest": { "name": "shop", "config": { "greeting": "hi" } },
                        "note": note, "activate": activate }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.error());
    }
    let apps = origin.get("/v1/apps", &origin.read).await.json();
    assert_eq!(apps["apps"][0]["name"], json!("shop"));
    assert_eq!(apps["apps"][0]["active"], json!(2));

    let rolled = origin
        .post("/v1/apps/shop/rollback", &origin.deploy, json!({}))
        .await;
    assert_eq!(
        rolled.json()["active"],
        json!(1),
        "{}",
        String::from_utf8_lossy(&rolled.body)
    );
    let status = origin.get("/v1/status", &origin.read).await.json();
    assert_eq!(status["apps"][0]["active"], json!(1), "{status}");
    let activated = origin
        .post(
            "/v1/apps/shop/activate",
            &origin.deploy,
            json!({ "version": 2 }),
        )
        .await;
    assert_eq!(activated.json()["active"], json!(2));
    let no_such = origin
        .post(
            "/v1/apps/shop/activate",
            &origin.deploy,
            json!({ "version": 9 }),
        )
        .await;
    assert_eq!(no_such.status, StatusCode::NOT_FOUND);

    // Config values are shown to deployers only.
    let to_deployer = origin.get("/v1/apps/shop", &origin.deploy).await;
    let to_reader = origin.get("/v1/apps/shop", &origin.read).await;
    assert!(String::from_utf8_lossy(&to_deployer.body).contains("\"hi\""));
    assert!(!String::from_utf8_lossy(&to_reader.body).contains("\"hi\""));

    let deleted = origin
        .call(
            Method::DELETE,
            "/v1/apps/shop",
            Some(&origin.admin),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        origin.get("/v1/apps/shop", &origin.read).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_kv_api_writes_reads_pages_and_refuses_bad_requests() {
    let origin = origin();
    for i in 0..5 {
        let path = format!("/v1/kv/shop/carts/values/key{i}");
        let put = origin
            .call(
                Method::PUT,
                &path,
                Some(&origin.deploy),
                Bytes::from(format!("v{i}")),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.error());
    }
    // A key may hold '/', encoded or not.
    let slashed = origin
        .call(
            Method::PUT,
            "/v1/kv/shop/carts/values/a%2Fb",
            Some(&origin.deploy),
            Bytes::from("s"),
        )
        .await;
    assert_eq!(slashed.status, StatusCode::OK);
    let value = origin
        .get("/v1/kv/shop/carts/values/a/b", &origin.read)
        .await;
    assert_eq!(value.body, "s");
    let value = origin
        .get("/v1/kv/shop/carts/values/key3", &origin.read)
        .await;
    assert_eq!(
        (value.status, value.body),
        (StatusCode::OK, Bytes::from("v3"))
    );

    // Two at a time, through every key.
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = origin
            .get(
                &format!("/v1/kv/shop/carts/keys?prefix=key&limit=2&cursor={cursor}"),
                &origin.read,
            )
            .await
            .json();
        for key in page["keys"].as_array().unwrap() {
            seen.push(key["name"].as_str().unwrap().to_string());
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => {
                assert_eq!(page["list_complete"], json!(true));
                break;
            }
        }
    }
    assert_eq!(seen, ["key0", "key1", "key2", "key3", "key4"]);

    let deleted = origin
        .call(
            Method::DELETE,
            "/v1/kv/shop/carts/values/key0",
            Some(&origin.deploy),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let gone = origin
        .get("/v1/kv/shop/carts/values/key0", &origin.read)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    for bad in [
        "/v1/kv/shop/carts/keys?limit=0",
        "/v1/kv/shop/carts/keys?limit=1001",
        "/v1/kv/shop/carts/keys?colour=red",
        "/v1/kv/Shop!/carts/keys",
    ] {
        let answer = origin.get(bad, &origin.read).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.error()
        );
        assert!(!answer.error().is_empty(), "{bad} says why");
    }
    let read_only = origin
        .call(
            Method::PUT,
            "/v1/kv/shop/carts/values/k",
            Some(&origin.read),
            Bytes::from("x"),
        )
        .await;
    assert_eq!(read_only.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn splits_and_secrets_refuse_bad_input_with_a_reason() {
    let origin = origin();
    let wasm = component();
    let sha = sha256_hex(&wasm);
    let put = |path: String, token: &str, body: Bytes| {
        let (origin, token) = (&origin, token.to_string());
        async move { origin.call(Method::PUT, &path, Some(&token), body).await }
    };
    assert_eq!(
        put(format!("/v1/blobs/{sha}"), &origin.deploy, wasm.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let version = |extra: Value| {
        let mut body = json!({ "component": sha, "manifest": { "name": "shop" } });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        origin.post("/v1/apps/shop/versions", &origin.deploy, body)
    };
    // A share before there is an active version to share with; both activate and percent.
    assert_eq!(
        version(json!({ "percent": 10 })).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        version(json!({ "activate": true })).await.status,
        StatusCode::CREATED
    );
    let both = version(json!({ "activate": true, "percent": 10 })).await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(both.json()["field"], json!("percent"));
    let zero = version(json!({ "percent": 0 })).await;
    assert!(zero.error().contains("1 to 100"), "{}", zero.error());
    let created = version(json!({ "percent": 10 })).await;
    assert_eq!(created.json()["percent"], json!(10));
    for (split, status, says) in [
        (
            json!({ "versions": [{ "version": 1, "percent": 50 }, { "version": 2, "percent": 40 }] }),
            StatusCode::CONFLICT,
            "add up to 90%",
        ),
        (
            json!({ "versions": [{ "version": 1, "percent": 50 }, { "version": 9, "percent": 50 }] }),
            StatusCode::NOT_FOUND,
            "no version 9",
        ),
        (
            json!({ "versions": [] }),
            StatusCode::CONFLICT,
            "at least one",
        ),
        (json!({ "versions": "1=100" }), StatusCode::BAD_REQUEST, ""),
    ] {
        let refused = origin
            .post("/v1/apps/shop/split", &origin.deploy, split.clone())
            .await;
        assert_eq!(refused.status, status, "{split}: {}", refused.error());
        assert!(
            refused.error().contains(says),
            "{split}: {}",
            refused.error()
        );
    }
    // The split stays as it was: version 1 at 90, version 2 at 10.
    let status = origin
        .call(Method::GET, "/v1/status", Some(&origin.read), Bytes::new())
        .await;
    assert_eq!(
        status.json()["apps"][0]["split"],
        json!([{ "version": 1, "percent": 90 }, { "version": 2, "percent": 10 }])
    );

    // Secrets: text within 64 KiB, under a config key's name, of an app that exists, by a
    // token that may deploy; never shown again.
    let secret = |app: &str, name: &str| format!("/v1/apps/{app}/secrets/{name}");
    for (path, token, body, status) in [
        (
            secret("shop", "KEY"),
            &origin.deploy,
            Bytes::from_static(b"\xff\xfe"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            secret("shop", "KEY"),
            &origin.deploy,
            Bytes::from(vec![b'x'; (64 << 10) + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            secret("shop", "bad-name"),
            &origin.deploy,
            Bytes::from_static(b"v"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            secret("nope", "KEY"),
            &origin.deploy,
            Bytes::from_static(b"v"),
            StatusCode::NOT_FOUND,
        ),
        (
            secret("shop", "KEY"),
            &origin.read,
            Bytes::from_static(b"v"),
            StatusCode::FORBIDDEN,
        ),
        (
            secret("shop", "KEY"),
            &origin.deploy,
            Bytes::from_static(b"value-never-shown"),
            StatusCode::OK,
        ),
    ] {
        let answer = put(path.clone(), token, body).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.error());
    }
    let list = origin
        .call(
            Method::GET,
            "/v1/apps/shop/secrets",
            Some(&origin.read),
            Bytes::new(),
        )
        .await;
    assert_eq!(list.json()["secrets"][0]["name"], json!("KEY"));
    for path in ["/v1/apps/shop/secrets", "/v1/apps/shop", "/v1/status"] {
        let answer = origin
            .call(Method::GET, path, Some(&origin.admin), Bytes::new())
            .await;
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("value-never-shown"),
            "{path}"
        );
    }
    let gone = origin
        .call(
            Method::DELETE,
            &secret("shop", "OTHER"),
            Some(&origin.deploy),
            Bytes::new(),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let read_delete = origin
        .call(
            Method::DELETE,
            &secret("shop", "KEY"),
            Some(&origin.read),
            Bytes::new(),
        )
        .await;
    assert_eq!(read_delete.status, StatusCode::FORBIDDEN);
}
