//! An app's secrets under `outpost dev`: `.dev.vars` in its directory, one `NAME=value` per
//! line, as Wrangler reads them (blank lines and `#` comments skipped, a value may be quoted).
//! They join the app's config values, a secret winning over a config value of its name, as
//! the secrets `outpost secret put` stores do on a fleet. The file stays on this machine: keep
//! it out of version control.

use std::path::Path;

use anyhow::{Context, bail};

/// The file's name in an app's directory.
pub(super) const FILE: &str = ".dev.vars";

/// The secrets in `dir`'s `.dev.vars`; none if there is no such file.
pub(super) fn read(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let file = dir.join(FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
    };
    parse(&text).with_context(|| format!("in {}", file.display()))
}

fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {}: not NAME=value", n + 1);
        };
        let value = value.trim();
        let unquoted = ['"', '\''].iter().find_map(|q| {
            value
                .strip_prefix(*q)
                .and_then(|v| v.strip_suffix(*q))
                .filter(|_| value.len() >= 2)
        });
        vars.push((
            name.trim().to_string(),
            unquoted.unwrap_or(value).to_string(),
        ));
    }
    Ok(vars)
}

/// `config` with `vars` in it, each replacing a value of its name.
pub(super) fn merge(config: &mut Vec<(String, String)>, vars: &[(String, String)]) {
    config.retain(|(name, _)| !vars.iter().any(|(v, _)| v == name));
    config.extend(vars.iter().cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_quotes_comments_and_precedence() {
        let vars =
            parse("# local only\nAPI_KEY=abc=def\n\nQUOTED = \"a b\"\nSINGLE='x'\n").unwrap();
        let pairs = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
        assert_eq!(
            pairs(&vars),
            [
                ("API_KEY".to_string(), "abc=def".to_string()),
                ("QUOTED".into(), "a b".into()),
                ("SINGLE".into(), "x".into()),
            ]
        );
        assert!(parse("no equals sign").is_err());
        let mut config = vec![
            ("API_KEY".to_string(), "from config".to_string()),
            ("OTHER".into(), "o".into()),
        ];
        merge(&mut config, &vars);
        assert_eq!(config.iter().filter(|(n, _)| n == "API_KEY").count(), 1);
        assert!(config.contains(&("API_KEY".into(), "abc=def".into())));
        assert!(config.contains(&("OTHER".into(), "o".into())));
    }
}
