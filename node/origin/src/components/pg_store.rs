//! Components in PostgreSQL: a row per component, its bytes in chunks of [`CHUNK`].

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{ComponentError, Result};
use crate::database::Database;

/// The most bytes one chunk row holds.
const CHUNK: usize = 1 << 20;

/// The components table of the fleet's database.
pub struct PgComponents {
    db: Arc<Database>,
}

impl PgComponents {
    pub(super) fn new(db: Arc<Database>) -> Self {
        PgComponents { db }
    }

    /// The size of component `sha256`, if it is stored.
    pub(super) async fn size(&self, sha256: &str) -> Result<Option<u64>> {
        let client = self.db.client().await?;
        let row = client
            .query_opt("SELECT size FROM components WHERE sha256 = $1", &[&sha256])
            .await
            .map_err(|e| self.db.error(e))?;
        Ok(row.map(|row| row.get::<_, i64>(0) as u64))
    }

    /// Store `bytes` as component `sha256`, in one transaction. A component another origin
    /// is storing at the same moment is waited for, then left as it is.
    pub(super) async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let mut client = self.db.client().await?;
        let db = |e| ComponentError::from(self.db.error(e));
        let txn = client.transaction().await.map_err(db)?;
        let inserted = txn
            .execute(
                "INSERT INTO components (sha256, size) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&sha256, &(bytes.len() as i64)],
            )
            .await
            .map_err(db)?;
        if inserted == 0 {
            return Ok(());
        }
        let insert = txn
            .prepare("INSERT INTO component_chunks (sha256, n, data) VALUES ($1, $2, $3)")
            .await
            .map_err(db)?;
        for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
            txn.execute(&insert, &[&sha256, &(n as i32), &chunk])
                .await
                .map_err(db)?;
        }
        txn.commit().await.map_err(db)?;
        Ok(())
    }

    /// Write component `sha256` to `out` a chunk at a time; returns the bytes written. Each
    /// chunk is its own short query, and the shared connection is free while a chunk travels
    /// (a slow node holds nobody up); a component never changes once stored.
    pub(super) async fn copy_to<W: AsyncWrite + Unpin>(
        &self,
        sha256: &str,
        out: &mut W,
    ) -> Result<u64> {
        let size = self
            .size(sha256)
            .await?
            .ok_or_else(|| ComponentError::Storage(format!("no component {sha256}")))?;
        let mut sent = 0u64;
        let mut n = 0i32;
        while sent < size {
            let data: Vec<u8> = {
                let client = self.db.client().await?;
                client
                    .query_opt(
                        "SELECT data FROM component_chunks WHERE sha256 = $1 AND n = $2",
                        &[&sha256, &n],
                    )
                    .await
                    .map_err(|e| self.db.error(e))?
                    .ok_or_else(|| {
                        ComponentError::Storage(format!("component {sha256} lacks chunk {n}"))
                    })?
                    .get(0)
            };
            out.write_all(&data).await?;
            sent += data.len() as u64;
            n += 1;
        }
        if sent != size {
            return Err(ComponentError::Storage(format!(
                "component {sha256} holds {sent} bytes, not {size}"
            )));
        }
        Ok(sent)
    }
}
