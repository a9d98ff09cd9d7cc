//! The components the origin has been given, by sha256: in files in its data directory
//! (`outpost_core::blobs`, the embedded engine) or in the fleet's PostgreSQL (`pg_store`),
//! which several origins share. Either way a component is stored whole or not at all, under the
//! hash of its bytes, and streamed to nodes without being held in memory whole.

mod pg_store;

use std::sync::Arc;

use outpost_core::blobs::{BlobStore, sha256_hex};
use outpost_core::wire::is_sha256_hex;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::database::{Database, DatabaseError};
use pg_store::PgComponents;

/// Why a component could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The database is out of reach for now.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed (a file, a database error, a corrupt chunk).
    #[error("{0}")]
    Storage(String),
}

impl From<DatabaseError> for ComponentError {
    fn from(err: DatabaseError) -> Self {
        match err {
            DatabaseError::Unavailable(..) => ComponentError::Unavailable(err.to_string()),
            DatabaseError::Refused(..) => ComponentError::Storage(err.to_string()),
        }
    }
}

impl From<std::io::Error> for ComponentError {
    fn from(err: std::io::Error) -> Self {
        ComponentError::Storage(err.to_string())
    }
}

type Result<T> = std::result::Result<T, ComponentError>;

/// Where components live.
#[derive(Clone)]
pub enum Components {
    /// Files in the origin's data directory.
    Files(BlobStore),
    /// The fleet's database.
    Postgres(Arc<PgComponents>),
}

impl Components {
    /// The components in `db`, whose schema is up to date.
    pub fn in_database(db: Arc<Database>) -> Self {
        Components::Postgres(Arc::new(PgComponents::new(db)))
    }

    /// Whether the component `sha256` is stored (false for a name that is not a sha256).
    pub async fn contains(&self, sha256: &str) -> Result<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        match self {
            Components::Files(files) => Ok(files.contains(sha256)),
            Components::Postgres(db) => db.size(sha256).await.map(|size| size.is_some()),
        }
    }

    /// Store `bytes` under their hash (nothing happens if they are already there); returns it.
    pub async fn put(&self, bytes: &[u8]) -> Result<String> {
        match self {
            Components::Files(files) => {
                let files = files.clone();
                let bytes = bytes.to_vec();
                tokio::task::spawn_blocking(move || files.put(&bytes))
                    .await
                    .map_err(|e| ComponentError::Storage(e.to_string()))?
                    .map_err(|e| ComponentError::Storage(format!("{e:#}")))
            }
            Components::Postgres(db) => {
                let sha256 = sha256_hex(bytes);
                db.put(&sha256, bytes).await?;
                Ok(sha256)
            }
        }
    }

    /// The bytes of the component `sha256`, checked against its name.
    pub async fn read(&self, sha256: &str) -> Result<Vec<u8>> {
        let bytes = match self {
            Components::Files(files) => files
                .read(sha256)
                .map_err(|e| ComponentError::Storage(format!("{e:#}")))?,
            Components::Postgres(db) => {
                let mut bytes = Vec::new();
                db.copy_to(sha256, &mut bytes).await?;
                bytes
            }
        };
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(ComponentError::Storage(format!(
                "component {sha256} hashes to {actual}: it is corrupt"
            )));
        }
        Ok(bytes)
    }

    /// The size in bytes of component `sha256`, if it is stored.
    pub async fn size(&self, sha256: &str) -> Result<Option<u64>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        match self {
            Components::Files(files) => match tokio::fs::metadata(files.path(sha256)).await {
                Ok(meta) => Ok(Some(meta.len())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err.into()),
            },
            Components::Postgres(db) => db.size(sha256).await,
        }
    }

    /// Write the bytes of component `sha256` (whose size [`Components::size`] gave) to `out`,
    /// a piece at a time. Components never change once stored, so the pieces agree.
    pub async fn copy_to<W: AsyncWrite + Unpin>(&self, sha256: &str, out: &mut W) -> Result<u64> {
        let copied = match self {
            Components::Files(files) => {
                let mut file = tokio::fs::File::open(files.path(sha256)).await?;
                tokio::io::copy(&mut file, out).await?
            }
            Components::Postgres(db) => db.copy_to(sha256, out).await?,
        };
        out.flush().await?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests;
