//! Author commands that talk to the origin: deploy, versions, activate, rollback, status,
//! delete.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
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
use outpost_core::wire::{AppStatus, VersionShare};

#[derive(Args)]
pub(super) struct DeployArgs {
    /// The app directory (with outpost.toml).
    #[arg(long, short, default_value = ".")]
    path: PathBuf,
    /// Make the new version live at once (otherwise: `outpost activate VERSION`).
    #[arg(long, conflicts_with = "percent")]
    activate: bool,
    /// A gradual deployment: the new version takes this share of the traffic (1-100) beside
    /// the active one, which keeps the rest; each client stays on one version.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    percent: Option<u8>,
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

/// Which app, which origin, and how to print: what every command about one app takes.
#[derive(Args)]
pub(super) struct AppArgs {
    /// The app (default: the name in ./outpost.toml).
    #[arg(long)]
    pub(super) app: Option<String>,
    #[command(flatten)]
    pub(super) origin: OriginArgs,
    #[command(flatten)]
    pub(super) output: Output,
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
            &json!({
                "component": sha256,
                "manifest": spec.manifest,
                "note": args.note,
                "activate": args.activate,
                "percent": args.percent,
            }),
        )
        .await?;
    let version = created.version;
    output.say(&format!(
        "{app} version {version} (sha256 {})",
        &sha256[..16]
    ));
    let timeout = Duration::from_secs(args.timeout);
    match args.percent {
        _ if created.active => {
            wait_until_live(&client, &app, &Serving::Active(version), timeout, output).await?
        }
        Some(percent) => {
            output.say(&format!(
                "{app}: version {version} takes {percent}% of the traffic \
                 (outpost activate {version} to give it all, outpost rollback to end it)"
            ));
            let share = VersionShare { version, percent };
            wait_until_live(&client, &app, &Serving::Share(share), timeout, output).await?
        }
        None => output.say(&format!(
            "not active yet: outpost activate {version}; until then its preview host is \
             v{version}--{app}.<the nodes' preview domain>"
        )),
    }
    output.print(&created, |_| {})
}

/// What a node must report of an app for a change to count as live there.
enum Serving {
    /// This version is active (taking every request, or the base of a split).
    Active(u64),
    /// This share of a split.
    Share(VersionShare),
    /// Exactly this split (the first share's version active).
    Split(Vec<VersionShare>),
}

impl Serving {
    /// What is wanted, in words: `version 2`, `version 2 at 10%`, `the split 1=50 2=50`.
    fn describe(&self) -> String {
        match self {
            Serving::Active(version) => format!("version {version}"),
            Serving::Share(share) => format!("version {} at {}%", share.version, share.percent),
            Serving::Split(split) => format!("the split {}", shares_text(split)),
        }
    }

    fn reached(&self, status: &AppStatus) -> bool {
        match self {
            Serving::Active(version) => {
                status.live_version == Some(*version) && status.split.is_empty()
            }
            Serving::Share(share) => status.split.contains(share),
            Serving::Split(split) => {
                status.live_version == split.first().map(|s| s.version) && &status.split == split
            }
        }
    }
}

/// Poll the fleet until every connected node serves `app` as `wanted` says.
async fn wait_until_live(
    client: &AdminClient,
    app: &str,
    wanted: &Serving,
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
            if entry.is_some_and(|e| wanted.reached(e)) {
                continue;
            }
            if let Some(error) = entry.and_then(|e| e.error.as_deref()) {
                bail!(
                    "node {} could not deploy {app} {}: {error}",
                    node.name,
                    wanted.describe()
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

/// `outpost versions`: list an app's versions, or split its traffic between them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct VersionsArgs {
    #[command(subcommand)]
    action: Option<VersionsAction>,
    #[command(flatten)]
    app: AppArgs,
}

#[derive(Subcommand)]
enum VersionsAction {
    /// Split the app's traffic between versions: `outpost versions split 3=90 4=10`. The first
    /// named becomes the active version (its routes serve the app); each client stays on one
    /// version (by its `outpost-version-key` header or cookie, else its address). `4=100`
    /// ends a split, as `outpost activate 4` and `outpost rollback` do.
    Split {
        /// VERSION=PERCENT, adding up to 100.
        #[arg(required = true, value_parser = parse_share)]
        shares: Vec<VersionShare>,
        #[command(flatten)]
        app: AppArgs,
    },
}

/// `3=90` as version 3 at 90 percent.
fn parse_share(text: &str) -> Result<VersionShare, String> {
    let (version, percent) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not VERSION=PERCENT (such as 3=90)"))?;
    Ok(VersionShare {
        version: version
            .trim()
            .parse()
            .map_err(|_| format!("{version:?} is not a version number"))?,
        percent: percent
            .trim()
            .trim_end_matches('%')
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("{percent:?} is not a percentage from 1 to 100"))?,
    })
}

pub(super) async fn versions(args: VersionsArgs) -> anyhow::Result<()> {
    if let Some(VersionsAction::Split { shares, app }) = args.action {
        let body = json!({ "versions": shares });
        return change_active(&app, "split", &body, |active| {
            match active.split.as_slice() {
                [] => format!("{}: version {} is active", active.app, active.active),
                split => format!("{}: traffic split {}", active.app, shares_text(split)),
            }
        })
        .await;
    }
    let args = args.app;
    let (app, client) = app_and_client(&args)?;
    let detail: AppDetail = client.get(&format!("/v1/apps/{app}")).await?;
    args.output.print(&detail, |detail| {
        println!(
            "{:<8} {:<8} {:<18} {:<20} NOTE",
            "VERSION", "TRAFFIC", "SHA256", "CREATED (UTC)"
        );
        let record = &detail.app;
        for version in &detail.versions {
            let share = record.split.iter().find(|s| s.version == version.version);
            let traffic = match share {
                Some(share) => format!("{}%", share.percent),
                None if record.active == Some(version.version) => "100%".to_string(),
                None => String::new(),
            };
            println!(
                "{:<8} {:<8} {:<18} {:<20} {}",
                version.version,
                traffic,
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
    change_active(&args.app, "activate", &body, |active| {
        format!("{}: version {} is active", active.app, active.active)
    })
    .await
}

/// `3=90 4=10`.
fn shares_text(split: &[VersionShare]) -> String {
    split
        .iter()
        .map(|s| format!("{}={}", s.version, s.percent))
        .collect::<Vec<_>>()
        .join(" ")
}

/// POST `action` for the app, say what serves now (as `said` words it), and wait until every
/// connected node serves it so.
async fn change_active(
    args: &AppArgs,
    action: &str,
    body: &serde_json::Value,
    said: impl Fn(&ActiveVersion) -> String,
) -> anyhow::Result<()> {
    let (app, client) = app_and_client(args)?;
    let output = args.output;
    let active: ActiveVersion = client
        .post(&format!("/v1/apps/{app}/{action}"), body)
        .await?;
    output.say(&said(&active));
    let wanted = match active.split.as_slice() {
        [] => Serving::Active(active.active),
        split => Serving::Split(split.to_vec()),
    };
    wait_until_live(&client, &app, &wanted, Duration::from_secs(60), output).await?;
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
    change_active(&args.app, "rollback", &body, |active| {
        format!("{}: rolled back to version {}", active.app, active.active)
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
        match app.split.as_slice() {
            [] => println!("{:<24} {}", app.name, app.active),
            split => println!(
                "{:<24} {} (split {})",
                app.name,
                app.active,
                shares_text(split)
            ),
        }
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
                let mut live = a.live_version.map_or("-".to_string(), |v| v.to_string());
                if !a.split.is_empty() {
                    live = format!("{live} (split {})", shares_text(&a.split));
                }
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
