//! `outpost dev --watch`: which changes on disk call for an app to be rebuilt, and a stream of
//! the apps that changed, each batch handed out once no change has come for a moment (one
//! save that writes several files is one rebuild).
//!
//! An app with sources is watched as its directory tree, minus the build's own outputs and
//! the tools' state (its component, `target/`, `node_modules/`, `__pycache__/`, anything whose
//! name starts with a dot): those are never watched at all, so a `node_modules` of thousands of
//! directories costs no inotify watch. An app without sources is watched as its files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long no change must come before the batch is handed out.
const QUIET: Duration = Duration::from_millis(200);

/// What to watch for one app.
#[derive(Debug, Clone)]
pub(super) enum Watched {
    /// The tree under `dir`, except the build's outputs (`component` among them).
    Tree { dir: PathBuf, component: PathBuf },
    /// These files only (a component without sources, and its outpost.toml if it has one).
    Files(Vec<PathBuf>),
}

impl Watched {
    /// Whether a change at `path` concerns this app.
    fn concerns(&self, path: &Path) -> bool {
        match self {
            Watched::Tree { dir, component } => {
                path.starts_with(dir) && !is_build_output(dir, component, path)
            }
            Watched::Files(files) => files.iter().any(|f| f == path),
        }
    }
}

/// Whether `path`, under an app's `dir`, is one of the build's own outputs or a tool's state,
/// which must not start a rebuild: the component, anything under a directory named `target`,
/// `node_modules` or `__pycache__`, anything whose name starts with a dot (`.outpost/`,
/// `.git/`, an editor's swap file) but the app's `.dev.vars` (its secrets under dev).
pub(super) fn is_build_output(dir: &Path, component: &Path, path: &Path) -> bool {
    if path == component {
        return true;
    }
    if path == dir.join(super::dev_vars::FILE) {
        return false;
    }
    let Ok(inside) = path.strip_prefix(dir) else {
        return true;
    };
    inside.components().any(|part| {
        let name = part.as_os_str().to_string_lossy();
        name.starts_with('.') || matches!(&*name, "target" | "node_modules" | "__pycache__")
    })
}

/// The watch over every app, and the changes it has seen.
pub(super) struct Changes {
    apps: Vec<Watched>,
    watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
}

impl Changes {
    /// Watch `apps` (app `i` is `apps[i]`).
    pub(super) fn start(apps: Vec<Watched>) -> anyhow::Result<Changes> {
        let (send, events) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = send.send(event);
        })
        .context("starting the file watcher")?;
        for app in &apps {
            match app {
                Watched::Tree { dir, component } => watch_tree(&mut watcher, dir, dir, component)?,
                Watched::Files(files) => {
                    let dirs: BTreeSet<&Path> = files.iter().filter_map(|f| f.parent()).collect();
                    for dir in dirs {
                        watch(&mut watcher, dir)?;
                    }
                }
            }
        }
        Ok(Changes {
            apps,
            watcher,
            events,
        })
    }

    /// The apps changed since the last call, once changes have stopped coming for a moment;
    /// `None` if the watcher stopped.
    pub(super) async fn next(&mut self) -> Option<BTreeSet<usize>> {
        let mut changed = BTreeSet::new();
        loop {
            let event = if changed.is_empty() {
                self.events.recv().await?
            } else {
                match tokio::time::timeout(QUIET, self.events.recv()).await {
                    Ok(Some(event)) => event,
                    Ok(None) => return None,
                    Err(_) => return Some(changed),
                }
            };
            match event {
                Ok(event) => self.note(event, &mut changed),
                Err(err) => tracing::warn!("watching for changes: {err}"),
            }
        }
    }

    fn note(&mut self, event: notify::Event, changed: &mut BTreeSet<usize>) {
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            // The app whose directory holds the path most closely (apps may nest).
            let owner = self
                .apps
                .iter()
                .enumerate()
                .filter(|(_, app)| app.concerns(path))
                .max_by_key(|(_, app)| match app {
                    Watched::Tree { dir, .. } => dir.components().count(),
                    Watched::Files(_) => usize::MAX,
                });
            let Some((i, app)) = owner else { continue };
            changed.insert(i);
            // A new directory in a watched tree is watched too.
            if let (EventKind::Create(_), Watched::Tree { dir, component }) = (event.kind, app)
                && path.is_dir()
            {
                let (dir, component) = (dir.clone(), component.clone());
                if let Err(err) = watch_tree(&mut self.watcher, &dir, path, &component) {
                    tracing::warn!("watching {}: {err:#}", path.display());
                }
            }
        }
    }
}

fn watch(watcher: &mut RecommendedWatcher, dir: &Path) -> anyhow::Result<()> {
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))
}

/// Watch `at` and every directory under it, within the app's `root`, that is not a build
/// output.
fn watch_tree(
    watcher: &mut RecommendedWatcher,
    root: &Path,
    at: &Path,
    component: &Path,
) -> anyhow::Result<()> {
    watch(watcher, at)?;
    let entries = std::fs::read_dir(at).with_context(|| format!("reading {}", at.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !is_build_output(root, component, &path) {
            watch_tree(watcher, root, &path, component)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builds_outputs_and_tools_state_are_not_changes() {
        let dir = Path::new("/apps/shop");
        let component = Path::new("/apps/shop/dist/shop.wasm");
        let output = |p: &str| is_build_output(dir, component, Path::new(p));
        for source in [
            "/apps/shop/src/index.js",
            "/apps/shop/outpost.toml",
            "/apps/shop/dist/other.js",
            "/apps/shop/targets.txt",
        ] {
            assert!(!output(source), "{source}");
        }
        for built in [
            "/apps/shop/dist/shop.wasm",
            "/apps/shop/target/debug/x",
            "/apps/shop/node_modules/a/b.js",
            "/apps/shop/src/__pycache__/app.pyc",
            "/apps/shop/.outpost/build/bundle.js",
            "/apps/shop/src/.index.js.swp",
            "/apps/other/src/index.js",
        ] {
            assert!(output(built), "{built}");
        }
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_change_of_the_app_that_holds_them() {
        let root = outpost_core::test_support::temp_dir("dev-watch");
        let (shop, blog) = (root.join("shop"), root.join("blog"));
        for dir in [&shop, &blog] {
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::create_dir_all(dir.join("node_modules")).unwrap();
        }
        let mut changes = Changes::start(vec![
            Watched::Tree {
                dir: shop.clone(),
                component: shop.join("shop.wasm"),
            },
            Watched::Tree {
                dir: blog.clone(),
                component: blog.join("blog.wasm"),
            },
        ])
        .unwrap();
        // The build's own outputs come first: they must not count.
        std::fs::write(shop.join("shop.wasm"), "built").unwrap();
        std::fs::write(shop.join("node_modules/dep.js"), "installed").unwrap();
        for i in 0..5 {
            std::fs::write(blog.join("src/index.js"), format!("v{i}")).unwrap();
        }
        let changed = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("a change within 10 s");
        assert_eq!(changed, Some(BTreeSet::from([1])));

        // A directory made after the start is watched as well.
        std::fs::create_dir_all(shop.join("src/new")).unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .unwrap();
        assert_eq!(changed, Some(BTreeSet::from([0])));
        std::fs::write(shop.join("src/new/mod.js"), "x").unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .unwrap();
        assert_eq!(changed, Some(BTreeSet::from([0])));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
