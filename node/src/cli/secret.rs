//! `outpost secret put|list|delete`: an app's secrets at the origin, which keeps them sealed
//! and sends them to nodes over the cluster link only; handlers read them through wasi:config
//! like `[config]` values. No command prints a value: `list` shows names. `new-key` makes the
//! key file origin.toml's `[secrets] key_file` names.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Subcommand;
use http::Method;
use http_body_util::Full;

use super::fleet::{AppArgs, resolve_app};
use outpost_core::api::{Deleted, SecretList, SecretStored};
use outpost_core::sealed::SealKey;

#[derive(Subcommand)]
pub(super) enum SecretCommand {
    /// Set a secret: its value from --file, else from stdin (typed without echo at a
    /// terminal; one trailing newline dropped).
    Put {
        /// The secret's name, which the handler asks wasi:config for.
        name: String,
        /// Read the value from this file, as it is.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        app: AppArgs,
    },
    /// The names of the app's secrets (never their values).
    List {
        #[command(flatten)]
        app: AppArgs,
    },
    /// Delete a secret.
    Delete {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Write a new random key for origin.toml's `[secrets] key_file` (refused if FILE exists).
    NewKey {
        /// Where to write it (readable by its owner only).
        file: PathBuf,
    },
}

/// The value to set: the file's bytes, or stdin's (without echo at a terminal).
fn read_value(name: &str, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let value = match file {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("The value of {name}: "))
                .context("reading the value")?
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the value from stdin (text)")?;
            let trimmed = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t));
            trimmed.map(str::to_string).unwrap_or(text)
        }
    };
    if value.is_empty() {
        bail!("the value of {name} is empty; nothing set");
    }
    Ok(value)
}

pub(super) async fn run(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Put { name, file, app } => {
            let (app_name, client) = resolve_app(app.app.as_deref(), &app.origin)?;
            let value = read_value(&name, file.as_deref())?;
            let stored: SecretStored = client
                .exchange(
                    Method::PUT,
                    &format!("/v1/apps/{app_name}/secrets/{name}"),
                    "text/plain; charset=utf-8",
                    &[],
                    Full::new(Bytes::from(value)),
                )
                .await?
                .json()?;
            app.output.print(&stored, |stored| {
                let verb = if stored.replaced { "replaced" } else { "set" };
                eprintln!(
                    "{}: secret {} {verb}; nodes read it like a config value",
                    stored.app, stored.name
                )
            })
        }
        SecretCommand::List { app } => {
            let (app_name, client) = resolve_app(app.app.as_deref(), &app.origin)?;
            let list: SecretList = client.get(&format!("/v1/apps/{app_name}/secrets")).await?;
            app.output.print(&list, |list| {
                for secret in &list.secrets {
                    println!("{}", secret.name);
                }
            })
        }
        SecretCommand::Delete { name, app } => {
            let (app_name, client) = resolve_app(app.app.as_deref(), &app.origin)?;
            let deleted: Deleted = client
                .delete(&format!("/v1/apps/{app_name}/secrets/{name}"))
                .await?;
            app.output.print(&deleted, |deleted| {
                eprintln!("{app_name}: secret {} deleted", deleted.deleted)
            })
        }
        SecretCommand::NewKey { file } => {
            SealKey::create(&file)?;
            eprintln!(
                "wrote {}: name it in origin.toml as [secrets] key_file, and give every origin of the fleet the same file; keep a copy: without it the secrets cannot be read",
                file.display()
            );
            Ok(())
        }
    }
}
