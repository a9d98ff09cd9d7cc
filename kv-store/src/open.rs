//! Opening a redb file that another process may just have let go of.
//!
//! redb locks its file while a process holds it open. When a node hands its data over to a
//! new process (a takeover, or a takeover that failed and hands the data back), the other
//! side's lock outlives its last word on the hand-off socket by a moment: an exiting process
//! closes its descriptors one by one. Opening waits that moment out instead of failing.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

use crate::error::StorageError;

/// How long a locked file is waited for before the open fails.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Open (or create) the database at `path`, waiting up to [`LOCK_WAIT`] for another holder.
pub(crate) fn create_database(path: &Path) -> Result<Database, StorageError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Database::create(path) {
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return Ok(result?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_let_go_of_meanwhile_opens() {
        let dir = std::env::temp_dir().join(format!("outpost-kv-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("held.redb");
        let held = create_database(&path).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        create_database(&path).expect("opens once the holder lets go");
        release.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
