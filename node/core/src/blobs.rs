//! Content-addressed component storage: a file per sha256, written whole or not at all.
//!
//! The origin keeps every uploaded component here; a node keeps the ones it runs, so it can
//! restart and serve without the origin.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::wire::is_sha256_hex;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// A directory of components, each kept as `<sha256>.wasm`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// A blob being received in pieces: hashed as it is written, kept only if the hash matches.
pub struct BlobWriter {
    expected: String,
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    written: u64,
}

/// The sha256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BlobStore {
    /// Open the store in `dir`, creating the directory if it does not exist.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the blob named `sha256` is (or would be) kept; the name is not checked.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Whether the store holds the blob `sha256` (false for a name that is not a sha256 in hex).
    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256_hex(sha256) && self.path(sha256).is_file()
    }

    /// The bytes of the blob `sha256`, without checking that they still hash to it.
    pub fn read(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        if !is_sha256_hex(sha256) {
            bail!("{sha256:?} is not a sha256 in hex");
        }
        let path = self.path(sha256);
        std::fs::read(&path).with_context(|| format!("reading blob {}", path.display()))
    }

    /// Read a blob and check it still hashes to its name.
    pub fn read_verified(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = self.read(sha256)?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            bail!("blob {sha256} on disk hashes to {actual}: it is corrupt");
        }
        Ok(bytes)
    }

    /// Store `bytes` under their hash; returns the hash.
    pub fn put(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let sha256 = sha256_hex(bytes);
        let mut writer = self.writer(&sha256)?;
        writer.write(bytes)?;
        writer.finish()?;
        Ok(sha256)
    }

    /// Start receiving the blob that should hash to `expected`.
    pub fn writer(&self, expected: &str) -> anyhow::Result<BlobWriter> {
        if !is_sha256_hex(expected) {
            bail!("{expected:?} is not a sha256 in hex");
        }
        let final_path = self.path(expected);
        let tmp_path = self.dir.join(format!(
            ".{expected}.{}.{}.tmp",
            std::process::id(),
            next_writer_id()
        ));
        let file = std::fs::File::create(&tmp_path)
            .with_context(|| format!("creating {}", tmp_path.display()))?;
        Ok(BlobWriter {
            expected: expected.to_string(),
            final_path,
            tmp_path,
            file,
            hasher: Sha256::new(),
            written: 0,
        })
    }
}

impl BlobWriter {
    /// Hash and append the next piece of the blob.
    pub fn write(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        self.file.write_all(chunk)?;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Check the hash, make the file durable and give it its name.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != self.expected {
            let _ = std::fs::remove_file(&self.tmp_path);
            bail!(
                "content hashes to {actual}, not the expected {}: refused",
                self.expected
            );
        }
        self.file.sync_all()?;
        crate::files::rename_durably(&self.tmp_path, &self.final_path)?;
        Ok(self.final_path.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Unfinished or refused: leave nothing behind (after a rename this finds nothing).
        let _ = std::fs::remove_file(&self.tmp_path);
    }
}

/// Distinguishes concurrent writers of the same blob within one process.
fn next_writer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (BlobStore, PathBuf) {
        let dir = crate::test_support::temp_dir("blobs");
        (BlobStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn put_read_and_verify() {
        let (store, dir) = store();
        let sha = store.put(b"component bytes").unwrap();
        assert!(store.contains(&sha));
        assert_eq!(store.read_verified(&sha).unwrap(), b"component bytes");
        std::fs::write(store.path(&sha), b"tampered").unwrap();
        assert!(
            store
                .read_verified(&sha)
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stream_that_does_not_match_its_hash_leaves_nothing() {
        let (store, dir) = store();
        let expected = sha256_hex(b"the real thing");
        let mut writer = store.writer(&expected).unwrap();
        writer.write(b"something else").unwrap();
        assert!(writer.finish().unwrap_err().to_string().contains("refused"));
        assert!(!store.contains(&expected));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no temp files left"
        );
        assert!(store.writer("not-a-hash").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
