//! A fleet on loopback: an origin (or several sharing a PostgreSQL database) and N nodes as
//! real processes, set up the way an operator would, with the real CLI (`outpost ca`,
//! `outpost token`) and real config files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_core::test_support::postgres::TestPostgres;

use crate::process::{Exited, Outpost, TempDir, outpost_bin};
use crate::udp_proxy::{UdpProxy, free_udp_addr};
use crate::{Client, wasm};

/// An origin and its nodes as real processes on loopback, sharing one temporary directory;
/// dropping it kills them all and removes the directory.
pub struct Fleet {
    /// The fleet's directory: `cluster/` (CA, certificates), `origin.toml`, each `edge-N.toml` with
    /// its data directory, and the apps a test writes.
    pub dir: TempDir,
    /// A token with every right.
    pub token: String,
    /// A token that may only read.
    pub read_token: String,
    /// The origin process; `None` after [`Fleet::kill_origin`].
    pub origin: Option<Outpost>,
    /// The origin's admin (HTTPS API) address, which the CLI reaches as `OUTPOST_ORIGIN`; the same
    /// after a restart.
    pub admin: SocketAddr,
    /// The origin's cluster (QUIC) address that nodes connect to; the same after a restart.
    pub cluster: SocketAddr,
    /// The node processes, index 0 being edge-1; `None` while a node is killed.
    pub nodes: Vec<Option<Outpost>>,
    /// Each node's UDP address for its peers' KV links.
    pub peer_addrs: Vec<SocketAddr>,
    /// For nodes that reach the origin through a UDP proxy the test can cut.
    pub proxies: Vec<Option<UdpProxy>>,
    /// In a fleet in tiers ([`Fleet::start_tiered`]), how many of the nodes (the first ones)
    /// are relays the others follow.
    relays: Option<usize>,
    /// The origins after the first of a fleet on PostgreSQL ([`Fleet::start_on_postgres`]),
    /// origin-2 on, each configured in `origin-N.toml`; `None` while one is killed.
    pub more_origins: Vec<Option<Outpost>>,
    /// Their admin and cluster addresses, the same after a restart.
    more_addrs: Vec<(SocketAddr, SocketAddr)>,
    /// The database server the origins share, for a fleet on PostgreSQL.
    pub database: Option<TestPostgres>,
    /// The URL origin.toml gives them for it.
    database_url: Option<String>,
    /// The token hashes origin.toml lists, to write it again for a restart.
    token_hashes: (String, String),
    /// Whether the nodes serve previews (`[preview] domain = "preview.localhost"`).
    previews: bool,
}

fn outpost(args: &[&str], cwd: &Path) -> Exited {
    let output = Command::new(outpost_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running outpost");
    Exited {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn must(exited: Exited, what: &str) -> Exited {
    assert!(
        exited.status.success(),
        "{what} failed:\n{}\n{}",
        exited.stdout,
        exited.stderr
    );
    exited
}

/// A token line and its hash from `outpost token new`.
fn new_token(dir: &Path, name: &str, rights: &str) -> (String, String) {
    let out = must(
        outpost(&["token", "new", "--name", name, "--rights", rights], dir),
        "outpost token new",
    );
    let token = out
        .stdout
        .lines()
        .nth(1)
        .expect("token line")
        .trim()
        .to_string();
    let hash = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("hash line")
        .to_string();
    (token, hash)
}

impl Fleet {
    /// A cluster CA, an origin and `nodes` nodes named edge-1, edge-2, ..., each peering
    /// with all the others.
    pub fn start(label: &str, nodes: usize) -> Fleet {
        Self::start_with_proxies(label, nodes, &[])
    }

    /// A fleet in two tiers: `relays` relay nodes (edge-1 on) that follow the origin and peer
    /// with each other, and `followers` nodes after them that follow a relay (their home relay
    /// first, then the next, then the origin) and have no peers. With no relays, every node
    /// links to the origin and none has peers.
    pub fn start_tiered(label: &str, relays: usize, followers: usize) -> Fleet {
        Self::start_fleet(label, relays + followers, &[], 1, None, false, Some(relays))
    }

    /// As [`Fleet::start`], with every node serving previews under `preview.localhost`
    /// (`v{VERSION}--{APP}.preview.localhost`), so each also runs versions only uploaded.
    pub fn start_previewing(label: &str, nodes: usize) -> Fleet {
        Self::start_fleet(label, nodes, &[], 1, None, true, None)
    }

    /// As [`Fleet::start`], with the nodes numbered (0-based) in `proxied` reaching the origin
    /// through a [`UdpProxy`] the test can cut.
    pub fn start_with_proxies(label: &str, nodes: usize, proxied: &[usize]) -> Fleet {
        Self::start_fleet(label, nodes, proxied, 1, None, false, None)
    }

    /// `origins` origins sharing one PostgreSQL database (started for the fleet), all active,
    /// and `nodes` nodes that each know every origin, node `i` trying origin `i % origins`
    /// first, so that each origin serves some of them.
    pub fn start_on_postgres(label: &str, origins: usize, nodes: usize) -> Fleet {
        let database = TestPostgres::start(label);
        let url = database.url();
        Self::start_fleet(
            label,
            nodes,
            &[],
            origins,
            Some((database, url)),
            false,
            None,
        )
    }

    /// As [`Fleet::start_on_postgres`], on `database` reached as `url` (which may name several
    /// servers, such as a primary and its standby).
    pub fn start_on_database(
        label: &str,
        origins: usize,
        nodes: usize,
        database: TestPostgres,
        url: String,
    ) -> Fleet {
        Self::start_fleet(
            label,
            nodes,
            &[],
            origins,
            Some((database, url)),
            false,
            None,
        )
    }

    fn start_fleet(
        label: &str,
        nodes: usize,
        proxied: &[usize],
        origins: usize,
        database: Option<(TestPostgres, String)>,
        previews: bool,
        relays: Option<usize>,
    ) -> Fleet {
        let (database, database_url) = database.unzip();
        let dir = TempDir::new(label);
        let root = dir.path();
        must(
            outpost(&["ca", "init", "--dir", "cluster"], root),
            "outpost ca init",
        );
        must(
            outpost(
                &[
                    "ca",
                    "issue",
                    "--node",
                    "origin",
                    "--host",
                    "localhost",
                    "--dir",
                    "cluster",
                ],
                root,
            ),
            "outpost ca issue origin",
        );
        // One key seals the apps' secrets for every origin of the fleet.
        must(
            outpost(&["secret", "new-key", "cluster/secrets.key"], root),
            "outpost secret new-key",
        );
        let (token, hash) = new_token(root, "ops", "read,deploy,admin");
        let (read_token, read_hash) = new_token(root, "viewer", "read");
        let token_hashes = (hash, read_hash);
        let started: Vec<Outpost> = (1..=origins)
            .map(|n| {
                let config = write_origin_config(
                    &dir,
                    &token_hashes,
                    n,
                    ("127.0.0.1:0", "127.0.0.1:0"),
                    database_url.as_deref(),
                );
                Outpost::origin(&config).unwrap_or_else(|e| panic!("origin-{n} failed: {e:?}"))
            })
            .collect();
        let mut started = started.into_iter();
        let origin = started.next().expect("at least one origin");
        let more_origins: Vec<Outpost> = started.collect();
        let (admin, cluster) = (origin.addr, origin.cluster.expect("cluster address"));
        let more_addrs = more_origins
            .iter()
            .map(|o| (o.addr, o.cluster.expect("cluster address")))
            .collect();
        let mut fleet = Fleet {
            dir,
            token,
            read_token,
            origin: Some(origin),
            admin,
            cluster,
            nodes: Vec::new(),
            peer_addrs: (0..nodes).map(|_| free_udp_addr()).collect(),
            proxies: Vec::new(),
            relays,
            more_origins: more_origins.into_iter().map(Some).collect(),
            more_addrs,
            database,
            database_url,
            token_hashes,
            previews,
        };
        let clusters: Vec<SocketAddr> = fleet.addrs().iter().map(|(_, c)| *c).collect();
        for i in 1..=nodes {
            let name = format!("edge-{i}");
            must(
                outpost(
                    &[
                        "ca",
                        "issue",
                        "--node",
                        &name,
                        "--host",
                        "localhost",
                        "--dir",
                        "cluster",
                    ],
                    fleet.dir.path(),
                ),
                "outpost ca issue node",
            );
            let proxy = proxied
                .contains(&(i - 1))
                .then(|| UdpProxy::start(fleet.cluster));
            fleet.proxies.push(proxy);
            let origins = match &fleet.proxies[i - 1] {
                Some(proxy) => format!("origin = \"{}\"", proxy.addr),
                None if clusters.len() == 1 => format!("origin = \"{}\"", clusters[0]),
                None => {
                    let list: Vec<String> = (0..clusters.len())
                        .map(|k| format!("\"{}\"", clusters[(i - 1 + k) % clusters.len()]))
                        .collect();
                    format!("origins = [{}]", list.join(", "))
                }
            };
            fleet.write_node_config(i - 1, &origins);
            fleet.nodes.push(None);
            fleet.start_node(i - 1);
        }
        fleet
    }

    /// Every origin's (admin, cluster) addresses, origin-1 first.
    pub fn addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        std::iter::once((self.admin, self.cluster))
            .chain(self.more_addrs.iter().copied())
            .collect()
    }

    /// Origin `n` (1-based) of a fleet with several, if it is running.
    pub fn nth_origin(&self, n: usize) -> Option<&Outpost> {
        match n {
            1 => self.origin.as_ref(),
            n => self.more_origins[n - 2].as_ref(),
        }
    }

    /// Kill origin `n` (1-based) hard, as a crash would.
    pub fn kill_nth_origin(&mut self, n: usize) {
        match n {
            1 => self.origin = None,
            n => self.more_origins[n - 2] = None,
        }
    }

    /// Make node `index` (0-based, not running) know the origins at `origins` instead, tried in
    /// turn (`[cluster] origins`); [`Fleet::start_node`] starts it so.
    pub fn set_origins(&self, index: usize, origins: &[String]) {
        let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
        self.write_node_config(index, &format!("origins = [{}]", list.join(", ")));
    }

    /// Write node `index`'s config; `origins` is its `[cluster]` line naming the origin(s).
    fn write_node_config(&self, index: usize, origins: &str) -> PathBuf {
        let name = format!("edge-{}", index + 1);
        let listen = self.peer_addrs[index];
        let preview = match self.previews {
            true => "[preview]\ndomain = \"preview.localhost\"\n",
            false => "",
        };
        let node_at = |j: usize| format!("\"edge-{}@{}\"", j + 1, self.peer_addrs[j]);
        // Every node peers with all the others, or, in tiers, relays with relays; a follower
        // lists its home relay and the next, and no peers.
        let (peers, links): (Vec<String>, String) = match self.relays {
            None => (
                (0..self.nodes_planned())
                    .filter(|j| *j != index)
                    .map(node_at)
                    .collect(),
                format!("listen = \"{listen}\"\n"),
            ),
            // Nodes on the origin itself, without peers (the baseline for tiers).
            Some(0) => (Vec::new(), String::new()),
            Some(relays) if index < relays => (
                (0..relays).filter(|j| *j != index).map(node_at).collect(),
                format!("listen = \"{listen}\"\nrelay = true\n"),
            ),
            Some(relays) => {
                let home = (index - relays) % relays;
                let mut list = vec![node_at(home)];
                if relays > 1 {
                    list.push(node_at((home + 1) % relays));
                }
                (Vec::new(), format!("relays = [{}]\n", list.join(", ")))
            }
        };
        self.dir.write(
            &format!("{name}.toml"),
            format!(
                "name = \"{name}\"\ndata_dir = \"{name}-data\"\n\
                 [listen]\nhttps = \"127.0.0.1:0\"\n\
                 [[tls.certs]]\nhosts = [\"localhost\"]\ncert = \"cluster/{name}.pem\"\nkey = \"cluster/{name}-key.pem\"\n\
                 [pool]\ninstances = 50\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n{preview}\
                 [cluster]\n{origins}\norigin_name = \"origin\"\nca = \"cluster/ca.pem\"\n\
                 cert = \"cluster/{name}.pem\"\nkey = \"cluster/{name}-key.pem\"\n\
                 {links}peers = [{}]\n",
                peers.join(", ")
            ),
        )
    }

    /// Start the origin again after [`Fleet::kill_origin`], on the same addresses and data.
    pub fn restart_origin(&mut self) {
        let config = write_origin_config(
            &self.dir,
            &self.token_hashes,
            1,
            (&self.admin.to_string(), &self.cluster.to_string()),
            self.database_url.as_deref(),
        );
        let origin = Outpost::origin(&config).unwrap_or_else(|e| panic!("origin failed: {e:?}"));
        self.origin = Some(origin);
    }

    /// From now on, origin-1 runs on `database` (reached at its [`TestPostgres::url`]): what
    /// [`Fleet::restart_origin`] writes into origin.toml, after `outpost origin migrate`.
    pub fn use_database(&mut self, database: TestPostgres) {
        self.database_url = Some(database.url());
        self.database = Some(database);
    }

    /// The proxy between node `i` and the origin (see [`Fleet::start_with_proxies`]).
    pub fn proxy(&self, i: usize) -> &UdpProxy {
        self.proxies[i].as_ref().expect("node has a proxy")
    }

    /// How many nodes the fleet has (or will have, while it starts).
    fn nodes_planned(&self) -> usize {
        self.peer_addrs.len()
    }

    /// (Re)start node `i` (0-based) from its config and data directory.
    pub fn start_node(&mut self, i: usize) {
        let config = self.dir.path().join(format!("edge-{}.toml", i + 1));
        let node = Outpost::node(&config).unwrap_or_else(|e| panic!("node {i} failed: {e:?}"));
        self.nodes[i] = Some(node);
    }

    /// Node `i` (0-based); panics if it is not running.
    pub fn node(&self, i: usize) -> &Outpost {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Kill node `i` hard (as a crash would).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Kill the origin hard (as a crash would); [`Fleet::restart_origin`] brings it back.
    pub fn kill_origin(&mut self) {
        self.origin = None;
    }

    /// The cluster CA certificate as PEM, which the origin's and every node's certificate chain to.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cluster/ca.pem")).expect("cluster CA")
    }

    /// A client for node `i`'s HTTPS listener.
    pub fn client(&self, i: usize) -> Client {
        Client::new(self.node(i).addr, &self.ca_pem())
    }

    /// Run `outpost ARGS` in `cwd` as an author would, with the origin and a token in the
    /// environment.
    pub fn cli_with_token(&self, token: Option<&str>, cwd: &Path, args: &[&str]) -> Exited {
        let output = self
            .cli_command(token, cwd, args)
            .output()
            .expect("running outpost");
        Exited {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The command [`Fleet::cli_with_token`] runs, for one that keeps running (`outpost tail`).
    pub fn cli_command(&self, token: Option<&str>, cwd: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(outpost_bin());
        command
            .args(args)
            .current_dir(cwd)
            .env("OUTPOST_ORIGIN", self.origin_urls())
            .env("OUTPOST_CA", self.dir.path().join("cluster/ca.pem"))
            .env_remove("OUTPOST_TOKEN");
        if let Some(token) = token {
            command.env("OUTPOST_TOKEN", token);
        }
        command
    }

    /// Every origin's admin URL, comma-separated, as the CLI takes several.
    pub fn origin_urls(&self) -> String {
        let urls: Vec<String> = self
            .addrs()
            .iter()
            .map(|(admin, _)| format!("https://localhost:{}", admin.port()))
            .collect();
        urls.join(",")
    }

    /// Run `outpost ARGS` in `cwd` with the all-rights token; see [`Fleet::cli_with_token`].
    pub fn cli(&self, cwd: &Path, args: &[&str]) -> Exited {
        self.cli_with_token(Some(&self.token), cwd, args)
    }

    /// An app directory named `name` whose outpost.toml runs `component` with `config`.
    pub fn app(&self, name: &str, component: &Path, config: &[(&str, &str)]) -> PathBuf {
        self.app_with_kv(name, component, &["*"], config, &[])
    }

    /// As [`Fleet::app`], on `routes`, binding the KV namespaces `kv`.
    pub fn app_with_kv(
        &self,
        name: &str,
        component: &Path,
        routes: &[&str],
        config: &[(&str, &str)],
        kv: &[&str],
    ) -> PathBuf {
        let quoted = |items: &[&str]| -> String {
            items
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config: String = config
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect();
        self.dir
            .write(
                &format!("apps/{name}/outpost.toml"),
                format!(
                    "name = \"{name}\"\ncomponent = {:?}\nroutes = [{}]\n\
                     [limits]\ntimeout_ms = 5000\n[kv]\nnamespaces = [{}]\n[config]\n{config}",
                    component.display().to_string(),
                    quoted(routes),
                    quoted(kv)
                ),
            )
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// Wait until every running node answers `path` with `expected` (the whole body).
    pub async fn wait_for_everywhere(
        &self,
        path: &str,
        expected: &str,
        timeout: Duration,
    ) -> Duration {
        let started = Instant::now();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                continue;
            }
            let client = self.client(i);
            loop {
                if let Ok(reply) = client.get(path).await
                    && reply.text() == expected
                {
                    break;
                }
                assert!(
                    started.elapsed() < timeout,
                    "node {i} did not serve {expected:?} at {path} within {timeout:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        started.elapsed()
    }
}

/// Write origin `n`'s config (`origin.toml` for the first, `origin-N.toml` after it) listening
/// on `(admin, cluster)`, on the shared `database` if given.
fn write_origin_config(
    dir: &TempDir,
    (hash, read_hash): &(String, String),
    n: usize,
    (admin, cluster): (&str, &str),
    database: Option<&str>,
) -> PathBuf {
    let (file, data) = match n {
        1 => ("origin.toml".to_string(), "origin-data".to_string()),
        n => (format!("origin-{n}.toml"), format!("origin-{n}-data")),
    };
    let database = database.map_or(String::new(), |url| {
        format!("[database]\nurl = \"{url}\"\n")
    });
    dir.write(
        &file,
        format!(
            "name = \"origin-{n}\"\ndata_dir = \"{data}\"\n\
             [admin]\nlisten = \"{admin}\"\ncert = \"cluster/origin.pem\"\nkey = \"cluster/origin-key.pem\"\n\
             [cluster]\nlisten = \"{cluster}\"\nca = \"cluster/ca.pem\"\ncert = \"cluster/origin.pem\"\nkey = \"cluster/origin-key.pem\"\n\
             [secrets]\nkey_file = \"cluster/secrets.key\"\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nrights = [\"read\", \"deploy\", \"admin\"]\n\
             [[tokens]]\nname = \"viewer\"\nsha256 = \"{read_hash}\"\nrights = [\"read\"]\n\
             {database}"
        ),
    )
}

/// The probe component (see tests/guests/probe).
pub fn probe() -> PathBuf {
    wasm("probe")
}

/// A copy of `component` with a custom section appended: the same code under a new hash, so a
/// deploy of it is a real one (upload, validation, fetch, compile), not a cache hit.
pub fn distinct_component(component: &Path, dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(component).expect("reading the component");
    let name = b"outpost-test";
    let mut payload = leb128(name.len() as u64);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section
    bytes.extend(leb128(payload.len() as u64));
    bytes.extend(payload);
    let path = dir.join(format!("component-{tag}.wasm"));
    std::fs::write(&path, bytes).expect("writing the component");
    path
}

fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
