//! The origin's PostgreSQL database (`[database] url` in origin.toml): connecting and
//! reconnecting, wake-ups from other origins (LISTEN/NOTIFY), and the versioned schema
//! migrations every origin runs at start.
//!
//! Several origins share one database, all active. Whatever one origin changes, the others
//! learn by reading the database again: a notification only says "look", so a lost one costs a
//! delay (every listener also looks on a timer), never a change.

mod migrations;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{Stream, StreamExt};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, mpsc};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long connecting may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database the origin keeps its state in, with one connection shared by its callers (and
/// made again once it is lost).
pub struct Database {
    config: Config,
    /// TLS to the server, when origin.toml names the CA its certificate chains to.
    tls: Option<MakeRustlsConnect>,
    shown: String,
    client: Mutex<Option<Client>>,
}

/// What the server sends besides answers (notifications, notices); polling it drives the
/// connection, whatever carries it.
type Messages = Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// Why the database could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The database is out of reach (connection refused or lost, the server restarting or
    /// failing over): try again later.
    #[error("the database at {0} is unavailable: {1}")]
    Unavailable(String, String),
    /// The database answered with an error.
    #[error("the database at {0} refused: {1}")]
    Refused(String, String),
}

impl Database {
    /// Connect to `url` (in plain text) and bring its schema up to date. The error names the
    /// URL, without its password.
    pub async fn connect(url: &str) -> anyhow::Result<Database> {
        Self::connect_with(url, None).await
    }

    /// As [`Database::connect`], over TLS if `ca` is given: the server must offer it, and its
    /// certificate must chain to `ca` (PEM) and name the host connected to.
    pub async fn connect_with(url: &str, ca: Option<&Path>) -> anyhow::Result<Database> {
        let mut config: Config = url.parse().map_err(|e| {
            anyhow::anyhow!("database url: {e} (expected postgresql://USER@HOST:PORT/DATABASE)")
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("outpost-origin");
        let tls = match ca {
            Some(ca) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_trusting(ca)?)
            }
            None => None,
        };
        let shown = redacted(&config);
        let database = Database {
            config,
            tls,
            shown,
            client: Mutex::new(None),
        };
        let mut client = database.client().await?;
        migrations::run(&mut client, &database.shown).await?;
        drop(client);
        Ok(database)
    }

    /// The URL it was given, without the password: for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The shared connection, connected again first if it was lost.
    pub(crate) async fn client(&self) -> Result<MappedMutexGuard<'_, Client>, DatabaseError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.own_connection().await?);
        }
        Ok(MutexGuard::map(guard, |client| {
            client.as_mut().expect("connected above")
        }))
    }

    /// A connection of the caller's own, for one that holds transactions open across many
    /// statements (the KV authority's rounds), which on the shared connection would hold up
    /// every other caller. It closes when the client is dropped.
    pub(crate) async fn own_connection(&self) -> Result<Client, DatabaseError> {
        let (client, mut messages) = open(&self.config, self.tls.as_ref())
            .await
            .map_err(|e| self.error(e))?;
        let shown = self.shown.clone();
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                if let Err(err) = message {
                    tracing::warn!(database = %shown, "database connection lost: {err}");
                    return;
                }
            }
        });
        Ok(client)
    }

    /// What a client error means to the caller: the database out of reach, or refusing.
    pub(crate) fn error(&self, err: tokio_postgres::Error) -> DatabaseError {
        let reason = match err.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut reason = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    reason = format!("{reason}: {cause}");
                    source = cause.source();
                }
                reason
            }
        };
        match err.as_db_error() {
            Some(db) if !passing(db.code()) => DatabaseError::Refused(self.shown.clone(), reason),
            _ => DatabaseError::Unavailable(self.shown.clone(), reason),
        }
    }

    /// Wake-ups on `channel`: one message per notification, and one every `every` whatever
    /// happens (a notification sent while this origin was not listening is lost, and so is
    /// the connection sometimes). Runs until the receiver is dropped.
    pub fn listen(&self, channel: &'static str, every: Duration) -> mpsc::Receiver<()> {
        let (wake, woken) = mpsc::channel(1);
        let config = self.config.clone();
        let tls = self.tls.clone();
        let shown = self.shown.clone();
        tokio::spawn(async move {
            loop {
                if wake.is_closed() {
                    return;
                }
                let listened = async {
                    let (client, mut messages) = open(&config, tls.as_ref()).await?;
                    let statement = format!("LISTEN {channel}");
                    let subscribe = client.batch_execute(&statement);
                    // The connection must be polled for the LISTEN to complete.
                    tokio::pin!(subscribe);
                    loop {
                        tokio::select! {
                            done = &mut subscribe => { done?; break; }
                            message = messages.next() => match message {
                                Some(Ok(_)) => {}
                                Some(Err(err)) => return Err(err),
                                None => return Ok(()),
                            },
                        }
                    }
                    loop {
                        let message = tokio::time::timeout(every, messages.next()).await;
                        let _ = wake.try_send(());
                        match message {
                            Ok(Some(Ok(AsyncMessage::Notification(_)))) | Err(_) => {}
                            Ok(Some(Ok(_))) => {}
                            Ok(Some(Err(err))) => return Err(err),
                            Ok(None) => return Ok(()),
                        }
                        if wake.is_closed() {
                            return Ok(());
                        }
                    }
                }
                .await;
                if let Err(err) = listened {
                    tracing::warn!(database = %shown, channel, "listening for changes: {err}");
                }
                // Out of reach: keep waking the reader on the timer, and try again.
                let _ = wake.try_send(());
                tokio::time::sleep(every).await;
            }
        });
        woken
    }
}

/// Connect as `config` says, over `tls` if given: the client, and the stream that drives the
/// connection.
async fn open(
    config: &Config,
    tls: Option<&MakeRustlsConnect>,
) -> Result<(Client, Messages), tokio_postgres::Error> {
    Ok(match tls {
        None => {
            let (client, mut connection) = config.connect(NoTls).await?;
            let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            (client, Box::pin(messages) as Messages)
        }
        Some(tls) => {
            let (client, mut connection) = config.connect(tls.clone()).await?;
            let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            (client, Box::pin(messages) as Messages)
        }
    })
}

/// TLS that trusts only the CA certificates in the PEM file `ca`.
fn tls_trusting(ca: &Path) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading the database CA {}", ca.display()))?
    {
        let cert = cert.with_context(|| format!("{} is not PEM certificates", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} holds an unusable certificate", ca.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Whether an error the server sent is a passing state of the server rather than a refusal of
/// the statement: a connection ending (class 08), the server shutting down, restarting or
/// not yet accepting (57), out of resources (53), a standby not yet promoted (read-only
/// transaction), or a transaction to try again (serialization failure, deadlock).
fn passing(code: &SqlState) -> bool {
    let code = code.code();
    ["08", "57", "53"]
        .iter()
        .any(|class| code.starts_with(class))
        || [
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .iter()
        .any(|state| state.code() == code)
}

/// `postgresql://USER@HOST:PORT/DATABASE` of `config`, with no password.
fn redacted(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let database = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() { "" } else { "@" };
    format!("postgresql://{user}{at}{}/{database}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_has_no_password() {
        let config: Config = "postgresql://outpost:s3cret@db.internal:6432/fleet"
            .parse()
            .unwrap();
        assert_eq!(
            redacted(&config),
            "postgresql://outpost@db.internal:6432/fleet"
        );
        let config: Config = "host=a,b user=o password=x dbname=d".parse().unwrap();
        assert_eq!(redacted(&config), "postgresql://o@a:5432,b:5432/d");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn with_a_ca_the_connection_is_tls_and_the_server_is_checked_against_it() {
        use outpost_core::test_support::postgres::TestPostgres;
        use outpost_net::pki::{CertAuthority, Usage};
        let server = TestPostgres::start("db-tls");
        let dir = outpost_core::test_support::temp_dir("db-tls");
        let ca = CertAuthority::create(&dir, "db-ca", "Outpost test database CA").unwrap();
        let (cert, key) = ca
            .issue(&dir, "db", &["127.0.0.1".into()], Usage::Server, 30)
            .unwrap();
        server.enable_tls(&cert, &key);

        let db = Database::connect_with(&server.url(), Some(&dir.join("db-ca.pem")))
            .await
            .unwrap();
        let client = db.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the connection is not TLS");

        // A server whose certificate the given CA did not issue is refused, saying why.
        CertAuthority::create(&dir, "other-ca", "Another CA").unwrap();
        let refused = Database::connect_with(&server.url(), Some(&dir.join("other-ca.pem")))
            .await
            .err()
            .expect("a server the CA does not vouch for");
        assert!(
            format!("{refused:#}").contains("certificate"),
            "{refused:#}"
        );
    }
}
