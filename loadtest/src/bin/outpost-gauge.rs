//! `outpost-gauge`: instructions per request, counted by valgrind's callgrind, for the hello
//! component on `outpost node` over HTTPS and plain HTTP, and for `bare-hello` (the same serve
//! loop with no Wasm) beside it.
//!
//! Each server runs under callgrind with instrumentation off while it starts. One client
//! connection (keep-alive, HTTP/1.1) sends the warm-up requests; then instrumentation is turned
//! on (`callgrind_control`), the same connection sends the measured requests, and the counters
//! are dumped. Instructions do not depend on what else the machine is doing, so the figure is
//! the same run after run (within a fraction of a percent: timers and the worker threads'
//! hand-offs differ a little) where req/s on these shared machines swings by 2x.
//!
//! ```text
//! outpost-gauge --bin-dir target/release --hello hello.wasm   print the figures
//! outpost-gauge ... --check loadtest/gauge.toml   fail if one grew past the committed margin
//! outpost-gauge ... --write loadtest/gauge.toml   commit new figures (say why in the commit)
//! outpost-gauge ... --breakdown                   also each stage's share (callgrind_annotate)
//! ```
//!
//! `loadtest/gauge` builds what it needs and runs this; `.ci/run` runs it with `--check`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use outpost_load::server::{NodeSpec, Server, bare_hello, localhost_certificate, outpost_node};
use outpost_load::{Session, Target};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "outpost-gauge",
    about = "Instructions per request (callgrind) for Outpost and the bare server"
)]
struct Args {
    /// Where `outpost` and `bare-hello` are (a release build).
    #[arg(long)]
    bin_dir: PathBuf,
    /// The hello component (`examples/hello`).
    #[arg(long)]
    hello: PathBuf,
    /// Measured requests per server.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    /// Requests sent before measuring (pool slots, caches and the connection warmed up).
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// Compare with the figures in this file; exit 1 if one grew past its margin.
    #[arg(long, conflicts_with = "write")]
    check: Option<PathBuf>,
    /// Write the measured figures to this file.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Also print each stage's instructions per request, from the measured requests' profile.
    #[arg(long)]
    breakdown: bool,
    /// Keep the callgrind profiles here (for callgrind_annotate or kcachegrind).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// The servers measured, as named in the figures file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Subject {
    OutpostHttps,
    OutpostHttp,
    /// HTTPS with the access log on (its default): what a line per request costs.
    OutpostHttpsLogged,
    BareHttps,
    BareHttp,
}

impl Subject {
    const ALL: [Subject; 5] = [
        Subject::OutpostHttps,
        Subject::OutpostHttp,
        Subject::OutpostHttpsLogged,
        Subject::BareHttps,
        Subject::BareHttp,
    ];

    fn key(self) -> &'static str {
        match self {
            Subject::OutpostHttps => "outpost_https",
            Subject::OutpostHttp => "outpost_http",
            Subject::OutpostHttpsLogged => "outpost_https_logged",
            Subject::BareHttps => "bare_https",
            Subject::BareHttp => "bare_http",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Subject::OutpostHttps => "Outpost, hello, HTTPS",
            Subject::OutpostHttp => "Outpost, hello, plain HTTP",
            Subject::OutpostHttpsLogged => "Outpost, HTTPS, access log on",
            Subject::BareHttps => "bare hyper + rustls, HTTPS",
            Subject::BareHttp => "bare hyper, plain HTTP",
        }
    }

    fn https(self) -> bool {
        matches!(
            self,
            Subject::OutpostHttps | Subject::OutpostHttpsLogged | Subject::BareHttps
        )
    }

    fn is_outpost(self) -> bool {
        !matches!(self, Subject::BareHttps | Subject::BareHttp)
    }
}

/// The committed figures: instructions per request for each subject, and how far above them a
/// run may come before the check fails.
#[derive(Serialize, Deserialize)]
struct Figures {
    /// Percent over a committed figure that still passes.
    margin_percent: f64,
    /// Instructions per request, by subject key.
    instructions: BTreeMap<String, u64>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("outpost-gauge: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            bail!("{tool} is not installed (apt-get install valgrind)");
        }
    }
    let work = std::env::temp_dir().join(format!("outpost-gauge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = measure_all(args, &work);
    let _ = std::fs::remove_dir_all(&work);
    let measured = result?;

    println!(
        "\ninstructions per request ({} requests on one keep-alive connection after {} warm-up):",
        args.requests, args.warmup
    );
    let bare = |https: bool| {
        let key = if https {
            Subject::BareHttps
        } else {
            Subject::BareHttp
        };
        measured.get(key.key()).copied()
    };
    for subject in Subject::ALL {
        let Some(&count) = measured.get(subject.key()) else {
            continue;
        };
        let ratio = match bare(subject.https()) {
            Some(base) if subject.is_outpost() && base > 0 => {
                format!("  ({:.1}x the bare server)", count as f64 / base as f64)
            }
            _ => String::new(),
        };
        println!("  {:<28} {count:>9}{ratio}", subject.label());
    }

    if let Some(path) = &args.write {
        let margin = read_figures(path).map_or(3.0, |f| f.margin_percent);
        let figures = Figures {
            margin_percent: margin,
            instructions: measured.clone(),
        };
        let text = format!(
            "# Instructions per request, counted by callgrind: `loadtest/gauge` (outpost-gauge), {} \
             requests\n# on one keep-alive connection after {} warm-up. `.ci/run` fails when a \
             figure grows more than\n# margin_percent above the one here; after a change that \
             costs instructions on purpose,\n# `loadtest/gauge --write` and say why in the \
             commit.\n{}",
            args.requests,
            args.warmup,
            toml::to_string(&figures)?
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    match &args.check {
        Some(path) => check(&read_figures(path)?, &measured),
        None => Ok(true),
    }
}

fn read_figures(path: &Path) -> anyhow::Result<Figures> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Whether every measured figure is within the margin over its committed one.
fn check(committed: &Figures, measured: &BTreeMap<String, u64>) -> anyhow::Result<bool> {
    let mut pass = true;
    for (key, &now) in measured {
        let Some(&before) = committed.instructions.get(key) else {
            bail!("the committed figures have no `{key}`: run loadtest/gauge --write");
        };
        let limit = before as f64 * (1.0 + committed.margin_percent / 100.0);
        let change = (now as f64 / before as f64 - 1.0) * 100.0;
        if now as f64 > limit {
            println!(
                "FAIL {key}: {now} instructions per request, {change:+.1}% over the committed \
                 {before} (margin {}%)",
                committed.margin_percent
            );
            pass = false;
        } else if change < -committed.margin_percent {
            println!(
                "ok   {key}: {now}, {change:+.1}% under the committed {before}: commit the new \
                 figure (loadtest/gauge --write) so the gain cannot slip back"
            );
        } else {
            println!("ok   {key}: {now} ({change:+.1}% against {before})");
        }
    }
    Ok(pass)
}

fn measure_all(args: &Args, work: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let (_ca, cert, key) = localhost_certificate(&work.join("certs"))?;
    let profiles = args.keep.clone().unwrap_or_else(|| work.join("profiles"));
    std::fs::create_dir_all(&profiles)?;
    let hello = std::fs::canonicalize(&args.hello).with_context(|| {
        format!(
            "{} (scripts/guest-toolchain build examples)",
            args.hello.display()
        )
    })?;
    let mut measured = BTreeMap::new();
    for subject in Subject::ALL {
        let profile = profiles.join(format!("{}.callgrind", subject.key()));
        let wrapper: Vec<OsString> = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--quiet",
        ]
        .into_iter()
        .map(OsString::from)
        .chain([OsString::from(format!(
            "--callgrind-out-file={}",
            profile.display()
        ))])
        .collect();
        eprintln!("outpost-gauge: {} (under callgrind)", subject.label());
        let server = if subject.is_outpost() {
            let manifest = format!(
                "name = \"hello\"\ncomponent = {:?}\nroutes = [\"*\"]\n",
                hello.display().to_string()
            );
            outpost_node(&NodeSpec {
                bin_dir: &args.bin_dir,
                label: subject.key(),
                work,
                data_dir: &work.join(format!("data-{}", subject.key())),
                app: ("hello", manifest),
                cert: &cert,
                key: &key,
                // valgrind's address space holds a few 4 GiB slots, not a thousand; the code
                // compiled is the same (4 GiB reservations, no bounds checks).
                pool: "instances = 4".into(),
                http3: false,
                access_log: subject == Subject::OutpostHttpsLogged,
                wrapper: &wrapper,
            })?
        } else {
            bare_hello(&args.bin_dir, &cert, &key, &wrapper)?
        };
        let count = measure(&server, subject, args, &profile)?;
        if args.breakdown {
            print_breakdown(subject, &dump_path(&profile), args.requests)?;
        }
        measured.insert(subject.key().to_string(), count);
        drop(server);
    }
    Ok(measured)
}

/// Warm up, count the measured requests, and return instructions per request.
fn measure(server: &Server, subject: Subject, args: &Args, profile: &Path) -> anyhow::Result<u64> {
    let url = if subject.https() {
        server.https.clone()
    } else {
        server.http.clone()
    }
    .context("the server has no such listener")?;
    let target = Target::parse(&url)?;
    let pid = server.pid();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut session = Session::open(target, None).await?;
        send(&mut session, args.warmup).await?;
        control(pid, &["--zero"])?;
        control(pid, &["--instr=on"])?;
        send(&mut session, args.requests).await?;
        control(pid, &["--instr=off"])?;
        control(pid, &["--dump"])?;
        anyhow::Ok(())
    })?;
    let total = read_total(&dump_path(profile))?;
    Ok(total / u64::from(args.requests.max(1)))
}

async fn send(session: &mut Session, count: u32) -> anyhow::Result<()> {
    for _ in 0..count {
        let status = session.get().await?;
        if status != 200 {
            bail!("the server answered {status}");
        }
    }
    Ok(())
}

fn control(pid: u32, command: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .args(command)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The first dump callgrind writes on request (`--dump`) beside its final one.
fn dump_path(profile: &Path) -> PathBuf {
    let mut name = profile.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The `totals:` line of a callgrind dump, waiting a little for it to be written.
fn read_total(dump: &Path) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // `totals:` closes the file, so once it is there the dump is whole.
        if let Ok(text) = std::fs::read_to_string(dump)
            && let Some(total) = text.lines().find_map(|l| l.strip_prefix("totals:"))
        {
            return total
                .trim()
                .parse()
                .with_context(|| format!("reading the totals of {}", dump.display()));
        }
        if Instant::now() > deadline {
            return Err(anyhow!("callgrind wrote no dump at {}", dump.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where each instruction went: every function's own instructions, grouped by what the
/// function belongs to (its crate, or libc's allocator and copies), so the groups add up to the
/// total; then the inclusive instructions of the request path's stages, which overlap.
fn print_breakdown(subject: Subject, dump: &Path, requests: u32) -> anyhow::Result<()> {
    let per_request = |count: u64| count as f64 / f64::from(requests.max(1));
    let own = annotate(dump, false)?;
    let total: u64 = own.iter().map(|(count, _)| count).sum();
    let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
    for (count, function) in &own {
        *groups.entry(group_of(function)).or_default() += count;
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|group| std::cmp::Reverse(group.1));
    println!(
        "\n{}: instructions per request by what runs them (own instructions of each function)",
        subject.label()
    );
    for (group, count) in groups {
        println!(
            "  {:>9.0}  {:>5.1}%  {group}",
            per_request(count),
            count as f64 * 100.0 / total.max(1) as f64
        );
    }
    let inclusive = annotate(dump, true)?;
    let stage_count = |functions: &[&str]| -> Option<u64> {
        inclusive
            .iter()
            .filter(|(_, name)| functions.contains(&name.as_str()))
            .map(|(count, _)| *count)
            .max()
    };
    println!(
        "{}: stages of the request path (inclusive; indented stages are part of the one above)",
        subject.label()
    );
    let mut outer = 0;
    for stage in STAGES {
        let indent = if stage.nested { "    " } else { "" };
        match stage_count(stage.functions) {
            Some(count) => {
                if !stage.nested {
                    outer += count;
                }
                println!("  {:>9.0}  {indent}{}", per_request(count), stage.label);
            }
            // The bare server runs no Wasm: its table lists the stages it has.
            None if subject.is_outpost() => {
                println!("  {:>9}  {indent}{} (not run)", "-", stage.label)
            }
            None => {}
        }
    }
    println!(
        "  {:>9.0}  the rest: hyper's dispatch and writes, the serve loop, tokio{}",
        per_request(total.saturating_sub(outer)),
        if subject.is_outpost() {
            ", the edge's glue"
        } else {
            ", the handler"
        }
    );
    Ok(())
}

/// A stage of the request path: the function that runs it, counted inclusively. Inlining
/// (thin LTO) keeps some functions and folds others into their callers, differently in each
/// binary, so a stage names the alternatives it may be found under and takes the largest.
struct Stage {
    label: &'static str,
    functions: &'static [&'static str],
    /// Part of the stage listed before it (not added to the total of stages).
    nested: bool,
}

const STAGES: [Stage; 11] = [
    Stage {
        label: "TLS: read and decrypt the request",
        functions: &["tokio_rustls::common::Stream<IO,C>::read_io"],
        nested: false,
    },
    Stage {
        label: "HTTP/1.1: parse the request head",
        functions: &[
            "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse",
        ],
        nested: false,
    },
    Stage {
        label: "edge: route lookup",
        functions: &["outpost_edge::server::edge::Edge::pick"],
        nested: false,
    },
    Stage {
        label: "edge: request metadata headers",
        functions: &["outpost_edge::server::metadata::RequestMetadata::stamp"],
        nested: false,
    },
    Stage {
        label: "runtime: store, WASI and HTTP contexts",
        functions: &["outpost_runtime::invoke::<impl outpost_runtime::Runtime>::new_store"],
        nested: false,
    },
    Stage {
        label: "runtime: instantiation",
        functions: &["outpost_runtime::Deployment::instantiate::{{closure}}"],
        nested: false,
    },
    Stage {
        label: "guest: the handler call (its code, lifting and lowering, host calls)",
        functions: &[
            "wasmtime::runtime::component::func::typed::TypedFunc<Params,Return>::call_impl",
            "wasmtime::runtime::func::Func::call_unchecked_raw",
        ],
        nested: false,
    },
    Stage {
        label: "host calls (wasi:http fields, bodies, streams; WASI)",
        functions: &[
            "wasmtime::runtime::component::func::host::HostFn::entrypoint",
            "wasmtime::runtime::component::func::host::HostFn::cabi_entrypoint",
        ],
        nested: true,
    },
    Stage {
        label: "runtime: store drop (the instance freed, its slot reset)",
        functions: &[
            "<wasmtime::runtime::store::Store<T> as core::ops::drop::Drop>::drop",
            "core::ptr::drop_in_place<wasmtime::runtime::store::Store<outpost_runtime::host::HostState>>",
        ],
        nested: false,
    },
    Stage {
        label: "HTTP/1.1: encode the response head",
        functions: &[
            "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode",
        ],
        nested: false,
    },
    Stage {
        label: "TLS: encrypt the response",
        functions: &[
            "<rustls::conn::ConnectionCommon<T> as rustls::conn::connection::PlaintextSink>::write_vectored",
            "<rustls::conn::connection::Writer as std::io::Write>::write_vectored",
        ],
        nested: false,
    },
];

/// `callgrind_annotate`'s per-function counts: (instructions, function name).
fn annotate(dump: &Path, inclusive: bool) -> anyhow::Result<Vec<(u64, String)>> {
    let output = Command::new("callgrind_annotate")
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .context("running callgrind_annotate")?;
    if !output.status.success() {
        bail!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut functions = Vec::new();
    for line in text.lines() {
        // "  12,311,000 ( 6.20%)  file:function [object]"
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(")  ") else {
            continue;
        };
        if rest.starts_with("PROGRAM TOTALS") {
            continue;
        }
        let name = rest.rsplit_once(" [").map_or(rest, |(name, _)| name);
        // The file part ends at the first ':' that is not part of a '::' path.
        let function = split_file(name);
        let object = rest.rsplit_once(" [").map_or("", |(_, object)| object);
        functions.push((count, format!("{function}{}", tag_object(object))));
    }
    Ok(functions)
}

/// The function part of callgrind_annotate's `file:function`.
fn split_file(name: &str) -> &str {
    let bytes = name.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == b':' && bytes.get(at + 1) != Some(&b':') && (at == 0 || bytes[at - 1] != b':') {
            return &name[at + 1..];
        }
    }
    name
}

/// Marks a function from the component's compiled code, which has no symbol of ours.
fn tag_object(object: &str) -> &'static str {
    if object.starts_with("???") || object.contains(".cwasm") {
        " [guest]"
    } else if object.contains("libc.so") {
        " [libc]"
    } else {
        ""
    }
}

/// What a function belongs to, for the additive breakdown.
fn group_of(function: &str) -> &'static str {
    let has = |needle: &str| function.contains(needle);
    if function.ends_with(" [guest]") {
        "the component's compiled code (guest, adapter, trampolines)"
    } else if has("malloc")
        || has("free")
        || has("_int_")
        || has("__rdl_")
        || has("__rust_alloc")
        || has("__rust_dealloc")
        || has("__rust_realloc")
        || has("unlink_chunk")
    {
        "allocator (malloc, free)"
    } else if has("memcpy") || has("memmove") || has("memset") || has("memcmp") {
        "memcpy, memset, memcmp"
    } else if has(" [libc]") {
        "libc (system call wrappers, clocks)"
    } else if has("wasmtime_wasi_http") {
        "wasi:http host (requests, responses, fields, bodies)"
    } else if has("wasmtime_wasi") {
        "WASI host (context, streams, clocks, random)"
    } else if has("vm::instance::allocator") || has("vm::cow") || has("pagemap") {
        "wasmtime pool: slot allocation and reset"
    } else if has("wasmtime") || has("cranelift") {
        "wasmtime: instantiation, calls, lifting and lowering"
    } else if has("rustls") || has("ring::") {
        "TLS (rustls, ring)"
    } else if has("hyper") || has("httparse") || has("http::") {
        "HTTP (hyper, http)"
    } else if has("tokio") || has("mio::") {
        "tokio (tasks, timers, I/O readiness)"
    } else if has("outpost_router") {
        "routing"
    } else if has("prometheus") {
        "metrics"
    } else if has("tracing") {
        "logging"
    } else if has("outpost_") {
        "Outpost's own code (edge, runtime glue, serve loop)"
    } else {
        "std, core, alloc and other crates"
    }
}
