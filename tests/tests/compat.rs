//! The guest contract is the standard one: our examples run unmodified under `wasmtime serve`,
//! and a component built against an older WASI 0.2.x runs on Outpost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::client::{get, plain, request};
use outpost_tests::guests::repo_root;
use outpost_tests::{Client, Origin, Outpost, TempDir, wasm};
use std::io::{BufRead, BufReader};

/// The wasmtime CLI of the same major version as the node's wasmtime (installed by the
/// project's script on first use).
fn wasmtime_cli() -> String {
    let output = Command::new(repo_root().join("scripts/guest-toolchain"))
        .arg("wasmtime")
        .output()
        .expect("running scripts/guest-toolchain wasmtime");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// `wasmtime serve` on an ephemeral loopback port; killed on drop.
struct WasmtimeServe {
    child: Child,
    addr: std::net::SocketAddr,
}

impl WasmtimeServe {
    fn start(component: &Path, flags: &[String]) -> WasmtimeServe {
        let mut child = Command::new(wasmtime_cli())
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasmtime serve");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let started = Instant::now();
        let addr = stderr
            .lines()
            .map_while(Result::ok)
            .take_while(|_| started.elapsed() < Duration::from_secs(60))
            .find_map(|line| {
                let rest = line.split("Serving HTTP on http://").nth(1)?;
                rest.trim_end_matches('/').parse().ok()
            });
        match addr {
            Some(addr) => WasmtimeServe { child, addr },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wasmtime serve did not start serving");
            }
        }
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `wasmtime serve` needs for a component built with the Rust SDK beyond the proxy world:
/// `-S cli`, for `wasi:random/insecure-seed`, which std on wasm32-wasip2 seeds `HashMap`
/// hashing from (the `http` crate's `HeaderMap` links it).
fn rust_sdk_flags() -> Vec<String> {
    vec!["-Scli".into()]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_run_unmodified_under_wasmtime_serve() {
    let hello = WasmtimeServe::start(&wasm("hello"), &rust_sdk_flags());
    let reply = plain(
        hello.addr,
        http::Request::builder()
            .uri("/under/wasmtime")
            .header("user-agent", "compat")
            .body(Default::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "hello from outpost\npath: /under/wasmtime\nuser-agent: compat\n"
    );

    let csv = WasmtimeServe::start(&wasm("json-to-csv"), &rust_sdk_flags());
    let converted = plain(
        csv.addr,
        request(
            "POST",
            "/",
            r#"[{"name":"Ada","age":36,"jobTitle":"Engineer","badgeNumber":7}]"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(converted.status, 200, "{}", converted.text());
    assert_eq!(
        converted.text(),
        "name,age,jobTitle,badgeNumber\r\nAda,36,Engineer,7\r\n"
    );
    assert_eq!(plain(csv.addr, get("/")).await.unwrap().status, 405);

    let origin = Origin::start().await;
    let proxy = WasmtimeServe::start(
        &wasm("fetch-origin"),
        &[
            rust_sdk_flags(),
            vec![
                "-Sconfig".into(),
                format!("-Sconfig-var=ORIGIN_URL={}", origin.url()),
            ],
        ]
        .concat(),
    );
    let forwarded = plain(proxy.addr, get("/via/wasmtime")).await.unwrap();
    assert_eq!(forwarded.status, 200, "{}", forwarded.text());
    assert_eq!(forwarded.header("x-served-by"), Some("outpost"));
    assert!(
        forwarded.text().starts_with("origin saw GET /via/wasmtime"),
        "{}",
        forwarded.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wasi_0_2_0_is_served() {
    let data = TempDir::new("wasi-0-2-0");
    let component = wasm("wasi-0-2-0");
    let node = Outpost::dev(&[component.to_str().unwrap()], data.path()).expect("outpost dev");
    let client = Client::new(node.addr, &node.ca_pem());
    let reply = client.get("/").await.unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "hello from wasi 0.2.0\n")
    );
}
