//! ARCHITECTURE.md names every crate of the workspace, and only those, each with its
//! directory and the Outpost crates it builds on: the picture cannot drift from the code
//! unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A crate as the table describes it: name, directory, and the Outpost crates it depends on
/// (short names: `core` for `outpost-core`).
type Described = (String, String, BTreeSet<String>);

/// Every workspace member as its `Cargo.toml` says.
fn workspace_crates() -> BTreeSet<Described> {
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
            let builds_on = package
                .get("dependencies")
                .and_then(|deps| deps.as_table())
                .map(|deps| {
                    deps.keys()
                        .filter_map(|dep| dep.strip_prefix("outpost-"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (name, format!("{dir}/"), builds_on)
        })
        .collect()
}

/// Every row of ARCHITECTURE.md's crate table.
fn documented_crates() -> BTreeSet<Described> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let dir = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            let builds_on = cells
                .get(3)?
                .split(',')
                .map(str::trim)
                .filter(|dep| !dep.is_empty())
                .map(str::to_string)
                .collect();
            Some((name.to_string(), dir.to_string(), builds_on))
        })
        .collect()
}

#[test]
fn architecture_md_names_every_crate_and_what_it_builds_on() {
    let workspace = workspace_crates();
    let documented = documented_crates();
    let missing: Vec<_> = workspace.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&workspace).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "ARCHITECTURE.md is out of date: as the workspace has them {missing:?}, as it describes them {gone:?}"
    );
}
