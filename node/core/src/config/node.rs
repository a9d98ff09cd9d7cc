//! A node's `node.toml`: its name, listeners, apps, cluster link and health, with the pool
//! (`pool.rs`), HTTP (`http.rs`), TLS (`tls.rs`), tenancy and egress sections read by their
//! own modules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::in_range;
use super::http::{HttpFile, http_settings};
use super::pool::{PoolFile, PoolSettings, pool_settings};
use super::tls::{TlsCertSpec, TlsFile};
use super::{AppSpec, ConfigError, FieldError, HttpSettings, read_toml};
use super::{ClusterIdentity, HealthSettings, OriginLink, Peer, RemoteAddr};

/// A validated `node.toml`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name (its cluster certificate's); the machine's hostname when not given.
    pub name: String,
    /// Where the node stands, as the operator names it (`fra`, `eu-west`): handlers read it
    /// in the `outpost-region` request header.
    pub region: Option<String>,
    /// Where the node keeps its state; `outpost-data` next to node.toml when not given.
    pub data_dir: PathBuf,
    /// The HTTPS listener that serves the apps (`[listen] https`).
    pub https: SocketAddr,
    /// Plain-HTTP listener that redirects to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// Plain-HTTP listener that serves the apps (behind a TLS-terminating load balancer).
    pub plain: Option<SocketAddr>,
    /// Serve HTTP/3 on the HTTPS address's UDP port too, and advertise it (`[listen] http3`).
    pub http3: bool,
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
    /// The domain under which every version the node runs has a preview host
    /// (`v4--shop.preview.example.com`); `None`: no previews, and no preview-only versions
    /// deployed (`[preview] domain`).
    pub preview_domain: Option<String>,
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

/// `[cluster] listen`, `peers` and `relay`: where this node accepts its peers' links (and, as a
/// relay, its followers'), and who its peers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The UDP address this node accepts its peers' links on.
    pub listen: SocketAddr,
    /// The other nodes this node links to, each `NAME@ADDRESS` in node.toml.
    pub peers: Vec<Peer>,
    /// Whether other nodes may follow this one (`[cluster] relay = true`): it serves them the
    /// KV, the desired state and the components it has from its own upstream.
    pub relay: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: Option<String>,
    region: Option<String>,
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
    preview: Option<PreviewFile>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewFile {
    domain: String,
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
    /// The origin's cluster (QUIC, UDP) address, when the fleet has one origin.
    origin: Option<String>,
    /// The cluster addresses of the fleet's origins, tried in turn.
    #[serde(default)]
    origins: Vec<String>,
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
    /// Relays to follow instead of the origin, as `NAME@ADDRESS`, tried in order.
    #[serde(default)]
    relays: Vec<String>,
    /// Whether other nodes may follow this one (it listens on `listen`).
    #[serde(default)]
    relay: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    https: String,
    http: Option<String>,
    plain: Option<String>,
    #[serde(default)]
    http3: bool,
}

impl NodeConfig {
    /// Read and validate `node.toml` at `file`, and the apps it lists; relative paths are taken
    /// from its directory, and an error names the offending field.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let parsed: NodeFile = read_toml(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let field_err = |e: FieldError| ConfigError::field(file, e.field, e.message);
        let within = |section: &'static str| {
            move |e: FieldError| {
                ConfigError::field(file, format!("{section}.{}", e.field), e.message)
            }
        };

        let name = node_name(parsed.name).map_err(field_err)?;
        let region = parsed
            .region
            .map(|r| region(&r))
            .transpose()
            .map_err(field_err)?;
        let data_dir = base.join(
            parsed
                .data_dir
                .unwrap_or_else(|| PathBuf::from("outpost-data")),
        );
        let (https, http_redirect, plain) = parsed.listen.addresses().map_err(field_err)?;
        let certs = parsed.tls.certs(base).map_err(field_err)?;
        let pool = pool_settings(&parsed.pool).map_err(within("pool"))?;
        let http = http_settings(&parsed.http).map_err(within("http"))?;
        let apps = load_apps(&parsed.apps, base, &pool).map_err(|e| match e {
            AppsError::App(err) => err,
            AppsError::Field(e) => field_err(e),
        })?;
        let (cluster, peering) = match parsed.cluster {
            None => (None, None),
            Some(c) => {
                let (link, peering) = c.link(base, &name).map_err(field_err)?;
                (Some(link), peering)
            }
        };
        let admin = parsed
            .admin
            .map(|a| parse_addr(&a.listen))
            .transpose()
            .map_err(|m| field_err(FieldError::new("admin.listen", m)))?;
        let health = parsed.health.settings().map_err(within("health"))?;
        let preview_domain = parsed
            .preview
            .map(|p| preview_domain(&p.domain))
            .transpose()
            .map_err(field_err)?;
        // The ports of this node's own listeners are added once they are bound (launch).
        let egress = parsed.outbound.policy().map_err(field_err)?;
        let ceilings = parsed
            .limits
            .ceilings(pool.max_memory_bytes)
            .map_err(field_err)?;
        let guest_log = parsed.log.guest_limits().map_err(field_err)?;
        Ok(NodeConfig {
            name,
            region,
            data_dir,
            https,
            http_redirect,
            plain,
            http3: parsed.listen.http3,
            certs,
            apps,
            pool,
            http,
            cluster,
            peering,
            admin,
            preview_domain,
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

/// The node's name: as given (not blank), else the machine's host name.
fn node_name(given: Option<String>) -> Result<String, FieldError> {
    match given {
        Some(name) if name.trim().is_empty() => Err(FieldError::new("name", "cannot be empty")),
        Some(name) => Ok(name),
        None => Ok(hostname()),
    }
}

/// A preview domain: a DNS name of at least two labels, lowercase.
fn preview_domain(given: &str) -> Result<String, FieldError> {
    let domain = given.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.contains('.') && domain.len() <= 253 && domain.split('.').all(label_ok) {
        Ok(domain)
    } else {
        Err(FieldError::new(
            "preview.domain",
            format!("{given:?} is not a domain name such as \"preview.example.com\""),
        ))
    }
}

/// A region name: a short label that can travel in a request header.
fn region(given: &str) -> Result<String, FieldError> {
    let fits = !given.is_empty()
        && given.len() <= 64
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if fits {
        Ok(given.to_string())
    } else {
        Err(FieldError::new(
            "region",
            format!("{given:?} is not a region name: 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

impl ListenFile {
    /// The HTTPS address, and those of the HTTP redirect and the plain-HTTP listener if set.
    fn addresses(
        &self,
    ) -> Result<(SocketAddr, Option<SocketAddr>, Option<SocketAddr>), FieldError> {
        let optional = |text: &Option<String>, field: &str| {
            text.as_deref()
                .map(parse_addr)
                .transpose()
                .map_err(|m| FieldError::new(field, m))
        };
        Ok((
            parse_addr(&self.https).map_err(|m| FieldError::new("listen.https", m))?,
            optional(&self.http, "listen.http")?,
            optional(&self.plain, "listen.plain")?,
        ))
    }
}

/// Why the apps a node.toml lists could not be loaded: one app's own file is wrong, or the
/// list is (two apps of one name, an app larger than a pool slot).
enum AppsError {
    App(ConfigError),
    Field(FieldError),
}

/// Load every app `paths` lists (relative to `base`), each fitting a pool slot, no two of one
/// name.
fn load_apps(
    paths: &[PathBuf],
    base: &Path,
    pool: &PoolSettings,
) -> Result<Vec<AppSpec>, AppsError> {
    let mut apps: Vec<AppSpec> = Vec::new();
    for (i, app_path) in paths.iter().enumerate() {
        let app = AppSpec::load(&base.join(app_path)).map_err(AppsError::App)?;
        let refuse =
            |message: String| AppsError::Field(FieldError::new(format!("apps[{i}]"), message));
        if app.settings.limits.memory_bytes > pool.max_memory_bytes {
            return Err(refuse(format!(
                "app {} asks for limits.memory_mb = {} but pool.memory_mb is {}; raise pool.memory_mb",
                app.settings.name,
                app.settings.limits.memory_bytes >> 20,
                pool.max_memory_bytes >> 20
            )));
        }
        if apps.iter().any(|a| a.settings.name == app.settings.name) {
            return Err(refuse(format!(
                "two apps are named {:?}",
                app.settings.name
            )));
        }
        apps.push(app);
    }
    Ok(apps)
}

impl ClusterFile {
    /// The link to the origin, and the peer links if `listen` is set; `node` is this node's
    /// own name, which no peer may have.
    fn link(self, base: &Path, node: &str) -> Result<(OriginLink, Option<Peering>), FieldError> {
        let peers = other_nodes(&self.peers, "cluster.peers", node)?;
        let relays = other_nodes(&self.relays, "cluster.relays", node)?;
        let peering = match self.listen {
            Some(listen) => Some(Peering {
                listen: parse_addr(&listen).map_err(|m| FieldError::new("cluster.listen", m))?,
                peers,
                relay: self.relay,
            }),
            None if !peers.is_empty() || self.relay => {
                return Err(FieldError::new(
                    "cluster.listen",
                    "is needed with `peers` or `relay`: the UDP address this node accepts its peers (and followers) on, e.g. \"0.0.0.0:7444\"",
                ));
            }
            None => None,
        };
        let origins = match (self.origin, self.origins.is_empty()) {
            (Some(origin), true) => {
                vec![RemoteAddr::parse(&origin).map_err(|m| FieldError::new("cluster.origin", m))?]
            }
            (None, false) => self
                .origins
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    RemoteAddr::parse(text)
                        .map_err(|m| FieldError::new(format!("cluster.origins[{i}]"), m))
                })
                .collect::<Result<Vec<_>, _>>()?,
            (Some(_), false) => {
                return Err(FieldError::new(
                    "cluster.origins",
                    "give `origin` (one) or `origins` (several), not both",
                ));
            }
            (None, true) => {
                return Err(FieldError::new(
                    "cluster.origin",
                    "name the origin's cluster address, e.g. \"origin.internal:7443\" (or several in `origins`)",
                ));
            }
        };
        for (field, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if !base.join(path).is_file() {
                return Err(FieldError::new(
                    format!("cluster.{field}"),
                    format!(
                        "{} is not a readable file (make one with `outpost ca`)",
                        base.join(path).display()
                    ),
                ));
            }
        }
        let link = OriginLink {
            relays,
            origins,
            server_name: self.origin_name,
            identity: ClusterIdentity {
                ca: base.join(self.ca),
                cert: base.join(self.cert),
                key: base.join(self.key),
            },
        };
        Ok((link, peering))
    }
}

/// Other nodes named as `NAME@ADDRESS` in the list `field`: none twice, and not this `node`.
fn other_nodes(list: &[String], field: &str, node: &str) -> Result<Vec<Peer>, FieldError> {
    let mut nodes: Vec<Peer> = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let peer = Peer::parse(text).map_err(|m| FieldError::new(&field, m))?;
        if peer.name == node {
            return Err(FieldError::new(
                field,
                format!("{:?} is this node itself", peer.name),
            ));
        }
        if nodes.iter().any(|p| p.name == peer.name) {
            return Err(FieldError::new(
                field,
                format!("{:?} is listed twice", peer.name),
            ));
        }
        nodes.push(peer);
    }
    Ok(nodes)
}

impl HealthFile {
    /// `[health]` validated; fields are named without the section.
    fn settings(self) -> Result<HealthSettings, FieldError> {
        let defaults = HealthSettings::default();
        Ok(HealthSettings {
            on_ready: nonempty(self.on_ready),
            on_drain: nonempty(self.on_drain),
            drain_delay: Duration::from_millis(in_range(
                self.drain_delay_ms,
                "drain_delay_ms",
                0..=600_000,
                0,
            )?),
            kv_max_lag: Duration::from_secs(in_range(
                self.kv_max_lag_seconds,
                "kv_max_lag_seconds",
                1..=86_400,
                defaults.kv_max_lag.as_secs(),
            )?),
        })
    }
}

fn nonempty(command: Option<String>) -> Option<String> {
    command.filter(|c| !c.trim().is_empty())
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
        assert_eq!((cfg.region, cfg.preview_domain), (None, None));

        let cfg = dir
            .load(&format!(
                "region = \"eu-west.1\"\n[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}\
                 [http]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
                 [preview]\ndomain = \"Preview.Example.com.\"\n"
            ))
            .unwrap();
        assert_eq!(cfg.region.as_deref(), Some("eu-west.1"));
        assert_eq!(cfg.preview_domain.as_deref(), Some("preview.example.com"));
        let proxies: Vec<String> = cfg
            .http
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.7/32"]);
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
        let base = format!("[listen]\nhttps = \"127.0.0.1:0\"\n{TLS}");
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
            // The origins: one, several, never both, never none, each an address.
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigin = \"a:1\"\norigins = [\"b:1\"]\n"), "`cluster.origins`: give `origin`"),
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"), "`cluster.origin`: name the origin"),
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigins = [\"a.internal:7443\", \"b:\"]\n"), "`cluster.origins[1]`"),
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigin = \"no port\"\n"), "`cluster.origin`: \"no port\" is not an address"),
            // Relays: named like peers, never this node, and a relay listens for followers.
            (format!("name = \"edge-1\"\n{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigin = \"a:1\"\nrelays = [\"edge-1@b:1\"]\n"), "`cluster.relays[0]`: \"edge-1\" is this node itself"),
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigin = \"a:1\"\nrelays = [\"b:1\"]\n"), "`cluster.relays[0]`: \"b:1\" should be NAME@ADDRESS"),
            (format!("{base}[cluster]\norigin_name = \"origin\"\nca = \"cert.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\norigin = \"a:1\"\nrelay = true\n"), "`cluster.listen`: is needed with `peers` or `relay`"),
            // What handlers are told, and where previews are.
            (format!("region = \"eu west\"\n{base}"), "`region`: \"eu west\" is not a region name"),
            (format!("{base}[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n"), "`http.trusted_proxies[1]`"),
            (format!("{base}[preview]\ndomain = \"localhost\"\n"), "`preview.domain`"),
            (format!("{base}[preview]\ndomain = \"-x.example.com\"\n"), "`preview.domain`"),
        ] {
            let err = dir.load(&text).unwrap_err().to_string();
            assert!(err.contains("node.toml"), "{err}");
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
    }
}
