//! `outpost check [FILE]`: validate an outpost.toml, node.toml or origin.toml as the command
//! that uses it would, without starting anything. Exit status 0 and a one-line summary if it
//! is valid; 1 and the error, naming the file and the field, if not.

use std::path::{Path, PathBuf};

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

/// Check `path` (by default ./outpost.toml) as `kind` (by default from its name).
pub(super) fn check(path: Option<PathBuf>, kind: Option<Kind>) -> anyhow::Result<()> {
    let path = path.unwrap_or_else(|| PathBuf::from("outpost.toml"));
    match kind.unwrap_or_else(|| Kind::of(&path)) {
        Kind::App => {
            let app = AppSpec::load(&path)?;
            let built = if app.component.is_file() {
                "built"
            } else {
                "not built yet: outpost build"
            };
            println!(
                "{}: ok: app {}, {} route(s), component {} ({built})",
                path.display(),
                app.settings.name,
                app.settings.routes.len(),
                app.component.display()
            );
        }
        Kind::Node => {
            let node = NodeConfig::load(&path)?;
            let apps: Vec<&str> = node.apps.iter().map(|a| a.settings.name.as_str()).collect();
            let origins = node.cluster.as_ref().map_or(0, |c| c.origins.len());
            println!(
                "{}: ok: node {}, https on {}, {} app(s) [{}], {} origin(s)",
                path.display(),
                node.name,
                node.https,
                apps.len(),
                apps.join(", "),
                origins
            );
        }
        Kind::Origin => {
            let origin = OriginConfig::load(&path)?;
            println!(
                "{}: ok: origin {}, admin on {}, cluster on {}",
                path.display(),
                origin.name,
                origin.admin_listen,
                origin.cluster_listen
            );
        }
    }
    Ok(())
}
