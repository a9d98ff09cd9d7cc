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

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A free TCP port on loopback (for servers that cannot be told to pick one).
pub(crate) fn free_port() -> anyhow::Result<u16> {
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
    /// The JavaScript and Python hellos (loadtest/apps), built by `outpost build` with and
    /// without instance reuse.
    pub guests: Guests,
    pub wasmtime: PathBuf,
    pub nginx: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub work: PathBuf,
}

/// The JavaScript and Python hello components, each built for a fresh instance per request and
/// for instance reuse.
pub struct Guests {
    pub js_fresh: PathBuf,
    pub js_reuse: PathBuf,
    pub py_fresh: PathBuf,
    pub py_reuse: PathBuf,
}

/// A language of the large-guest rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    Js,
    Python,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Js => "JavaScript (componentize-js 0.23.0)",
            Lang::Python => "Python (componentize-py 0.25.1)",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Lang::Js => "js-hello",
            Lang::Python => "py-hello",
        }
    }

    pub fn component(self, guests: &Guests, reuse: bool) -> &Path {
        match (self, reuse) {
            (Lang::Js, false) => &guests.js_fresh,
            (Lang::Js, true) => &guests.js_reuse,
            (Lang::Python, false) => &guests.py_fresh,
            (Lang::Python, true) => &guests.py_reuse,
        }
    }
}

/// Build loadtest/apps/{js,py}-hello twice each into `work` with `outpost build`.
pub(crate) fn build_guests(bin_dir: &Path, repo: &Path, work: &Path) -> anyhow::Result<Guests> {
    let build = |lang: Lang, reuse: bool| -> anyhow::Result<PathBuf> {
        let source = repo.join("loadtest/apps").join(lang.dir());
        let dir = work.join("apps").join(format!(
            "{}-{}",
            lang.dir(),
            if reuse { "reuse" } else { "fresh" }
        ));
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&source)? {
            let path = entry?.path();
            let target = dir.join(path.file_name().context("file name")?);
            if path.is_dir() {
                std::fs::create_dir_all(&target)?;
                for inner in std::fs::read_dir(&path)? {
                    let inner = inner?.path();
                    std::fs::copy(&inner, target.join(inner.file_name().context("name")?))?;
                }
            } else {
                std::fs::copy(&path, &target)?;
            }
        }
        if reuse {
            let manifest = dir.join("outpost.toml");
            let text = std::fs::read_to_string(&manifest)?;
            std::fs::write(&manifest, format!("{text}\n[instance]\nreuse = true\n"))?;
        }
        let output = Command::new(bin_dir.join("outpost"))
            .args(["build", "--path"])
            .arg(&dir)
            .output()
            .context("running outpost build")?;
        if !output.status.success() {
            bail!(
                "outpost build {} failed:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(dir.join("dist").join(format!("{}.wasm", lang.dir())))
    };
    Ok(Guests {
        js_fresh: build(Lang::Js, false)?,
        js_reuse: build(Lang::Js, true)?,
        py_fresh: build(Lang::Python, false)?,
        py_reuse: build(Lang::Python, true)?,
    })
}

/// The app an Outpost run serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BenchApp {
    /// `examples/hello`: the same component every system serves.
    Hello,
    /// `examples/kv-counter` with its `counter` namespace, on the node's embedded KV.
    KvCounter,
    /// A JavaScript or Python hello, with or without instance reuse.
    Guest(Lang, bool),
}

impl BenchApp {
    fn manifest(self, tools: &Tools) -> (String, String) {
        match self {
            BenchApp::Guest(lang, reuse) => {
                let name = format!("{}-{}", lang.dir(), if reuse { "reuse" } else { "fresh" });
                let manifest = format!(
                    "name = \"{name}\"\ncomponent = {:?}\nroutes = [\"*\"]\n{}",
                    lang.component(&tools.guests, reuse).display().to_string(),
                    if reuse {
                        "[instance]\nreuse = true\n"
                    } else {
                        ""
                    }
                );
                (name, manifest)
            }
            app => {
                let (name, manifest) = app.fixed_manifest(tools);
                (name.to_string(), manifest)
            }
        }
    }

    fn fixed_manifest(self, tools: &Tools) -> (&'static str, String) {
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
            BenchApp::Guest(..) => unreachable!("guests have their own manifest"),
        }
    }
}

/// `outpost node` serving `app` on HTTPS and plain HTTP; `keep_resident_kb` picks how slots are
/// reset (0 is the madvise path).
pub(crate) fn outpost(
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
             [listen]\nhttps = \"127.0.0.1:0\"\nplain = \"127.0.0.1:0\"\nhttp3 = true\n\
             [[tls.certs]]\nhosts = [\"localhost\"]\ncert = {:?}\nkey = {:?}\n\
             [pool]\nkeep_resident_kb = {keep_resident_kb}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
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

/// Outpost's admin address (for /metrics), from its start-up line.
pub(crate) fn admin_addr(server: &Server) -> Option<SocketAddr> {
    let output = server.output();
    let line = output.lines().find(|l| l.contains(" serving "))?;
    word(after(line, "admin=Some(")?)?.parse().ok()
}

/// The node's instantiation histogram from its /metrics: (instances created, seconds in all).
pub(crate) fn instantiations(server: &Server) -> Option<(f64, f64)> {
    use std::io::{Read, Write};
    let addr = admin_addr(server)?;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    };
    Some((
        value("outpost_instantiate_duration_seconds_count")?,
        value("outpost_instantiate_duration_seconds_sum")?,
    ))
}

fn port(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

pub(crate) fn bare(tools: &Tools) -> anyhow::Result<Server> {
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

/// `wasmtime serve` on `examples/hello` with the given `-O` options.
pub(crate) fn wasmtime(tools: &Tools, label: &str, options: &[&str]) -> anyhow::Result<Server> {
    wasmtime_serving(tools, label, options, &[], &tools.hello)
}

/// `wasmtime serve` on `component` with the given `-O` and `-S` options.
pub(crate) fn wasmtime_serving(
    tools: &Tools,
    label: &str,
    options: &[&str],
    wasi: &[&str],
    component: &Path,
) -> anyhow::Result<Server> {
    let mut command = Command::new(&tools.wasmtime);
    command.args(["serve", "--addr", "127.0.0.1:0"]);
    for option in options {
        command.args(["-O", option]);
    }
    for option in wasi {
        command.args(["-S", option]);
    }
    command.arg(component);
    start(label, command, |out| {
        let rest = after(out, "Serving HTTP on http://")?;
        let addr = port(rest.split('/').next()?)?;
        Some((None, Some(format!("http://127.0.0.1:{addr}/"))))
    })
}

/// nginx from Debian's packages, returning a fixed 200 (as hello does) on HTTPS and HTTP.
pub(crate) fn nginx(tools: &Tools) -> anyhow::Result<Server> {
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
pub(crate) fn find_program(name: &str, also: &[&str]) -> anyhow::Result<PathBuf> {
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
