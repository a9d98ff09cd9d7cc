//! Helpers for unit tests: fresh directories, releases to put in a desired state, and a
//! throwaway PostgreSQL server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory under the system temp dir, unique within this test run.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "outpost-unit-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a test directory");
    dir
}

/// A release of `app` at `version` taking `percent` of its traffic, with a default manifest
/// and a component hash made from the version.
pub fn release(app: &str, version: u64, percent: u8) -> crate::wire::Release {
    crate::wire::Release {
        app: app.into(),
        version,
        sha256: format!("{version:064x}"),
        manifest: crate::config::AppManifest {
            name: app.into(),
            ..crate::config::AppManifest::default()
        },
        percent,
    }
}

pub mod postgres;
