//! The error every store (the authority's, a replica's, in memory, in redb or in PostgreSQL)
//! reports.

/// A failure of the underlying storage, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The storage failed (redb, or a corrupt record).
    #[error("KV storage: {0}")]
    Failed(String),
    /// The storage is out of reach for now (a database server restarting or failing over):
    /// what was under way may or may not have been done, and a retry may succeed.
    #[error("KV storage unavailable: {0}")]
    Unavailable(String),
}

impl<E: Into<redb::Error>> From<E> for StorageError {
    fn from(err: E) -> Self {
        StorageError::Failed(err.into().to_string())
    }
}
