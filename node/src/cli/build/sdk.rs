//! The guest SDK's WIT worlds and its JavaScript and Python packages, embedded in this binary
//! (see `node/build.rs`) and unpacked once per SDK version into the tools cache.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/guest_sdk.rs"));

/// A short hash of every embedded file: it names the unpacked copy, and goes into build
/// fingerprints so a new SDK rebuilds apps.
pub(super) fn digest() -> String {
    let mut hash = Sha256::new();
    for (path, contents) in FILES {
        hash.update(path.as_bytes());
        hash.update((contents.len() as u64).to_le_bytes());
        hash.update(contents);
    }
    hex::encode(&hash.finalize()[..8])
}

/// The contents of one embedded file, by its path under guest-sdk/.
pub(super) fn file(path: &str) -> &'static [u8] {
    FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, contents)| *contents)
        .unwrap_or_else(|| panic!("guest-sdk/{path} is not embedded (see node/build.rs)"))
}

/// The SDK unpacked under `tools/sdk/<digest>/`, laid out as guest-sdk/ is.
pub(super) fn unpack(tools: &Path) -> anyhow::Result<PathBuf> {
    let dir = tools.join("sdk").join(digest());
    super::tools::install_once(&dir, "the Outpost guest SDK", |dir| {
        for (path, contents) in FILES {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, contents)
                .with_context(|| format!("writing {}", target.display()))?;
        }
        Ok(())
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worlds_and_both_packages_are_embedded() {
        for path in [
            "wit/world.wit",
            "wit/deps/wasi-http-0.2.10.wit",
            "js/src/index.js",
            "js/src/kv.js",
            "js/toolchain/package-lock.json",
            "python/outpost/__init__.py",
            "python/outpost/serve.py",
        ] {
            assert!(!file(path).is_empty(), "{path}");
        }
        let world = std::str::from_utf8(file("wit/world.wit")).unwrap();
        assert!(world.contains("world extras"));
    }
}
