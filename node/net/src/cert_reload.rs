//! Certificates that change under a running node: the PEM files are checked every few seconds
//! (and at once on SIGHUP) and, when they changed, loaded into a new resolver that takes over
//! for new handshakes. Connections already open keep the certificate they started with. A new
//! set that does not load (a bad PEM, a key that does not match) is refused with a log line,
//! and the old one keeps serving. Each set that loads publishes when its certificates expire
//! (`outpost_tls_certificate_expiry_timestamp_seconds`), for an alert well before they do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::listener::{ShutdownSignal, wait_for_shutdown};
use crate::tls::SniResolver;
use outpost_core::config::TlsCertSpec;

/// Set each certificate file's expiry gauge to its leaf's notAfter.
fn publish_expiry(specs: &[TlsCertSpec]) {
    let gauge = &outpost_core::metrics::metrics().certificate_expiry;
    for spec in specs {
        let cert = spec.cert.display().to_string();
        match leaf_not_after(&spec.cert) {
            Some(at) => gauge.with_label_values(&[cert.as_str()]).set(at),
            None => tracing::warn!("cannot read the expiry date of {cert}"),
        }
    }
}

/// When the first certificate in the PEM file `path` expires, in Unix seconds.
pub fn leaf_not_after(path: &std::path::Path) -> Option<i64> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// How often the files are checked.
pub const POLL: Duration = Duration::from_secs(2);

/// A certificate resolver over `TlsCertSpec`s whose files may change: it serves the set
/// last loaded, and [`ReloadingResolver::reload`] swaps in a new one.
#[derive(Debug)]
pub struct ReloadingResolver {
    specs: Vec<TlsCertSpec>,
    current: ArcSwap<SniResolver>,
}

impl ReloadingResolver {
    /// Load every certificate and key in `specs`; fails if any of them does not load.
    pub fn load(specs: Vec<TlsCertSpec>) -> anyhow::Result<Self> {
        let resolver = SniResolver::load(&specs)?;
        publish_expiry(&specs);
        Ok(ReloadingResolver {
            specs,
            current: ArcSwap::from_pointee(resolver),
        })
    }

    /// Load the files again; on success new handshakes use them.
    pub fn reload(&self) -> anyhow::Result<()> {
        let resolver = SniResolver::load(&self.specs)?;
        self.current.store(Arc::new(resolver));
        publish_expiry(&self.specs);
        Ok(())
    }

    /// Modification times of every file, to notice a change.
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.files()
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.specs.iter().flat_map(|s| [&s.cert, &s.key])
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(client_hello.server_name()))
    }
}

/// Reload when the files change or on SIGHUP, until `shutdown`.
pub async fn watch_certificates(resolver: Arc<ReloadingResolver>, mut shutdown: ShutdownSignal) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!("cannot listen for SIGHUP: {err}");
            None
        }
    };
    let mut seen = resolver.stamps();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = wait_for_shutdown(&mut shutdown) => return,
            _ = poll.tick() => "changed",
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
        };
        let stamps = resolver.stamps();
        if why == "changed" && stamps == seen {
            continue;
        }
        // Files are often written in several steps (cert, then key): give the writer a moment.
        if why == "changed" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen = resolver.stamps();
        match resolver.reload() {
            Ok(()) => tracing::info!(trigger = why, "TLS certificates reloaded"),
            Err(err) => tracing::error!(
                trigger = why,
                "new TLS certificates refused, still serving the previous ones: {err:#}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertAuthority, Usage};

    #[test]
    fn a_loaded_set_publishes_when_each_certificate_expires() {
        let dir = outpost_core::test_support::temp_dir("cert-expiry");
        let ca = CertAuthority::load_or_create(&dir, "ca", "test CA").unwrap();
        let (cert, key) = ca
            .issue(&dir, "leaf", &["a.example".into()], Usage::Server, 30)
            .unwrap();
        let in_30_days = outpost_core::clock::unix_secs() as i64 + 30 * 86_400;
        let at = leaf_not_after(&cert).unwrap();
        assert!((at - in_30_days).abs() < 120, "{at} vs {in_30_days}");

        let spec = TlsCertSpec {
            hosts: vec!["a.example".into()],
            cert: cert.clone(),
            key,
        };
        ReloadingResolver::load(vec![spec]).unwrap();
        let gauge = outpost_core::metrics::metrics()
            .certificate_expiry
            .with_label_values(&[cert.display().to_string().as_str()]);
        assert_eq!(gauge.get(), at);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
