//! `outpost-origin`: the origin, the authority for deployments and for the edge KV. It keeps
//! apps, versions, components and the KV in embedded stores on its disk, or in the fleet's
//! PostgreSQL database (`[database] url`), which several origins share, all active. It
//! answers the admin API over HTTPS, publishes the desired state to nodes over the cluster link,
//! runs the KV authority (group commit, the change feed every node follows) and fans tail
//! records out to `outpost tail` clients.
//!
//! It builds on `outpost-net` (serve loop, TLS, cluster TLS) and uses `outpost-runtime` only to
//! validate uploaded components; it may not depend on the edge: nodes and the origin meet only
//! on the wire (`outpost_core::wire`).

mod api;
pub mod auth;
pub mod components;
pub mod database;
pub mod kv;
pub mod kv_api;
pub mod link;
pub mod migrate;
mod registry;
pub mod tail;
mod tail_api;

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_core::sealed::SealKey;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use api::AdminApi;
pub use registry::{AppRecord, Registry, RegistryError, VersionRecord};

use crate::tail::TailHub;
use components::Components;
use database::Database;
use link::{ClusterServices, NodeDirectory};
use outpost_core::blobs::BlobStore;
use outpost_core::config::{HttpSettings, OriginConfig, TlsCertSpec};
use outpost_net::cluster_tls;
use outpost_net::head_proof::HeadSigner;
use outpost_net::listener::{ShutdownSignal, serve};
use outpost_net::tls::{SniResolver, server_config};
use outpost_runtime::ComponentValidator;

/// A running origin: where it listens, and the task that ends once it has stopped.
pub struct RunningOrigin {
    /// The admin API address (TCP, HTTPS), with the port chosen if the config asked for 0.
    pub admin: SocketAddr,
    /// The cluster link address (UDP, QUIC with mutual TLS).
    pub cluster: SocketAddr,
    /// Ends once both the admin API and the cluster link have stopped after shutdown.
    pub done: JoinHandle<()>,
}

/// Open the registry, components and KV authority (in `config.data_dir`, or in the database
/// origin.toml names), bind the admin and cluster listeners, and serve both until `shutdown`.
pub async fn start(
    config: OriginConfig,
    shutdown: ShutdownSignal,
) -> anyhow::Result<RunningOrigin> {
    outpost_core::files::private_dir(&config.data_dir)?;
    let signer = Some(HeadSigner::load(&config.cluster_identity)?);
    let retention = kv::LogRetention::default();
    let secrets_key = config
        .secrets_key_file
        .as_deref()
        .map(SealKey::load)
        .transpose()?
        .map(Arc::new);
    let (registry, components, kv) = match &config.database {
        None => {
            let registry =
                Registry::open(&config.data_dir.join("registry.redb"), secrets_key.clone())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "opening the registry in {}: {e}",
                            config.data_dir.display()
                        )
                    })?;
            let components = Components::Files(BlobStore::open(&config.data_dir.join("blobs"))?);
            let kv = kv::KvAuthority::start_with(
                &config.data_dir.join("kv.redb"),
                retention,
                config.kv_quotas.clone(),
                signer,
            )?;
            (Arc::new(registry), components, kv)
        }
        Some(database) => {
            let db = Arc::new(Database::connect_with(&database.url, database.ca.as_deref()).await?);
            let registry = Arc::new(
                Registry::connect(db.clone(), secrets_key.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the registry in {}: {e}", db.shown()))?,
            );
            registry.follow(&db);
            let kv = kv::KvAuthority::start_on_postgres(
                db.clone(),
                retention,
                config.kv_quotas.clone(),
                signer,
            )
            .await?;
            (registry, Components::in_database(db), kv)
        }
    };
    let nodes = Arc::new(NodeDirectory::default());

    let endpoint = quinn::Endpoint::server(
        cluster_tls::server_config(&config.cluster_identity)?,
        config.cluster_listen,
    )
    .with_context(|| {
        format!(
            "binding the cluster listener on udp {}",
            config.cluster_listen
        )
    })?;
    let cluster = endpoint.local_addr()?;

    let resolver = SniResolver::load(&[TlsCertSpec {
        hosts: Vec::new(),
        cert: config.admin_cert.clone(),
        key: config.admin_key.clone(),
    }])?;
    let acceptor = TlsAcceptor::from(server_config(Arc::new(resolver))?);
    let listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
    let admin = listener.local_addr()?;

    let tail = Arc::new(TailHub::default());
    let api = Arc::new(AdminApi {
        registry: registry.clone(),
        components: components.clone(),
        tokens: auth::Tokens::new(config.tokens),
        nodes: nodes.clone(),
        kv: kv.clone(),
        tail: tail.clone(),
        validator: Arc::new(ComponentValidator::new()?),
        max_component_bytes: config.max_component_bytes,
    });
    let admin_task = tokio::spawn(serve(
        listener,
        Some(acceptor),
        api,
        HttpSettings::default(),
        shutdown.clone(),
    ));
    let cluster_task = tokio::spawn(link::serve(
        endpoint,
        ClusterServices {
            registry: registry.clone(),
            components,
            directory: nodes,
            kv,
            tail,
        },
        shutdown,
    ));
    tracing::info!(
        origin = %config.name,
        admin = %admin,
        cluster = %cluster,
        revision = registry.current_state().revision,
        "origin serving"
    );
    let done = tokio::spawn(async move {
        let _ = admin_task.await;
        let _ = cluster_task.await;
    });
    Ok(RunningOrigin {
        admin,
        cluster,
        done,
    })
}
