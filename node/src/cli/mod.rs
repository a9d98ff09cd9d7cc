//! Command-line entry points: argument parsing, logging, the async runtime, signals.

mod admin_client;
mod build;
mod ca;
mod check;
mod dev;
mod fleet;
mod kv;
mod log_queue;
mod node;
mod origin;
mod output;
mod scaffold;
mod secret;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Serve WebAssembly HTTP handlers at the edge"
)]
struct Cli {
    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "OUTPOST_LOG_FORMAT",
        default_value = "pretty"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// What `outpost origin` does besides serving.
#[derive(Subcommand)]
enum OriginAction {
    /// Move this origin's embedded state (registry, components, KV) into an empty PostgreSQL
    /// database, with the origin stopped; then name the database in origin.toml
    /// (`[database] url`) and start as many origins on it as wanted.
    Migrate {
        /// The database, as postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
        #[arg(long)]
        to: String,
        /// Connect over TLS, trusting the CA certificate (PEM) in this file.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Build apps and serve them on this machine (plain HTTP, and HTTPS with a development
    /// certificate), KV embedded; --watch rebuilds on change. No config needed.
    Dev(dev::DevArgs),
    /// Run an edge node from a node.toml.
    Node {
        /// Path of the node's configuration file.
        #[arg(long, short, default_value = "node.toml")]
        config: PathBuf,
        /// Replace the node running from the same data directory, if one is, without refusing
        /// a connection: take its listening sockets, let it drain and exit, then serve.
        #[arg(long)]
        takeover: bool,
    },
    /// Run a fleet's origin (deployment registry, admin API, cluster link) from an origin.toml.
    Origin {
        /// Path of the origin's configuration file.
        #[arg(long, short, default_value = "origin.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<OriginAction>,
    },
    /// Create an app (a handler and its outpost.toml) in Rust, JavaScript or Python.
    New {
        /// The app's name (lowercase letters, digits, '-').
        name: String,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The handler's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: outpost_core::config::Language,
    },
    /// Build the app in a directory to its WebAssembly component (Rust with cargo, JS/TS with
    /// componentize-js, Python with componentize-py; pinned tools installed on first use).
    Build {
        #[arg(long, short, default_value = ".")]
        path: PathBuf,
        #[command(flatten)]
        output: output::Output,
    },
    /// Upload the app's component and manifest to the origin as a new version.
    Deploy(fleet::DeployArgs),
    /// List an app's versions, or split its traffic between them (`versions split 3=90 4=10`).
    Versions(fleet::VersionsArgs),
    /// Make a version live everywhere.
    Activate(fleet::ActivateArgs),
    /// Go back to an earlier version (by default the one active before the current one).
    Rollback(fleet::RollbackArgs),
    /// Remove an app from the fleet (asks for its name first; `--yes` in scripts).
    Delete(fleet::DeleteArgs),
    /// The fleet: apps and their active versions, nodes and what they serve.
    Status(fleet::StatusArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell, e.g.
    /// `outpost completions bash > /etc/bash_completion.d/outpost`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Validate an outpost.toml, node.toml or origin.toml without starting anything: exit
    /// status 0 if it is valid, else 1 and the error naming the file and the field.
    Check {
        /// The file (or an app's directory) [default: ./outpost.toml].
        file: Option<PathBuf>,
        /// What the file is [default: from its name: outpost.toml an app, origin*.toml an
        /// origin, any other a node].
        #[arg(long = "as", value_enum)]
        kind: Option<check::Kind>,
        #[command(flatten)]
        output: output::Output,
    },
    /// An app's requests on every node, live (filter with --status, thin out with --sample).
    Tail(tail::TailArgs),
    /// An app's KV data at the origin: put, get, delete, list.
    Kv {
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// An app's secrets at the origin: put, list (names only), delete; `new-key` makes the
    /// origin's key file.
    Secret {
        #[command(subcommand)]
        command: secret::SecretCommand,
    },
    /// The cluster CA: `init` makes it, `issue` makes a member's certificate.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the cluster CA.
    Init {
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
    },
    /// Issue a certificate for a cluster member (the origin or a node), named as in its config.
    Issue {
        /// The member's name: the node's `name`, or the origin's `origin_name`.
        #[arg(long)]
        node: String,
        /// More names (DNS names or IP addresses) for the certificate.
        #[arg(long)]
        host: Vec<String>,
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print the origin.toml entry with its hash.
    New {
        #[arg(long, default_value = "cli")]
        name: String,
        /// Rights: read, deploy, admin.
        #[arg(long, value_delimiter = ',', default_value = "read,deploy")]
        rights: Vec<String>,
        /// Add the [[tokens]] entry to the end of this origin.toml, and print only the token.
        #[arg(long)]
        append_to: Option<PathBuf>,
        #[command(flatten)]
        output: output::Output,
    },
}

/// The `outpost` command: parse the arguments and run the command on a multi-threaded runtime
/// (serving commands drain on SIGINT or SIGTERM); an error is printed to stderr, exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Dev(_) | Command::Node { .. } | Command::Origin { .. }
    ) {
        // What the serving processes write (KV data, app config, components, keys) is theirs.
        outpost_core::files::keep_new_files_private();
    }
    let _flush_logs_on_exit = init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("outpost-worker")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_on_signals();
        match cli.command {
            Command::Dev(args) => dev::run(args, shutdown).await,
            Command::Node { config, takeover } => node::run(&config, takeover, shutdown).await,
            Command::Origin {
                config,
                action: None,
            } => origin::run(&config, shutdown).await,
            Command::Origin {
                config,
                action: Some(OriginAction::Migrate { to, ca }),
            } => origin::migrate(&config, &to, ca.as_deref()).await,
            Command::New { name, dir, lang } => scaffold::new_app(&name, dir.as_deref(), lang),
            Command::Build { path, output } => build::build(&path)
                .and_then(|built| output.print(&built, |b| println!("{}", b.line()))),
            Command::Deploy(args) => fleet::deploy(args).await,
            Command::Versions(args) => fleet::versions(args).await,
            Command::Activate(args) => fleet::activate(args).await,
            Command::Rollback(args) => fleet::rollback(args).await,
            Command::Delete(args) => fleet::delete(args).await,
            Command::Status(args) => fleet::status(args).await,
            Command::Check { file, kind, output } => check::check(file, kind, output),
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "outpost",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Tail(args) => tail::run(args).await,
            Command::Kv { command } => kv::run(command).await,
            Command::Secret { command } => secret::run(command).await,
            Command::Ca {
                command: CaCommand::Init { dir },
            } => ca::init(&dir),
            Command::Ca {
                command: CaCommand::Issue { node, host, dir },
            } => ca::issue(&dir, &node, &host),
            Command::Token {
                command:
                    TokenCommand::New {
                        name,
                        rights,
                        append_to,
                        output,
                    },
            } => ca::token(&name, &rights, append_to.as_deref(), output),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `OUTPOST_LOG` (default `info`). Request lines have the
/// target `outpost::access`, so `OUTPOST_LOG=info,outpost::access=off` silences them alone.
///
/// Lines are written by a thread of their own, so a request never waits on stderr (a slow
/// journald or pipe reader would otherwise stall the tasks that log). If that thread falls more
/// than [`log_queue::MAX_QUEUED_BYTES`] behind, lines are dropped (and counted) rather than
/// slowing requests down. The returned guard flushes what is queued when it is dropped at exit.
fn init_logging(format: LogFormat) -> log_queue::FlushOnDrop {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) =
        log_queue::LogQueue::start(std::io::stderr(), log_queue::MAX_QUEUED_BYTES);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(true)
            .init(),
    }
    guard
}

/// A shutdown signal that turns true on SIGTERM or Ctrl-C. A second signal exits at once.
fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::error!("cannot listen for SIGTERM: {err}");
                    return;
                }
            };
        for round in 0.. {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if round == 0 {
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                let _ = sender.send(true);
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    receiver
}
