//! Which apps `outpost dev` serves, and on which routes: the paths given (app directories,
//! outpost.toml files, bare components, or directories whose subdirectories are apps), each
//! app on `NAME.localhost` and on its own routes where no app given before it claimed them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use outpost_core::config::AppSpec;
use outpost_router::RoutePattern;

/// Where one app is read from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AppSource {
    /// An outpost.toml (or the directory holding one): built first if it has sources.
    Manifest(PathBuf),
    /// A bare `.wasm` component, served on every route under its file's name.
    Component(PathBuf),
}

impl AppSource {
    /// The app as it is on disk now, with the secrets of its `.dev.vars` among its config.
    pub(super) fn load(&self) -> anyhow::Result<AppSpec> {
        match self {
            AppSource::Manifest(path) => {
                let mut spec = AppSpec::load(path)?;
                let dir = if path.is_dir() {
                    path.as_path()
                } else {
                    path.parent().unwrap_or(Path::new("."))
                };
                super::dev_vars::merge(&mut spec.settings.config, &super::dev_vars::read(dir)?);
                Ok(spec)
            }
            AppSource::Component(path) => Ok(AppSpec::from_component(path)?),
        }
    }
}

/// The apps at `paths`, in the order given (a directory of apps in its entries' name order).
pub(super) fn find(paths: &[PathBuf]) -> anyhow::Result<Vec<AppSource>> {
    let mut found = Vec::new();
    for path in paths {
        found.extend(find_one(path)?);
    }
    Ok(found)
}

fn find_one(path: &Path) -> anyhow::Result<Vec<AppSource>> {
    if !path.exists() {
        bail!(
            "{} does not exist: give an app directory, its outpost.toml, a .wasm component or \
             a directory of apps",
            path.display()
        );
    }
    if path.is_file() {
        return Ok(vec![match path.extension().is_some_and(|e| e == "wasm") {
            true => AppSource::Component(path.to_path_buf()),
            false => AppSource::Manifest(path.to_path_buf()),
        }]);
    }
    if path.join("outpost.toml").is_file() {
        return Ok(vec![AppSource::Manifest(path.join("outpost.toml"))]);
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    let mut apps = Vec::new();
    for entry in entries {
        let manifest = entry?.path().join("outpost.toml");
        if manifest.is_file() {
            apps.push(AppSource::Manifest(manifest));
        }
    }
    if apps.is_empty() {
        bail!(
            "{} has no outpost.toml, and none of its subdirectories has one",
            path.display()
        );
    }
    apps.sort();
    Ok(apps)
}

/// A route an app asked for and did not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RouteTaken {
    /// The app that asked for it.
    pub app: String,
    /// The route.
    pub route: String,
    /// The app given before it, which serves it.
    pub by: String,
}

/// `apps` as served: each on `NAME.localhost` first, then on its own routes where no app
/// before it claimed them; the routes some app did not get. Two apps of one name are an
/// error: their `NAME.localhost` would be the same.
pub(super) fn place(apps: &[AppSpec]) -> anyhow::Result<(Vec<AppSpec>, Vec<RouteTaken>)> {
    let mut owners: Vec<(String, String)> = Vec::new();
    let mut names = HashSet::new();
    let mut taken = Vec::new();
    let mut placed = Vec::new();
    for app in apps {
        let name = app.settings.name.clone();
        if !names.insert(name.clone()) {
            bail!(
                "two apps are named {name:?} (one of them in {}): rename one",
                app.source.display()
            );
        }
        let own_host = RoutePattern::parse(&format!("{name}.localhost"))
            .with_context(|| format!("app {name:?}: its localhost route"))?;
        let mut routes = Vec::new();
        for route in std::iter::once(own_host).chain(app.settings.routes.iter().cloned()) {
            let key = route.to_string();
            match owners.iter().find(|(r, _)| *r == key) {
                Some((_, by)) if *by == name => {}
                Some((_, by)) => taken.push(RouteTaken {
                    app: name.clone(),
                    route: key,
                    by: by.clone(),
                }),
                None => {
                    owners.push((key, name.clone()));
                    routes.push(route);
                }
            }
        }
        let mut app = app.clone();
        app.settings.routes = routes;
        placed.push(app);
    }
    Ok((placed, taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &Path, name: &str, routes: &str) -> AppSpec {
        let app_dir = dir.join(name);
        std::fs::create_dir_all(&app_dir).unwrap();
        std::fs::write(
            app_dir.join("outpost.toml"),
            format!("name = \"{name}\"\ncomponent = \"app.wasm\"\nroutes = [{routes}]\n"),
        )
        .unwrap();
        AppSpec::load(&app_dir).unwrap()
    }

    fn routes(app: &AppSpec) -> Vec<String> {
        app.settings.routes.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn each_app_has_its_localhost_name_and_the_first_keeps_a_shared_route() {
        let dir = outpost_core::test_support::temp_dir("dev-place");
        let apps = [
            app(&dir, "shop", r#""*", "shop.example.com""#),
            app(&dir, "blog", r#""*", "example.com/blog/*""#),
        ];
        let (placed, taken) = place(&apps).unwrap();
        // Routes as the router writes them: a host alone is every path on it.
        assert_eq!(
            routes(&placed[0]),
            ["shop.localhost/*", "*/*", "shop.example.com/*"]
        );
        assert_eq!(
            routes(&placed[1]),
            ["blog.localhost/*", "example.com/blog/*"]
        );
        assert_eq!(
            taken,
            [RouteTaken {
                app: "blog".into(),
                route: "*/*".into(),
                by: "shop".into()
            }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_app_naming_its_own_localhost_route_is_not_refused() {
        let dir = outpost_core::test_support::temp_dir("dev-place-own");
        let apps = [app(&dir, "shop", r#""shop.localhost", "*""#)];
        let (placed, taken) = place(&apps).unwrap();
        assert_eq!(routes(&placed[0]), ["shop.localhost/*", "*/*"]);
        assert!(taken.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_apps_of_one_name_are_refused() {
        let dir = outpost_core::test_support::temp_dir("dev-place-twice");
        let one = app(&dir, "shop", r#""*""#);
        let err = place(&[one.clone(), one]).unwrap_err().to_string();
        assert!(err.contains("two apps are named \"shop\""), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_of_apps_is_read_in_name_order_and_an_empty_one_refused() {
        let dir = outpost_core::test_support::temp_dir("dev-find");
        app(&dir, "zeta", r#""*""#);
        app(&dir, "alpha", r#""*""#);
        std::fs::create_dir_all(dir.join("not-an-app")).unwrap();
        let found = find(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(
            found,
            [
                AppSource::Manifest(dir.join("alpha/outpost.toml")),
                AppSource::Manifest(dir.join("zeta/outpost.toml")),
            ]
        );
        // An app directory is one app, its outpost.toml too; a .wasm file a component.
        assert_eq!(
            find(&[dir.join("zeta"), dir.join("x.wasm")])
                .unwrap_err()
                .to_string(),
            format!(
                "{} does not exist: give an app directory, its outpost.toml, a .wasm component \
                 or a directory of apps",
                dir.join("x.wasm").display()
            )
        );
        assert_eq!(
            find(&[dir.join("zeta")]).unwrap(),
            [AppSource::Manifest(dir.join("zeta/outpost.toml"))]
        );
        let err = find(&[dir.join("not-an-app")]).unwrap_err().to_string();
        assert!(err.contains("has no outpost.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
