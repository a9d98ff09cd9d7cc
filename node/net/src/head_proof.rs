//! The origin's signature on a KV head, and its check on a node.
//!
//! A node believes a peer's replication claims only as far as the origin has vouched for (see
//! `outpost_kv::follower`). The origin's word reaches a node over its own link, or passed on
//! by peers while that link is down; passed on, it must prove itself: the origin signs each
//! head with its cluster key, and a node checks the signature, that the certificate chains to
//! the cluster CA and that it is issued for the origin's name. A peer can replay an old head
//! (harmless: it claims less) but cannot forge a newer one.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use outpost_kv::protocol::{decode, encode};
use outpost_kv::{Head, HeadCheck};
use rustls::SignatureScheme;
use rustls::sign::Signer;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{EndEntityCert, KeyUsage};

use outpost_core::config::ClusterIdentity;

/// What is signed: a fixed context, then the version.
fn message(version: u64) -> Vec<u8> {
    let mut message = b"outpost kv head v1\0".to_vec();
    message.extend_from_slice(&version.to_be_bytes());
    message
}

/// `Head::proof`, encoded.
#[derive(Serialize, Deserialize)]
struct Proof {
    scheme: u16,
    signature: Vec<u8>,
    /// The origin's certificate (DER).
    cert: Vec<u8>,
}

/// The schemes a cluster key can sign with, the one `outpost ca issue` makes first.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// The origin's side: signs heads with its cluster key.
pub struct HeadSigner {
    signer: Box<dyn Signer>,
    cert: Vec<u8>,
}

impl std::fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadSigner")
            .field("scheme", &self.signer.scheme())
            .finish()
    }
}

impl HeadSigner {
    /// A signer with the origin's cluster key and certificate; fails if the key type has no
    /// scheme it can sign with.
    pub fn load(identity: &ClusterIdentity) -> anyhow::Result<HeadSigner> {
        let loaded = crate::cluster_tls::load(identity)?;
        let key = rustls::crypto::ring::sign::any_supported_type(&loaded.key)
            .map_err(|e| anyhow!("{}: {e}", identity.key.display()))?;
        let signer = key.choose_scheme(SCHEMES).with_context(|| {
            format!(
                "{}: no signature scheme for this key type",
                identity.key.display()
            )
        })?;
        let cert = loaded
            .chain
            .first()
            .context("empty certificate chain")?
            .to_vec();
        Ok(HeadSigner { signer, cert })
    }

    /// The origin's word that versions up to `version` exist; `None` if signing failed.
    pub fn sign(&self, version: u64) -> Option<Head> {
        let signature = self
            .signer
            .sign(&message(version))
            .inspect_err(|err| tracing::error!("signing the KV head failed: {err}"))
            .ok()?;
        let proof = Proof {
            scheme: u16::from(self.signer.scheme()),
            signature,
            cert: self.cert.clone(),
        };
        Some(Head {
            version,
            proof: encode(&proof),
        })
    }
}

fn algorithm(
    scheme: SignatureScheme,
) -> Option<&'static dyn rustls_pki_types::SignatureVerificationAlgorithm> {
    Some(match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => webpki::ring::ECDSA_P256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384 => webpki::ring::ECDSA_P384_SHA384,
        SignatureScheme::ED25519 => webpki::ring::ED25519,
        SignatureScheme::RSA_PSS_SHA256 => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        _ => return None,
    })
}

/// A node's side: checks that the origin named `origin` signed a head.
pub fn head_check(identity: &ClusterIdentity, origin: &str) -> anyhow::Result<HeadCheck> {
    let roots: Vec<TrustAnchor<'static>> = crate::cluster_tls::load(identity)?.roots.roots.clone();
    let origin = ServerName::try_from(origin.to_string())
        .map_err(|e| anyhow!("{origin:?} is not a valid origin name: {e}"))?;
    Ok(Arc::new(move |head: &Head| {
        match verify(&roots, &origin, head) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(
                    version = head.version,
                    "a peer passed on a KV head that does not hold: {err:#}"
                );
                false
            }
        }
    }))
}

fn verify(roots: &[TrustAnchor<'_>], origin: &ServerName<'_>, head: &Head) -> anyhow::Result<()> {
    let proof: Proof = decode(&head.proof).context("unreadable proof")?;
    let der = CertificateDer::from(proof.cert.as_slice());
    let cert = EndEntityCert::try_from(&der).map_err(|e| anyhow!("unreadable certificate: {e}"))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        roots,
        &[],
        UnixTime::now(),
        KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| anyhow!("the certificate is not from the cluster CA: {e}"))?;
    cert.verify_is_valid_for_subject_name(origin)
        .map_err(|_| anyhow!("the certificate is not the origin's"))?;
    let algorithm = algorithm(SignatureScheme::from(proof.scheme))
        .with_context(|| format!("signature scheme {:#06x} is not accepted", proof.scheme))?;
    cert.verify_signature(algorithm, &message(head.version), &proof.signature)
        .map_err(|e| anyhow!("the signature does not hold: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertAuthority, Usage};

    fn member(ca: &CertAuthority, dir: &std::path::Path, name: &str) -> ClusterIdentity {
        let (cert, key) = ca
            .issue(dir, name, &[name.to_string()], Usage::ServerAndClient, 30)
            .unwrap();
        ClusterIdentity {
            ca: ca.cert_path.clone(),
            cert,
            key,
        }
    }

    #[test]
    fn a_node_believes_heads_the_origin_signed_and_no_others() {
        let dir = outpost_core::test_support::temp_dir("head-proof");
        let ca = CertAuthority::create(&dir, "ca", "Test CA").unwrap();
        let origin = member(&ca, &dir, "origin.internal");
        let node = member(&ca, &dir, "edge-1");
        let check = head_check(&node, "origin.internal").unwrap();

        let head = HeadSigner::load(&origin).unwrap().sign(42).unwrap();
        assert!(check(&head));
        // A claim of more than was signed.
        let mut stretched = head.clone();
        stretched.version = u64::MAX;
        assert!(!check(&stretched));
        // Signed by a cluster member that is not the origin.
        let by_a_node = HeadSigner::load(&node).unwrap().sign(42).unwrap();
        assert!(!check(&by_a_node));
        // Signed by an origin of another cluster.
        let elsewhere = CertAuthority::create(&dir.join("other"), "ca", "Other CA").unwrap();
        let impostor = member(&elsewhere, &dir.join("other"), "origin.internal");
        assert!(!check(
            &HeadSigner::load(&impostor).unwrap().sign(42).unwrap()
        ));
        // Garbage.
        let garbage = Head {
            version: 1,
            proof: vec![0xff; 40],
        };
        assert!(!check(&garbage));
    }
}
