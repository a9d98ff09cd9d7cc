//! Apps' secrets in the registry: stored sealed (see `outpost_core::sealed`) beside the app
//! they belong to, changed in a transaction that moves the fleet's revision (so nodes get them
//! with the next desired state), opened only to build that state.

use serde::{Deserialize, Serialize};

use super::{RegistryError, Result};

/// The most secrets one app may have.
pub(crate) const MAX_PER_APP: usize = 128;
/// The largest secret value, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 64 << 10;

/// A secret as stored: sealed for its place (`APP/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSecret {
    /// The app it belongs to.
    pub(crate) app: String,
    /// Its name.
    pub(crate) name: String,
    /// Its value, sealed, in hex.
    pub(crate) sealed: String,
    /// Unix time in seconds it was last set.
    pub(crate) updated_at: u64,
}

/// The associated data a secret is sealed for: its app and name.
pub(crate) fn place(app: &str, name: &str) -> String {
    format!("{app}/{name}")
}

/// A secret's name: what a handler asks wasi:config for, so a config key's shape (letters,
/// digits and `_`, not starting with a digit, at most 64).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let fits = (1..=64).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if fits {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{name:?} is not a secret name: 1 to 64 letters, digits and '_', not starting with a digit"
        )))
    }
}

/// Whether an app holding `held` secrets, `name` among them or not, may set `name`.
pub(crate) fn check_room(held: &[String], name: &str) -> Result<()> {
    if held.len() >= MAX_PER_APP && !held.iter().any(|n| n == name) {
        return Err(RegistryError::Invalid(format!(
            "an app has at most {MAX_PER_APP} secrets"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_config_keys() {
        for good in ["API_KEY", "a", "_x9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "9LIVES", "has-dash", "sp ace", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let full: Vec<String> = (0..MAX_PER_APP).map(|i| format!("S{i}")).collect();
        assert!(check_room(&full, "S0").is_ok(), "replacing one is fine");
        assert!(check_room(&full, "NEW").is_err());
    }
}
