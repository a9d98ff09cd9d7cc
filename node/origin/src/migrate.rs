//! `outpost origin migrate --to postgresql://...`: move an origin's embedded state (the
//! registry, the components its versions name, the KV authority) into a PostgreSQL database
//! that holds nothing yet, once, with the origin stopped. Then origin.toml names the database
//! (`[database] url`), and as many origins as wanted run on it.
//!
//! The embedded files are only read: until origin.toml is changed, the origin can start on
//! them again as it was.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use outpost_core::blobs::BlobStore;
use outpost_core::sealed::SealKey;
use outpost_kv::RedbAuthorityStore;

use crate::components::Components;
use crate::database::Database;
use crate::kv::pg_store::{Imported, PgAuthorityStore};
use crate::registry::Registry;

/// What a migration moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Apps, with all their versions.
    pub apps: usize,
    /// Versions of them.
    pub versions: usize,
    /// Components those versions name.
    pub components: usize,
    /// The KV's keys, log, outcomes and version.
    pub kv: Imported,
}

/// Move the embedded state in `data_dir` into the database at `url`, over TLS trusting `ca` if
/// given (its schema is brought up to date first); apps' secrets move sealed, so the origins
/// on the database need the same `secrets_key` file. Refused, changing nothing, if the
/// database holds an app, a component or a KV entry already, or if the origin still runs on
/// `data_dir`.
pub async fn to_postgres(
    data_dir: &Path,
    url: &str,
    ca: Option<&Path>,
    secrets_key: Option<&Path>,
) -> anyhow::Result<Migrated> {
    let registry_file = data_dir.join("registry.redb");
    anyhow::ensure!(
        registry_file.is_file(),
        "{} holds no origin state (no registry.redb): give the data_dir of the origin to move",
        data_dir.display()
    );
    let kv_file = data_dir.join("kv.redb");
    // redb holds a lock on an open file: an origin still running on it stops the move here.
    let still_running = |what: &Path| {
        format!(
            "opening {} (is the origin still running on it? stop it first)",
            what.display()
        )
    };
    let key = secrets_key.map(SealKey::load).transpose()?.map(Arc::new);
    let registry = Registry::open(&registry_file, key.clone())
        .with_context(|| still_running(&registry_file))?;
    let kv = RedbAuthorityStore::open(&kv_file).with_context(|| still_running(&kv_file))?;
    let blobs = Components::Files(BlobStore::open(&data_dir.join("blobs"))?);

    let db = Arc::new(Database::connect_with(url, ca).await?);
    let components = Components::in_database(db.clone());
    let target = Registry::connect(db.clone(), key).await?;
    ensure_no_components(&db).await?;

    // Components first, the registry that names them next, the KV last: a move cut short
    // leaves components no version names (harmless), never a version without its component.
    let mut copied = std::collections::BTreeSet::new();
    for record in registry.apps().await? {
        let (_, versions) = registry.app(&record.name).await?;
        for version in versions {
            if copied.insert(version.sha256.clone()) {
                let bytes = blobs
                    .read(&version.sha256)
                    .await
                    .with_context(|| format!("reading component {}", version.sha256))?;
                components.put(&bytes).await?;
            }
        }
    }
    let (apps, versions) = registry.copy_into(&target).await?;
    let kv = PgAuthorityStore::import(&db, &kv).await?;
    Ok(Migrated {
        apps,
        versions,
        components: copied.len(),
        kv,
    })
}

async fn ensure_no_components(db: &Database) -> anyhow::Result<()> {
    let client = db.client().await?;
    let held: i64 = client
        .query_one("SELECT count(*) FROM components", &[])
        .await
        .map_err(|e| db.error(e))?
        .get(0);
    anyhow::ensure!(
        held == 0,
        "the database at {} holds {held} components already: migrate into an empty database",
        db.shown()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use outpost_core::config::AppManifest;
    use outpost_core::test_support::postgres::TestPostgres;
    use outpost_core::test_support::temp_dir;
    use outpost_kv::authority::IncomingWrite;
    use outpost_kv::{Authority, WriteOp};

    use super::*;
    use crate::registry::Rollout;

    fn put(i: u64) -> IncomingWrite {
        IncomingWrite {
            writer: "edge-1".into(),
            id: i,
            op: WriteOp::Put {
                namespace: "shop/carts".into(),
                key: format!("k{i:03}"),
                value: format!("v{i}").into_bytes(),
                metadata: None,
                ttl_secs: None,
            },
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_embedded_origin_moves_into_postgresql_whole() {
        let dir = temp_dir("migrate");
        let server = TestPostgres::start("migrate");
        // An origin's embedded state: two versions of an app, KV writes with the log
        // compacted part way (so the current state and the log differ).
        let component = wat::parse_str("(component)").unwrap();
        let key_file = dir.join("secrets.key");
        SealKey::create(&key_file).unwrap();
        let key = || Some(Arc::new(SealKey::load(&key_file).unwrap()));
        {
            let registry = Registry::open(&dir.join("registry.redb"), key()).unwrap();
            let blobs = Components::Files(BlobStore::open(&dir.join("blobs")).unwrap());
            let sha256 = blobs.put(&component).await.unwrap();
            let manifest = AppManifest {
                name: "shop".into(),
                ..AppManifest::default()
            };
            for _ in 0..2 {
                registry
                    .create_version("shop", &sha256, manifest.clone(), None, Rollout::Activate)
                    .await
                    .unwrap();
            }
            registry
                .put_secret("shop", "API_KEY", "moved-sealed")
                .await
                .unwrap();
            let mut kv = Authority::new(RedbAuthorityStore::open(&dir.join("kv.redb")).unwrap());
            kv.write_all((0..50).map(put).collect(), 0, 0).unwrap();
            kv.compact(20).unwrap();
        }
        let moved = to_postgres(&dir, &server.url(), None, Some(&key_file))
            .await
            .unwrap();
        assert_eq!((moved.apps, moved.versions, moved.components), (1, 2, 1));
        assert_eq!(moved.kv.entries, 50);
        assert_eq!(moved.kv.log, 20);
        assert_eq!(moved.kv.outcomes, 50);
        assert_eq!(moved.kv.version, 50);

        // The same registry, component and KV, read through the PostgreSQL engines.
        let source = Registry::open(&dir.join("registry.redb"), key()).unwrap();
        let db = Arc::new(Database::connect(&server.url()).await.unwrap());
        let target = Registry::connect(db.clone(), key()).await.unwrap();
        assert_eq!(*target.current_state(), *source.current_state());
        let secrets = target.current_state().secrets_of("shop").unwrap().clone();
        assert_eq!(secrets.values["API_KEY"].0, "moved-sealed");
        let components = Components::in_database(db.clone());
        let sha256 = &target.current_state().releases[0].sha256;
        assert_eq!(components.read(sha256).await.unwrap(), component);
        let store = PgAuthorityStore::open(db.clone()).await.unwrap();
        tokio::task::spawn_blocking(move || {
            let mut kv = Authority::new(store);
            assert_eq!(kv.last_version(), 50);
            assert_eq!(
                kv.get("shop/carts", "k007")
                    .unwrap()
                    .unwrap()
                    .value
                    .unwrap(),
                b"v7"
            );
            assert_eq!(kv.log_after(30, 1 << 20).unwrap().unwrap().len(), 20);
            assert!(kv.log_after(10, 1 << 20).unwrap().is_none(), "compacted");
            // A node's retry of a write made before the move is recognised, not applied again.
            let (_, batch) = kv.write_all(vec![put(7)], 0, 0).unwrap();
            assert!(batch.is_none());
        })
        .await
        .unwrap();

        // Into a database that holds something already: refused.
        let again = to_postgres(&dir, &server.url(), None, Some(&key_file))
            .await
            .unwrap_err();
        assert!(format!("{again:#}").contains("already"), "{again:#}");
    }
}
