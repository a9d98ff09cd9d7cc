//! `outpost ca init|issue` (the cluster CA) and `outpost token new` (admin API tokens).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use super::output::Output;
use outpost_net::pki::{CertAuthority, Usage};
use outpost_origin::auth::new_token;

const CA_STEM: &str = "ca";
const CA_NAME: &str = "Outpost cluster CA";

pub(super) fn init(dir: &Path) -> anyhow::Result<()> {
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

pub(super) fn issue(dir: &Path, node: &str, hosts: &[String]) -> anyhow::Result<()> {
    member_name(node)?;
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

/// A member's name becomes its certificate's subject and the stem of two files beside the CA,
/// so it must be a DNS name (lowercase labels of letters, digits and '-') that names neither the
/// CA's files nor anything outside the directory.
fn member_name(name: &str) -> anyhow::Result<()> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        bail!(
            "{name:?} is not a usable member name: use a DNS name of lowercase letters, digits, \
             '-' and '.', such as \"edge-1\" or \"origin\""
        );
    }
    if name == CA_STEM || name == format!("{CA_STEM}-key") {
        bail!("{name:?} would overwrite the cluster CA's own files: pick another name");
    }
    Ok(())
}

/// A new token: printed once, with the `[[tokens]]` entry (the token's hash) for origin.toml;
/// with `append_to`, the entry goes to the end of that file and only the token is printed, so
/// `export OUTPOST_TOKEN=$(outpost token new --append-to origin.toml)` does both.
pub(super) fn token(
    name: &str,
    rights: &[String],
    append_to: Option<&Path>,
    output: Output,
) -> anyhow::Result<()> {
    let (token, hash) = new_token()?;
    let quoted = rights
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let entry = format!("[[tokens]]\nname = {name:?}\nsha256 = \"{hash}\"\nrights = [{quoted}]\n");
    let made = NewToken {
        name,
        token: &token,
        sha256: &hash,
        rights,
    };
    let Some(file) = append_to else {
        return output.print(&made, |_| {
            println!("token (give it to the user; it is shown only once):\n  {token}\n");
            print!("add to origin.toml:\n{entry}");
        });
    };
    let mut toml = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .with_context(|| format!("opening {} to add the token to", file.display()))?;
    writeln!(toml, "\n{entry}").with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "added token {name:?} to {} (restart the origin to take it)",
        file.display()
    );
    output.print(&made, |_| println!("{token}"))
}

/// A token as `outpost token new --json` prints it.
#[derive(serde::Serialize)]
struct NewToken<'a> {
    name: &'a str,
    token: &'a str,
    sha256: &'a str,
    rights: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_dns_names_that_spare_the_ca() {
        for good in ["edge-1", "origin", "edge-1.fra.example", "a"] {
            member_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "ca", "ca-key", "../x", "a/b", "", "-edge", "edge-", "Edge", "a..b", "edge 1", ".",
        ] {
            assert!(member_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn issuing_refuses_a_name_that_would_replace_the_ca() {
        let dir = outpost_core::test_support::temp_dir("ca-names");
        init(&dir).unwrap();
        let before = std::fs::read(dir.join("ca-key.pem")).unwrap();
        assert!(issue(&dir, "ca", &[]).is_err());
        assert!(issue(&dir, "ca-key", &[]).is_err());
        assert!(issue(&dir, "../outside", &[]).is_err());
        assert_eq!(std::fs::read(dir.join("ca-key.pem")).unwrap(), before);
        issue(&dir, "edge-1", &[]).unwrap();
        assert!(dir.join("edge-1.pem").exists());
    }
}
