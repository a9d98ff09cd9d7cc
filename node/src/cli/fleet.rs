//! Author commands that talk to the origin: deploy, versions, activate, rollback, status,
//! delete.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::admin_client::{AdminClient, OriginArgs};
use super::output::Output;
use outpost_core::api::{
    ActiveVersion, AppDetail, BlobStored, Deleted, FleetStatus, VersionCreated,
};
use outpost_core::blobs::sha256_hex;
use outpost_core::config::AppSpec;

#[derive(Args)]
pub(super) struct DeployArgs {
    /// The app directory (with outpost.toml).
    #[arg(long, short, default_value = ".")]
    path: PathBuf,
    /// Make the new version live at once (otherwise: `outpost activate VERSION`).
    #[arg(long)]
    activate: bool,
    /// A note kept with the version.
    #[arg(long)]
    note: Option<String>,
    /// How long to wait for every connected node to serve the new version.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(flatten)]
    origin: OriginArgs,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
pub(super) struct AppArgs {
    /// The app (default: the name in ./outpost.toml).
    #[arg(long)]
    app: Option<String>,
    #[command(flatten)]
    origin: OriginArgs,
    #[command(flatten)]
    output: Output,
}

/// `outpost status`: the origin(s), and how to print.
#[derive(Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    origin: OriginArgs,
    #[command(flatten)]
    output: Output,
}

/// The app in `dir`'s outpost.toml: `None` if there is no such file, and its own error (file
/// and field) if there is one that does not load, rather than a vague "no app given" later.
fn local_app(dir: &Path) -> anyhow::Result<Option<AppSpec>> {
    if !dir.join("outpost.toml").is_file() {
        return Ok(None);
    }
    Ok(Some(AppSpec::load(dir)?))
}

/// The app name and a client, from flags or ./outpost.toml.
fn app_and_client(args: &AppArgs) -> anyhow::Result<(String, AdminClient)> {
    resolve_app(args.app.as_deref(), &args.origin)
}

/// The app given, else the one in ./outpost.toml, and a client for the origin (whose address
/// and token may also come from that file).
pub(super) fn resolve_app(
    app: Option<&str>,
    origin: &OriginArgs,
) -> anyhow::Result<(String, AdminClient)> {
    let (app, local) = app_here(app)?;
    let client = AdminClient::new(origin, local.as_ref().map(|s| &s.deploy))?;
    Ok((app, client))
}

/// The app named, else the one of ./outpost.toml; and ./outpost.toml's app, if there is one.
pub(super) fn app_here(app: Option<&str>) -> anyhow::Result<(String, Option<AppSpec>)> {
    let local = local_app(Path::new("."))?;
    let app = match (app, &local) {
        (Some(app), _) => app.to_string(),
        (None, Some(spec)) => spec.settings.name.clone(),
        (None, None) => bail!("no app given: name one, or run in an app directory"),
    };
    Ok((app, local))
}

pub(super) async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let spec = AppSpec::load(&args.path)?;
    let app = spec.settings.name.clone();
    let client = AdminClient::new(&args.origin, Some(&spec.deploy))?;
    let wasm = std::fs::read(&spec.component).with_context(|| {
        format!(
            "reading the component {} (build it first: outpost build)",
            spec.component.display()
        )
    })?;
    let sha256 = sha256_hex(&wasm);

    // Ask first: the origin may have the component already, and it refuses a token that may
    // not deploy before reading any upload.
    let blob = format!("/v1/blobs/{sha256}");
    let asked = client
        .exchange(
            http::Method::HEAD,
            &blob,
            "application/wasm",
            &[],
            Empty::<Bytes>::new(),
        )
        .await?;
    let output = args.output;
    match asked.status.as_u16() {
        200 => output.say(&format!("{app}: the origin has this component already")),
        404 => {
            let bar = ProgressBar::new(wasm.len() as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template"),
            );
            let _: BlobStored = client
                .put_with_progress(&blob, Bytes::from(wasm), bar)
                .await?;
        }
        401 => bail!("the origin refused (401): missing or unknown bearer token"),
        403 => bail!("the origin refused (403): the token lacks the Deploy right"),
        other => bail!("the origin answered {other} when asked for the component {sha256}"),
    }
    let created: VersionCreated = client
        .post(
            &format!("/v1/apps/{app}/versions"),
            &json!({ "component": sha256, "manifest": spec.manifest, "note": args.note, "activate": args.activate }),
        )
        .await?;
    let version = created.version;
    output.say(&format!(
        "{app} version {version} (sha256 {})",
        &sha256[..16]
    ));
    if args.activate {
        wait_until_live(
            &client,
            &app,
            version,
            Duration::from_secs(args.timeout),
            output,
        )
        .await?;
    } else {
        output.say(&format!("not active yet: outpost activate {version}"));
    }
    output.print(&created, |_| {})
}

/// Poll the fleet until every connected node serves `app` at `version`.
async fn wait_until_live(
    client: &AdminClient,
    app: &str,
    version: u64,
    timeout: Duration,
    output: Output,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let status = client.fleet_status().await?;
        let nodes: Vec<_> = status.nodes.iter().filter(|n| n.connected).collect();
        let mut waiting = Vec::new();
        for node in &nodes {
            let entry = node.report.apps.iter().find(|a| a.app == app);
            if entry.and_then(|e| e.live_version) == Some(version) {
                continue;
            }
            if let Some(error) = entry.and_then(|e| e.error.as_deref()) {
                bail!(
                    "node {} could not deploy {app} version {version}: {error}",
                    node.name
                );
            }
            waiting.push(node.name.clone());
        }
        if waiting.is_empty() {
            output.say(&format!(
                "live on {} node{} in {:.1} s",
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "timed out after {} s waiting for {}",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn versions(args: AppArgs) -> anyhow::Result<()> {
    let (app, client) = app_and_client(&args)?;
    let detail: AppDetail = client.get(&format!("/v1/apps/{app}")).await?;
    args.output.print(&detail, |detail| {
        println!(
            "{:<8} {:<7} {:<18} {:<20} NOTE",
            "VERSION", "ACTIVE", "SHA256", "CREATED (UTC)"
        );
        for version in &detail.versions {
            println!(
                "{:<8} {:<7} {:<18} {:<20} {}",
                version.version,
                if Some(version.version) == detail.app.active {
                    "*"
                } else {
                    ""
                },
                version.sha256.get(..16).unwrap_or(""),
                utc(version.created_at),
                version.note.as_deref().unwrap_or("")
            );
        }
    })
}

#[derive(Args)]
pub(super) struct ActivateArgs {
    /// The version to make live.
    version: u64,
    #[command(flatten)]
    app: AppArgs,
}

pub(super) async fn activate(args: ActivateArgs) -> anyhow::Result<()> {
    let body = json!({ "version": args.version });
    change_active(&args.app, "activate", &body, |app, v| {
        format!("{app}: version {v} is active")
    })
    .await
}

/// POST `action` for the app, say which version is active now (as `said` words it), and
/// wait until every connected node serves it.
async fn change_active(
    args: &AppArgs,
    action: &str,
    body: &serde_json::Value,
    said: impl Fn(&str, u64) -> String,
) -> anyhow::Result<()> {
    let (app, client) = app_and_client(args)?;
    let output = args.output;
    let active: ActiveVersion = client
        .post(&format!("/v1/apps/{app}/{action}"), body)
        .await?;
    output.say(&said(&app, active.active));
    wait_until_live(
        &client,
        &app,
        active.active,
        Duration::from_secs(60),
        output,
    )
    .await?;
    output.print(&active, |_| {})
}

#[derive(Args)]
pub(super) struct RollbackArgs {
    /// The version to go back to (default: the one active before the current one).
    version: Option<u64>,
    #[command(flatten)]
    app: AppArgs,
}

pub(super) async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let body = match args.version {
        Some(version) => json!({ "version": version }),
        None => json!({}),
    };
    change_active(&args.app, "rollback", &body, |app, v| {
        format!("{app}: rolled back to version {v}")
    })
    .await
}

/// `outpost delete`: which app, and whether it was confirmed beforehand.
#[derive(clap::Args)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Delete without asking (for scripts); otherwise the app's name must be typed.
    #[arg(long, short)]
    yes: bool,
}

pub(super) async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let (app, client) = app_and_client(&args.app)?;
    if !args.yes {
        confirm_delete(&app)?;
    }
    let deleted: Deleted = client.delete(&format!("/v1/apps/{app}")).await?;
    args.app.output.print(&deleted, |_| {
        println!("{app}: deleted; nodes stop serving it")
    })
}

/// Ask for the app's name on a terminal; refuse without one (a script says `--yes`).
fn confirm_delete(app: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!(
            "not deleting {app} without confirmation: pass --yes to delete it and all its versions"
        );
    }
    eprint!("Delete {app} and all its versions from the fleet? Type its name to confirm: ");
    std::io::stderr().flush()?;
    let mut typed = String::new();
    std::io::stdin().lock().read_line(&mut typed)?;
    if typed.trim() != app {
        bail!("not deleted: {:?} is not {app:?}", typed.trim());
    }
    Ok(())
}

pub(super) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let local = local_app(Path::new("."))?;
    let client = AdminClient::new(&args.origin, local.as_ref().map(|s| &s.deploy))?;
    let status = client.fleet_status().await?;
    args.output
        .print(&status, |status| print_status(&client.origin(), status))
}

fn print_status(origin: &str, status: &FleetStatus) {
    println!("origin {origin} at revision {}", status.revision);
    println!("\n{:<24} ACTIVE", "APP");
    for app in &status.apps {
        println!("{:<24} {}", app.name, app.active);
    }
    println!(
        "\n{:<16} {:<10} {:<14} APPS (live version)",
        "NODE", "CONNECTED", "LAST CONTACT"
    );
    let now_ms = outpost_core::clock::unix_millis();
    for node in &status.nodes {
        let apps: Vec<String> = node
            .report
            .apps
            .iter()
            .map(|a| {
                let live = a.live_version.map_or("-".to_string(), |v| v.to_string());
                match &a.error {
                    Some(error) => format!("{}@{live} (error: {error})", a.app),
                    None => format!("{}@{live}", a.app),
                }
            })
            .collect();
        let ago = now_ms.saturating_sub(node.last_contact_ms) as f64 / 1000.0;
        println!(
            "{:<16} {:<10} {:<14} {}",
            node.name,
            if node.connected { "yes" } else { "no" },
            format!("{ago:.1} s ago"),
            apps.join(", ")
        );
    }
}

fn utc(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
