//! What an operator installs from `node/deploy/`: install.sh, run for real into a root
//! directory of its own with a systemctl that records what it is asked, leaves a stopped unit
//! and the next step when the config does not load yet, and starts the unit when it does; the
//! systemd unit passes `systemd-analyze verify` and its sandboxing keeps the exposure score
//! systemd computes low.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_tests::guests::repo_root;
use outpost_tests::process::outpost_bin;
use outpost_tests::{TempDir, TestCa};

/// A systemctl that records its arguments in `calls.log` and says no unit is active.
fn fake_systemctl(dir: &TempDir) -> PathBuf {
    let log = dir.path().join("calls.log");
    let path = dir.write(
        "systemctl",
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = is-active ] && exit 3\nexit 0\n",
            log.display()
        ),
    );
    Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    path
}

fn install(dir: &TempDir, extra: &[&str]) -> (Output, String) {
    let systemctl = fake_systemctl(dir);
    let root = dir.path().join("root");
    let output = Command::new("bash")
        .arg(repo_root().join("node/deploy/install.sh"))
        .arg("--binary")
        .arg(outpost_bin())
        .arg("--root")
        .arg(&root)
        .args(["--user", "root"])
        .args(extra)
        .env("SYSTEMCTL", &systemctl)
        .output()
        .expect("running install.sh");
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap_or_default();
    (output, calls)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn install_sh_leaves_a_stopped_unit_and_the_next_step_until_the_config_loads() {
    // No config given: the starting point names certificates that are not there yet.
    let dir = TempDir::new("install-starter");
    let (output, calls) = install(&dir, &[]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("not started: the config does not load yet"),
        "{said}"
    );
    assert!(said.contains("/etc/outpost/tls/example.com.pem"), "{said}");
    assert!(said.contains("next: edit /etc/outpost/node.toml"), "{said}");
    let root = dir.path().join("root");
    for file in [
        "usr/local/bin/outpost",
        "etc/outpost/node.toml",
        "etc/systemd/system/outpost-node@.service",
    ] {
        assert!(root.join(file).is_file(), "{file} not installed: {said}");
    }
    assert_eq!(calls, "daemon-reload\n", "nothing is started: {calls}");

    // A config given that does not load: the same, and a failure.
    let bad = dir.write(
        "bad.toml",
        "name = \"edge-1\"\n[listen]\nhttps = \"nowhere\"\n",
    );
    let (output, _) = install(&dir, &["--config", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[test]
fn install_sh_starts_the_unit_once_the_config_loads() {
    let dir = TempDir::new("install-serving");
    let (cert, key) = TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let config = dir.write(
        "node.toml",
        format!(
            "name = \"edge-1\"\ndata_dir = {:?}\napps = []\n\
             [listen]\nhttps = \"127.0.0.1:0\"\n\
             [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {cert:?}\nkey = {key:?}\n",
            dir.path().join("data").display().to_string()
        ),
    );
    let (output, calls) = install(&dir, &["--config", config.to_str().unwrap()]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("outpost-node@a is serving"), "{said}");
    assert_eq!(
        calls,
        "daemon-reload\nis-active --quiet outpost-node@a\nenable --now outpost-node@a\n\
         disable outpost-node@b\n",
        "{said}"
    );
}

/// `systemd-analyze` as the machine has it; these machines do (Debian's systemd).
fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian's systemd) is on the machine")
}

#[test]
fn the_unit_verifies_and_its_sandbox_keeps_exposure_low() {
    let dir = TempDir::new("unit");
    // The unit as installed, running the binary built here.
    let unit = std::fs::read_to_string(repo_root().join("node/deploy/outpost-node@.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/outpost",
            &outpost_bin().display().to_string(),
        );
    let path = dir.write("outpost-node@a.service", unit);
    let verified = systemd_analyze(&["verify"], &path);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).trim().is_empty(), "{}", text(&verified));

    // systemd's own score: 0 (locked down) to 10 (exposed); the unit without its sandboxing
    // scored 8.6 here, this one 1.4.
    let security = systemd_analyze(&["security", "--offline=yes", "--threshold=20"], &path);
    let report = text(&security);
    assert!(security.status.success(), "{report}");
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no score in {report}"));
    assert!(score <= 2.0, "exposure {score}: {report}");
}
