//! Prometheus metrics for a node or an origin.
//!
//! One registry per process. Counters and histograms on the request path are resolved per app
//! once, when the app is deployed ([`AppMetrics`]), so a request pays for atomic adds and not
//! for label lookups. Gauges that mirror state owned elsewhere (pool slots, live versions) are
//! filled in just before each scrape by whoever serves `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Instantiation buckets in seconds: 2 µs to 10 ms.
const INSTANTIATE_BUCKETS: &[f64] = &[
    0.000002, 0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.01,
];

/// Every metric the process exports, in one registry; get it with [`metrics`].
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    /// `outpost_requests_total`: requests answered, by app, status class, protocol and TLS.
    pub requests: IntCounterVec,
    /// `outpost_request_duration_seconds`: from a request's arrival to its response head, by app.
    pub request_seconds: HistogramVec,
    /// `outpost_guest_cpu_seconds`: time running the guest (not waiting on I/O) per request, by
    /// app.
    pub guest_seconds: HistogramVec,
    /// `outpost_instantiate_duration_seconds`: instantiating a component from the pool for one
    /// request.
    pub instantiate_seconds: Histogram,
    /// `outpost_guest_failures_total`: requests a guest did not answer, by app and kind (`trap`,
    /// `cpu_limit`, `timeout`, ...).
    pub guest_failures: IntCounterVec,
    /// `outpost_guest_log_dropped_total`: guest stdout/stderr lines dropped over the app's log
    /// budget, by app.
    pub guest_log_dropped: IntCounterVec,
    /// `outpost_guest_cpu_turns_waited_total`: slices of long-running guests (past 10 ms of CPU)
    /// that waited for a turn on a CPU share, by app.
    pub cpu_turns_waited: IntCounterVec,
    /// `outpost_pool_slots`: instance pool slots in all.
    pub pool_slots: IntGauge,
    /// `outpost_pool_slots_in_use`: pool slots serving a request right now.
    pub pool_slots_in_use: IntGauge,
    /// `outpost_instance_memory_bytes`: linear memory held by live instances, in bytes.
    pub instance_memory: IntGauge,
    /// `outpost_pool_queue_depth`: requests waiting for a pool slot right now.
    pub pool_queue_depth: IntGauge,
    /// `outpost_pool_wait_seconds`: how long a request that found no slot free waited for
    /// one (whether it got one or was refused), by pool (`node`, or `app` for an app's share).
    pub pool_wait_seconds: HistogramVec,
    /// `outpost_outbound_requests_total`: handlers' outbound requests, by app and outcome
    /// (`ok`: a response came; `refused`: the node's rules stopped it; `failed`: resolving,
    /// connecting, TLS or the first byte failed or timed out).
    pub outbound_requests: IntCounterVec,
    /// `outpost_outbound_duration_seconds`: from an outbound request being sent to its
    /// response head, by app.
    pub outbound_seconds: HistogramVec,
    /// `outpost_tls_certificate_expiry_timestamp_seconds`: when each served certificate
    /// expires (its leaf's notAfter, Unix seconds), by certificate file.
    pub certificate_expiry: IntGaugeVec,
    /// `outpost_tls_handshakes_total`: TLS handshakes completed.
    pub tls_handshakes: IntCounter,
    /// `outpost_tls_handshake_failures_total`: TLS handshakes that failed, by reason (`error`,
    /// `timeout`).
    pub tls_handshake_failures: IntCounterVec,
    /// `outpost_connections_closed_total`: connections closed for a deadline, by reason
    /// (`no_first_request`, `idle`).
    pub connections_closed: IntCounterVec,
    /// `outpost_connections_open`: client connections open on this process's listeners
    /// (from accept to close, the TLS handshake included).
    pub connections_open: IntGauge,
    /// `outpost_connections_refused_total`: connections refused at accept, by reason
    /// (`per_client`).
    pub connections_refused: IntCounterVec,
    /// `outpost_kv_reads_total`: KV reads by handlers (get, exists, list), by app.
    pub kv_reads: IntCounterVec,
    /// `outpost_kv_writes_total`: KV writes by handlers, by app and outcome (`ok`, `error`).
    pub kv_writes: IntCounterVec,
    /// `outpost_kv_applied_version`: the KV version this node's replica has made durable.
    pub kv_applied_version: IntGauge,
    /// `outpost_kv_replication_lag_versions`: versions this node knows exist but has not applied.
    pub kv_lag_versions: IntGauge,
    /// `outpost_kv_replication_lag_seconds`: how long the KV replica has been behind the newest
    /// version it knows of (0 when caught up).
    pub kv_lag_seconds: Gauge,
    /// `outpost_kv_propagation_seconds`: from the origin committing a KV entry to this node making
    /// it durable.
    pub kv_propagation_seconds: Histogram,
    /// `outpost_kv_link_bytes_total`: bytes of KV messages on cluster links (the replication
    /// feed, writes and their answers, peers' messages), by direction (`sent`, `received`).
    pub kv_link_bytes: IntCounterVec,
    /// `outpost_link_up`: 1 while a cluster link is connected, 0 while not, by link
    /// (`origin`, `peer/NAME`).
    pub link_up: IntGaugeVec,
    /// `outpost_app_live`: 1 for the version each app serves on this node, by app and component
    /// sha256.
    pub app_live: IntGaugeVec,
    /// `outpost_app_traffic_percent`: for an app whose traffic is split between versions, each
    /// version's share on this node, by app and version.
    pub app_traffic_percent: IntGaugeVec,
    /// `outpost_trigger_ticks_total`: cron triggers' ticks as this node saw them, by app and
    /// outcome (`ok`, `error`: fired here, by the handler's status; `taken`: another node
    /// fired it; `unclaimed`: the origin was out of reach; `refused`: the origin refused the
    /// claim; `missed`: ticks no node could claim, counted by the node that fired the next).
    pub trigger_ticks: IntCounterVec,
    /// `outpost_ready`: 1 while `/readyz` says ready, 0 otherwise.
    pub ready: IntGauge,
    /// `outpost_origin_nodes_connected`: at the origin, the nodes connected to it.
    pub origin_nodes_connected: IntGauge,
    /// `outpost_origin_kv_version`: at the origin, the newest KV version it has committed.
    pub origin_kv_version: IntGauge,
    /// `outpost_admin_requests_total`: admin API requests at the origin, by status class.
    pub admin_requests: IntCounterVec,
}

/// A registry that remembers the names registered in it (a family with no samples yet is
/// left out of a scrape, but it exists).
struct Names {
    registry: Registry,
    names: Vec<String>,
}

impl Names {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&mut self, metric: C) -> C {
        self.register(Box::new(metric.clone()));
        metric
    }

    fn register(&mut self, collector: Box<dyn prometheus::core::Collector>) {
        for desc in collector.desc() {
            self.names.push(desc.fq_name.clone());
        }
        self.registry
            .register(collector)
            .expect("unique metric names");
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn float_gauge(&mut self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }
}

impl Metrics {
    fn new() -> Self {
        let mut r = Names {
            registry: Registry::new(),
            names: Vec::new(),
        };
        Metrics {
            requests: r.counter_vec(
                "outpost_requests_total",
                "Requests answered, by app, status class, protocol and TLS",
                &["app", "status", "protocol", "tls"],
            ),
            request_seconds: r.histogram_vec("outpost_request_duration_seconds",
                "From the request's arrival to the response head, by app",
                &["app"],
                LATENCY_BUCKETS,
            ),
            guest_seconds: r.histogram_vec("outpost_guest_cpu_seconds",
                "Time spent running the guest (not waiting on I/O) per request, by app",
                &["app"],
                LATENCY_BUCKETS,
            ),
            instantiate_seconds: r.histogram("outpost_instantiate_duration_seconds",
                "Instantiating a component from the pool for one request",
                INSTANTIATE_BUCKETS,
            ),
            guest_failures: r.counter_vec(
                "outpost_guest_failures_total",
                "Requests a guest did not answer, by app and kind (trap, cpu_limit, memory_limit, timeout, pool_busy, ...)",
                &["app", "kind"],
            ),
            guest_log_dropped: r.counter_vec(
                "outpost_guest_log_dropped_total",
                "Guest stdout/stderr lines dropped because the app wrote more than its log budget, by app",
                &["app"],
            ),
            cpu_turns_waited: r.counter_vec(
                "outpost_guest_cpu_turns_waited_total",
                "Slices of long-running guests (past 10 ms of CPU) that waited for a turn on the app's or the node's CPU share, by app",
                &["app"],
            ),
            pool_slots: r.gauge("outpost_pool_slots", "Instance pool slots"),
            pool_slots_in_use: r.gauge("outpost_pool_slots_in_use",
                "Instance pool slots serving a request right now",
            ),
            instance_memory: r.gauge("outpost_instance_memory_bytes",
                "Linear memory held by live instances, against [pool] memory_budget_mb",
            ),
            pool_queue_depth: r.gauge("outpost_pool_queue_depth",
                "Requests waiting for an instance pool slot right now",
            ),
            pool_wait_seconds: r.histogram_vec("outpost_pool_wait_seconds",
                "How long a request that found no slot free waited (got one or was refused), by pool (node, app)",
                &["pool"],
                LATENCY_BUCKETS,
            ),
            outbound_requests: r.counter_vec(
                "outpost_outbound_requests_total",
                "Handlers' outbound requests, by app and outcome (ok, refused, failed)",
                &["app", "outcome"],
            ),
            outbound_seconds: r.histogram_vec("outpost_outbound_duration_seconds",
                "From an outbound request being sent to its response head, by app",
                &["app"],
                LATENCY_BUCKETS,
            ),
            certificate_expiry: r.gauge_vec(
                "outpost_tls_certificate_expiry_timestamp_seconds",
                "When each served TLS certificate expires (its leaf's notAfter, Unix seconds), by certificate file",
                &["cert"],
            ),
            tls_handshakes: r.counter("outpost_tls_handshakes_total",
                "TLS handshakes completed",
            ),
            tls_handshake_failures: r.counter_vec(
                "outpost_tls_handshake_failures_total",
                "TLS handshakes that failed, by reason (error, timeout)",
                &["reason"],
            ),
            connections_closed: r.counter_vec(
                "outpost_connections_closed_total",
                "Connections the node closed for a deadline (no_first_request, idle)",
                &["reason"],
            ),
            connections_open: r.gauge(
                "outpost_connections_open",
                "Client connections open on this process's listeners, TLS handshakes included",
            ),
            connections_refused: r.counter_vec(
                "outpost_connections_refused_total",
                "Connections refused at accept (per_client: the client's cap was reached)",
                &["reason"],
            ),
            kv_reads: r.counter_vec(
                "outpost_kv_reads_total",
                "KV reads by handlers (get, exists, list), by app",
                &["app"],
            ),
            kv_writes: r.counter_vec(
                "outpost_kv_writes_total",
                "KV writes by handlers (set, delete, atomics, batches), by app and outcome",
                &["app", "outcome"],
            ),
            kv_applied_version: r.gauge("outpost_kv_applied_version",
                "The KV version this node's replica has made durable",
            ),
            kv_lag_versions: r.gauge("outpost_kv_replication_lag_versions",
                "Versions this node knows exist but has not applied yet",
            ),
            kv_lag_seconds: r.float_gauge(
                "outpost_kv_replication_lag_seconds",
                "How long this node's KV replica has been behind the newest version it knows of (0 when caught up)",
            ),
            kv_propagation_seconds: r.histogram("outpost_kv_propagation_seconds",
                "From the origin committing a KV entry to this node making it durable",
                LATENCY_BUCKETS,
            ),
            kv_link_bytes: r.counter_vec(
                "outpost_kv_link_bytes_total",
                "Bytes of KV messages on cluster links (the feed, writes, answers, peers'), by direction",
                &["direction"],
            ),
            link_up: r.gauge_vec("outpost_link_up",
                "Cluster links: 1 connected, 0 not (link=\"origin\" or \"peer/NAME\")",
                &["link"],
            ),
            app_live: r.gauge_vec("outpost_app_live",
                "The version each app serves on this node (value 1), by app and component sha256",
                &["app", "sha256"],
            ),
            app_traffic_percent: r.gauge_vec("outpost_app_traffic_percent",
                "For an app split between versions, each version's share of its traffic in percent",
                &["app", "version"],
            ),
            ready: r.gauge("outpost_ready",
                "1 while /readyz says ready, 0 otherwise",
            ),
            trigger_ticks: r.counter_vec(
                "outpost_trigger_ticks_total",
                "Cron triggers' ticks as this node saw them, by app and outcome",
                &["app", "outcome"],
            ),
            origin_nodes_connected: r.gauge("outpost_origin_nodes_connected",
                "Nodes connected to this origin",
            ),
            origin_kv_version: r.gauge("outpost_origin_kv_version",
                "The newest KV version this origin has committed",
            ),
            admin_requests: r.counter_vec(
                "outpost_admin_requests_total",
                "Admin API requests at the origin, by status class",
                &["status"],
            ),
            registry: {
                // Which build serves (a gauge at 1, by version), and the process's own CPU,
                // memory, open files and threads (`process_*`, from /proc).
                r.gauge_vec(
                    "outpost_build_info",
                    "The build of outpost this process runs (value 1), by version",
                    &["version"],
                )
                .with_label_values(&[env!("CARGO_PKG_VERSION")])
                .set(1);
                #[cfg(target_os = "linux")]
                r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
                r.registry
            },
            names: r.names,
        }
    }

    /// Every metric family's name.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|err| format!("# encoding metrics failed: {err}\n"))
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

/// "2xx" for 204, and so on.
pub fn status_class(status: u16) -> &'static str {
    CLASSES[class_index(status)]
}

/// An app's request-path metrics, resolved once per deployment.
pub struct AppMetrics {
    /// By status class, then HTTP version (h1, h2, h3), then plain or TLS.
    requests: [[[IntCounter; 2]; 3]; 5],
    /// This app's `outpost_request_duration_seconds`.
    pub request_seconds: Histogram,
    /// This app's `outpost_guest_cpu_seconds`.
    pub guest_seconds: Histogram,
    /// This app's `outpost_kv_reads_total`.
    pub kv_reads: IntCounter,
    /// This app's `outpost_kv_writes_total` with `outcome="ok"`.
    pub kv_writes_ok: IntCounter,
    /// This app's `outpost_kv_writes_total` with `outcome="error"`.
    pub kv_writes_failed: IntCounter,
    app: String,
}

/// The HTTP version a request came over, as the `protocol` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    /// HTTP/1.0 or HTTP/1.1 (`h1`).
    H1,
    /// HTTP/2 (`h2`).
    H2,
    /// HTTP/3 (`h3`).
    H3,
}

impl AppMetrics {
    /// Resolve `app`'s request-path series; done once per deployment, not per request.
    pub fn new(app: &str) -> Self {
        let m = metrics();
        let requests = CLASSES.map(|class| {
            ["h1", "h2", "h3"].map(|protocol| {
                ["false", "true"]
                    .map(|tls| m.requests.with_label_values(&[app, class, protocol, tls]))
            })
        });
        AppMetrics {
            requests,
            request_seconds: m.request_seconds.with_label_values(&[app]),
            guest_seconds: m.guest_seconds.with_label_values(&[app]),
            kv_reads: m.kv_reads.with_label_values(&[app]),
            kv_writes_ok: m.kv_writes.with_label_values(&[app, "ok"]),
            kv_writes_failed: m.kv_writes.with_label_values(&[app, "error"]),
            app: app.to_string(),
        }
    }

    /// Count one answered request by its status class, its HTTP version, and plain or TLS.
    pub fn request(&self, status: u16, protocol: HttpProtocol, tls: bool) {
        self.requests[class_index(status)][protocol as usize][usize::from(tls)].inc();
    }

    /// Failures are rare: the label lookup happens only then.
    pub fn failure(&self, kind: &str) {
        metrics()
            .guest_failures
            .with_label_values(&[self.app.as_str(), kind])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let app = AppMetrics::new("metrics-test");
        app.request(204, HttpProtocol::H2, true);
        app.request(503, HttpProtocol::H1, false);
        app.request(200, HttpProtocol::H3, true);
        app.failure("trap");
        app.request_seconds.observe(0.0002);
        let text = metrics().render();
        assert!(text.contains(
            r#"outpost_requests_total{app="metrics-test",protocol="h2",status="2xx",tls="true"} 1"#
        ));
        assert!(text.contains(
            r#"outpost_requests_total{app="metrics-test",protocol="h1",status="5xx",tls="false"} 1"#
        ));
        assert!(text.contains(
            r#"outpost_requests_total{app="metrics-test",protocol="h3",status="2xx",tls="true"} 1"#
        ));
        assert!(text.contains(r#"outpost_guest_failures_total{app="metrics-test",kind="trap"} 1"#));
        assert!(text.contains(
            r#"outpost_request_duration_seconds_bucket{app="metrics-test",le="0.00025"} 1"#
        ));
        assert_eq!(status_class(99), "1xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(700), "5xx");
    }

    /// The Grafana dashboard shipped in node/deploy queries only metrics that exist, each
    /// query narrowed by its `instance` variable (and `app`, where the metric has the label).
    #[test]
    fn the_dashboard_uses_these_names() {
        let dashboard = include_str!("../../deploy/grafana/outpost-dashboard.json");
        let json: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        let variables: Vec<&str> = json["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(variables, ["datasource", "instance", "app"]);
        let mut used = Vec::new();
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(expr.contains(r#"instance=~"$instance""#), "{expr}");
                if expr.contains("by (app") || expr.contains("outpost_app_live") {
                    assert!(expr.contains(r#"app=~"$app""#), "{expr}");
                }
                used.extend(metric_names_in(expr));
            }
        }
        assert!(used.len() > 10, "{used:?}");
        assert_exported(&used, "the dashboard");
    }

    /// The alert rules shipped in node/deploy are over metrics that exist (promtool, in
    /// `.ci/run`, checks their syntax and runs their tests).
    #[test]
    fn the_alert_rules_use_these_names() {
        let rules = include_str!("../../deploy/prometheus/outpost-alerts.yml");
        let used = metric_names_in(rules);
        assert!(used.len() > 10, "{used:?}");
        assert_exported(&used, "the alert rules");
    }

    /// Every `outpost_...` name in `text`.
    fn metric_names_in(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("outpost_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.push(name);
        }
        names
    }

    fn assert_exported(used: &[String], by: &str) {
        let known = metrics().names();
        for name in used {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                known.iter().any(|k| k == family),
                "{by} use {name}, which the node does not export"
            );
        }
    }
}
