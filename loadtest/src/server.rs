//! The servers under test, each started on loopback as a child process and stopped on drop:
//! the generic start (output collected, readiness read from it), `outpost node` serving one app,
//! and `bare-hello`. The benchmark (`outpost-bench`) and the instruction gauge
//! (`outpost-gauge`) start them alike; the gauge runs them under a wrapper (valgrind).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server and the URLs to load it at.
pub struct Server {
    child: Child,
    /// The HTTPS URL to load, if the server listens for it.
    pub https: Option<String>,
    /// The plain HTTP URL to load, if the server listens for it.
    pub http: Option<String>,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has written so far, stdout and stderr interleaved.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master takes its workers down with it only then.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of process `pid` now, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A free TCP port on loopback (for servers that cannot be told to pick one).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Start `command`, collecting its output, until `ready` finds the URLs to load in it
/// (`(https, http)`); gives up after two minutes.
pub fn start(
    name: &str,
    mut command: Command,
    ready: impl Fn(&str) -> Option<(Option<String>, Option<String>)>,
) -> anyhow::Result<Server> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            std::thread::sleep(Duration::from_millis(100));
            bail!(
                "{name} exited ({status}) before it was ready:\n{}",
                output.lock().unwrap()
            );
        }
        let found = ready(&output.lock().unwrap());
        if let Some((https, http)) = found {
            return Ok(Server {
                child,
                https,
                http,
                output,
            });
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("{name} was not ready in 120 s:\n{}", output.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What follows `marker` in `text`, if it is there.
pub fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

fn word(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || c == ')').next()
}

/// The port of a socket address written `IP:PORT`.
pub fn port(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// `program`, run under `wrapper` (a command and its arguments, such as `valgrind
/// --tool=callgrind`) when one is given.
pub fn command(wrapper: &[OsString], program: &Path) -> Command {
    match wrapper.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
    }
}

/// One `outpost node` serving one app on HTTPS and plain HTTP, with its admin listener.
pub struct NodeSpec<'a> {
    /// Where `outpost` is.
    pub bin_dir: &'a Path,
    /// Names the config file and the server in messages.
    pub label: &'a str,
    /// Where the app's directory and the config go.
    pub work: &'a Path,
    /// The node's data directory.
    pub data_dir: &'a Path,
    /// The app's name and its `outpost.toml`.
    pub app: (&'a str, String),
    /// The certificate for `localhost`, with its chain.
    pub cert: &'a Path,
    /// Its private key.
    pub key: &'a Path,
    /// The `[pool]` section's lines.
    pub pool: String,
    /// Whether the node serves HTTP/3 as well.
    pub http3: bool,
    /// Whether it logs a line per request (the benchmark's rows do not, as nginx runs with
    /// `access_log off`).
    pub access_log: bool,
    /// A command to run the node under, if any.
    pub wrapper: &'a [OsString],
}

/// Start the node `spec` describes; ready once it says where it serves.
pub fn outpost_node(spec: &NodeSpec) -> anyhow::Result<Server> {
    let (name, manifest) = &spec.app;
    let app_dir = spec.work.join(format!("{name}-app"));
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(app_dir.join("outpost.toml"), manifest)?;
    let config = spec.work.join(format!("{}.toml", spec.label));
    std::fs::write(
        &config,
        format!(
            "name = \"bench\"\ndata_dir = {:?}\napps = [{:?}]\n\
             [listen]\nhttps = \"127.0.0.1:0\"\nplain = \"127.0.0.1:0\"\nhttp3 = {}\n\
             [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {:?}\nkey = {:?}\n\
             [pool]\n{}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [log]\nrequests = {}\n",
            spec.data_dir.display().to_string(),
            app_dir.display().to_string(),
            spec.http3,
            spec.cert.display().to_string(),
            spec.key.display().to_string(),
            spec.pool,
            spec.access_log,
        ),
    )?;
    let mut command = command(spec.wrapper, &spec.bin_dir.join("outpost"));
    command
        .args(["node", "--config"])
        .arg(&config)
        .env("OUTPOST_LOG", "info");
    start(spec.label, command, |out| {
        let line = out.lines().find(|l| l.contains(" serving "))?;
        let https = word(after(line, "https=")?)?;
        let plain = word(after(line, "plain=Some(")?)?;
        Some((
            Some(format!("https://localhost:{}/", port(https)?)),
            Some(format!("http://127.0.0.1:{}/", port(plain)?)),
        ))
    })
}

/// A node's admin address (for /metrics), from its start-up line.
pub fn admin_addr(server: &Server) -> Option<SocketAddr> {
    let output = server.output();
    let line = output.lines().find(|l| l.contains(" serving "))?;
    word(after(line, "admin=Some(")?)?.parse().ok()
}

/// `bare-hello` (the node's serve loop answering a fixed hello, no Wasm) on HTTPS and plain
/// HTTP, under `wrapper` if one is given.
pub fn bare_hello(
    bin_dir: &Path,
    cert: &Path,
    key: &Path,
    wrapper: &[OsString],
) -> anyhow::Result<Server> {
    let mut command = command(wrapper, &bin_dir.join("bare-hello"));
    command
        .args(["--https", "127.0.0.1:0", "--http", "127.0.0.1:0", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key);
    start("bare hyper+rustls", command, |out| {
        let https = port(word(after(out, "https ")?)?)?;
        let http = port(word(after(out, "http ")?)?)?;
        Some((
            Some(format!("https://localhost:{https}/")),
            Some(format!("http://127.0.0.1:{http}/")),
        ))
    })
}

/// The certificate and key for `localhost` (and 127.0.0.1) the servers use, issued by a CA
/// made in `dir`; returns (CA certificate, certificate, key).
pub fn localhost_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca = outpost_net::pki::CertAuthority::create(dir, "ca", "outpost-bench CA")?;
    let (cert, key) = ca.issue(
        dir,
        "localhost",
        &["localhost".into(), "127.0.0.1".into()],
        outpost_net::pki::Usage::Server,
        30,
    )?;
    Ok((dir.join("ca.pem"), cert, key))
}
