//! `outpost dev` end to end: the examples over HTTPS with HTTP/1.1 and HTTP/2, concurrency,
//! the compile cache, the redirect listener; several apps over plain HTTP, each on its
//! `NAME.localhost`, with metrics and the KV seeded from the CLI; a build first, and with
//! `--watch` a rebuild swapped in under an open connection.

use std::time::Duration;

use outpost_tests::client::{Conn, get, request};
use outpost_tests::{Client, Origin, Outpost, Proto, TempDir, wasm};

fn example(name: &str) -> std::path::PathBuf {
    wasm(name);
    outpost_tests::guests::repo_root()
        .join("examples")
        .join(name)
}

fn dev(app: &std::path::Path, data: &TempDir, extra: &[&str]) -> (Outpost, Client) {
    // `wasm()` has built the examples; building first is tested below, with a build command.
    let mut args = vec![app.to_str().unwrap(), "--no-build"];
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
    assert!(
        node.stdout().contains("try: curl http://localhost:"),
        "{}",
        node.stdout()
    );

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
    let (node, _client) = dev(&example("hello"), &data, &["--redirect"]);
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

/// One request over plain HTTP/1.1 on `conn`, to `host`.
async fn on(conn: &mut Conn, host: &str, path: &str) -> outpost_tests::Reply {
    conn.send(host, get(path))
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path}: {e:#}"))
}

async fn plain_connection(addr: std::net::SocketAddr) -> Conn {
    outpost_tests::client::plain_connection(addr).await.unwrap()
}

/// An app directory `dir/name` whose outpost.toml names `component` and ends with `extra`.
fn app(dir: &TempDir, name: &str, component: &str, extra: &str) -> std::path::PathBuf {
    dir.write(
        &format!("{name}/outpost.toml"),
        format!("name = \"{name}\"\ncomponent = {component:?}\nroutes = [\"*\"]\n{extra}"),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn several_apps_on_plain_http_by_name_with_metrics_and_kv_seeded_from_the_cli() {
    let apps = TempDir::new("dev-apps");
    let hello = wasm("hello");
    let probe = wasm("probe");
    app(&apps, "hello", hello.to_str().unwrap(), "");
    app(
        &apps,
        "shop",
        probe.to_str().unwrap(),
        "[kv]\nnamespaces = [\"data\", \"ticks\"]\n[config]\nAPI_KEY = \"from config\"\n\
         [[triggers]]\ncron = \"* * * * * *\"\npath = \"/tick?ns=ticks\"\n",
    );
    // Its secrets under dev, as Wrangler's .dev.vars: they win over config of the same name.
    apps.write("shop/.dev.vars", "# local only\nAPI_KEY=dev-secret\n");
    let data = TempDir::new("dev-apps-data");
    let node = Outpost::dev(&[apps.path().to_str().unwrap()], data.path())
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let out = node.stdout();
    assert!(out.contains("serving 2 apps"), "{out}");
    assert!(
        out.contains("note: route */* of shop is served by hello"),
        "{out}"
    );
    assert!(out.contains("any other host: hello"), "{out}");
    assert!(out.contains("KV: shop/data"), "{out}");

    // Plain HTTP: each app on its name, the first one everywhere else.
    let mut conn = plain_connection(node.plain.expect("a plain listener")).await;
    assert_eq!(on(&mut conn, "shop.localhost", "/ok").await.text(), "ok");
    assert_eq!(
        on(&mut conn, "shop.localhost", "/config?key=API_KEY")
            .await
            .text(),
        "config=dev-secret env=dev-secret"
    );
    let hello_says = on(&mut conn, "hello.localhost", "/ok").await.text();
    assert!(hello_says.starts_with("hello from outpost"), "{hello_says}");
    let elsewhere = on(&mut conn, "localhost", "/").await.text();
    assert!(elsewhere.starts_with("hello from outpost"), "{elsewhere}");
    // HTTPS too, on the same names (the dev certificate covers *.localhost).
    let tls = Client::new(node.addr, &node.ca_pem());
    let reply = tls
        .send("shop.localhost", Proto::H2, get("/ok"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok");

    // The KV, seeded and read back from the CLI, is what the handler reads.
    let data_dir = data.path().to_str().unwrap();
    let local = [
        "--local",
        "--data-dir",
        data_dir,
        "--app",
        "shop",
        "-n",
        "data",
    ];
    let kv = |command: &[&str]| {
        let mut args = vec!["kv", command[0]];
        args.extend_from_slice(&local);
        args.extend_from_slice(&command[1..]);
        let out = Outpost::run(&args);
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        out.stdout
    };
    kv(&["put", "greeting", "hi there"]);
    // The put is acknowledged by the KV's authority; the node's replica applies it a moment
    // later (the CLI is not the handler, so no read-your-writes).
    let mut read = String::new();
    for _ in 0..100 {
        read = on(&mut conn, "shop.localhost", "/kv/get?ns=data&key=greeting")
            .await
            .text();
        if read == "hi there" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read, "hi there");
    assert_eq!(kv(&["get", "greeting"]), "hi there");
    assert_eq!(kv(&["list"]), "greeting\n");
    let listed: outpost_core::api::KvKeys = serde_json::from_str(&kv(&["list", "--json"])).unwrap();
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].name, "greeting");
    assert!(listed.keys[0].version > 0 && listed.list_complete);
    kv(&["delete", "greeting"]);
    assert_eq!(kv(&["list"]), "");

    // Its cron trigger fires every second under dev too, each tick once.
    let mut ticks = Vec::new();
    for _ in 0..50 {
        let fired = on(
            &mut conn,
            "shop.localhost",
            "/kv/list?ns=ticks&prefix=tick-",
        )
        .await
        .text();
        ticks = fired
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        if !ticks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!ticks.is_empty(), "no tick fired in 5 s");
    for tick in &ticks {
        let path = format!("/kv/get?ns=ticks&key={tick}");
        assert_eq!(
            on(&mut conn, "shop.localhost", &path).await.text(),
            "1",
            "{tick}"
        );
    }

    // Metrics on the printed URL, with the apps' requests in them.
    let metrics = outpost_tests::client::plain(node.admin.unwrap(), get("/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("app=\"shop\""),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .text()
            .contains("outpost_trigger_ticks_total{app=\"shop\",outcome=\"ok\"}"),
        "{}",
        metrics.text()
    );

    // No dev running from a directory: --local says so.
    let elsewhere = TempDir::new("dev-none");
    let out = Outpost::run(&[
        "kv",
        "list",
        "--local",
        "--data-dir",
        elsewhere.path().to_str().unwrap(),
        "--app",
        "shop",
        "-n",
        "data",
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("no `outpost dev` is running from"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_builds_first_then_swaps_each_rebuild_in_under_an_open_connection() {
    let dir = TempDir::new("dev-watch");
    // The build copies whichever component `which` names: a build step of the author's own.
    let which = dir.write("site/which", wasm("hello").to_str().unwrap());
    let site = app(
        &dir,
        "site",
        "app.wasm",
        "[build]\ncommand = 'cp \"$(cat which)\" app.wasm'\n",
    );
    let data = TempDir::new("dev-watch-data");
    let node = Outpost::dev(&[site.to_str().unwrap(), "--watch"], data.path())
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    assert!(
        node.stdout().contains("watching for changes"),
        "{}",
        node.stdout()
    );
    let mut conn = plain_connection(node.plain.unwrap()).await;
    let first = on(&mut conn, "localhost", "/ok").await.text();
    assert!(first.starts_with("hello from outpost"), "{first}");

    let wait_for = |line: &'static str, times: usize| {
        let node = &node;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while node.stdout().matches(line).count() < times {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {line:?} within 30 s: {}",
                    node.stdout()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A change: rebuilt and served on the connection that was open all along.
    std::fs::write(&which, wasm("probe").to_str().unwrap()).unwrap();
    wait_for("site: new build live", 1).await;
    assert_eq!(on(&mut conn, "localhost", "/ok").await.text(), "ok");

    // A build that fails leaves the last good one serving.
    std::fs::write(&which, "/no/such/component.wasm").unwrap();
    wait_for("still serving the last good build", 1).await;
    assert_eq!(on(&mut conn, "localhost", "/ok").await.text(), "ok");

    // Fixed again: live again.
    std::fs::write(&which, wasm("hello").to_str().unwrap()).unwrap();
    wait_for("site: new build live", 2).await;
    let back = on(&mut conn, "localhost", "/ok").await.text();
    assert!(back.starts_with("hello from outpost"), "{back}");
}
