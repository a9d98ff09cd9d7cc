//! `outpost kv put|get|delete|list`: an app's KV namespaces through the origin's admin API, or
//! with `--local` through the admin listener of the `outpost dev` running on this machine
//! (the same API, asking no token).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::Full;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::admin_client::{AdminClient, OriginArgs};
use super::dev;
use super::fleet::{app_here, resolve_app};
use super::output::Output;
use outpost_core::api::{Deleted, KvKeys, KvStored};

#[derive(Subcommand)]
pub(super) enum KvCommand {
    /// Store a value: given on the command line, from --file, or from stdin with --file -.
    Put {
        #[command(flatten)]
        at: KvArgs,
        key: String,
        value: Option<String>,
        /// Read the value from this file (`-` for stdin).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Expire the entry after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// Up to 1 KiB of text kept beside the value.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Print a value (raw bytes, as stored) to stdout.
    Get {
        #[command(flatten)]
        at: KvArgs,
        key: String,
    },
    /// Delete a key.
    Delete {
        #[command(flatten)]
        at: KvArgs,
        key: String,
        #[command(flatten)]
        output: Output,
    },
    /// List keys, one per line (with --json: every key with its expiry, metadata and
    /// version).
    List {
        #[command(flatten)]
        at: KvArgs,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
pub(super) struct KvArgs {
    /// The app whose namespace this is (default: the name in ./outpost.toml).
    #[arg(long)]
    app: Option<String>,
    /// The namespace, as listed in the app's `[kv] namespaces`.
    #[arg(long, short)]
    namespace: String,
    #[command(flatten)]
    origin: OriginArgs,
    /// The KV of the `outpost dev` running on this machine, not an origin's.
    #[arg(long, conflicts_with_all = ["origin", "token", "ca"])]
    local: bool,
    /// With --local: the data directory that `outpost dev` was given
    /// [default: $OUTPOST_DATA_DIR, else ~/.local/share/outpost/dev].
    #[arg(long, requires = "local")]
    data_dir: Option<PathBuf>,
}

/// The client and the namespace's path on the admin API.
fn connect(args: &KvArgs) -> anyhow::Result<(AdminClient, String)> {
    let (app, client) = match args.local {
        true => (
            app_here(args.app.as_deref())?.0,
            running_dev(args.data_dir.clone())?,
        ),
        false => resolve_app(args.app.as_deref(), &args.origin)?,
    };
    let base = format!(
        "/v1/kv/{}/{}",
        utf8_percent_encode(&app, NON_ALPHANUMERIC),
        utf8_percent_encode(&args.namespace, NON_ALPHANUMERIC)
    );
    Ok((client, base))
}

/// A client for the admin listener of the `outpost dev` running from `data_dir`.
fn running_dev(data_dir: Option<PathBuf>) -> anyhow::Result<AdminClient> {
    let data_dir = dev::data_dir_or_default(data_dir);
    let file = data_dir.join(dev::ADMIN_URL_FILE);
    let url = std::fs::read_to_string(&file).map_err(|_| {
        anyhow::anyhow!(
            "no `outpost dev` is running from {} (start one; --local talks to it), or give its \
             --data-dir",
            data_dir.display()
        )
    })?;
    AdminClient::local(url.trim())
}

fn value_path(base: &str, key: &str) -> String {
    format!(
        "{base}/values/{}",
        utf8_percent_encode(key, NON_ALPHANUMERIC)
    )
}

fn read_value(value: Option<String>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match (value, file) {
        (Some(value), _) => Ok(value.into_bytes()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the value from stdin")?;
            Ok(bytes)
        }
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        }
        (None, None) => bail!("give the value, or --file PATH (- for stdin)"),
    }
}

pub(super) async fn run(command: KvCommand) -> anyhow::Result<()> {
    match command {
        KvCommand::Put {
            at,
            key,
            value,
            file,
            ttl,
            metadata,
            output,
        } => {
            let (client, base) = connect(&at)?;
            let value = read_value(value, file.as_deref())?;
            let mut path = value_path(&base, &key);
            if let Some(ttl) = ttl {
                path.push_str(&format!("?ttl={ttl}"));
            }
            let headers: Vec<(&str, &str)> = metadata
                .as_deref()
                .map(|m| ("outpost-kv-metadata", m))
                .into_iter()
                .collect();
            let stored: KvStored = client
                .exchange(
                    Method::PUT,
                    &path,
                    "application/octet-stream",
                    &headers,
                    Full::new(Bytes::from(value)),
                )
                .await?
                .json()?;
            output.print(&stored, |stored| {
                let version = stored.version.map_or("-".into(), |v| v.to_string());
                eprintln!(
                    "stored {:?} ({} bytes, version {version})",
                    stored.key, stored.size
                )
            })?;
        }
        KvCommand::Get { at, key } => {
            let (client, base) = connect(&at)?;
            let value = client
                .exchange(
                    Method::GET,
                    &value_path(&base, &key),
                    "application/json",
                    &[],
                    Full::new(Bytes::new()),
                )
                .await?
                .bytes()?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            stdout.flush()?;
        }
        KvCommand::Delete { at, key, output } => {
            let (client, base) = connect(&at)?;
            let deleted: Deleted = client.delete(&value_path(&base, &key)).await?;
            output.print(&deleted, |d| eprintln!("deleted {:?}", d.deleted))?;
        }
        KvCommand::List { at, prefix, output } => {
            let (client, base) = connect(&at)?;
            let mut cursor: Option<String> = None;
            let mut stdout = std::io::stdout().lock();
            let mut every = Vec::new();
            loop {
                let mut path = format!(
                    "{base}/keys?prefix={}",
                    utf8_percent_encode(&prefix, NON_ALPHANUMERIC)
                );
                if let Some(cursor) = &cursor {
                    path.push_str(&format!(
                        "&cursor={}",
                        utf8_percent_encode(cursor, NON_ALPHANUMERIC)
                    ));
                }
                let page: KvKeys = client.get(&path).await?;
                // Text streams page by page; JSON is one document of every key.
                match output.json {
                    true => every.extend(page.keys),
                    false => {
                        for key in &page.keys {
                            writeln!(stdout, "{}", key.name)?;
                        }
                    }
                }
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            drop(stdout);
            if output.json {
                let listed = KvKeys {
                    keys: every,
                    list_complete: true,
                    cursor: None,
                };
                output.print(&listed, |_| {})?;
            }
        }
    }
    Ok(())
}
