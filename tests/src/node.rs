//! A single node on loopback, configured by files as an operator would configure it.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Client, Outpost, TempDir, TestCa, wasm};

/// One `outpost node` set up as an operator would: its own directory with app manifests, PEM
/// certificates from a test CA, and a node.toml.
pub struct NodeDir {
    /// The node's directory: app manifests under `apps/`, the PEM files, node.toml and `data/`.
    pub dir: TempDir,
    /// The CA that issues the node's certificates; a client from [`NodeDir::start`] trusts it.
    pub ca: TestCa,
}

impl NodeDir {
    /// A fresh directory named after `label` and a new test CA.
    pub fn new(label: &str) -> NodeDir {
        NodeDir {
            dir: TempDir::new(label),
            ca: TestCa::new(),
        }
    }

    /// An app directory named `name` running the test guest `guest` on `routes`, with `extra`
    /// appended to its outpost.toml.
    pub fn app(&self, name: &str, guest: &str, routes: &[&str], extra: &str) -> PathBuf {
        let routes = routes
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.dir
            .write(
                &format!("apps/{name}/outpost.toml"),
                format!(
                    "name = \"{name}\"\ncomponent = \"{}\"\nroutes = [{routes}]\n{extra}",
                    wasm(guest).display()
                ),
            )
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// A node.toml serving `apps`, with certificates for a.test (and *.a.test) and b.test.
    pub fn config(&self, apps: &[PathBuf], extra: &str) -> PathBuf {
        self.config_named("node.toml", apps, extra)
    }

    /// As [`NodeDir::config`], written to `file` instead of node.toml (for a second config).
    pub fn config_named(&self, file: &str, apps: &[PathBuf], extra: &str) -> PathBuf {
        self.config_listening(file, apps, "", extra)
    }

    /// As [`NodeDir::config_named`], with `listen` added to the `[listen]` table (say
    /// `plain = "127.0.0.1:0"`).
    pub fn config_listening(
        &self,
        file: &str,
        apps: &[PathBuf],
        listen: &str,
        extra: &str,
    ) -> PathBuf {
        let (a_cert, a_key) = self.ca.issue(self.dir.path(), "a", &["a.test", "*.a.test"]);
        let (b_cert, b_key) = self.ca.issue(self.dir.path(), "b", &["b.test"]);
        let apps = apps
            .iter()
            .map(|a| format!("{:?}", a.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        self.dir.write(
            file,
            format!(
                "name = \"test-node\"\ndata_dir = \"data\"\napps = [{apps}]\n\
                 [listen]\nhttps = \"127.0.0.1:0\"\n{listen}\n\
                 [[tls.certs]]\nhosts = [\"a.test\", \"*.a.test\"]\ncert = {a_cert:?}\nkey = {a_key:?}\n\
                 [[tls.certs]]\nhosts = [\"b.test\"]\ncert = {b_cert:?}\nkey = {b_key:?}\n{extra}"
            ),
        )
    }

    /// Start `outpost node --config CONFIG` and return it with a client that trusts the test CA;
    /// panics if the node exits before it is ready.
    pub fn start(&self, config: &Path) -> (Outpost, Client) {
        let node = Outpost::node(config).unwrap_or_else(|e| panic!("outpost node failed: {e:?}"));
        let client = Client::new(node.addr, self.ca.pem());
        (node, client)
    }

    /// The DER of the certificate `NAME.pem` (`a` or `b`, written by [`NodeDir::config`]), to
    /// compare with [`crate::Reply::peer_cert`].
    pub fn cert_der(&self, name: &str) -> Vec<u8> {
        let pem = std::fs::read(self.dir.path().join(format!("{name}.pem"))).unwrap();
        CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
    }
}
