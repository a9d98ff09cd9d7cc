//! Bringing a node up: runtime, deployments, routes, TLS, listeners. Shared by `outpost dev`
//! (one app, dev certificate) and `outpost node` (several apps, operator certificates).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{AppSpec, HttpSettings, PoolSettings, TlsCertSpec};
use crate::runtime::{Deployment, Origin, Runtime};
use crate::server::tls::{SniResolver, server_config};
use crate::server::{Edge, RedirectToHttps, Routes, ShutdownSignal, serve};

/// Everything a node needs to start serving.
pub struct LaunchSpec {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    pub certs: Vec<TlsCertSpec>,
    pub apps: Vec<AppSpec>,
    pub pool: PoolSettings,
    pub http: HttpSettings,
    pub data_dir: PathBuf,
    /// Show guest failure details in responses (dev only).
    pub expose_errors: bool,
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
    pub apps: Vec<Started>,
    pub done: JoinHandle<()>,
}

pub async fn launch(spec: LaunchSpec, shutdown: ShutdownSignal) -> anyhow::Result<Launched> {
    let runtime = Runtime::new(&spec.pool, &spec.data_dir.join("cache"))?;
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
    let routes = build_routes(&apps)?;

    let resolver = Arc::new(SniResolver::load(&spec.certs)?);
    let acceptor = TlsAcceptor::from(server_config(resolver)?);
    let https_listener = TcpListener::bind(spec.https)
        .await
        .with_context(|| format!("binding the HTTPS listener on {}", spec.https))?;
    let https = https_listener.local_addr()?;
    let redirect_listener = match spec.http_redirect {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP redirect listener on {addr}"))?,
        ),
        None => None,
    };
    let http_redirect = redirect_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let edge = Arc::new(Edge::new(runtime, routes, spec.expose_errors));
    let mut tasks = vec![tokio::spawn(serve(
        https_listener,
        Some(acceptor),
        edge,
        spec.http.clone(),
        shutdown.clone(),
    ))];
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
    });
    Ok(Launched {
        https,
        http_redirect,
        apps,
        done,
    })
}

/// One route table over every app; the same pattern in two apps is an error naming both.
pub fn build_routes(apps: &[Started]) -> anyhow::Result<Routes> {
    let mut builder = Routes::builder();
    let mut owners = HashMap::new();
    for app in apps {
        for pattern in &app.spec.settings.routes {
            if builder.add(pattern, app.deployment.clone()).is_err() {
                let other: &str = owners.get(pattern).copied().unwrap_or("?");
                bail!(
                    "route {pattern} of app {} ({}) is already a route of app {other}",
                    app.spec.settings.name,
                    app.spec.source.display()
                );
            }
            owners.insert(pattern.clone(), app.spec.settings.name.as_str());
        }
    }
    Ok(builder.build())
}
