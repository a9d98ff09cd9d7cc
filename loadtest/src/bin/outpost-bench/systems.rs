//! The systems under test, each started on loopback as a child process and stopped on drop.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// A running server and the URLs to load it at.
pub struct Server {
    child: Child,
    pub https: Option<String>,
    pub http: Option<String>,
    output: Arc<Mutex<String>>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

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

/// Start `command`, collecting its output, until `ready` finds what it needs in it.
fn start(
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

fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

fn word(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || c == ')').next()
}

/// Paths everything needs.
pub struct Tools {
    pub bin_dir: PathBuf,
    pub hello: PathBuf,
    pub kv_counter: PathBuf,
    pub wasmtime: PathBuf,
    pub nginx: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub work: PathBuf,
}

/// The app an Outpost run serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BenchApp {
    /// `examples/hello`: the same component every system serves.
    Hello,
    /// `examples/kv-counter` with its `counter` namespace, on the node's embedded KV.
    KvCounter,
}

impl BenchApp {
    fn manifest(self, tools: &Tools) -> (&'static str, String) {
        match self {
            BenchApp::Hello => (
                "hello",
                format!(
                    "name = \"hello\"\ncomponent = {:?}\nroutes = [\"*\"]\n",
                    tools.hello.display().to_string()
                ),
            ),
            BenchApp::KvCounter => (
                "kv-counter",
                format!(
                    "name = \"kv-counter\"\ncomponent = {:?}\nroutes = [\"*\"]\n\
                     [kv]\nnamespaces = [\"counter\"]\n",
                    tools.kv_counter.display().to_string()
                ),
            ),
        }
    }
}

/// `outpost node` serving `app` on HTTPS and plain HTTP; `keep_resident_kb` picks how slots are
/// reset (0 is the madvise path).
pub fn outpost(
    tools: &Tools,
    label: &str,
    app: BenchApp,
    keep_resident_kb: u64,
    data_dir: &Path,
) -> anyhow::Result<Server> {
    let (name, manifest) = app.manifest(tools);
    let app_dir = tools.work.join(format!("{name}-app"));
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(app_dir.join("outpost.toml"), manifest)?;
    let config = tools.work.join(format!("{label}.toml"));
    std::fs::write(
        &config,
        format!(
            "name = \"bench\"\ndata_dir = {:?}\napps = [{:?}]\n\
             [listen]\nhttps = \"127.0.0.1:0\"\nplain = \"127.0.0.1:0\"\n\
             [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {:?}\nkey = {:?}\n\
             [pool]\nkeep_resident_kb = {keep_resident_kb}\n\
             [log]\nrequests = false\n",
            data_dir.display().to_string(),
            app_dir.display().to_string(),
            tools.cert.display().to_string(),
            tools.key.display().to_string()
        ),
    )?;
    let mut command = Command::new(tools.bin_dir.join("outpost"));
    command
        .args(["node", "--config"])
        .arg(&config)
        .env("OUTPOST_LOG", "info");
    start(label, command, |out| {
        let line = out.lines().find(|l| l.contains(" serving "))?;
        let https = word(after(line, "https=")?)?;
        let plain = word(after(line, "plain=Some(")?)?;
        Some((
            Some(format!("https://localhost:{}/", port(https)?)),
            Some(format!("http://127.0.0.1:{}/", port(plain)?)),
        ))
    })
}

fn port(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

pub fn bare(tools: &Tools) -> anyhow::Result<Server> {
    let mut command = Command::new(tools.bin_dir.join("bare-hello"));
    command
        .args(["--https", "127.0.0.1:0", "--http", "127.0.0.1:0", "--cert"])
        .arg(&tools.cert)
        .arg("--key")
        .arg(&tools.key);
    start("bare hyper+rustls", command, |out| {
        let https = port(word(after(out, "https ")?)?)?;
        let http = port(word(after(out, "http ")?)?)?;
        Some((
            Some(format!("https://localhost:{https}/")),
            Some(format!("http://127.0.0.1:{http}/")),
        ))
    })
}

/// `wasmtime serve` with the given `-O` options.
pub fn wasmtime(tools: &Tools, label: &str, options: &[&str]) -> anyhow::Result<Server> {
    let mut command = Command::new(&tools.wasmtime);
    command.args(["serve", "--addr", "127.0.0.1:0"]);
    for option in options {
        command.args(["-O", option]);
    }
    command.arg(&tools.hello);
    start(label, command, |out| {
        let rest = after(out, "Serving HTTP on http://")?;
        let addr = port(rest.split('/').next()?)?;
        Some((None, Some(format!("http://127.0.0.1:{addr}/"))))
    })
}

/// nginx from Debian's packages, returning a fixed 200 (as hello does) on HTTPS and HTTP.
pub fn nginx(tools: &Tools) -> anyhow::Result<Server> {
    let dir = tools.work.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let (https, http) = (free_port()?, free_port()?);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes {workers};\ndaemon off;\npid {pid};\nerror_log stderr;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  server {{\n    \
             listen 127.0.0.1:{https} ssl;\n    listen 127.0.0.1:{http};\n    \
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
             location / {{ return 200 \"hello from outpost\\n\"; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            cert = tools.cert.display(),
            key = tools.key.display()
        ),
    )?;
    let mut command = Command::new(&tools.nginx);
    command
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir);
    let server = start("nginx", command, |_| {
        let up = std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", http)).is_ok();
        up.then(|| {
            (
                Some(format!("https://localhost:{https}/")),
                Some(format!("http://127.0.0.1:{http}/")),
            )
        })
    })?;
    Ok(server)
}

/// Find a program on PATH or at a known place.
pub fn find_program(name: &str, also: &[&str]) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    on_path
        .or_else(|| also.iter().map(PathBuf::from).find(|p| p.is_file()))
        .ok_or_else(|| anyhow!("{name} not found (loadtest/run installs it)"))
}
