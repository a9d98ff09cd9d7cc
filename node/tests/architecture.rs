//! ARCHITECTURE.md names every crate of the workspace, and only those, each with its
//! directory: the picture cannot drift from the code unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (package name, directory) of every workspace member.
fn workspace_crates() -> BTreeSet<(String, String)> {
    let manifest: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    members
        .iter()
        .map(|member| {
            let dir = member.as_str().unwrap().to_string();
            let package: toml::Table =
                std::fs::read_to_string(root().join(&dir).join("Cargo.toml"))
                    .unwrap()
                    .parse()
                    .unwrap();
            let name = package["package"]["name"].as_str().unwrap().to_string();
            (name, format!("{dir}/"))
        })
        .collect()
}

/// (crate, directory) of every row of ARCHITECTURE.md's crate table.
fn documented_crates() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let dir = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), dir.to_string()))
        })
        .collect()
}

#[test]
fn architecture_md_names_every_crate_and_only_those() {
    let workspace = workspace_crates();
    let documented = documented_crates();
    let missing: Vec<_> = workspace.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&workspace).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "ARCHITECTURE.md is out of date: crates it lacks {missing:?}, crates it names that are gone {gone:?}"
    );
}
