//! `outpost check [FILE]`: validate an outpost.toml, node.toml or origin.toml as the command
//! that uses it would, without starting anything. Exit status 0 and a one-line summary if it
//! is valid; 1 and the error, naming the file and the field, if not.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::Output;
use outpost_core::config::{AppSpec, NodeConfig, OriginConfig};

/// Which configuration file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Kind {
    /// An app's outpost.toml (or its directory).
    App,
    /// A node's node.toml.
    Node,
    /// An origin's origin.toml.
    Origin,
}

impl Kind {
    /// What a path is by its name: a directory or `outpost.toml` is an app, a name that starts
    /// with `origin` an origin, any other file a node.
    fn of(path: &Path) -> Kind {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() || name == "outpost.toml" {
            Kind::App
        } else if name.starts_with("origin") {
            Kind::Origin
        } else {
            Kind::Node
        }
    }
}

/// What a valid file holds, in short (`--json` prints it as is).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Checked {
    App {
        file: PathBuf,
        name: String,
        routes: Vec<String>,
        component: PathBuf,
        built: bool,
    },
    Node {
        file: PathBuf,
        name: String,
        https: std::net::SocketAddr,
        apps: Vec<String>,
        origins: usize,
    },
    Origin {
        file: PathBuf,
        name: String,
        admin: std::net::SocketAddr,
        cluster: std::net::SocketAddr,
    },
}

/// Check `path` (by default ./outpost.toml) as `kind` (by default from its name).
pub(super) fn check(
    path: Option<PathBuf>,
    kind: Option<Kind>,
    output: Output,
) -> anyhow::Result<()> {
    let file = path.unwrap_or_else(|| PathBuf::from("outpost.toml"));
    let checked = match kind.unwrap_or_else(|| Kind::of(&file)) {
        Kind::App => {
            let app = AppSpec::load(&file)?;
            Checked::App {
                name: app.settings.name.clone(),
                routes: app.settings.routes.iter().map(|r| r.to_string()).collect(),
                built: app.component.is_file(),
                component: app.component,
                file,
            }
        }
        Kind::Node => {
            let node = NodeConfig::load(&file)?;
            Checked::Node {
                name: node.name.clone(),
                https: node.https,
                apps: node.apps.iter().map(|a| a.settings.name.clone()).collect(),
                origins: node.cluster.as_ref().map_or(0, |c| c.origins.len()),
                file,
            }
        }
        Kind::Origin => {
            let origin = OriginConfig::load(&file)?;
            Checked::Origin {
                name: origin.name.clone(),
                admin: origin.admin_listen,
                cluster: origin.cluster_listen,
                file,
            }
        }
    };
    output.print(&checked, |checked| println!("{}", summary(checked)))
}

/// The line a person reads.
fn summary(checked: &Checked) -> String {
    match checked {
        Checked::App {
            file,
            name,
            routes,
            component,
            built,
        } => format!(
            "{}: ok: app {name}, {} route(s), component {} ({})",
            file.display(),
            routes.len(),
            component.display(),
            if *built {
                "built"
            } else {
                "not built yet: outpost build"
            }
        ),
        Checked::Node {
            file,
            name,
            https,
            apps,
            origins,
        } => format!(
            "{}: ok: node {name}, https on {https}, {} app(s) [{}], {origins} origin(s)",
            file.display(),
            apps.len(),
            apps.join(", ")
        ),
        Checked::Origin {
            file,
            name,
            admin,
            cluster,
        } => format!(
            "{}: ok: origin {name}, admin on {admin}, cluster on {cluster}",
            file.display()
        ),
    }
}
