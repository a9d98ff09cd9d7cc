//! The systems under test beyond what `outpost_load::server` starts: the node on each bench
//! app, `wasmtime serve`, nginx, and the JavaScript and Python guests they serve.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use outpost_load::server::{NodeSpec, admin_addr, after, free_port, outpost_node, port, start};
pub(crate) use outpost_load::server::{Server, rss_kib};

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

/// `outpost node` serving `app` on HTTPS, plain HTTP and HTTP/3; `keep_resident_kb` picks how
/// slots are reset (0 is the madvise path).
pub(crate) fn outpost(
    tools: &Tools,
    label: &str,
    app: BenchApp,
    keep_resident_kb: u64,
    data_dir: &Path,
) -> anyhow::Result<Server> {
    let (name, manifest) = app.manifest(tools);
    outpost_node(&NodeSpec {
        bin_dir: &tools.bin_dir,
        label,
        work: &tools.work,
        data_dir,
        app: (&name, manifest),
        cert: &tools.cert,
        key: &tools.key,
        pool: format!("keep_resident_kb = {keep_resident_kb}"),
        http3: true,
        access_log: false,
        wrapper: &[],
    })
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

pub(crate) fn bare(tools: &Tools) -> anyhow::Result<Server> {
    outpost_load::server::bare_hello(&tools.bin_dir, &tools.cert, &tools.key, &[])
}

/// `wasmtime serve` on `examples/hello` with the given `-O` options.
pub(crate) fn wasmtime(tools: &Tools, label: &str, options: &[&str]) -> anyhow::Result<Server> {
    // `-S cli`: a component built with the Rust SDK imports wasi:random/insecure-seed (std's
    // HashMap seed), which the proxy world alone lacks.
    wasmtime_serving(tools, label, options, &["cli"], &tools.hello)
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
