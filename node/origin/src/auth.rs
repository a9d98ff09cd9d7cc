//! Bearer tokens for the admin API. Only the sha256 of each token is configured, and a
//! presented token is compared with every hash in constant time.

use sha2::{Digest, Sha256};

use outpost_core::config::{Right, TokenSpec};

/// Why a request may not proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one the origin does not know: 401.
    Unauthenticated,
    /// A known token without the right: 403.
    Forbidden {
        /// The name of the token presented.
        token: String,
        /// The right the request needs.
        needs: Right,
    },
}

/// The configured tokens (name, sha256, rights) a bearer token is checked against.
pub struct Tokens {
    tokens: Vec<TokenSpec>,
}

impl Tokens {
    /// Tokens from the `[[tokens]]` entries of origin.toml.
    pub fn new(tokens: Vec<TokenSpec>) -> Self {
        Tokens { tokens }
    }

    /// Check an `Authorization` header value for `right`; returns the token's name.
    pub fn authorize(&self, authorization: Option<&str>, right: Right) -> Result<&str, Denied> {
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Unauthenticated)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Look at every token whatever matches, so timing says nothing about which one did.
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(&token.sha256, &digest) {
                found = Some(token);
            }
        }
        let token = found.ok_or(Denied::Unauthenticated)?;
        if token.rights.contains(&right) {
            Ok(&token.name)
        } else {
            Err(Denied::Forbidden {
                token: token.name.clone(),
                needs: right,
            })
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token and the line for origin.toml (`outpost token new`).
pub fn new_token() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| anyhow::anyhow!("reading /dev/urandom: {e}"))?;
    let token = format!("opt_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (Tokens, String, String) {
        let (reader, reader_hash) = new_token().unwrap();
        let (deployer, deployer_hash) = new_token().unwrap();
        let spec = |name: &str, hash: &str, rights: Vec<Right>| {
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(hash, &mut sha256).unwrap();
            TokenSpec {
                name: name.into(),
                sha256,
                rights,
            }
        };
        (
            Tokens::new(vec![
                spec("reader", &reader_hash, vec![Right::Read]),
                spec("ci", &deployer_hash, vec![Right::Read, Right::Deploy]),
            ]),
            reader,
            deployer,
        )
    }

    #[test]
    fn rights_are_checked_per_token() {
        let (tokens, reader, deployer) = tokens();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            tokens.authorize(Some(&bearer(&reader)), Right::Read),
            Ok("reader")
        );
        assert_eq!(
            tokens.authorize(Some(&bearer(&reader)), Right::Deploy),
            Err(Denied::Forbidden {
                token: "reader".into(),
                needs: Right::Deploy
            })
        );
        assert_eq!(
            tokens.authorize(Some(&bearer(&deployer)), Right::Deploy),
            Ok("ci")
        );
        assert_eq!(
            tokens.authorize(Some(&bearer("opt_wrong")), Right::Read),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            tokens.authorize(Some(&reader), Right::Read),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            tokens.authorize(None, Right::Read),
            Err(Denied::Unauthenticated)
        );
    }
}
