//! What a run measured: counts, errors by kind, and latency percentiles from HDR histograms.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{LoadSpec, Protocol, Scheme};

/// Per-thread tallies, merged at the end of a run.
#[derive(Clone)]
pub(crate) struct Stats {
    latency_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            // 1 µs to 60 s at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            statuses: BTreeMap::new(),
        }
    }

    pub(crate) fn record(&mut self, status: u16, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.latency_us
            .record(micros)
            .expect("latency within bounds");
        *self.statuses.entry(status).or_default() += 1;
    }

    pub(crate) fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("same histogram bounds");
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Latency {
    /// 50th percentile (the median), µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// The slowest response, µs.
    pub max: u64,
    /// The arithmetic mean, µs.
    pub mean: f64,
}

/// What one run measured, printed as text or (with `--json`) serialized as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The URL loaded, as `scheme://host:port/path?query`.
    pub target: String,
    /// `"http/1.1"` or `"h2"`.
    pub protocol: &'static str,
    /// Whether the connections used TLS.
    pub tls: bool,
    /// Connections the run kept open.
    pub connections: usize,
    /// `"closed loop"` or `"open loop at N req/s"`.
    pub mode: String,
    /// Length of the measured window in seconds (the warm-up excluded).
    pub seconds: f64,
    /// Responses received inside the measured window.
    pub requests: u64,
    /// Responses per second over the measured window.
    pub rps: f64,
    /// Latency of the responses in the measured window; open loop measures from each request's
    /// intended send time.
    pub latency_us: Latency,
    /// Error counts by kind (`connect`, `tls`, `io`, `timeout`, or `status_NNN` for a status
    /// outside 200..400), over the whole run, warm-up included.
    pub errors: BTreeMap<String, u64>,
    /// Responses by HTTP status, in the measured window.
    pub statuses: BTreeMap<u16, u64>,
}

impl Report {
    pub(crate) fn new(spec: &LoadSpec, stats: &Stats, measured: Duration) -> Report {
        let h = &stats.latency_us;
        let requests = h.len();
        let seconds = measured.as_secs_f64().max(1e-9);
        Report {
            target: format!(
                "{}://{}:{}{}",
                if spec.target.scheme == Scheme::Https {
                    "https"
                } else {
                    "http"
                },
                spec.target.host,
                spec.target.addr.port(),
                spec.target.path_and_query
            ),
            protocol: match spec.protocol {
                Protocol::Http1 => "http/1.1",
                Protocol::Http2 => "h2",
                Protocol::Http3 => "h3",
            },
            tls: spec.target.scheme == Scheme::Https,
            connections: spec.connections,
            mode: match spec.rate {
                Some(rate) => format!("open loop at {rate:.0} req/s"),
                None => "closed loop".to_string(),
            },
            seconds,
            requests,
            rps: requests as f64 / seconds,
            latency_us: Latency {
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            },
            errors: stats.errors.clone(),
            statuses: stats.statuses.clone(),
        }
    }

    /// All errors of every kind, summed.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        writeln!(
            f,
            "{} {} ({}), {} connections, {:.1} s",
            self.target, self.protocol, self.mode, self.connections, self.seconds
        )?;
        writeln!(f, "  {} requests, {:.0} req/s", self.requests, self.rps)?;
        writeln!(
            f,
            "  latency us: p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.0}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if self.errors.is_empty() {
            write!(f, "  errors: none")
        } else {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, "  errors: {}", errors.join(", "))
        }
    }
}
