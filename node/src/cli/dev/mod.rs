//! `outpost dev [PATH...]`: the apps at PATH built, then served on this machine over plain
//! HTTP and HTTPS (a development CA), with the KV embedded, and metrics and the KV API (for
//! `outpost kv --local`) on a loopback admin listener; with `--watch`, each app rebuilt as its
//! files change and the new build swapped in without closing a connection.
//!
//! Plain HTTP is served, not redirected: loopback traffic never leaves the machine, so TLS
//! protects nothing there and would only make every `curl` need `--cacert`. HTTPS is served
//! beside it for what needs a secure context or the TLS path itself.

mod apps;
mod dev_vars;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::build;
use crate::dev_cert;
use crate::launch::{LaunchSpec, LocalApps, Started, launch};
use apps::{AppSource, RouteTaken};
use outpost_core::config::HealthSettings;
use outpost_core::config::{AppSpec, HttpSettings, PoolSettings, Tenancy};
use outpost_edge::server::handoff::{self, Inherited};
use outpost_net::listener::ShutdownSignal;
use outpost_runtime::Origin;
use watch::{Changes, Watched};

#[derive(Args)]
pub(super) struct DevArgs {
    /// App directories (each with an outpost.toml), outpost.toml files, .wasm components, or
    /// directories whose subdirectories are apps.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Address of the plain-HTTP listener, which serves the apps as HTTPS does.
    #[arg(long, default_value = "127.0.0.1:8787")]
    http: SocketAddr,
    /// Answer plain HTTP with a redirect to HTTPS instead.
    #[arg(long)]
    redirect: bool,
    /// Address of the admin listener: /metrics, /healthz, /readyz, and (on a loopback
    /// address) the KV API that `outpost kv --local` talks to.
    #[arg(long, default_value = "127.0.0.1:8788")]
    admin: SocketAddr,
    /// Rebuild an app when a file under its directory changes, and serve the new build
    /// without closing any connection.
    #[arg(long)]
    watch: bool,
    /// Serve the components as they are, without building them first.
    #[arg(long)]
    no_build: bool,
    /// Where the dev CA, certificates, KV data and compiled components are kept
    /// [default: $OUTPOST_DATA_DIR, else ~/.local/share/outpost/dev].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The file in the data directory that tells `outpost kv --local` where the running dev
/// server's admin listener is.
pub(super) const ADMIN_URL_FILE: &str = "dev-admin-url";

pub(super) async fn run(args: DevArgs, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let sources = apps::find(&args.paths)?;
    let data_dir = data_dir_or_default(args.data_dir.clone());
    if handoff::running_node(&data_dir) {
        bail!(
            "another outpost is already running from {}; stop it, or give this one its own --data-dir",
            data_dir.display()
        );
    }
    let mut specs = Vec::new();
    for source in &sources {
        if !args.no_build {
            build_if_it_has_sources(source).await?;
        }
        specs.push(source.load()?);
    }
    let (placed, taken) = apps::place(&specs)?;
    let names: Vec<&str> = placed.iter().map(|a| a.settings.name.as_str()).collect();
    let certs = dev_cert::ensure(&data_dir.join("tls"), &names)?;
    let ca = certs.ca_cert.clone();
    let (plain, http_redirect) = match args.redirect {
        false => (Some(args.http), None),
        true => (None, Some(args.http)),
    };
    let launched = launch(
        LaunchSpec {
            https: args.listen,
            http_redirect,
            plain,
            http3: false,
            certs: vec![certs.cert],
            apps: placed,
            // One author's apps on their own machine: no tenant to shield from another, and a
            // burst of requests from a load tool should wait for an instance, not get 503s.
            pool: PoolSettings {
                instances: 100,
                app_share_percent: 100,
                queue_timeout: std::time::Duration::from_secs(10),
                ..PoolSettings::default()
            },
            http: HttpSettings::default(),
            data_dir: data_dir.clone(),
            expose_errors: true,
            cluster: None,
            admin: Some(args.admin),
            local_kv_api: true,
            health: HealthSettings::default(),
            access_log: true,
            // The author's machine: fetching local services is what development needs.
            tenancy: Tenancy::for_development(),
            inherited: Inherited::default(),
            name: "dev".into(),
            region: None,
            preview_domain: None,
        },
        shutdown,
    )
    .await?;
    let admin = launched.admin.expect("dev asks for an admin listener");
    let admin_url_file = data_dir.join(ADMIN_URL_FILE);
    std::fs::write(&admin_url_file, format!("http://{admin}\n"))
        .with_context(|| format!("writing {}", admin_url_file.display()))?;

    let http_port = launched.plain.map(|a| a.port());
    let https_port = launched.https.port();
    println!(
        "outpost dev: serving {} app{}",
        launched.apps.len(),
        if launched.apps.len() == 1 { "" } else { "s" }
    );
    for started in &launched.apps {
        print_app(started, http_port, https_port);
    }
    for RouteTaken { app, route, by } in &taken {
        println!("  note: route {route} of {app} is served by {by}, given before it");
    }
    let every_host = launched.apps.iter().find(|a| {
        a.spec
            .settings
            .routes
            .iter()
            .any(|r| r.to_string().starts_with("*/"))
    });
    if let Some(app) = every_host {
        println!("  any other host: {}", app.spec.settings.name);
    }
    match (launched.plain, launched.http_redirect) {
        (Some(plain), _) => println!("  http://localhost:{}/", plain.port()),
        (None, Some(redirect)) => {
            println!("  http://localhost:{}/ redirects to HTTPS", redirect.port())
        }
        (None, None) => {}
    }
    println!("  https://localhost:{https_port}/");
    println!("  CA certificate: {}", ca.display());
    match launched.plain {
        Some(plain) => println!("  try: curl http://localhost:{}/", plain.port()),
        None => println!(
            "  try: curl --cacert {} https://localhost:{https_port}/",
            ca.display()
        ),
    }
    println!("  metrics: http://{admin}/metrics");
    let namespaces: Vec<String> = launched
        .apps
        .iter()
        .flat_map(|a| {
            let app = &a.spec.settings.name;
            a.spec
                .settings
                .kv_namespaces
                .iter()
                .map(move |ns| format!("{app}/{ns}"))
        })
        .collect();
    if !namespaces.is_empty() {
        println!(
            "  KV: {} in {}; seed it with `outpost kv put --local --app APP -n NAMESPACE KEY VALUE`",
            namespaces.join(", "),
            data_dir.join("kv").display()
        );
    }
    let local = launched.local.expect("dev belongs to no fleet");
    let watching = match args.watch {
        true => Some(Changes::start(watch_list(&sources, &specs)?)?),
        false => None,
    };
    if watching.is_some() {
        println!("  watching for changes: a change rebuilds its app and swaps the new build in");
    }
    println!("Press Ctrl-C to stop.");

    let mut done = launched.done;
    let served = match watching {
        Some(changes) => tokio::select! {
            served = &mut done => served,
            // The watcher stopped: serve on, unwatched.
            () = rebuild_on_change(changes, &sources, specs, &local, &args) => done.await,
        },
        None => done.await,
    };
    let _ = std::fs::remove_file(&admin_url_file);
    served.context("the server task failed")?;
    Ok(())
}

/// One app's line: its name, how it was loaded, its component, and its own URLs.
fn print_app(started: &Started, http_port: Option<u16>, https_port: u16) {
    let name = &started.spec.settings.name;
    let how = match started.deployment.origin {
        Origin::Cache => format!(
            "loaded from the compile cache in {} ms",
            started.compile_millis
        ),
        Origin::Compiled => format!("compiled in {} ms", started.compile_millis),
    };
    println!("  {name} ({how})");
    println!(
        "    component: {} (sha256 {})",
        started.spec.component.display(),
        &started.deployment.digest[..16]
    );
    let mut urls = Vec::new();
    if let Some(port) = http_port {
        urls.push(format!("http://{name}.localhost:{port}/"));
    }
    urls.push(format!("https://{name}.localhost:{https_port}/"));
    println!("    {}", urls.join("  "));
}

/// Build the app first if there is something to build it from (sources, or `[build]
/// command`); a component named alone is served as it is.
async fn build_if_it_has_sources(source: &AppSource) -> anyhow::Result<()> {
    let AppSource::Manifest(path) = source else {
        return Ok(());
    };
    if build::has_sources(&AppSpec::load(path)?) {
        let path = path.clone();
        let built = tokio::task::spawn_blocking(move || build::build(&path))
            .await
            .context("the build task failed")??;
        println!("{}", built.line());
    }
    Ok(())
}

/// What to watch for each app: the tree of an app with sources, the files of one without.
fn watch_list(sources: &[AppSource], specs: &[AppSpec]) -> anyhow::Result<Vec<Watched>> {
    let canonical =
        |p: &Path| std::fs::canonicalize(p).with_context(|| format!("finding {}", p.display()));
    sources
        .iter()
        .zip(specs)
        .map(|(source, spec)| {
            let component = canonical(&spec.component)?;
            Ok(match source {
                AppSource::Manifest(_) if build::has_sources(spec) => Watched::Tree {
                    dir: canonical(&build::app_dir(spec))?,
                    component,
                },
                AppSource::Manifest(manifest) => {
                    Watched::Files(vec![canonical(manifest)?, component])
                }
                AppSource::Component(_) => Watched::Files(vec![component]),
            })
        })
        .collect()
}

/// Rebuild each app as its files change and swap the new build in; a failed build leaves the
/// last good one serving. Runs until the watcher stops.
async fn rebuild_on_change(
    mut changes: Changes,
    sources: &[AppSource],
    mut specs: Vec<AppSpec>,
    local: &LocalApps,
    args: &DevArgs,
) {
    while let Some(changed) = changes.next().await {
        for i in changed {
            let name = specs[i].settings.name.clone();
            println!("{name}: changed, rebuilding");
            let started = Instant::now();
            match rebuild(&sources[i], i, &mut specs, local, args).await {
                Ok(live) => println!(
                    "{name}: new build live in {} ms (sha256 {})",
                    started.elapsed().as_millis(),
                    &live.deployment.digest[..16]
                ),
                Err(err) => {
                    println!("{name}: {err:#}\n{name}: still serving the last good build")
                }
            }
        }
    }
}

async fn rebuild(
    source: &AppSource,
    i: usize,
    specs: &mut [AppSpec],
    local: &LocalApps,
    args: &DevArgs,
) -> anyhow::Result<Started> {
    if !args.no_build {
        build_if_it_has_sources(source).await?;
    }
    let mut next = specs.to_vec();
    next[i] = source.load()?;
    let (placed, _) = apps::place(&next)?;
    let live = local.replace(placed[i].clone()).await?;
    specs[i] = next.swap_remove(i);
    Ok(live)
}

/// `given`, else the data directory `outpost dev` uses by default: `$OUTPOST_DATA_DIR`, else
/// `~/.local/share/outpost/dev` (under `$XDG_DATA_HOME` if set).
pub(super) fn data_dir_or_default(given: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = given.or_else(|| std::env::var_os("OUTPOST_DATA_DIR").map(PathBuf::from)) {
        return dir;
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("outpost/dev")
}
