//! `outpost dev [PATH]`: one app, served over HTTPS on localhost with a development CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use crate::dev_cert;
use crate::launch::{LaunchSpec, launch};
use outpost_core::config::HealthSettings;
use outpost_core::config::{AppSpec, HttpSettings, PoolSettings, Tenancy};
use outpost_edge::server::handoff::{self, Inherited};
use outpost_net::listener::ShutdownSignal;
use outpost_runtime::Origin;

#[derive(Args)]
pub(super) struct DevArgs {
    /// An app directory with an outpost.toml, its outpost.toml, or a .wasm component.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Also listen for plain HTTP here and redirect it to HTTPS.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Where the dev CA, certificates and compiled components are kept
    /// [default: $OUTPOST_DATA_DIR, else ~/.local/share/outpost/dev].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(super) async fn run(args: DevArgs, shutdown: ShutdownSignal) -> anyhow::Result<()> {
    let app = load_app(&args.path)?;
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    if handoff::running_node(&data_dir) {
        bail!(
            "another outpost is already running from {}; stop it, or give this one its own --data-dir",
            data_dir.display()
        );
    }
    let certs = dev_cert::ensure(&data_dir.join("tls"))?;
    let ca = certs.ca_cert.clone();
    let kv_dir = data_dir.join("kv");
    let launched = launch(
        LaunchSpec {
            https: args.listen,
            http_redirect: args.http,
            plain: None,
            certs: vec![certs.cert],
            apps: vec![app],
            pool: PoolSettings {
                instances: 100,
                ..PoolSettings::default()
            },
            http: HttpSettings::default(),
            data_dir,
            expose_errors: true,
            cluster: None,
            admin: None,
            health: HealthSettings::default(),
            access_log: true,
            // The author's machine: fetching local services is what development needs.
            tenancy: Tenancy::for_development(),
            inherited: Inherited::default(),
            name: "dev".into(),
        },
        shutdown,
    )
    .await?;

    let started = &launched.apps[0];
    let url = format!("https://localhost:{}/", launched.https.port());
    let how = match started.deployment.origin {
        Origin::Cache => format!(
            "loaded from the compile cache in {} ms",
            started.compile_millis
        ),
        Origin::Compiled => format!("compiled in {} ms", started.compile_millis),
    };
    println!(
        "outpost dev: serving app {:?} ({how})",
        started.spec.settings.name
    );
    println!(
        "  component: {} (sha256 {})",
        started.spec.component.display(),
        &started.deployment.digest[..16]
    );
    println!("  {url}");
    let namespaces = &started.spec.settings.kv_namespaces;
    if !namespaces.is_empty() {
        println!(
            "  KV: namespaces {} kept in {} (embedded origin)",
            namespaces.join(", "),
            kv_dir.display()
        );
    }
    if let Some(http) = launched.http_redirect {
        println!("  http://localhost:{}/ redirects to HTTPS", http.port());
    }
    println!("  CA certificate: {}", ca.display());
    println!("  try: curl --cacert {} {url}", ca.display());
    println!("Press Ctrl-C to stop.");
    launched.done.await.context("the server task failed")?;
    Ok(())
}

fn load_app(path: &Path) -> anyhow::Result<AppSpec> {
    if !path.exists() {
        bail!(
            "{} does not exist: give an app directory, its outpost.toml or a .wasm component",
            path.display()
        );
    }
    let is_wasm = path.is_file() && path.extension().is_some_and(|e| e == "wasm");
    let app = if is_wasm {
        AppSpec::from_component(path)?
    } else {
        AppSpec::load(path)?
    };
    Ok(app)
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTPOST_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("outpost/dev")
}
