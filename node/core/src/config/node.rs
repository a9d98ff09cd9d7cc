//! A node's `node.toml`: listeners, certificates, apps, the instance pool and HTTP limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::in_range;
use super::{AppSpec, ConfigError, FieldError, read_toml};
use super::{ClusterIdentity, HealthSettings, OriginLink, Peer};

/// The instance pool shared by every app on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Concurrent instances (and so concurrent requests in guests).
    pub instances: u32,
    /// The most linear memory one instance may have; an app's `limits.memory_mb` fits under it.
    pub max_memory_bytes: u64,
    /// Virtual address space reserved per memory. `None` picks the fastest layout that fits the
    /// machine's address space (4 GiB lets compiled code skip bounds checks).
    pub memory_reservation_bytes: Option<u64>,
    /// Memory kept resident (reset with memset, not madvise) per slot after each request.
    pub keep_resident_bytes: u64,
    /// How many slot decommits are batched into one madvise round; until then their memory
    /// stays resident.
    pub decommit_batch: usize,
    /// How long a request waits for a free slot before 503.
    pub queue_timeout: Duration,
    /// How many requests may wait for a slot at once; more get 503 at once.
    pub max_queued: usize,
    /// How many idle instances one app version that asks for instance reuse (`[instance] reuse`)
    /// may keep between requests; each holds a pool slot and its memory. 0 turns reuse off on
    /// this node.
    pub idle_per_app: usize,
    /// The share of `instances` one app may have running at once, in percent, so that one app
    /// (its bug or its attacker) cannot take the whole pool from the others.
    pub app_share_percent: u32,
    /// Linear memory all live instances together may hold; `None`: three quarters of the
    /// machine's memory. Each app may hold `app_share_percent` of it.
    pub memory_budget_bytes: Option<u64>,
    /// The share of the node's worker threads one app's long-running requests (past 10 ms of
    /// CPU) may occupy at once, in percent; all apps' together get every thread but one.
    pub cpu_share_percent: u32,
}

impl PoolSettings {
    /// How many instances one app may have running at once.
    pub fn app_share(&self) -> usize {
        ((u64::from(self.instances) * u64::from(self.app_share_percent)) / 100).max(1) as usize
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            instances: 1000,
            max_memory_bytes: 128 << 20,
            memory_reservation_bytes: None,
            // Slots keep the pages a request dirtied and reset them with memset (only the dirty
            // ones, where the kernel supports PAGEMAP_SCAN) instead of madvise: madvise's TLB
            // shootdowns and the next request's page faults cost more than the memset.
            keep_resident_bytes: 4 << 20,
            // A slot whose memory waits in a decommit batch stays resident: with batches of
            // 64, an app looping a handler that grows to its memory limit kept 32 slots x
            // 64 MiB resident (the hostile-load suite). Small instances never reach the batch
            // (their dirtied pages are reset in place, above), so batching only saved a madvise
            // per large fresh instance.
            decommit_batch: 1,
            queue_timeout: Duration::from_millis(1000),
            max_queued: 1000,
            idle_per_app: 16,
            app_share_percent: 50,
            memory_budget_bytes: None,
            cpu_share_percent: 50,
        }
    }
}

/// Limits of the HTTP front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time for a client to finish the TLS handshake and send a request's headers.
    pub header_timeout: Duration,
    /// The most a request's headers may take, in bytes (8 KiB to 1 MiB; default 64 KiB).
    pub max_header_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// Open connections the node accepts at once from all clients (default 10 000).
    pub max_connections: usize,
    /// How long a connection may sit with no request in flight before it is closed, whatever
    /// its protocol (HTTP/2 pings do not count). Its first request must come within
    /// `header_timeout`.
    pub idle_timeout: Duration,
    /// Open connections from one client address (an IPv6 client's /64); 0: no cap (behind a
    /// balancer every connection comes from it).
    pub max_connections_per_client: usize,
    /// How much of a request's body is read before it takes an instance (so a slow client
    /// holds no guest while it sends that much), and how much all requests may hold so at once.
    pub body_read_ahead_bytes: usize,
    /// The request body all requests together may hold read ahead, in bytes (default 64 MiB).
    pub body_read_ahead_total_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            max_connections_per_client: 256,
            body_read_ahead_bytes: 1 << 20,
            body_read_ahead_total_bytes: 64 << 20,
        }
    }
}

/// One certificate with the host names it serves (exact or `*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertSpec {
    /// The host names the certificate is chosen for: exact, or `*.example.com` for any subdomain.
    pub hosts: Vec<String>,
    /// The certificate chain (PEM), resolved against node.toml's directory.
    pub cert: PathBuf,
    /// The private key (PEM) of `cert`, resolved against node.toml's directory.
    pub key: PathBuf,
}

/// A validated `node.toml`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name (its cluster certificate's); the machine's hostname when not given.
    pub name: String,
    /// Where the node keeps its state; `outpost-data` next to node.toml when not given.
    pub data_dir: PathBuf,
    /// The HTTPS listener that serves the apps (`[listen] https`).
    pub https: SocketAddr,
    /// Plain-HTTP listener that redirects to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// Plain-HTTP listener that serves the apps (behind a TLS-terminating load balancer).
    pub plain: Option<SocketAddr>,
    /// The TLS certificates and the hosts each serves (`[[tls.certs]]`, at least one).
    pub certs: Vec<TlsCertSpec>,
    /// The apps loaded from the local app directories listed in `apps`.
    pub apps: Vec<AppSpec>,
    /// The instance pool shared by every app (`[pool]`).
    pub pool: PoolSettings,
    /// Limits of the HTTP front end (`[http]`).
    pub http: HttpSettings,
    /// The fleet this node belongs to, if any.
    pub cluster: Option<OriginLink>,
    /// Other nodes of the fleet, for KV anti-entropy when the origin is out of reach.
    pub peering: Option<Peering>,
    /// Plain-HTTP address for `/metrics`, `/healthz` and `/readyz`.
    pub admin: Option<SocketAddr>,
    /// Readiness hooks, drain delay and the KV lag bound (`[health]`).
    pub health: HealthSettings,
    /// One log line per request.
    pub access_log: bool,
    /// What any one app may take of the node: `[limits]` ceilings, `[log]` guest budgets,
    /// `[outbound]` egress policy.
    pub tenancy: super::Tenancy,
    /// The node.toml this came from, for messages.
    pub source: PathBuf,
}

/// `[cluster] listen` and `peers`: where this node accepts its peers' links, and who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The UDP address this node accepts its peers' links on.
    pub listen: SocketAddr,
    /// The other nodes this node links to, each `NAME@ADDRESS` in node.toml.
    pub peers: Vec<Peer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    apps: Vec<PathBuf>,
    listen: ListenFile,
    tls: TlsFile,
    #[serde(default)]
    pool: PoolFile,
    #[serde(default)]
    http: HttpFile,
    cluster: Option<ClusterFile>,
    admin: Option<AdminFile>,
    #[serde(default)]
    health: HealthFile,
    #[serde(default)]
    log: super::tenancy::LogFile,
    #[serde(default)]
    limits: super::tenancy::CeilingsFile,
    #[serde(default)]
    outbound: super::egress::EgressFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    on_ready: Option<String>,
    on_drain: Option<String>,
    drain_delay_ms: Option<u64>,
    kv_max_lag_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    /// The origin's cluster (QUIC, UDP) address.
    origin: String,
    /// The name the origin's cluster certificate is issued for.
    origin_name: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// UDP address for links from peer nodes (KV anti-entropy).
    listen: Option<String>,
    /// Peer nodes as `NAME@ADDRESS`, each with a cluster certificate issued for NAME.
    #[serde(default)]
    peers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    https: String,
    http: Option<String>,
    plain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    certs: Vec<CertFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertFile {
    hosts: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolFile {
    instances: Option<u64>,
    memory_mb: Option<u64>,
    memory_reservation_mb: Option<u64>,
    keep_resident_kb: Option<u64>,
    decommit_batch: Option<u64>,
    queue_timeout_ms: Option<u64>,
    max_queued: Option<u64>,
    idle_per_app: Option<u64>,
    app_share_percent: Option<u64>,
    memory_budget_mb: Option<u64>,
    cpu_share_percent: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    header_timeout_ms: Option<u64>,
    max_header_kb: Option<u64>,
    drain_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections_per_client: Option<u64>,
    body_read_ahead_kb: Option<u64>,
    body_read_ahead_total_mb: Option<u64>,
}

impl NodeConfig {
    /// Read and validate `node.toml` at `file`, and the apps it lists; relative paths are taken
    /// from its directory, and an error names the offending field.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let parsed: NodeFile = read_toml(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let err = |field: &str, message: String| ConfigError::field(file, field, message);

        let name = match parsed.name {
            Some(name) if name.trim().is_empty() => {
                return Err(err("name", "cannot be empty".into()));
            }
            Some(name) => name,
            None => hostname(),
        };
        let data_dir = base.join(
            parsed
                .data_dir
                .unwrap_or_else(|| PathBuf::from("outpost-data")),
        );

        let https = parse_addr(&parsed.listen.https).map_err(|m| err("listen.https", m))?;
        let http_redirect = parsed
            .listen
            .http
            .as_deref()
            .map(parse_addr)
            .transpose()
            .map_err(|m| err("listen.http", m))?;
        let plain = parsed
            .listen
            .plain
            .as_deref()
            .map(parse_addr)
            .transpose()
            .map_err(|m| err("listen.plain", m))?;

        if parsed.tls.certs.is_empty() {
            return Err(err(
                "tls.certs",
                "at least one [[tls.certs]] entry is needed".into(),
            ));
        }
        let certs = parsed
            .tls
            .certs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if c.hosts.is_empty() {
                    return Err(err(
                        &format!("tls.certs[{i}].hosts"),
                        "list the host names this certificate serves".into(),
                    ));
                }
                for (j, host) in c.hosts.iter().enumerate() {
                    validate_cert_host(host)
                        .map_err(|m| err(&format!("tls.certs[{i}].hosts[{j}]"), m))?;
                }
                for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
                    let path = base.join(path);
                    if !path.is_file() {
                        return Err(err(
                            &format!("tls.certs[{i}].{field}"),
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                Ok(TlsCertSpec {
                    hosts: c.hosts,
                    cert: base.join(c.cert),
                    key: base.join(c.key),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let pool = pool_settings(&parsed.pool)
            .map_err(|e| err(&format!("pool.{}", e.field), e.message))?;
        let http = http_settings(&parsed.http)
            .map_err(|e| err(&format!("http.{}", e.field), e.message))?;

        let mut apps = Vec::new();
        for (i, app_path) in parsed.apps.iter().enumerate() {
            let app = AppSpec::load(&base.join(app_path))?;
            if app.settings.limits.memory_bytes > pool.max_memory_bytes {
                return Err(err(
                    &format!("apps[{i}]"),
                    format!(
                        "app {} asks for limits.memory_mb = {} but pool.memory_mb is {}; raise pool.memory_mb",
                        app.settings.name,
                        app.settings.limits.memory_bytes >> 20,
                        pool.max_memory_bytes >> 20
                    ),
                ));
            }
            if apps
                .iter()
                .any(|a: &AppSpec| a.settings.name == app.settings.name)
            {
                return Err(err(
                    &format!("apps[{i}]"),
                    format!("two apps are named {:?}", app.settings.name),
                ));
            }
            apps.push(app);
        }

        let mut peering = None;
        let cluster = match parsed.cluster {
            None => None,
            Some(c) => {
                let mut peers = Vec::new();
                for (i, text) in c.peers.iter().enumerate() {
                    let peer =
                        Peer::parse(text).map_err(|m| err(&format!("cluster.peers[{i}]"), m))?;
                    if peer.name == name {
                        return Err(err(
                            &format!("cluster.peers[{i}]"),
                            format!("{:?} is this node itself", peer.name),
                        ));
                    }
                    if peers.iter().any(|p: &Peer| p.name == peer.name) {
                        return Err(err(
                            &format!("cluster.peers[{i}]"),
                            format!("{:?} is listed twice", peer.name),
                        ));
                    }
                    peers.push(peer);
                }
                peering = match c.listen {
                    Some(listen) => Some(Peering {
                        listen: parse_addr(&listen).map_err(|m| err("cluster.listen", m))?,
                        peers,
                    }),
                    None if !peers.is_empty() => {
                        return Err(err(
                            "cluster.listen",
                            "is needed with `peers`: the UDP address this node accepts its peers on, e.g. \"0.0.0.0:7444\"".into(),
                        ));
                    }
                    None => None,
                };
                let addr = parse_addr(&c.origin).map_err(|m| err("cluster.origin", m))?;
                for (field, path) in [("ca", &c.ca), ("cert", &c.cert), ("key", &c.key)] {
                    if !base.join(path).is_file() {
                        return Err(err(
                            &format!("cluster.{field}"),
                            format!(
                                "{} is not a readable file (make one with `outpost ca`)",
                                base.join(path).display()
                            ),
                        ));
                    }
                }
                Some(OriginLink {
                    addr,
                    server_name: c.origin_name,
                    identity: ClusterIdentity {
                        ca: base.join(c.ca),
                        cert: base.join(c.cert),
                        key: base.join(c.key),
                    },
                })
            }
        };

        let admin = parsed
            .admin
            .map(|a| parse_addr(&a.listen))
            .transpose()
            .map_err(|m| err("admin.listen", m))?;
        let defaults = HealthSettings::default();
        let health = HealthSettings {
            on_ready: nonempty(parsed.health.on_ready),
            on_drain: nonempty(parsed.health.on_drain),
            drain_delay: Duration::from_millis(
                in_range(
                    parsed.health.drain_delay_ms,
                    "drain_delay_ms",
                    0..=600_000,
                    0,
                )
                .map_err(|e| err(&format!("health.{}", e.field), e.message))?,
            ),
            kv_max_lag: Duration::from_secs(
                in_range(
                    parsed.health.kv_max_lag_seconds,
                    "kv_max_lag_seconds",
                    1..=86_400,
                    defaults.kv_max_lag.as_secs(),
                )
                .map_err(|e| err(&format!("health.{}", e.field), e.message))?,
            ),
        };

        let field_err = |e: super::FieldError| ConfigError::field(file, e.field, e.message);
        // The ports of this node's own listeners are added once they are bound (launch).
        let egress = parsed.outbound.policy().map_err(field_err)?;
        let ceilings = parsed
            .limits
            .ceilings(pool.max_memory_bytes)
            .map_err(field_err)?;
        let guest_log = parsed.log.guest_limits().map_err(field_err)?;
        Ok(NodeConfig {
            name,
            data_dir,
            https,
            http_redirect,
            plain,
            certs,
            apps,
            pool,
            http,
            cluster,
            peering,
            admin,
            health,
            access_log: parsed.log.requests.unwrap_or(true),
            tenancy: super::Tenancy {
                egress,
                ceilings,
                guest_log,
            },
            source: file.to_path_buf(),
        })
    }
}

fn nonempty(command: Option<String>) -> Option<String> {
    command.filter(|c| !c.trim().is_empty())
}

pub(super) fn pool_settings(file: &PoolFile) -> Result<PoolSettings, FieldError> {
    let d = PoolSettings::default();
    let ms = |v: Duration| v.as_millis() as u64;
    Ok(PoolSettings {
        instances: in_range(file.instances, "instances", 1..=100_000, d.instances.into())? as u32,
        max_memory_bytes: in_range(
            file.memory_mb,
            "memory_mb",
            1..=4096,
            d.max_memory_bytes >> 20,
        )? << 20,
        memory_reservation_bytes: file
            .memory_reservation_mb
            .map(|mb| in_range(Some(mb), "memory_reservation_mb", 1..=8192, 0).map(|mb| mb << 20))
            .transpose()?,
        keep_resident_bytes: in_range(
            file.keep_resident_kb,
            "keep_resident_kb",
            0..=4 << 20,
            d.keep_resident_bytes >> 10,
        )? << 10,
        decommit_batch: in_range(
            file.decommit_batch,
            "decommit_batch",
            1..=10_000,
            d.decommit_batch as u64,
        )? as usize,
        queue_timeout: Duration::from_millis(in_range(
            file.queue_timeout_ms,
            "queue_timeout_ms",
            0..=60_000,
            ms(d.queue_timeout),
        )?),
        max_queued: in_range(
            file.max_queued,
            "max_queued",
            0..=1_000_000,
            d.max_queued as u64,
        )? as usize,
        idle_per_app: in_range(
            file.idle_per_app,
            "idle_per_app",
            0..=10_000,
            d.idle_per_app as u64,
        )? as usize,
        app_share_percent: in_range(
            file.app_share_percent,
            "app_share_percent",
            1..=100,
            d.app_share_percent.into(),
        )? as u32,
        memory_budget_bytes: file
            .memory_budget_mb
            .map(|mb| in_range(Some(mb), "memory_budget_mb", 1..=1 << 30, 0).map(|mb| mb << 20))
            .transpose()?,
        cpu_share_percent: in_range(
            file.cpu_share_percent,
            "cpu_share_percent",
            1..=100,
            d.cpu_share_percent.into(),
        )? as u32,
    })
}

pub(super) fn http_settings(file: &HttpFile) -> Result<HttpSettings, FieldError> {
    let d = HttpSettings::default();
    let ms = |v: Duration| v.as_millis() as u64;
    Ok(HttpSettings {
        header_timeout: Duration::from_millis(in_range(
            file.header_timeout_ms,
            "header_timeout_ms",
            100..=600_000,
            ms(d.header_timeout),
        )?),
        max_header_bytes: (in_range(
            file.max_header_kb,
            "max_header_kb",
            8..=1024,
            d.max_header_bytes as u64 >> 10,
        )? << 10) as usize,
        drain_timeout: Duration::from_millis(in_range(
            file.drain_timeout_ms,
            "drain_timeout_ms",
            0..=3_600_000,
            ms(d.drain_timeout),
        )?),
        max_connections: in_range(
            file.max_connections,
            "max_connections",
            1..=1_000_000,
            d.max_connections as u64,
        )? as usize,
        idle_timeout: Duration::from_millis(in_range(
            file.idle_timeout_ms,
            "idle_timeout_ms",
            100..=3_600_000,
            ms(d.idle_timeout),
        )?),
        max_connections_per_client: in_range(
            file.max_connections_per_client,
            "max_connections_per_client",
            0..=1_000_000,
            d.max_connections_per_client as u64,
        )? as usize,
        body_read_ahead_bytes: (in_range(
            file.body_read_ahead_kb,
            "body_read_ahead_kb",
            0..=1 << 20,
            d.body_read_ahead_bytes as u64 >> 10,
        )? << 10) as usize,
        body_read_ahead_total_bytes: (in_range(
            file.body_read_ahead_total_mb,
            "body_read_ahead_total_mb",
            0..=1 << 16,
            d.body_read_ahead_total_bytes as u64 >> 20,
        )? << 20) as usize,
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an address such as \"0.0.0.0:443\" or \"[::]:443\""))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "outpost-node".to_string())
}

/// Check a host name a certificate is listed for: `example.com` or `*.example.com`.
pub fn validate_cert_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name (or a *.domain wildcard)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let dir = crate::test_support::temp_dir("node-config");
            std::fs::create_dir_all(dir.join("app")).unwrap();
            std::fs::write(dir.join("cert.pem"), "x").unwrap();
            std::fs::write(dir.join("key.pem"), "x").unwrap();
            std::fs::write(
                dir.join("app/outpost.toml"),
                "name = \"shop\"\ncomponent = \"shop.wasm\"\n[limits]\nmemory_mb = 256\n",
            )
            .unwrap();
            Dir(dir)
        }

        fn load(&self, text: &str) -> Result<NodeConfig, ConfigError> {
            let file = self.0.join("node.toml");
            std::fs::write(&file, text).unwrap();
            NodeConfig::load(&file)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TLS: &str = "[[tls.certs]]\nhosts = [\"a.test\", \"*.b.test\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n";

    #[test]
    fn minimal_node_gets_defaults_and_resolves_paths() {
        let dir = Dir::new();
        let cfg = dir
            .load(&format!(
                "name = \"edge-1\"\n[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}"
            ))
            .unwrap();
        assert_eq!(cfg.name, "edge-1");
        assert_eq!(cfg.pool, PoolSettings::default());
        assert_eq!(cfg.http, HttpSettings::default());
        assert_eq!(cfg.certs[0].cert, dir.0.join("cert.pem"));
        assert_eq!(cfg.data_dir, dir.0.join("outpost-data"));
        assert!(cfg.http_redirect.is_none());
    }

    #[test]
    fn app_memory_must_fit_the_pool() {
        let dir = Dir::new();
        let err = dir
            .load(&format!(
                "apps = [\"app\"]\n[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}"
            ))
            .unwrap_err();
        assert!(err.to_string().contains("raise pool.memory_mb"), "{err}");
        let ok = dir
            .load(&format!("apps = [\"app\"]\n[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}[pool]\nmemory_mb = 256\n"))
            .unwrap();
        assert_eq!(ok.apps[0].settings.name, "shop");
    }

    #[test]
    fn errors_name_the_field() {
        let dir = Dir::new();
        for (text, needle) in [
            (format!("[listen]\nhttps = \"nowhere\"\n{TLS}"), "`listen.https`"),
            (format!("[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}[pool]\ninstances = 0\n"), "`pool.instances`: is 0"),
            (format!("[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}[http]\nmax_header_kb = 0\n"), "`http.max_header_kb`"),
            ("[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncerts = []\n".to_string(), "`tls.certs`"),
            (
                "[listen]\nhttps = \"127.0.0.1:0\"\n[[tls.certs]]\nhosts = [\"a\"]\ncert = \"missing.pem\"\nkey = \"key.pem\"\n".to_string(),
                "`tls.certs[0].cert`",
            ),
            (format!("[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}[pool]\ninstance = 3\n"), "unknown field `instance`"),
            (format!("[listen]\n{TLS}"), "missing field `https`"),
        ] {
            let err = dir.load(&text).unwrap_err().to_string();
            assert!(err.contains("node.toml"), "{err}");
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
    }
}
