//! The operator guide's walkthrough, run as written: the shell block after
//! `<!-- walkthrough -->` in docs/operators.md (CA, certificates, configs, a token, an origin,
//! a node, `outpost new`, build, deploy, a second version, rollback, KV, status), in an empty
//! directory with this build's `outpost` on the PATH. Only its three ports change, to free
//! ones, so that it can run beside other tests. If the guide and the binary drift apart, this
//! fails on the command that no longer works.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::guests::repo_root;
use outpost_tests::process::outpost_bin;
use outpost_tests::{TempDir, wasm};

/// The walkthrough's block, as the guide has it.
fn walkthrough() -> String {
    let guide = std::fs::read_to_string(repo_root().join("docs/operators.md")).unwrap();
    let after = guide
        .split("<!-- walkthrough -->")
        .nth(1)
        .expect("docs/operators.md marks its walkthrough with <!-- walkthrough -->");
    let block = after
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a ```sh block after the marker");
    block.to_string()
}

/// A port no one listens on right now, for TCP and UDP alike.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn the_operator_guide_walkthrough_runs_as_written() {
    // The guest toolchain is installed and warm (the same step builds the test guests).
    wasm("hello");
    let mut script = walkthrough();
    for port in ["9443", "7443", "8443"] {
        assert!(
            script.contains(port),
            "the walkthrough no longer uses port {port}"
        );
        script = script.replace(port, &free_port().to_string());
    }
    let dir = TempDir::new("walkthrough");
    let path = dir.write("walkthrough.sh", &script);
    let bin_dir = outpost_bin().parent().unwrap();
    let search_path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail"])
        .arg(&path)
        .current_dir(dir.path())
        .env("PATH", search_path)
        .env_remove("OUTPOST_ORIGIN")
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_CA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: whatever it leaves running goes with it below.
        .process_group(0)
        .spawn()
        .expect("running bash");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(600) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: a plain system call on the group made for the script above (never 0 or 1).
    assert!(group > 1);
    unsafe { libc::killpg(group as libc::pid_t, libc::SIGKILL) };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs = ["origin.log", "node.log"]
        .map(|f| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default());
    let status = status
        .unwrap_or_else(|| panic!("the walkthrough ran over 10 minutes:\n{stdout}\n{stderr}"));
    assert!(
        status.success(),
        "the walkthrough failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n\
         --- origin.log\n{}\n--- node.log\n{}",
        logs[0],
        logs[1]
    );

    // What each step printed.
    assert_eq!(stdout.matches("live on 1 node").count(), 3, "{stdout}");
    assert_eq!(
        stdout.matches("hello from shop-api at /hello").count(),
        2,
        "version 1, then version 1 again after the rollback: {stdout}"
    );
    assert!(
        stdout.contains("shop-api: rolled back to version 1"),
        "{stdout}"
    );
    assert!(stdout.contains("hello, KV"), "{stdout}");
    let versions: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("VERSION"))
        .take(3)
        .collect();
    assert!(
        versions[1].starts_with("1 ") && versions[1].ends_with("first"),
        "{versions:?}"
    );
    assert!(
        versions[2].starts_with("2 ") && versions[2].contains("100%"),
        "{versions:?}"
    );
    let node_line = stdout
        .lines()
        .find(|l| l.starts_with("edge-1"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        node_line.contains("yes") && node_line.contains("shop-api@1"),
        "{node_line}"
    );
    // `kill %1 %2` at the end: both drained and stopped by themselves.
    assert!(logs[1].contains("drained; bye"), "{}", logs[1]);
    assert!(logs[0].contains("origin stopped"), "{}", logs[0]);
}
