//! `outpost dev` end to end: the examples over HTTPS with HTTP/1.1 and HTTP/2, concurrency,
//! the compile cache, the redirect listener.

use std::time::Duration;

use outpost_tests::client::{get, request};
use outpost_tests::{Client, Origin, Outpost, Proto, TempDir, wasm};

fn example(name: &str) -> std::path::PathBuf {
    wasm(name);
    outpost_tests::guests::repo_root()
        .join("examples")
        .join(name)
}

fn dev(app: &std::path::Path, data: &TempDir, extra: &[&str]) -> (Outpost, Client) {
    let mut args = vec![app.to_str().unwrap()];
    args.extend_from_slice(extra);
    let node =
        Outpost::dev(&args, data.path()).unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let client = Client::new(node.addr, &node.ca_pem());
    (node, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_over_http1_and_http2() {
    let data = TempDir::new("hello");
    let (node, client) = dev(&example("hello"), &data, &[]);
    assert!(node.stdout().contains("curl --cacert"), "{}", node.stdout());

    for proto in [Proto::H1, Proto::H2] {
        let reply = client
            .send(
                "localhost",
                proto,
                http::Request::builder()
                    .uri("/some/path?q=1")
                    .header("user-agent", "e2e-test")
                    .body(Default::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{proto:?}: {}", reply.text());
        let expected = match proto {
            Proto::H1 => http::Version::HTTP_11,
            Proto::H2 => http::Version::HTTP_2,
        };
        assert_eq!(reply.version, expected);
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            reply.text(),
            "hello from outpost\npath: /some/path\nuser-agent: e2e-test\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_requests_are_all_correct() {
    let data = TempDir::new("concurrent");
    let (_node, client) = dev(&example("hello"), &data, &[]);

    // 100 requests on their own HTTP/1.1 connections, 100 multiplexed on one HTTP/2 connection.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let reply = client.get(&format!("/h1/{i}")).await.unwrap();
            (i, reply)
        }));
    }
    let (conn, _) = client.connect("localhost", Proto::H2).await.unwrap();
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
    for i in 100..200 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            // Take a clone of the sender so the streams really run side by side.
            let mut sender = match &*conn.lock().await {
                outpost_tests::client::Conn::H2(sender) => {
                    outpost_tests::client::Conn::H2(sender.clone())
                }
                outpost_tests::client::Conn::H1(_) => unreachable!(),
            };
            let reply = sender
                .send("localhost", get(&format!("/h2/{i}")))
                .await
                .unwrap();
            (i, reply)
        }));
    }
    for task in tasks {
        let (i, reply) = task.await.unwrap();
        assert_eq!(reply.status, 200);
        let proto = if i < 100 { "h1" } else { "h2" };
        assert!(
            reply.text().contains(&format!("path: /{proto}/{i}\n")),
            "request {i} got {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_to_csv_every_case() {
    let data = TempDir::new("csv");
    let (_node, client) = dev(&example("json-to-csv"), &data, &[]);
    let post = |body: &'static str| {
        let client = client.clone();
        async move {
            client
                .send("localhost", Proto::H1, request("POST", "/", body))
                .await
                .unwrap()
        }
    };

    let ok = post(
        r#"[{"name":"Ada Lovelace","age":36,"jobTitle":"Engineer","badgeNumber":"A-1"},
            {"name":"Grace, \"Amazing\" Hopper","age":85,"jobTitle":"Rear Admiral","badgeNumber":1906}]"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        ok.header("content-disposition"),
        Some("attachment; filename=\"employees.csv\"")
    );
    assert_eq!(
        ok.text(),
        "name,age,jobTitle,badgeNumber\r\nAda Lovelace,36,Engineer,A-1\r\n\
         \"Grace, \"\"Amazing\"\" Hopper\",85,Rear Admiral,1906\r\n"
    );

    let empty = post("[]").await;
    assert_eq!(
        (empty.status, empty.text().as_str()),
        (200, "name,age,jobTitle,badgeNumber\r\n")
    );

    for (body, needle) in [
        ("{not json", "invalid JSON body"),
        (r#"{"name":"x"}"#, "invalid type: map, expected a sequence"),
        (
            r#"[{"name":"x","age":-1,"jobTitle":"y","badgeNumber":"z"}]"#,
            "invalid value",
        ),
        (
            r#"[{"name":"x","jobTitle":"y","badgeNumber":"z"}]"#,
            "missing field `age`",
        ),
        ("", "EOF while parsing"),
    ] {
        let bad = post(body).await;
        assert_eq!(bad.status, 400, "{body}: {}", bad.text());
        assert!(bad.text().contains(needle), "{body}: {}", bad.text());
    }

    for method in ["GET", "PUT", "DELETE"] {
        let reply = client
            .send("localhost", Proto::H1, request(method, "/", ""))
            .await
            .unwrap();
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_origin_forwards_and_rewrites() {
    let origin = Origin::start().await;
    let data = TempDir::new("fetch");
    // The example's outpost.toml names a fixed origin; point a copy at this test's origin.
    let app = data.write(
        "app/outpost.toml",
        format!(
            "name = \"fetch-origin\"\ncomponent = \"{}\"\n[outbound]\nallow = [\"{url}\"]\n[config]\nORIGIN_URL = \"{url}\"\n",
            wasm("fetch-origin").display(),
            url = origin.url()
        ),
    );
    let (_node, client) = dev(app.parent().unwrap(), &data, &[]);

    let reply = client
        .send(
            "localhost",
            Proto::H1,
            request("POST", "/items?page=2", "payload"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-served-by"), Some("outpost"));
    assert_eq!(reply.header("server"), Some("test-origin"));
    let text = reply.text();
    assert!(text.starts_with("origin saw POST /items?page=2 "), "{text}");
    assert!(text.contains(&format!("host={}", origin.addr)), "{text}");
    assert!(text.contains("forwarded=localhost"), "{text}");
    assert!(text.ends_with("body=payload"), "{text}");

    let redirect = client.get("/redirect").await.unwrap();
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("/moved"));
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_loads_from_the_compile_cache() {
    let data = TempDir::new("cache");
    let app = example("hello");
    let (first, client) = dev(&app, &data, &[]);
    assert!(first.stdout().contains("compiled in"), "{}", first.stdout());
    assert_eq!(client.get("/").await.unwrap().status, 200);
    assert!(first.terminate(Duration::from_secs(10)).success());

    let (second, client) = dev(&app, &data, &[]);
    assert!(
        second.stdout().contains("loaded from the compile cache"),
        "{}",
        second.stdout()
    );
    assert_eq!(client.get("/").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_redirects_to_https() {
    let data = TempDir::new("redirect");
    let (node, _client) = dev(&example("hello"), &data, &["--http", "127.0.0.1:0"]);
    let redirect = node.redirect.expect("redirect listener");

    let stream = tokio::net::TcpStream::connect(redirect).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(stream))
    .await
    .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::builder()
                .uri("/a/b?c=d")
                .header("host", format!("localhost:{}", redirect.port()))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("https://localhost:{}/a/b?c=d", node.addr.port()).as_str()
    );
}
