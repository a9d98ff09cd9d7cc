//! Turning component bytes into a compiled `Component`, once per content hash.
//!
//! Compiled artifacts are kept on disk keyed by the component's sha256 and a hash of the engine's
//! settings, so a restarted node loads instead of recompiling, and a node whose settings or
//! wasmtime version changed compiles afresh rather than loading something incompatible.
//! An artifact is native code the node will run, so each is kept with the sha256 it had when
//! written (`.cwasm.sha256`) and loaded only if it still has it: a torn, truncated or altered
//! file is compiled afresh, never mapped.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a compiled component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled just now (and written to the cache).
    Compiled,
    /// Loaded from an artifact already in the cache.
    Cache,
}

pub(crate) struct ComponentCache {
    dir: PathBuf,
    engine_tag: String,
    /// Code generation settings of the serving engine, without its instance pool.
    compile: wasmtime::Config,
}

impl ComponentCache {
    pub(crate) fn new(
        dir: &Path,
        engine: &Engine,
        compile: wasmtime::Config,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the compile cache directory {}", dir.display()))?;
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // Settings that shape the artifact but that wasmtime's hash leaves out.
        engine
            .get_memory_guaranteed_dense_image_size()
            .hash(&mut hasher);
        let engine_tag = hex::encode(&hasher.0.finalize()[..8]);
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
            engine_tag,
            compile,
        })
    }

    /// The compiled form of `wasm`, from the cache when possible.
    ///
    /// A fresh compile is written to the cache and then loaded back from it, so what serves is
    /// always the file-backed artifact (shared page cache, nothing of the compiler left on the
    /// heap) and a restart runs the very same code.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, String, Origin)> {
        check_header(wasm)?;
        let digest = hex::encode(Sha256::digest(wasm));
        let path = self.dir.join(format!("{digest}-{}.cwasm", self.engine_tag));
        if path.exists() {
            match load_file(engine, &path) {
                Ok(component) => return Ok((component, digest, Origin::Cache)),
                Err(err) => tracing::warn!(
                    "compiled cache entry {} is unusable ({err}); recompiling",
                    path.display()
                ),
            }
        }
        // A compiler of its own, dropped right after: the serving engine keeps no compiler state.
        let compiler = Engine::new(&self.compile).map_err(anyhow::Error::from)?;
        let artifact = compiler.precompile_component(wasm).map_err(|err| {
            anyhow::anyhow!(
                "not a valid WebAssembly component: {}",
                first_line(&format!("{err:#}"))
            )
        })?;
        drop(compiler);
        let component = match self.store(&artifact, &path) {
            Ok(()) => load_file(engine, &path)?,
            Err(err) => {
                tracing::warn!(
                    "could not write the compile cache entry {}: {err:#}",
                    path.display()
                );
                // SAFETY: these bytes were produced by `precompile_component` of this engine
                // a moment ago.
                unsafe { Component::deserialize(engine, &artifact) }.map_err(anyhow::Error::from)?
            }
        };
        Ok((component, digest, Origin::Compiled))
    }

    fn store(&self, artifact: &[u8], path: &Path) -> anyhow::Result<()> {
        // The checksum first: an artifact without its checksum is never loaded, and both are
        // written whole under their final names or not at all.
        let checksum = hex::encode(Sha256::digest(artifact));
        outpost_core::files::write_atomic(&checksum_path(path), checksum.as_bytes())?;
        outpost_core::files::write_atomic(path, artifact)
    }
}

fn checksum_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Load the artifact at `path` if it still has the checksum it was written with.
fn load_file(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    let expected = std::fs::read_to_string(checksum_path(path)).context("no checksum")?;
    let actual = hex::encode(Sha256::digest(std::fs::read(path)?));
    if expected.trim() != actual {
        bail!("its checksum does not match");
    }
    // SAFETY: the file was written by `precompile_component` of an engine with the same
    // compatibility hash, into a directory only this node writes (0700), and still has the
    // checksum it was written with. wasmtime still checks the header and refuses a mismatch.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Refuse what is not a component with a message that says what it is instead.
pub fn check_header(wasm: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        bail!("not a WebAssembly file (it does not start with the \\0asm magic bytes)");
    }
    match wasm[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => bail!(
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2, or wrap it \
             with `wasm-tools component new`"
        ),
        _ => bail!("unsupported WebAssembly version or layer in the header"),
    }
}

#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only used to feed bytes into sha256")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_messages() {
        assert!(
            check_header(b"hello world")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(
            check_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_header(b"\0asm").is_err());
    }

    #[test]
    fn an_altered_artifact_is_compiled_afresh_never_loaded() {
        let dir = outpost_core::test_support::temp_dir("compile-cache");
        let config = wasmtime::Config::new();
        let engine = Engine::new(&config).unwrap();
        let cache = ComponentCache::new(&dir, &engine, config.clone()).unwrap();
        let wasm = wat::parse_str("(component (core module (func (export \"f\"))))").unwrap();
        assert_eq!(cache.load(&engine, &wasm).unwrap().2, Origin::Compiled);
        assert_eq!(cache.load(&engine, &wasm).unwrap().2, Origin::Cache);

        let artifact = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .expect("an artifact in the cache");
        let mut bytes = std::fs::read(&artifact).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&artifact, &bytes).unwrap();
        assert_eq!(cache.load(&engine, &wasm).unwrap().2, Origin::Compiled);
        assert_eq!(cache.load(&engine, &wasm).unwrap().2, Origin::Cache);

        // An artifact without its checksum (a cache from before checksums) is not trusted.
        std::fs::remove_file(checksum_path(&artifact)).unwrap();
        assert_eq!(cache.load(&engine, &wasm).unwrap().2, Origin::Compiled);
    }
}
