//! A fleet on loopback: an origin and N nodes as real processes, set up the way an operator
//! would, with the real CLI (`outpost ca`, `outpost token`) and real config files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Exited, Outpost, TempDir, outpost_bin};
use crate::{Client, wasm};

pub struct Fleet {
    pub dir: TempDir,
    /// A token with every right.
    pub token: String,
    /// A token that may only read.
    pub read_token: String,
    pub origin: Option<Outpost>,
    pub admin: SocketAddr,
    pub cluster: SocketAddr,
    pub nodes: Vec<Option<Outpost>>,
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
    /// A cluster CA, an origin and `nodes` nodes named edge-1, edge-2, ...
    pub fn start(label: &str, nodes: usize) -> Fleet {
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
        let (token, hash) = new_token(root, "ops", "read,deploy,admin");
        let (read_token, read_hash) = new_token(root, "viewer", "read");
        let config = dir.write(
            "origin.toml",
            format!(
                "data_dir = \"origin-data\"\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\ncert = \"cluster/origin.pem\"\nkey = \"cluster/origin-key.pem\"\n\
                 [cluster]\nlisten = \"127.0.0.1:0\"\nca = \"cluster/ca.pem\"\ncert = \"cluster/origin.pem\"\nkey = \"cluster/origin-key.pem\"\n\
                 [[tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nrights = [\"read\", \"deploy\", \"admin\"]\n\
                 [[tokens]]\nname = \"viewer\"\nsha256 = \"{read_hash}\"\nrights = [\"read\"]\n"
            ),
        );
        let origin = Outpost::origin(&config).unwrap_or_else(|e| panic!("origin failed: {e:?}"));
        let (admin, cluster) = (origin.addr, origin.cluster.expect("cluster address"));
        let mut fleet = Fleet {
            dir,
            token,
            read_token,
            origin: Some(origin),
            admin,
            cluster,
            nodes: Vec::new(),
        };
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
            fleet.write_node_config(&name, fleet.cluster);
            fleet.nodes.push(None);
            fleet.start_node(i - 1);
        }
        fleet
    }

    fn write_node_config(&self, name: &str, origin: SocketAddr) -> PathBuf {
        self.dir.write(
            &format!("{name}.toml"),
            format!(
                "name = \"{name}\"\ndata_dir = \"{name}-data\"\n\
                 [listen]\nhttps = \"127.0.0.1:0\"\n\
                 [[tls.certs]]\nhosts = [\"localhost\"]\ncert = \"cluster/{name}.pem\"\nkey = \"cluster/{name}-key.pem\"\n\
                 [pool]\ninstances = 50\n\
                 [cluster]\norigin = \"{origin}\"\norigin_name = \"origin\"\nca = \"cluster/ca.pem\"\n\
                 cert = \"cluster/{name}.pem\"\nkey = \"cluster/{name}-key.pem\"\n"
            ),
        )
    }

    /// (Re)start node `i` (0-based) from its config and data directory.
    pub fn start_node(&mut self, i: usize) {
        let config = self.dir.path().join(format!("edge-{}.toml", i + 1));
        let node = Outpost::node(&config).unwrap_or_else(|e| panic!("node {i} failed: {e:?}"));
        self.nodes[i] = Some(node);
    }

    pub fn node(&self, i: usize) -> &Outpost {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Kill node `i` hard (as a crash would).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub fn kill_origin(&mut self) {
        self.origin = None;
    }

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
        let mut command = Command::new(outpost_bin());
        command
            .args(args)
            .current_dir(cwd)
            .env(
                "OUTPOST_ORIGIN",
                format!("https://localhost:{}", self.admin.port()),
            )
            .env("OUTPOST_CA", self.dir.path().join("cluster/ca.pem"))
            .env_remove("OUTPOST_TOKEN");
        if let Some(token) = token {
            command.env("OUTPOST_TOKEN", token);
        }
        let output = command.output().expect("running outpost");
        Exited {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn cli(&self, cwd: &Path, args: &[&str]) -> Exited {
        self.cli_with_token(Some(&self.token), cwd, args)
    }

    /// An app directory named `name` whose outpost.toml runs `component` with `config`.
    pub fn app(&self, name: &str, component: &Path, config: &[(&str, &str)]) -> PathBuf {
        let config: String = config
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect();
        self.dir
            .write(
                &format!("apps/{name}/outpost.toml"),
                format!(
                    "name = \"{name}\"\ncomponent = {:?}\nroutes = [\"*\"]\n[limits]\ntimeout_ms = 5000\n[config]\n{config}",
                    component.display().to_string()
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
