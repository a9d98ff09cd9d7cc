//! The error every store (the authority's, a replica's, in memory or in redb) reports.

/// A failure of the underlying storage (redb, or a corrupt record), with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KV storage: {0}")]
pub struct StorageError(pub String);

impl<E: Into<redb::Error>> From<E> for StorageError {
    fn from(err: E) -> Self {
        StorageError(err.into().to_string())
    }
}
