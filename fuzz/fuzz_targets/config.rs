//! The three configuration files from arbitrary text: an app's `outpost.toml`, `node.toml` and
//! `origin.toml`. Loading never panics; a refused file gets an error that names it; an app
//! manifest that loads survives the JSON trip it takes from the origin to the nodes, and the
//! nodes accept what the origin accepted.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::config::{AppManifest, AppSpec, NodeConfig, OriginConfig};

/// The first byte picks the file; the rest is its text (`scripts/fuzz` seeds the corpus with
/// the repository's own configuration files in this form).
enum File {
    App(String),
    Node(String),
    Origin(String),
}

impl File {
    fn from_bytes(data: &[u8]) -> Option<File> {
        let (&kind, text) = data.split_first()?;
        let text = String::from_utf8_lossy(text).into_owned();
        Some(match kind % 3 {
            0 => File::App(text),
            1 => File::Node(text),
            _ => File::Origin(text),
        })
    }
}

/// One directory per fuzzing process: the loaders read files and resolve paths beside them.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("outpost-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    })
}

fn write(name: &str, text: &str) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, text).expect("writing the file");
    path
}

fn names_the_file(error: impl std::fmt::Display, path: &std::path::Path) {
    let message = error.to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "an error that does not name its file: {message}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(file) = File::from_bytes(data) else {
        return;
    };
    match file {
        File::App(text) => {
            let path = write("outpost.toml", &text);
            match AppSpec::load(&path) {
                Ok(spec) => {
                    let json = serde_json::to_vec(&spec.manifest).expect("a manifest encodes");
                    let back: AppManifest =
                        serde_json::from_slice(&json).expect("a manifest decodes");
                    assert_eq!(back, spec.manifest);
                    let settings = back.settings().expect("the nodes accept it");
                    assert_eq!(format!("{settings:?}"), format!("{:?}", spec.settings));
                }
                Err(error) => names_the_file(error, &path),
            }
        }
        File::Node(text) => {
            let path = write("node.toml", &text);
            if let Err(error) = NodeConfig::load(&path) {
                names_the_file(error, &path);
            }
        }
        File::Origin(text) => {
            let path = write("origin.toml", &text);
            if let Err(error) = OriginConfig::load(&path) {
                names_the_file(error, &path);
            }
        }
    }
});
