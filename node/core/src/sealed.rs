//! Secrets at rest: sealed with ChaCha20-Poly1305 (ring's AEAD) under a 32-byte key, each
//! bound to its place (the app and the secret's name, as associated data) so a sealed value
//! copied to another name does not open. The origin seals with the key file origin.toml
//! names; a node seals what it keeps on disk with a key derived from its cluster private key.
//!
//! A sealed value is the 12-byte random nonce, then the ciphertext and its 16-byte tag.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The length of a key, in bytes.
pub const KEY_LEN: usize = 32;

/// A key that seals and opens values.
pub struct SealKey {
    key: LessSafeKey,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key");
        SealKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// A key derived from `secret` (such as a private key's bytes) for the purpose `purpose`,
    /// by HKDF-SHA256.
    pub fn derived(secret: &[u8], purpose: &str) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"outpost sealed values");
        let info = [purpose.as_bytes()];
        let prk = salt.extract(secret);
        let okm = prk
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .expect("HKDF output of one hash length");
        let mut bytes = [0u8; KEY_LEN];
        okm.fill(&mut bytes)
            .expect("32 bytes fit one SHA-256 output");
        Self::from_bytes(&bytes)
    }

    /// The key in `file`: 32 random bytes, or their 64 hex digits (with or without a newline).
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let text = String::from_utf8_lossy(&raw);
        let bytes: Vec<u8> = match hex::decode(text.trim()) {
            Ok(decoded) if decoded.len() == KEY_LEN => decoded,
            _ if raw.len() == KEY_LEN => raw,
            _ => bail!(
                "{} is not a secrets key: 32 bytes, or 64 hex digits (make one with `outpost secret new-key {}`)",
                file.display(),
                file.display()
            ),
        };
        let bytes: [u8; KEY_LEN] = bytes.try_into().expect("checked length");
        Ok(Self::from_bytes(&bytes))
    }

    /// Write a new random key to `file` as 64 hex digits, readable by its owner only; refused
    /// if the file exists.
    pub fn create(file: &Path) -> anyhow::Result<()> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        if file.exists() {
            bail!("{} exists already; not replacing a key", file.display());
        }
        crate::files::write_atomic(file, format!("{}\n", hex::encode(bytes)).as_bytes())
    }

    /// `plaintext` sealed for the place `aad` names.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut out = nonce.to_vec();
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .expect("sealing cannot fail for a small value");
        out.extend(body);
        out
    }

    /// What `sealed` holds, if it was sealed by this key for the place `aad` names.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("a sealed value too short to hold its nonce");
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("NONCE_LEN bytes");
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| {
                anyhow::anyhow!("a sealed value does not open with this key (wrong key or damaged)")
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_in_its_place() {
        let key = SealKey::from_bytes(&[7; KEY_LEN]);
        let sealed = key.seal("shop/API_KEY", b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"), "not in clear");
        assert_eq!(key.open("shop/API_KEY", &sealed).unwrap(), b"s3cret");
        assert!(key.open("bank/API_KEY", &sealed).is_err(), "another place");
        assert!(
            SealKey::from_bytes(&[8; KEY_LEN])
                .open("shop/API_KEY", &sealed)
                .is_err()
        );
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(key.open("shop/API_KEY", &damaged).is_err());
        assert_ne!(
            key.seal("shop/API_KEY", b"s3cret"),
            sealed,
            "a fresh nonce each time"
        );
        let derived = SealKey::derived(b"a private key", "node secrets");
        let again = SealKey::derived(b"a private key", "node secrets");
        assert_eq!(again.open("x", &derived.seal("x", b"v")).unwrap(), b"v");
    }

    #[test]
    fn key_files_are_made_private_and_read_back() {
        let dir = crate::test_support::temp_dir("sealed-key");
        let file = dir.join("secrets.key");
        SealKey::create(&file).unwrap();
        assert!(SealKey::create(&file).is_err(), "an existing key is kept");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let key = SealKey::load(&file).unwrap();
        let sealed = key.seal("a", b"b");
        assert_eq!(
            SealKey::load(&file).unwrap().open("a", &sealed).unwrap(),
            b"b"
        );
        std::fs::write(&file, "short").unwrap();
        assert!(SealKey::load(&file).is_err());
    }
}
