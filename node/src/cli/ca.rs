//! `outpost ca init|issue` (the cluster CA) and `outpost token new` (admin API tokens).

use std::path::Path;

use crate::origin::auth::new_token;
use crate::pki::{CertAuthority, Usage};

const CA_STEM: &str = "ca";
const CA_NAME: &str = "Outpost cluster CA";

pub fn init(dir: &Path) -> anyhow::Result<()> {
    let ca = CertAuthority::create(dir, CA_STEM, CA_NAME)?;
    println!(
        "cluster CA: {} (key beside it; keep it off the nodes)",
        ca.cert_path.display()
    );
    println!(
        "next: outpost ca issue --node origin, and outpost ca issue --node <name> for each node"
    );
    Ok(())
}

pub fn issue(dir: &Path, node: &str, hosts: &[String]) -> anyhow::Result<()> {
    let ca = CertAuthority::load(dir, CA_STEM, CA_NAME)?;
    let mut names = vec![node.to_string()];
    names.extend(hosts.iter().cloned());
    let (cert, key) = ca.issue(dir, node, &names, Usage::ServerAndClient, 825)?;
    println!(
        "certificate for {node}: {} and {}",
        cert.display(),
        key.display()
    );
    Ok(())
}

pub fn token(name: &str, rights: &[String]) -> anyhow::Result<()> {
    let (token, hash) = new_token()?;
    let rights = rights
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("token (give it to the user; it is shown only once):\n  {token}\n");
    println!(
        "add to origin.toml:\n[[tokens]]\nname = {name:?}\nsha256 = \"{hash}\"\nrights = [{rights}]"
    );
    Ok(())
}
