//! JavaScript and Python handlers end to end: the examples built by `outpost build` (the pinned
//! componentize-js and componentize-py, from the registries), served by `outpost dev` and by a
//! fleet of an origin and three nodes, with the same platform features as Rust handlers:
//! bodies, status and headers, config, KV (read-your-writes, propagation), allowed and denied
//! fetches, uncaught exceptions and the CPU limit. The examples reuse instances (as Workers
//! does); a copy of the JavaScript one is also built and served with a fresh instance per
//! request, through StarlingMonkey's own fetch event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outpost_tests::client::request;
use outpost_tests::{
    Client, Fleet, Origin, Outpost, Proto, Reply, TempDir, built_app, built_variant,
};

const JS: &str = "examples/js-counter";
const PYTHON: &str = "examples/py-json-api";

/// An outpost.toml for `component` (one of the examples, built) with the example's KV
/// namespace, `UPSTREAM` pointing at `upstream`, the outbound allow-list `allow`, and instance
/// reuse if `reuse`.
fn app_dir(
    data: &TempDir,
    name: &str,
    component: &Path,
    namespace: &str,
    upstream: &str,
    allow: &[&str],
    reuse: bool,
) -> PathBuf {
    let allow = allow
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    data.write(
        &format!("{name}/outpost.toml"),
        format!(
            "name = \"{name}\"\ncomponent = {:?}\nroutes = [\"*\"]\n\
             [limits]\ncpu_ms = 100\ntimeout_ms = 5000\n\
             [kv]\nnamespaces = [\"{namespace}\"]\n\
             [config]\nGREETING = \"hello from the test\"\nSERVICE = \"items\"\nUPSTREAM = \"{upstream}\"\n\
             [outbound]\nallow = [{allow}]\n\
             [instance]\nreuse = {reuse}\n",
            component.display().to_string()
        ),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

async fn send(client: &Client, method: &str, path: &str, body: &str) -> Reply {
    client
        .send(
            "localhost",
            Proto::H1,
            request(method, path, body.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

async fn send_typed(client: &Client, method: &str, path: &str, body: &str, ty: &str) -> Reply {
    let mut request = request(method, path, body.to_string());
    request
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, ty.parse().unwrap());
    client
        .send("localhost", Proto::H2, request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

/// Give the app in `dir` a cron trigger that fires every second on `path`.
fn fire_every_second(dir: &Path, path: &str) {
    let manifest = dir.join("outpost.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(&format!(
        "[[triggers]]\ncron = \"* * * * * *\"\npath = \"{path}\"\n"
    ));
    std::fs::write(manifest, text).unwrap();
}

/// Wait until `client` answers `path` with 200 and a body `done` accepts; that body.
async fn wait_until(client: &Client, path: &str, done: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        let reply = send(client, "GET", path, "").await;
        if reply.status == 200 && done(&reply.text()) {
            return reply.text();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: still {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dev(app: &Path, data: &TempDir) -> (Outpost, Client) {
    let node = Outpost::dev(&[app.to_str().unwrap()], &data.path().join("dev"))
        .unwrap_or_else(|e| panic!("outpost dev failed: {e:?}"));
    let client = Client::new(node.addr, &node.ca_pem());
    (node, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workers_style_javascript_app_runs_under_outpost_dev() {
    let data = TempDir::new("js-dev");
    let upstream = Origin::start().await;
    let app = app_dir(
        &data,
        "js-counter",
        &built_app(JS),
        "counter",
        &format!("{}/from-js", upstream.url()),
        &[&upstream.url()],
        true,
    );
    fire_every_second(&app, "/");
    let (node, client) = dev(&app, &data);

    // A counter decided by the KV: the views add up, and the handler sets a header.
    let first = send(&client, "GET", "/", "").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "views: 1\n");
    assert_eq!(first.header("x-views"), Some("1"));
    assert_eq!(send(&client, "GET", "/", "").await.text(), "views: 2\n");

    // Bodies in and out, status codes, headers, read-your-writes, listing, deletion.
    let put = send_typed(&client, "PUT", "/notes/plan", "# step one", "text/markdown").await;
    assert_eq!(put.status, 204, "{}", put.text());
    let note = send(&client, "GET", "/notes/plan", "").await;
    assert_eq!((note.status, note.text().as_str()), (200, "# step one"));
    assert_eq!(note.header("content-type"), Some("text/markdown"));
    assert_eq!(note.header("x-note-key"), Some("plan"));
    send(&client, "PUT", "/notes/plain", "x").await;
    assert_eq!(
        send(&client, "GET", "/notes?prefix=pla", "").await.text(),
        r#"["plain","plan"]"#
    );
    assert_eq!(send(&client, "DELETE", "/notes/plan", "").await.status, 204);
    assert_eq!(send(&client, "GET", "/notes/plan", "").await.status, 404);
    let bumped = send(&client, "POST", "/counters/likes", r#"{"by": 5}"#).await;
    assert_eq!(bumped.text(), r#"{"name":"likes","value":5}"#);
    assert_eq!(
        send(&client, "GET", "/counters/likes", "").await.text(),
        r#"{"name":"likes","value":5}"#
    );
    let refused = send(&client, "PATCH", "/notes/plan", "").await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, PUT, DELETE"));

    // What the node says of the request, as Workers' `request.cf`.
    let cf: serde_json::Value =
        serde_json::from_str(&send(&client, "GET", "/whoami", "").await.text()).unwrap();
    assert_eq!(cf["clientIp"], "127.0.0.1", "{cf}");
    assert_eq!(cf["httpProtocol"], "HTTP/1.1", "{cf}");
    assert_eq!(cf["tlsVersion"], "TLSv1.3", "{cf}");
    assert_eq!(cf["node"], "dev", "{cf}");
    assert!(
        cf["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{cf}"
    );

    // Config, and a fetch to an allowed origin.
    assert_eq!(
        send(&client, "GET", "/greeting", "").await.text(),
        "hello from the test\n"
    );
    let fetched = send(&client, "GET", "/upstream", "").await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert!(
        fetched.text().starts_with("origin saw GET /from-js"),
        "{}",
        fetched.text()
    );

    // An uncaught exception: 500, the message in the dev response and in the log.
    let thrown = send(&client, "POST", "/counters/likes", "not json").await;
    assert_eq!(thrown.status, 500);
    assert!(thrown.text().contains("JSON.parse"), "{}", thrown.text());
    assert!(
        node.wait_for_log("JSON.parse", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );

    // CPU past limits.cpu_ms: stopped, 503, and the next request is fine.
    let spun = send(&client, "GET", "/primes?below=100000000", "").await;
    assert_eq!(spun.status, 503, "{}", spun.text());
    assert!(spun.text().contains("CPU time limit"), "{}", spun.text());
    assert_eq!(
        send(&client, "GET", "/primes?below=100", "").await.text(),
        r#"{"below":100,"primes":25}"#
    );

    // The cron trigger's ticks reach `scheduled`, not `fetch` (the views did not move).
    wait_until(&client, "/counters/cron", |_| true).await;
    assert_eq!(send(&client, "GET", "/", "").await.text(), "views: 3\n");
    assert!(
        node.wait_for_log("cron * * * * * * ran for", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_json_api_runs_under_outpost_dev() {
    let data = TempDir::new("py-dev");
    let upstream = Origin::start().await;
    let app = app_dir(
        &data,
        "py-json-api",
        &built_app(PYTHON),
        "items",
        &format!("{}/from-python?x=1", upstream.url()),
        &[&upstream.url()],
        true,
    );
    fire_every_second(&app, "/items");
    let (node, client) = dev(&app, &data);

    let created = send(
        &client,
        "POST",
        "/items",
        r#"{"name": "lamp", "watts": 40}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("content-type"), Some("application/json"));
    let location = created.header("location").expect("a Location").to_string();
    let id = location.strip_prefix("/items/").unwrap().to_string();
    // Read-your-writes on the node that wrote.
    let item = send(&client, "GET", &location, "").await;
    assert_eq!(item.status, 200, "{}", item.text());
    assert_eq!(
        item.text(),
        format!(r#"{{"id": "{id}", "name": "lamp", "watts": 40}}"#)
    );
    assert_eq!(
        send(&client, "GET", "/items", "").await.text(),
        format!(r#"["{id}"]"#)
    );
    assert_eq!(
        send(&client, "POST", &format!("{location}/votes"), "")
            .await
            .text(),
        format!(r#"{{"id": "{id}", "votes": 1}}"#)
    );
    let bad = send(&client, "POST", "/items", r#"{"name": ""}"#).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("non-empty"), "{}", bad.text());
    let not_json = send(&client, "POST", "/items", "{oops").await;
    assert_eq!(not_json.status, 400, "{}", not_json.text());
    assert_eq!(send(&client, "DELETE", &location, "").await.status, 204);
    assert_eq!(send(&client, "GET", &location, "").await.status, 404);
    assert_eq!(send(&client, "PATCH", "/items", "").await.status, 405);

    let config = send(&client, "GET", "/config", "").await;
    assert!(
        config.text().contains(r#""SERVICE": "items""#),
        "{}",
        config.text()
    );
    let whoami: serde_json::Value =
        serde_json::from_str(&send(&client, "GET", "/whoami", "").await.text()).unwrap();
    assert_eq!(
        whoami,
        serde_json::json!({"client_ip": "127.0.0.1", "protocol": "HTTP/1.1", "node": "dev"})
    );
    let fetched = send(&client, "GET", "/upstream", "").await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert!(
        fetched
            .text()
            .starts_with("origin saw GET /from-python?x=1"),
        "{}",
        fetched.text()
    );

    // An uncaught exception (a JSON list where an object belongs): 500, message in both places.
    let thrown = send(&client, "POST", "/items", "[1, 2]").await;
    assert_eq!(thrown.status, 500);
    assert!(thrown.text().contains("TypeError"), "{}", thrown.text());
    assert!(
        node.wait_for_log("TypeError", Duration::from_secs(5)),
        "{}",
        node.stderr()
    );

    let spun = send(&client, "GET", "/fib?n=40", "").await;
    assert_eq!(spun.status, 503, "{}", spun.text());
    assert_eq!(
        send(&client, "GET", "/fib?n=10", "").await.text(),
        r#"{"n": 10, "fib": 55}"#
    );

    // The cron trigger's ticks reach `on_scheduled` (a POST /items from a client would
    // create an item instead).
    wait_until(&client, "/items/cron/votes", |votes| {
        !votes.contains(r#""votes": 0"#)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_on_a_fresh_instance_per_request_uses_the_engines_fetch_event() {
    let data = TempDir::new("js-fresh");
    let component = built_variant(JS, "js-counter-fresh", "reuse = true", "reuse = false");
    let app = app_dir(
        &data,
        "js-counter",
        &component,
        "counter",
        "http://127.0.0.1:9/",
        &[],
        false,
    );
    fire_every_second(&app, "/");
    let (node, client) = dev(&app, &data);
    assert_eq!(send(&client, "GET", "/", "").await.text(), "views: 1\n");
    assert_eq!(send(&client, "GET", "/", "").await.text(), "views: 2\n");
    // On the engine's fetch event too, a trigger's tick reaches `scheduled`.
    wait_until(&client, "/counters/cron", |_| true).await;
    // The engine answers an uncaught exception with an empty 500 and reports it on stderr:
    // the dev page shows that report.
    let thrown = send(&client, "POST", "/counters/likes", "not json").await;
    assert_eq!(thrown.status, 500);
    assert!(
        thrown.text().contains("the handler wrote to stderr"),
        "{}",
        thrown.text()
    );
    assert!(thrown.text().contains("JSON.parse"), "{}", thrown.text());
    drop(node);

    // Built for one request per instance, the component is refused for an app that reuses
    // instances, with what to do about it.
    let reusing = app_dir(
        &data,
        "js-reusing",
        &component,
        "counter",
        "http://127.0.0.1:9/",
        &[],
        true,
    );
    let refused = Outpost::dev(&[reusing.to_str().unwrap()], &data.path().join("dev2"))
        .map(|_| ())
        .expect_err("a fresh-built component with reuse must not start");
    assert!(
        refused.stderr.contains("rebuild it with `outpost build`"),
        "{}",
        refused.stderr
    );
}

/// Wait until `client` answers `path` with 200 and `expected`.
async fn wait_for(client: &Client, host: &str, path: &str, expected: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let mut get = request("GET", path, "");
        get.headers_mut()
            .insert(http::header::HOST, host.parse().unwrap());
        if let Ok(reply) = client.send("localhost", Proto::H1, get).await
            && reply.status == 200
            && reply.text() == expected
        {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{host}{path} never answered {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send_to(client: &Client, host: &str, method: &str, path: &str, body: &str) -> Reply {
    let mut request = request(method, path, body.to_string());
    request
        .headers_mut()
        .insert(http::header::HOST, host.parse().unwrap());
    client
        .send("localhost", Proto::H1, request)
        .await
        .unwrap_or_else(|e| panic!("{method} {host}{path}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_and_python_apps_deploy_through_the_origin_to_three_nodes() {
    let fleet = Fleet::start("languages-fleet", 3);
    for (name, example, namespace) in [
        ("js-counter", JS, "counter"),
        ("py-json-api", PYTHON, "items"),
    ] {
        let dir = fleet.dir.path().join("apps").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // No outbound allow-list: the fetch is denied.
        std::fs::write(
            dir.join("outpost.toml"),
            format!(
                "name = \"{name}\"\ncomponent = {:?}\nroutes = [\"{name}.localhost\"]\n\
                 [limits]\ntimeout_ms = 5000\n[kv]\nnamespaces = [\"{namespace}\"]\n\
                 [config]\nUPSTREAM = \"http://127.0.0.1:9/\"\nGREETING = \"from the fleet\"\n\
                 [instance]\nreuse = true\n",
                built_app(example).display().to_string()
            ),
        )
        .unwrap();
        // Each of the three nodes compiles the engine inside the component (megabytes of
        // code) at once, on two cores shared with the other tests: far slower than one node
        // on its own machine, hence more than the CLI's default minute.
        let started = std::time::Instant::now();
        let out = fleet.cli(&dir, &["deploy", "--activate", "--timeout", "300"]);
        assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
        eprintln!(
            "{name}: live on three nodes {:?} after the deploy began",
            started.elapsed()
        );
    }
    let clients: Vec<Client> = (0..3).map(|i| fleet.client(i)).collect();
    for client in &clients {
        wait_for(
            client,
            "js-counter.localhost",
            "/greeting",
            "from the fleet\n",
            Duration::from_secs(60),
        )
        .await;
    }

    // JS: the counter adds up across nodes; a note written on one node is read there at once
    // and everywhere soon after.
    for client in &clients {
        assert_eq!(
            send_to(client, "js-counter.localhost", "GET", "/", "")
                .await
                .status,
            200
        );
    }
    let put = send_to(
        &clients[0],
        "js-counter.localhost",
        "PUT",
        "/notes/n1",
        "hi",
    )
    .await;
    assert_eq!(put.status, 204, "{}", put.text());
    assert_eq!(
        send_to(&clients[0], "js-counter.localhost", "GET", "/notes/n1", "")
            .await
            .text(),
        "hi"
    );
    for client in &clients[1..] {
        wait_for(
            client,
            "js-counter.localhost",
            "/notes/n1",
            "hi",
            Duration::from_secs(10),
        )
        .await;
    }
    let views = send_to(&clients[2], "js-counter.localhost", "GET", "/", "").await;
    assert_eq!(views.text(), "views: 4\n");

    // Python: an item created on node 2 is read on node 2 at once, and on the others soon.
    let created = send_to(
        &clients[1],
        "py-json-api.localhost",
        "POST",
        "/items",
        r#"{"name": "desk"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let location = created.header("location").unwrap().to_string();
    let id = location.strip_prefix("/items/").unwrap();
    let expected = format!(r#"{{"id": "{id}", "name": "desk"}}"#);
    assert_eq!(
        send_to(&clients[1], "py-json-api.localhost", "GET", &location, "")
            .await
            .text(),
        expected
    );
    for client in [&clients[0], &clients[2]] {
        wait_for(
            client,
            "py-json-api.localhost",
            &location,
            &expected,
            Duration::from_secs(10),
        )
        .await;
    }

    // Fetches outside [outbound] allow are denied by the node: the handlers say so.
    let js = send_to(&clients[0], "js-counter.localhost", "GET", "/upstream", "").await;
    assert_eq!(js.status, 502, "{}", js.text());
    let py = send_to(&clients[0], "py-json-api.localhost", "GET", "/upstream", "").await;
    assert_eq!(py.status, 502, "{}", py.text());
    assert!(py.text().contains("denied"), "{}", py.text());
    assert!(
        fleet
            .node(0)
            .wait_for_log("not in [outbound] allow", Duration::from_secs(5)),
        "{}",
        fleet.node(0).stderr()
    );
}
