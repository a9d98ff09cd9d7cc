//! The `outpost` binary as a child process: started on ephemeral loopback ports, its output
//! captured, stopped with SIGTERM (or killed when a test panics).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::guests::repo_root;

/// How long a node may take to come up. A debug build compiles components slowly: a 13 MB
/// JavaScript component takes about 30 s alone, and over a minute while the other end-to-end
/// tests compile theirs on the same two cores (CI once timed out at 60 s that way).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The `outpost` binary, built once per test binary in the same profile as the tests.
pub fn outpost_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "outpost-node", "--bin", "outpost"])
            .current_dir(repo_root());
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the outpost binary failed");
        // Test binaries live in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test binary path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("outpost");
        assert!(bin.exists(), "{} not found after the build", bin.display());
        bin
    })
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory `outpost-e2e-LABEL-PID-N` under the system temp directory.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "outpost-e2e-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `contents` to `name` inside, returning the path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating parent dirs");
        }
        std::fs::write(&path, contents).expect("writing a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `outpost` process.
pub struct Outpost {
    child: Child,
    /// The HTTPS listener.
    pub addr: SocketAddr,
    /// The plain-HTTP redirect listener, if any.
    pub redirect: Option<SocketAddr>,
    /// For `outpost origin`: the cluster (QUIC) listener.
    pub cluster: Option<SocketAddr>,
    /// For `outpost dev`: the dev CA's certificate file.
    pub ca: Option<PathBuf>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), if any.
    pub admin: Option<SocketAddr>,
    /// The plain-HTTP serving listener (`outpost dev`'s, or a node's `[listen] plain`), if any.
    pub plain: Option<SocketAddr>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// What a process printed once it was ready.
struct Ready {
    addr: SocketAddr,
    redirect: Option<SocketAddr>,
    cluster: Option<SocketAddr>,
    ca: Option<PathBuf>,
    admin: Option<SocketAddr>,
    plain: Option<SocketAddr>,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            redirect: None,
            cluster: None,
            ca: None,
            admin: None,
            plain: None,
        }
    }
}

/// The node's "serving" line in `--log-format json`.
fn json_serving_line(line: &str) -> Option<Ready> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    (value["message"] == "serving").then_some(())?;
    let some = |field: &str| {
        value[field]
            .as_str()
            .and_then(|s| s.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
    };
    Some(Ready {
        addr: value["https"].as_str()?.parse().ok()?,
        redirect: some("http_redirect"),
        admin: some("admin"),
        plain: some("plain"),
        ..Ready::default()
    })
}

/// A process that ended before it was ready (or was expected to fail).
#[derive(Debug)]
pub struct Exited {
    /// How the process exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr, where the logs go.
    pub stderr: String,
}

impl Outpost {
    /// `outpost dev ARGS...` with every listener on a port of its own choosing; ready once it
    /// prints its URLs and "Press Ctrl-C".
    pub fn dev(args: &[&str], data_dir: &Path) -> Result<Outpost, Exited> {
        let mut full = vec!["dev", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"];
        full.extend(["--admin", "127.0.0.1:0", "--data-dir"]);
        full.push(data_dir.to_str().expect("utf-8 path"));
        full.extend_from_slice(args);
        Self::start(&full, |out, _| {
            out.contains("Press Ctrl-C").then_some(())?;
            let port = |line: &str| line.split('/').next()?.parse::<u16>().ok();
            let on_loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            let https = port(after(out, "\n  https://localhost:")?)?;
            let ca = after(out, "CA certificate: ")?.lines().next()?.trim();
            let http = after(out, "\n  http://localhost:")?.lines().next()?;
            let http_port = port(http)?;
            let admin = after(out, "metrics: http://")?
                .split('/')
                .next()?
                .parse()
                .ok()?;
            let redirects = http.contains("redirects to HTTPS");
            Some(Ready {
                addr: on_loopback(https),
                redirect: redirects.then(|| on_loopback(http_port)),
                plain: (!redirects).then(|| on_loopback(http_port)),
                admin: Some(admin),
                ca: Some(PathBuf::from(ca)),
                ..Ready::default()
            })
        })
    }

    /// `outpost node --config FILE`; ready once it logs that it is serving.
    pub fn node(config: &Path) -> Result<Outpost, Exited> {
        Self::node_with(config, &[])
    }

    /// `outpost node --config FILE EXTRA...` (`--takeover`, say).
    pub fn node_with(config: &Path, extra: &[&str]) -> Result<Outpost, Exited> {
        Self::node_in(None, config, extra)
    }

    /// `outpost node --config FILE` with `envs` set in its environment (and only its own).
    pub fn node_with_env(config: &Path, envs: &[(&str, &str)]) -> Result<Outpost, Exited> {
        Self::node_command(None, config, &[], envs)
    }

    /// The same, inside network namespace `netns` if given (`ip netns exec`).
    pub fn node_in(netns: Option<&str>, config: &Path, extra: &[&str]) -> Result<Outpost, Exited> {
        Self::node_command(netns, config, extra, &[])
    }

    fn node_command(
        netns: Option<&str>,
        config: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Outpost, Exited> {
        let config = config.to_str().expect("utf-8 path");
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(outpost_bin());
                command
            }
            None => Command::new(outpost_bin()),
        };
        command
            .args(["node", "--config", config])
            .args(extra)
            .envs(envs.iter().copied());
        Self::start_command(command, |_, err| {
            if let Some(ready) = err.lines().find_map(json_serving_line) {
                return Some(ready);
            }
            let line = err.lines().find(|l| l.contains(" serving "))?;
            let addr = after(line, "https=")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let some = |field: &str| {
                after(line, &format!("{field}=Some("))
                    .and_then(|rest| rest.split(')').next())
                    .and_then(|a| a.parse().ok())
            };
            Some(Ready {
                addr,
                redirect: some("http_redirect"),
                admin: some("admin"),
                plain: some("plain"),
                ..Ready::default()
            })
        })
    }

    /// `outpost origin --config FILE`; ready once it logs its admin and cluster addresses.
    pub fn origin(config: &Path) -> Result<Outpost, Exited> {
        let config = config.to_str().expect("utf-8 path");
        Self::start(&["origin", "--config", config], |_, err| {
            let line = err.lines().find(|l| l.contains("origin serving"))?;
            Some(Ready {
                addr: after(line, "admin=")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?,
                cluster: Some(
                    after(line, "cluster=")?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()?,
                ),
                ..Ready::default()
            })
        })
    }

    /// Run `outpost ARGS...` to completion (it is expected to exit by itself).
    pub fn run(args: &[&str]) -> Exited {
        let output = Command::new(outpost_bin())
            .args(args)
            .env("OUTPOST_LOG", "info")
            .output()
            .expect("running outpost");
        Exited {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn start(
        args: &[&str],
        ready: impl Fn(&str, &str) -> Option<Ready>,
    ) -> Result<Outpost, Exited> {
        let mut command = Command::new(outpost_bin());
        command.args(args);
        Self::start_command(command, ready)
    }

    fn start_command(
        mut command: Command,
        ready: impl Fn(&str, &str) -> Option<Ready>,
    ) -> Result<Outpost, Exited> {
        let mut child = command
            .env("OUTPOST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting outpost");
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("polling the child") {
                // Give the readers a moment to drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return Err(Exited {
                    status,
                    stdout: stdout.lock().unwrap().clone(),
                    stderr: stderr.lock().unwrap().clone(),
                });
            }
            let found = ready(&stdout.lock().unwrap(), &stderr.lock().unwrap());
            if let Some(Ready {
                addr,
                redirect,
                cluster,
                ca,
                admin,
                plain,
            }) = found
            {
                return Ok(Outpost {
                    child,
                    addr,
                    redirect,
                    cluster,
                    ca,
                    admin,
                    plain,
                    stdout,
                    stderr,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                panic!(
                    "outpost did not become ready in {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The child's process id, for signals or `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything the process has written to stderr so far: its log lines.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the log holds `needle`, up to `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The dev CA (for `outpost dev`) as PEM.
    pub fn ca_pem(&self) -> String {
        let path = self.ca.as_ref().expect("only outpost dev has a dev CA");
        std::fs::read_to_string(path).expect("reading the dev CA")
    }

    /// Send SIGTERM (graceful drain) without waiting.
    pub fn signal_terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// SIGTERM, then wait (up to `timeout`) for the exit status.
    pub fn terminate(self, timeout: Duration) -> ExitStatus {
        self.signal_terminate();
        self.wait(timeout)
    }

    /// Wait (up to `timeout`) for the process to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the child") {
                return status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("outpost did not exit within {timeout:?}\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capture(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

/// CPU time (user + system) a process has used, from `/proc`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}
