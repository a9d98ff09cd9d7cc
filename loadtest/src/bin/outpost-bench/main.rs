//! `outpost-bench`: Outpost side by side with `wasmtime serve`, a bare hyper+rustls server and
//! nginx, on this machine, in one run, with the same load generator and the same component.
//! Systems are measured in turn, round after round (A B C ... A B C ...), each started fresh
//! and warmed up; the report takes medians over rounds and writes BENCHMARKS.md.
//!
//! Run it through `loadtest/run`, which installs and builds what it needs.

mod cpu;
mod systems;
mod write;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use outpost_load::Report;

use systems::BenchApp::{Guest, Hello, KvCounter};
use systems::{Lang, Server, Tools};

/// Command-line options of `outpost-bench`; `loadtest/run` sets `--wasmtime` and `--command` and
/// passes its own arguments on.
#[derive(Parser, Clone)]
#[command(name = "outpost-bench")]
pub struct Args {
    /// Rounds over all systems; medians are taken over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per run.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connections for the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections for the memory-under-load run.
    #[arg(long, default_value_t = 1000)]
    many: usize,
    /// Connections for the JavaScript and Python rows.
    #[arg(long, default_value_t = 16)]
    guest_connections: usize,
    /// The wasmtime CLI to compare with.
    #[arg(long)]
    wasmtime: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// The exact command line, for the report.
    #[arg(long, default_value = "loadtest/run")]
    command: String,
}

/// One system as loaded: how to start it and which URL to load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Subject {
    /// Outpost serving `examples/hello` over HTTPS, keeping 4 MiB of each slot resident on reset.
    OutpostHttps,
    /// The same Outpost setup, loaded on its plain HTTP listener.
    OutpostHttp,
    /// The same Outpost setup (every Outpost row runs with `[listen] http3 = true`), loaded
    /// over HTTP/3 (QUIC).
    OutpostHttp3,
    /// Outpost over HTTPS with `keep_resident_kb = 0`, so slots are reset with madvise.
    OutpostHttpsMadvise,
    /// `wasmtime serve` on hello, pooling allocator with a decommit batch of 64, plain HTTP.
    WasmtimeReference,
    /// `wasmtime serve` on hello at the best `-O` settings found (`WASMTIME_BEST`), plain HTTP.
    WasmtimeTuned,
    /// `bare-hello`: hyper + rustls with no Wasm, over HTTPS; the baseline without a sandbox.
    BareHttps,
    /// `bare-hello` (hyper, no Wasm) on its plain HTTP listener.
    BareHttp,
    /// nginx returning a fixed 200, as hello does, over HTTPS.
    NginxHttps,
    /// nginx returning a fixed 200 over plain HTTP.
    NginxHttp,
    /// Outpost serving `examples/kv-counter` over HTTPS; each request is one KV get of a document
    /// written once at start (`GET /api/docs/bench`).
    OutpostKvRead,
    /// Outpost serving `examples/kv-counter` over HTTPS; each request is one durable KV increment.
    OutpostKvWrite,
}

impl Subject {
    /// Every subject, in the order each round measures them and the throughput table lists them.
    /// The first, `OutpostHttps`, gives the peak the half-rate run is paced from.
    pub const ALL: [Subject; 12] = [
        Subject::OutpostHttps,
        Subject::OutpostHttp,
        Subject::OutpostHttp3,
        Subject::OutpostHttpsMadvise,
        Subject::WasmtimeReference,
        Subject::WasmtimeTuned,
        Subject::BareHttps,
        Subject::BareHttp,
        Subject::NginxHttps,
        Subject::NginxHttp,
        Subject::OutpostKvRead,
        Subject::OutpostKvWrite,
    ];

    /// The row's description in the report and in the progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Subject::OutpostHttps => "Outpost, HTTPS",
            Subject::OutpostHttp => "Outpost, plain HTTP",
            Subject::OutpostHttp3 => "Outpost, HTTP/3 (QUIC, TLS 1.3)",
            Subject::OutpostHttpsMadvise => "Outpost, HTTPS, madvise resets (keep_resident_kb = 0)",
            Subject::WasmtimeReference => {
                "wasmtime serve, plain HTTP (-O pooling-allocator,pooling-decommit-batch-size=64)"
            }
            Subject::WasmtimeTuned => {
                "wasmtime serve, plain HTTP (same + memory/table keep-resident 4 MiB, pagemap-scan)"
            }
            Subject::BareHttps => "bare hyper + rustls (no Wasm), HTTPS",
            Subject::BareHttp => "bare hyper (no Wasm), plain HTTP",
            Subject::NginxHttps => "nginx, HTTPS",
            Subject::NginxHttp => "nginx, plain HTTP",
            Subject::OutpostKvRead => {
                "Outpost, HTTPS, kv-counter: one KV get per request (GET /api/docs/bench)"
            }
            Subject::OutpostKvWrite => {
                "Outpost, HTTPS, kv-counter: one durable KV increment per request (GET /)"
            }
        }
    }

    /// What `outpost-load` is told beyond the URL: the protocol, where it is not HTTP/1.1.
    fn load_args(self) -> Vec<String> {
        match self {
            Subject::OutpostHttp3 => vec!["--http3".into()],
            _ => Vec::new(),
        }
    }

    fn start(self, tools: &Tools) -> anyhow::Result<(Server, String)> {
        let data = tools.work.join(format!("data-{self:?}"));
        let (server, https) = match self {
            Subject::OutpostHttps => (
                systems::outpost(tools, "outpost", Hello, 4096, &data)?,
                true,
            ),
            Subject::OutpostHttp => (
                systems::outpost(tools, "outpost", Hello, 4096, &data)?,
                false,
            ),
            Subject::OutpostHttp3 => (
                systems::outpost(tools, "outpost-h3", Hello, 4096, &data)?,
                true,
            ),
            Subject::OutpostHttpsMadvise => (
                systems::outpost(tools, "outpost-madvise", Hello, 0, &data)?,
                true,
            ),
            Subject::OutpostKvRead | Subject::OutpostKvWrite => (
                systems::outpost(tools, "outpost-kv", KvCounter, 4096, &data)?,
                true,
            ),
            Subject::WasmtimeReference => (
                systems::wasmtime(
                    tools,
                    "wasmtime",
                    &["pooling-allocator", "pooling-decommit-batch-size=64"],
                )?,
                false,
            ),
            Subject::WasmtimeTuned => (
                systems::wasmtime(tools, "wasmtime-tuned", &WASMTIME_BEST)?,
                false,
            ),
            Subject::BareHttps => (systems::bare(tools)?, true),
            Subject::BareHttp => (systems::bare(tools)?, false),
            Subject::NginxHttps => (systems::nginx(tools)?, true),
            Subject::NginxHttp => (systems::nginx(tools)?, false),
        };
        let url = if https {
            server.https.clone()
        } else {
            server.http.clone()
        };
        let url = url.with_context(|| format!("{} has no such listener", self.label()))?;
        if self == Subject::OutpostKvRead {
            // The document every request reads, written once through the handler itself.
            let plain = server.http.as_deref().context("plain listener")?;
            let body = r#"{"bench":true,"note":"read by every request"}"#;
            let answer = plain_exchange(
                plain,
                &format!(
                    "PUT /api/docs/bench HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )?;
            if !answer.starts_with("HTTP/1.1 2") {
                bail!("seeding the KV document got: {answer}");
            }
            return Ok((server, format!("{url}api/docs/bench")));
        }
        Ok((server, url))
    }
}

/// A row of the large-guest table: a JavaScript or Python hello on Outpost (a fresh instance
/// per request, or reused instances) or on `wasmtime serve` at its best settings, all over
/// plain HTTP (the only protocol `wasmtime serve` speaks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestSubject {
    /// A JavaScript or Python hello on Outpost.
    Outpost {
        /// The guest's language.
        lang: Lang,
        /// Whether instances are reused across requests (`[instance] reuse = true`) instead of
        /// a fresh one per request.
        reuse: bool,
    },
    /// The same guest under `wasmtime serve -S cli -S config` with the tuned row's `-O` settings.
    Wasmtime(Lang),
}

impl GuestSubject {
    /// Every large-guest row, in measuring order: per language, Outpost with fresh instances,
    /// Outpost with reuse, then `wasmtime serve`.
    pub const ALL: [GuestSubject; 6] = [
        GuestSubject::Outpost {
            lang: Lang::Js,
            reuse: false,
        },
        GuestSubject::Outpost {
            lang: Lang::Js,
            reuse: true,
        },
        GuestSubject::Wasmtime(Lang::Js),
        GuestSubject::Outpost {
            lang: Lang::Python,
            reuse: false,
        },
        GuestSubject::Outpost {
            lang: Lang::Python,
            reuse: true,
        },
        GuestSubject::Wasmtime(Lang::Python),
    ];

    /// The guest language this row runs.
    pub fn lang(self) -> Lang {
        match self {
            GuestSubject::Outpost { lang, .. } | GuestSubject::Wasmtime(lang) => lang,
        }
    }

    /// The row's description in the report, without the language (each language has its own table).
    pub fn label(self) -> String {
        match self {
            GuestSubject::Outpost { reuse: false, .. } => {
                "Outpost, a fresh instance per request (the default)".into()
            }
            GuestSubject::Outpost { reuse: true, .. } => {
                "Outpost, `[instance] reuse = true`".into()
            }
            GuestSubject::Wasmtime(_) => {
                "wasmtime serve -S cli -S config, the tuned row's -O settings".into()
            }
        }
    }

    fn start(self, tools: &Tools) -> anyhow::Result<(Server, String)> {
        let server = match self {
            GuestSubject::Outpost { lang, reuse } => systems::outpost(
                tools,
                &format!("outpost-{lang:?}-{reuse}"),
                Guest(lang, reuse),
                4096,
                // One data directory for these rows: its compile cache is content-addressed,
                // so each component is compiled once per run.
                &tools.work.join("data-guests"),
            )?,
            GuestSubject::Wasmtime(lang) => systems::wasmtime_serving(
                tools,
                &format!("wasmtime-{lang:?}"),
                &WASMTIME_BEST,
                &["cli", "config"],
                lang.component(&tools.guests, false),
            )?,
        };
        let url = server.http.clone().context("plain listener")?;
        Ok((server, url))
    }
}

/// `wasmtime serve`'s best `-O` settings found here (its tuned row).
const WASMTIME_BEST: [&str; 5] = [
    "pooling-allocator",
    "pooling-decommit-batch-size=64",
    "pooling-memory-keep-resident=4194304",
    "pooling-table-keep-resident=4194304",
    "pooling-pagemap-scan=auto",
];

/// One measured run: the load generator's report, its command line, and the server's CPU time
/// per answered request over the measured span (µs).
pub struct Measured {
    /// The load generator's report of the measured run (the warm-up run is not in it).
    pub report: Report,
    /// The `outpost-load` command line as shown in the report, with the warm-up noted.
    pub shown: String,
    /// Server CPU time (its whole process tree) per answered request over the measured span, µs.
    pub cpu_us: f64,
    /// Outpost only: instances created per request, and their mean instantiation time (µs).
    pub instantiations: Option<(f64, f64)>,
}

/// Warm `server` up at `url`, then load it for the measured span, counting its CPU time.
pub fn measure(
    tools: &Tools,
    args: &Args,
    server: &Server,
    url: &str,
    connections: usize,
    extra: &[String],
) -> anyhow::Result<Measured> {
    if args.warmup > 0.0 {
        run_load(tools, args, url, connections, args.warmup, extra)?;
    }
    let before = cpu::process_tree_seconds(server.pid());
    let instantiated = systems::instantiations(server);
    let (report, shown) = run_load(tools, args, url, connections, args.duration, extra)?;
    let spent = cpu::process_tree_seconds(server.pid()) - before;
    let requests = report.requests.max(1) as f64;
    let instantiations = match (instantiated, systems::instantiations(server)) {
        (Some((count0, sum0)), Some((count1, sum1))) => {
            let created = count1 - count0;
            let mean_us = if created > 0.0 {
                (sum1 - sum0) * 1e6 / created
            } else {
                0.0
            };
            Some((created / requests, mean_us))
        }
        _ => None,
    };
    Ok(Measured {
        cpu_us: spent * 1e6 / requests,
        report,
        shown,
        instantiations,
    })
}

/// Run `outpost-load` against `url` for `duration` seconds and parse its JSON report.
fn run_load(
    tools: &Tools,
    args: &Args,
    url: &str,
    connections: usize,
    duration: f64,
    extra: &[String],
) -> anyhow::Result<(Report, String)> {
    let mut command = Command::new(tools.bin_dir.join("outpost-load"));
    command
        .arg(url)
        .args(["--connections", &connections.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--duration", &duration.to_string()])
        .args(["--warmup", "0"])
        .arg("--ca")
        .arg(tools.work.join("certs/ca.pem"))
        .arg("--json")
        .args(extra);
    let shown = format!(
        "outpost-load {url} --connections {connections} --threads {} --duration {duration} --ca ca.pem {} \
         (after a {} s warm-up run)",
        args.threads,
        extra.join(" "),
        args.warmup
    );
    let output = command.output().context("running outpost-load")?;
    if !output.status.success() {
        bail!(
            "outpost-load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok((report_from_json(&report)?, shown))
}

fn report_from_json(value: &serde_json::Value) -> anyhow::Result<Report> {
    Ok(Report {
        target: value["target"].as_str().unwrap_or_default().to_string(),
        protocol: match value["protocol"].as_str() {
            Some("h2") => "h2",
            Some("h3") => "h3",
            _ => "http/1.1",
        },
        tls: value["tls"].as_bool().unwrap_or(false),
        connections: value["connections"].as_u64().unwrap_or(0) as usize,
        mode: value["mode"].as_str().unwrap_or_default().to_string(),
        seconds: value["seconds"].as_f64().unwrap_or(0.0),
        requests: value["requests"].as_u64().unwrap_or(0),
        rps: value["rps"].as_f64().unwrap_or(0.0),
        latency_us: serde_json::from_value(value["latency_us"].clone())
            .context("latency in the report")?,
        errors: serde_json::from_value(value["errors"].clone()).unwrap_or_default(),
        statuses: serde_json::from_value(value["statuses"].clone()).unwrap_or_default(),
    })
}

/// A subject's runs, one per round.
pub struct Row<S> {
    /// The system this row measures.
    pub subject: S,
    /// The load generator's report from each round, in round order.
    pub reports: Vec<Report>,
    /// Server CPU µs per request, per round.
    pub cpu_us: Vec<f64>,
    /// Instances the node created per request and the mean instantiation time (µs), per round
    /// (Outpost only).
    pub instantiations: Vec<(f64, f64)>,
}

impl<S> Row<S> {
    fn new(subject: S) -> Self {
        Row {
            subject,
            reports: Vec::new(),
            cpu_us: Vec::new(),
            instantiations: Vec::new(),
        }
    }

    fn record(&mut self, measured: &Measured) {
        self.reports.push(measured.report.clone());
        self.cpu_us.push(measured.cpu_us);
        if let Some(instantiations) = measured.instantiations {
            self.instantiations.push(instantiations);
        }
    }
}

/// Open-loop latency at half of Outpost's peak: Outpost over HTTPS and the bare hyper+rustls
/// server at the same rate, taking turns, one run each per round.
pub struct HalfRate {
    /// Requests per second, sent on schedule whatever the answers do.
    pub rate: f64,
    /// Outpost's reports, one per round.
    pub outpost: Vec<Report>,
    /// The bare server's, one per round.
    pub bare: Vec<Report>,
    /// Outpost's command line.
    pub shown: String,
}

/// Everything measured in one run of the harness.
pub struct Results {
    /// The throughput table: one row per [`Subject`], in `Subject::ALL` order.
    pub throughput: Vec<Row<Subject>>,
    /// The large-guest tables: one row per [`GuestSubject`], in `GuestSubject::ALL` order.
    pub guests: Vec<Row<GuestSubject>>,
    /// (language, reuse) -> (cached restart: load ms, first request µs).
    pub guest_cold: Vec<((Lang, bool), u64, u64)>,
    /// `(subject, command line)` for each row's first-round run, listed in the report's commands
    /// section.
    pub commands: Vec<(String, String)>,
    /// The open-loop runs at half of `OutpostHttps`'s median peak, Outpost and the bare server
    /// at the same rate; `None` when that peak was 0.
    pub half_rate: Option<HalfRate>,
    /// First start on an empty data directory, compiling the component: deploy ms from the node's
    /// log.
    pub cold_compiled_ms: u64,
    /// That start's first request, µs from connecting to the whole response.
    pub cold_compiled_first_us: u64,
    /// Restart that loads the component from the compile cache: deploy ms from the node's log.
    pub cold_cached_ms: u64,
    /// That restart's first request, µs from connecting to the whole response.
    pub cold_cached_first_us: u64,
    /// After the first start (which compiled the component).
    pub idle_rss_kib: u64,
    /// After a restart that loaded it from the cache.
    pub idle_rss_cached_kib: u64,
    /// The run with `--many` connections over HTTPS: (report, peak RSS KiB sampled every 100 ms,
    /// command line).
    pub many: Option<(Report, u64, String)>,
    /// Median of the `instantiate_hello` criterion bench, µs, read from `target/criterion`; `None`
    /// when that bench has not been run.
    pub instantiate_p50_us: Option<f64>,
    /// The UTC time as `YYYY-MM-DD HH:MM UTC`, from `date` when the results are assembled (empty if
    /// `date` fails).
    pub started: String,
    /// Wall time of the whole harness run, up to assembling the results.
    pub elapsed: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started_at = Instant::now();
    let tools = setup(&args)?;
    eprintln!("outpost-bench: work directory {}", tools.work.display());

    let mut throughput: Vec<Row<Subject>> = Subject::ALL.iter().map(|s| Row::new(*s)).collect();
    let mut guests: Vec<Row<GuestSubject>> =
        GuestSubject::ALL.iter().map(|s| Row::new(*s)).collect();
    let mut commands = Vec::new();
    for round in 0..args.rounds {
        for row in throughput.iter_mut() {
            let (server, url) = row.subject.start(&tools)?;
            let load_args = row.subject.load_args();
            let measured = measure(&tools, &args, &server, &url, args.connections, &load_args)?;
            eprintln!(
                "round {} {:<70} {:>9.0} req/s  p99 {:>6} us  cpu {:>6.1} us/req  errors {}",
                round + 1,
                row.subject.label(),
                measured.report.rps,
                measured.report.latency_us.p99,
                measured.cpu_us,
                measured.report.error_count()
            );
            if round == 0 {
                commands.push((format!("{:?}", row.subject), measured.shown.clone()));
            }
            row.record(&measured);
            drop(server);
        }
        for row in guests.iter_mut() {
            let (server, url) = row.subject.start(&tools)?;
            let measured = measure(&tools, &args, &server, &url, args.guest_connections, &[])?;
            eprintln!(
                "round {} {:<12} {:<58} {:>9.0} req/s  p99 {:>6} us  cpu {:>7.1} us/req  errors {}",
                round + 1,
                format!("{:?}", row.subject.lang()),
                row.subject.label(),
                measured.report.rps,
                measured.report.latency_us.p99,
                measured.cpu_us,
                measured.report.error_count()
            );
            if round == 0 {
                commands.push((format!("{:?}", row.subject), measured.shown.clone()));
            }
            row.record(&measured);
            drop(server);
        }
    }

    // Cached cold start of the JavaScript and Python hellos: the rows above compiled them into
    // this data directory's cache, so a start now loads from it.
    let mut guest_cold = Vec::new();
    for lang in [Lang::Js, Lang::Python] {
        for reuse in [false, true] {
            let dir = tools.work.join("data-guests");
            let (ms, first_us, _) = cold_start(&tools, Guest(lang, reuse), &dir)?;
            guest_cold.push(((lang, reuse), ms, first_us));
        }
    }

    // Latency at half of Outpost's peak, open loop, beside the bare server at the same rate.
    let peak = median(throughput[0].reports.iter().map(|r| r.rps).collect());
    let half_rate = if peak > 0.0 {
        let rate = (peak / 2.0).round();
        let paced = ["--rate".to_string(), rate.to_string()];
        let mut half = HalfRate {
            rate,
            outpost: Vec::new(),
            bare: Vec::new(),
            shown: String::new(),
        };
        for _ in 0..args.rounds {
            for subject in [Subject::OutpostHttps, Subject::BareHttps] {
                let (server, url) = subject.start(&tools)?;
                let Measured { report, shown, .. } =
                    measure(&tools, &args, &server, &url, args.connections, &paced)?;
                eprintln!(
                    "open loop at {rate} req/s, {}: p50 {} p99 {} p99.9 {} us",
                    subject.label(),
                    report.latency_us.p50,
                    report.latency_us.p99,
                    report.latency_us.p999
                );
                drop(server);
                match subject {
                    Subject::OutpostHttps => {
                        half.shown = shown;
                        half.outpost.push(report);
                    }
                    _ => half.bare.push(report),
                }
            }
        }
        Some(half)
    } else {
        None
    };

    // Cold start: a never-compiled component, then a restart that loads it from the cache.
    let cold_dir = tools.work.join("data-cold");
    let _ = std::fs::remove_dir_all(&cold_dir);
    let (cold_compiled_ms, cold_compiled_first_us, idle_rss_kib) =
        cold_start(&tools, Hello, &cold_dir)?;
    let (cold_cached_ms, cold_cached_first_us, idle_rss_cached_kib) =
        cold_start(&tools, Hello, &cold_dir)?;

    // Memory and errors with many connections at once.
    let many = {
        let (server, url) = Subject::OutpostHttps.start(&tools)?;
        let pid = server.pid();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while let Some(rss) = systems::rss_kib(pid) {
                peak = peak.max(rss);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let Measured { report, shown, .. } = measure(&tools, &args, &server, &url, args.many, &[])?;
        drop(server);
        let peak = sampler.join().unwrap_or(0);
        eprintln!(
            "{} connections: {:.0} req/s, {} errors, peak RSS {} MiB",
            args.many,
            report.rps,
            report.error_count(),
            peak / 1024
        );
        Some((report, peak, shown))
    };

    let results = Results {
        throughput,
        guests,
        guest_cold,
        commands,
        half_rate,
        cold_compiled_ms,
        cold_compiled_first_us,
        cold_cached_ms,
        cold_cached_first_us,
        idle_rss_kib,
        idle_rss_cached_kib,
        many,
        instantiate_p50_us: criterion_median("instantiate_hello"),
        started: utc_now(),
        elapsed: started_at.elapsed(),
    };
    std::fs::write(&args.out, write::markdown(&args, &results))?;
    eprintln!("outpost-bench: wrote {}", args.out.display());
    Ok(())
}

/// Start Outpost serving `app` on `data`, and return (deploy ms from its log, first request µs,
/// idle RSS KiB).
fn cold_start(
    tools: &Tools,
    app: systems::BenchApp,
    data: &Path,
) -> anyhow::Result<(u64, u64, u64)> {
    let server = systems::outpost(tools, "outpost-cold", app, 4096, data)?;
    let deploy_ms = server
        .output()
        .lines()
        .find(|l| l.contains("app deployed"))
        .and_then(|l| l.split("millis=").nth(1))
        .and_then(|m| m.split_whitespace().next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    let idle = server.rss_kib().unwrap_or(0);
    let url = server.http.clone().context("plain listener")?;
    let started = Instant::now();
    let response = plain_exchange(
        &url,
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )?;
    let first = started.elapsed();
    if !response.starts_with("HTTP/1.1 200") {
        bail!("the first request got: {response}");
    }
    Ok((deploy_ms, first.as_micros() as u64, idle))
}

/// Send one raw HTTP/1.1 request (with `connection: close`) to a plain `http://` URL and
/// return the whole response.
fn plain_exchange(url: &str, request: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(authority)
        .with_context(|| format!("connecting to {authority}"))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn setup(args: &Args) -> anyhow::Result<Tools> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guest = |name: &str| {
        let path = repo.join(format!("target/guests/wasm32-wasip2/release/{name}.wasm"));
        if path.exists() {
            Ok(path)
        } else {
            Err(anyhow!(
                "{} is missing: scripts/guest-toolchain build examples",
                path.display()
            ))
        }
    };
    let (hello, kv_counter) = (guest("hello")?, guest("kv_counter")?);
    let work = std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    eprintln!("outpost-bench: building the JavaScript and Python hellos (outpost build)");
    let guests = systems::build_guests(&bin_dir, &repo, &work)?;
    let certs = work.join("certs");
    let ca = outpost_net::pki::CertAuthority::create(&certs, "ca", "outpost-bench CA")?;
    let (cert, key) = ca.issue(
        &certs,
        "localhost",
        &["localhost".into(), "127.0.0.1".into()],
        outpost_net::pki::Usage::Server,
        30,
    )?;
    Ok(Tools {
        bin_dir,
        hello,
        kv_counter,
        guests,
        wasmtime: args.wasmtime.clone(),
        nginx: systems::find_program("nginx", &["/usr/sbin/nginx"])?,
        cert,
        key,
        work,
    })
}

/// The median of `values`, the mean of the middle two for an even count; 0 for an empty list.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn criterion_median(bench: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/criterion/{bench}/new/estimates.json"));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    value["median"]["point_estimate"]
        .as_f64()
        .map(|ns| ns / 1000.0)
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
