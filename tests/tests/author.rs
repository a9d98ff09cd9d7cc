//! A handler author's first minutes: `outpost new`, `outpost build`, `outpost dev`.

use outpost_tests::process::outpost_bin;
use outpost_tests::{Client, Outpost, TempDir, wasm};

#[tokio::test(flavor = "multi_thread")]
async fn new_build_and_serve_a_scaffolded_app() {
    // Make sure the guest toolchain is installed and warm (the same step builds the examples).
    wasm("hello");
    let dir = TempDir::new("author");
    let run = |args: &[&str], cwd: &std::path::Path| {
        let out = std::process::Command::new(outpost_bin())
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("running outpost");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (status, stdout, stderr) = run(&["new", "my-app"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("created my-app"), "{stdout}");
    let app = dir.path().join("my-app");
    for file in ["Cargo.toml", "src/lib.rs", "outpost.toml", ".gitignore"] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    // The template's unit tests pass on this machine, no wasm target needed.
    let tested = std::process::Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&app)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo test");
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success() && said.contains("2 passed"),
        "cargo test in a new app:\n{said}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let (status, _, stderr) = run(&["new", "my-app"], dir.path());
    assert!(
        !status.success() && stderr.contains("not empty"),
        "{stderr}"
    );
    let (status, _, stderr) = run(&["new", "Bad_Name"], dir.path());
    assert!(
        !status.success() && stderr.contains("not a valid app name"),
        "{stderr}"
    );

    let (status, stdout, stderr) = run(&["build"], &app);
    assert!(
        status.success(),
        "outpost build failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("built ") && stdout.contains("my_app.wasm"),
        "{stdout}"
    );
    // Built again, nothing changed: the same component, said as JSON.
    let (status, stdout, stderr) = run(&["build", "--json"], &app);
    assert!(status.success(), "{stderr}");
    let built: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        built["component"]
            .as_str()
            .unwrap()
            .ends_with("my_app.wasm"),
        "{built}"
    );
    assert_eq!(built["sha256"].as_str().unwrap().len(), 64, "{built}");
    assert!(built["bytes"].as_u64().unwrap() > 1000, "{built}");

    let data = TempDir::new("author-data");
    let node = Outpost::dev(&[app.to_str().unwrap()], data.path()).expect("outpost dev");
    let client = Client::new(node.addr, &node.ca_pem());
    let reply = client.get("/first").await.unwrap();
    assert_eq!(reply.text(), "hello from my-app at /first\n");
}

/// A broken outpost.toml in the directory is named, with its field, by every command that
/// reads it, instead of a vague "no app given".
#[test]
fn fleet_commands_name_a_broken_outpost_toml() {
    let dir = TempDir::new("broken-manifest");
    dir.write(
        "outpost.toml",
        "name = \"shop\"\ncomponent = \"shop.wasm\"\n[limits]\ncpu_ms = 0\n",
    );
    for command in [
        &["versions"][..],
        &["activate", "2"],
        &["rollback"],
        &["status"],
        &["kv", "get", "--namespace", "carts", "k"],
        &["tail"],
    ] {
        let out = std::process::Command::new(outpost_bin())
            .args(command)
            .args(["--origin", "https://127.0.0.1:1"])
            .current_dir(dir.path())
            .output()
            .expect("running outpost");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} succeeded");
        assert!(
            stderr.contains("outpost.toml") && stderr.contains("limits.cpu_ms"),
            "{command:?}: {stderr}"
        );
        assert!(!stderr.contains("no app given"), "{command:?}: {stderr}");
    }
}

/// `outpost check` validates each kind of file as the command that reads it would, and says
/// what is wrong with the file and field named.
#[test]
fn check_validates_apps_nodes_and_origins() {
    let dir = TempDir::new("check");
    let check = |args: &[&str]| {
        let out = std::process::Command::new(outpost_bin())
            .arg("check")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("running outpost");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    dir.write(
        "outpost.toml",
        "name = \"shop\"\ncomponent = \"shop.wasm\"\nroutes = [\"shop.example/*\"]\n",
    );
    let (ok, stdout, stderr) = check(&[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok: app shop, 1 route(s)") && stdout.contains("not built yet"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = check(&["--json"]);
    assert!(ok, "{stderr}");
    let checked: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(checked["kind"], "app");
    assert_eq!(checked["name"], "shop");
    assert_eq!(checked["routes"], serde_json::json!(["shop.example/*"]));
    assert_eq!(checked["built"], false);

    dir.write(
        "broken/outpost.toml",
        "name = \"shop\"\ncomponent = \"s.wasm\"\n[limits]\ncpu_ms = 0\n",
    );
    let (ok, _, stderr) = check(&["broken"]);
    assert!(!ok && stderr.contains("`limits.cpu_ms`: is 0"), "{stderr}");

    dir.write("node.toml", "[pool]\ninstances = 1\n");
    let (ok, _, stderr) = check(&["node.toml"]);
    assert!(
        !ok && stderr.contains("node.toml") && stderr.contains("listen"),
        "{stderr}"
    );

    dir.write("origin.toml", "[admin]\nlisten = \"nowhere\"\n");
    let (ok, _, stderr) = check(&["origin.toml"]);
    assert!(!ok && stderr.contains("origin.toml"), "{stderr}");
    // The same file read as what it is not is refused for that.
    let (ok, _, stderr) = check(&["origin.toml", "--as", "node"]);
    assert!(!ok && stderr.contains("origin.toml"), "{stderr}");
}

/// `outpost completions SHELL` prints a script the shell takes: bash loads it and completes
/// `outpost` with it, and each script knows the commands.
#[test]
fn completions_load_in_bash_and_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(outpost_bin())
            .args(["completions", shell])
            .output()
            .expect("running outpost");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["deploy", "rollback", "check", "completions"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completions bash) && complete -p outpost",
            outpost_bin().display()
        ))
        .output()
        .expect("running bash");
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(
        said.contains("_outpost") && said.contains("outpost"),
        "{said}"
    );
}
