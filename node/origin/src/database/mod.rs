//! The origin's PostgreSQL database (`[database] url` in origin.toml): connecting and
//! reconnecting, wake-ups from other origins (LISTEN/NOTIFY), and the versioned schema
//! migrations every origin runs at start.
//!
//! Several origins share one database, all active. Whatever one origin changes, the others
//! learn by reading the database again: a notification only says "look", so a lost one costs a
//! delay (every listener also looks on a timer), never a change.

mod migrations;

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, mpsc};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

/// How long connecting may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database the origin keeps its state in, with one connection shared by its callers (and
/// made again once it is lost).
pub struct Database {
    config: Config,
    shown: String,
    client: Mutex<Option<Client>>,
}

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
    /// Connect to `url` and bring its schema up to date. The error names the URL, without its
    /// password.
    pub async fn connect(url: &str) -> anyhow::Result<Database> {
        let mut config: Config = url.parse().map_err(|e| {
            anyhow::anyhow!("database url: {e} (expected postgresql://USER@HOST:PORT/DATABASE)")
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("outpost-origin");
        let shown = redacted(&config);
        let database = Database {
            config,
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
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.error(e))?;
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(database = %shown, "database connection lost: {err}");
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
        let shown = self.shown.clone();
        tokio::spawn(async move {
            loop {
                if wake.is_closed() {
                    return;
                }
                let listened = async {
                    let (client, mut connection) = config.connect(NoTls).await?;
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
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
}
