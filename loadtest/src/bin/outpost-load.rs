//! `outpost-load URL`: load a loopback HTTP(S) server and report throughput and latency.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use outpost_load::{LoadSpec, Protocol, Target, run};

#[derive(Parser)]
#[command(
    name = "outpost-load",
    about = "Load a loopback HTTP(S) server; report req/s and latency percentiles"
)]
struct Args {
    /// http(s)://127.0.0.1:PORT/path (loopback only)
    url: String,
    /// Concurrent connections.
    #[arg(short, long, default_value_t = 64)]
    connections: usize,
    /// Use HTTP/2 (ALPN h2 over TLS, prior knowledge over plain HTTP).
    #[arg(long, conflicts_with = "http3")]
    http2: bool,
    /// Use HTTP/3 (QUIC to the URL's port over UDP; https:// only).
    #[arg(long)]
    http3: bool,
    /// Requests in flight per HTTP/2 or HTTP/3 connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Generator threads.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Measured seconds (after the warm-up).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds, not counted.
    #[arg(short, long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Open loop: total requests per second (latency from each request's intended send time).
    #[arg(short, long)]
    rate: Option<f64>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// CA certificate (PEM) to verify the server; without it, any certificate is accepted.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = Target::parse(&args.url).and_then(|target| {
        run(&LoadSpec {
            target,
            protocol: match (args.http2, args.http3) {
                (true, _) => Protocol::Http2,
                (_, true) => Protocol::Http3,
                _ => Protocol::Http1,
            },
            connections: args.connections.max(1),
            streams: args.streams,
            threads: args.threads,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            max_requests: args.requests,
            rate: args.rate,
            timeout: Duration::from_secs_f64(args.timeout),
            ca: args.ca,
        })
    });
    match result {
        Ok(report) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
