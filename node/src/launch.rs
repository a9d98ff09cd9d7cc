//! Bringing a node up: KV, runtime, deployments, routes, TLS, listeners. Shared by `outpost dev`
//! (one app, dev certificate) and `outpost node` (several apps, operator certificates).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{OriginLink, node_link, peer_link};
use crate::config::{AppSpec, HttpSettings, Peering, PoolSettings, TlsCertSpec};
use crate::fleet::Deployer;
use crate::kv::NodeKv;
use crate::origin::kv::KvAuthority;
use crate::runtime::{Deployment, Origin, Runtime};
use crate::server::tls::{SniResolver, server_config};
use crate::server::{Edge, LiveRoutes, RedirectToHttps, ShutdownSignal, routes, serve};

/// Everything a node needs to start serving.
pub struct LaunchSpec {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    /// Serve the apps over plain HTTP here too.
    pub plain: Option<SocketAddr>,
    pub certs: Vec<TlsCertSpec>,
    pub apps: Vec<AppSpec>,
    pub pool: PoolSettings,
    pub http: HttpSettings,
    pub data_dir: PathBuf,
    /// Show guest failure details in responses (dev only).
    pub expose_errors: bool,
    /// Join a fleet. Without one, the node keeps its KV's authority itself.
    pub cluster: Option<ClusterSpec>,
}

/// A node's place in a fleet.
pub struct ClusterSpec {
    /// Take apps and KV data from this origin...
    pub link: OriginLink,
    /// ...under this name (its cluster certificate's).
    pub node: String,
    pub peering: Option<Peering>,
}

/// One deployed app, as started.
pub struct Started {
    pub spec: AppSpec,
    pub deployment: Arc<Deployment>,
    pub compile_millis: u128,
}

/// A running node: its bound addresses, and the task that ends once it has drained.
pub struct Launched {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub plain: Option<SocketAddr>,
    pub apps: Vec<Started>,
    pub done: JoinHandle<()>,
}

pub async fn launch(spec: LaunchSpec, shutdown: ShutdownSignal) -> anyhow::Result<Launched> {
    let kv = NodeKv::start(&spec.data_dir.join("kv"))?;
    let runtime = Runtime::new(
        &spec.pool,
        &spec.data_dir.join("cache"),
        Some(kv.client.clone()),
    )?;
    tracing::info!(
        instances = spec.pool.instances,
        memory_reservation_mib = runtime.layout().memory_reservation >> 20,
        "instance pool ready"
    );

    let mut apps = Vec::new();
    for app in spec.apps {
        let started = Instant::now();
        let deployment = {
            let runtime = runtime.clone();
            let app = app.clone();
            tokio::task::spawn_blocking(move || runtime.deploy(&app)).await??
        };
        let compile_millis = started.elapsed().as_millis();
        tracing::info!(
            app = %app.settings.name,
            sha256 = %deployment.digest,
            source = match deployment.origin { Origin::Cache => "cache", Origin::Compiled => "compiled" },
            millis = compile_millis as u64,
            "app deployed"
        );
        apps.push(Started {
            spec: app,
            deployment,
            compile_millis,
        });
    }
    crate::memory::release_unused();
    let fixed: Vec<Arc<Deployment>> = apps.iter().map(|a| a.deployment.clone()).collect();
    let routes = Arc::new(LiveRoutes::new(routes::build(&fixed)?));
    let mut tasks = Vec::new();
    if let Some(ClusterSpec {
        link,
        node,
        peering,
    }) = spec.cluster
    {
        let deployer = Arc::new(Deployer::new(
            runtime.clone(),
            routes.clone(),
            fixed,
            &spec.data_dir,
        )?);
        // What this node ran last time serves before the origin is even contacted.
        let restored = deployer.restore().await?;
        tracing::info!(
            apps = restored.apps.len(),
            revision = restored.revision,
            "fleet apps restored from disk"
        );
        if let Some(peering) = peering {
            tasks.push(tokio::spawn(peer_link::run(
                node.clone(),
                peering,
                link.identity.clone(),
                kv.links.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(node_link::run(
            link,
            node,
            deployer,
            kv.links.clone(),
            shutdown.clone(),
        )));
    } else {
        let authority = KvAuthority::start(&spec.data_dir.join("kv").join("authority.redb"))?;
        kv.embed(authority, "local");
    }

    let resolver = Arc::new(SniResolver::load(&spec.certs)?);
    let acceptor = TlsAcceptor::from(server_config(resolver)?);
    let https_listener = bind(spec.https, "HTTPS").await?;
    let https = https_listener.local_addr()?;
    let redirect_listener = match spec.http_redirect {
        Some(addr) => Some(bind(addr, "HTTP redirect").await?),
        None => None,
    };
    let http_redirect = redirect_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let plain_listener = match spec.plain {
        Some(addr) => Some(bind(addr, "plain HTTP").await?),
        None => None,
    };
    let plain = plain_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let edge = Arc::new(Edge::new(runtime, routes, spec.expose_errors));
    tasks.push(tokio::spawn(serve(
        https_listener,
        Some(acceptor),
        edge.clone(),
        spec.http.clone(),
        shutdown.clone(),
    )));
    if let Some(listener) = plain_listener {
        tasks.push(tokio::spawn(serve(
            listener,
            None,
            edge,
            spec.http.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(listener) = redirect_listener {
        let redirect = Arc::new(RedirectToHttps {
            https_port: https.port(),
        });
        tasks.push(tokio::spawn(serve(
            listener, None, redirect, spec.http, shutdown,
        )));
    }
    let done = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
        // Requests have drained, so no handler waits on a write any more.
        kv.stop().await;
    });
    Ok(Launched {
        https,
        http_redirect,
        plain,
        apps,
        done,
    })
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}
