//! Bringing a node up: KV, runtime, deployments, routes, TLS, listeners, the admin listener
//! and the drain sequence. Shared by `outpost dev` (its apps, a dev certificate, the KV API on
//! its admin listener, apps replaced as they are rebuilt) and `outpost node` (operator
//! certificates, usually a fleet).
//!
//! Stopping goes in order: readiness turns false and the drain hook runs (see
//! [`outpost_edge::admin`]), the listeners stop accepting and finish their requests, then the cluster
//! links stop, and the KV last, so a request in flight can still write.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::embedded_kv;
use crate::local_admin::LocalAdmin;
use outpost_core::config::{
    AppSpec, HealthSettings, HttpSettings, OriginLink, Peering, PoolSettings, Tenancy, TlsCertSpec,
};
use outpost_core::sealed::SealKey;
use outpost_edge::admin::{AdminHandler, Health, Lifecycle, run_lifecycle};
use outpost_edge::cluster::node_link::{self, NodeServices};
use outpost_edge::cluster::peer_link;
use outpost_edge::cluster::relay_link::RelayServices;
use outpost_edge::fleet::Deployer;
use outpost_edge::kv::NodeKv;
use outpost_edge::server::front::FrontBuffering;
use outpost_edge::server::handoff::{self, HandedOff, Inherited};
use outpost_edge::server::metadata::RequestMetadata;
use outpost_edge::server::preview::PreviewHosts;
use outpost_edge::server::{Edge, EdgeSettings, LiveRoutes, RedirectToHttps, Routes, routes};
use outpost_edge::tail_tap::TailTap;
use outpost_edge::triggers::{self, OriginClaims, TickClaims};
use outpost_net::cert_reload::{ReloadingResolver, watch_certificates};
use outpost_net::head_proof::head_check;
use outpost_net::http3;
use outpost_net::listener::{ShutdownSignal, serve};
use outpost_net::tls::server_config;
use outpost_origin::kv::KvAuthority;
use outpost_runtime::{Deployment, Origin, Runtime};

/// Everything a node needs to start serving.
pub struct LaunchSpec {
    /// Where the apps are served over HTTPS.
    pub https: SocketAddr,
    /// Where plain HTTP is answered with a redirect to HTTPS, if anywhere.
    pub http_redirect: Option<SocketAddr>,
    /// Serve the apps over plain HTTP here too.
    pub plain: Option<SocketAddr>,
    /// Serve HTTP/3 on the HTTPS address's UDP port too, advertised by `alt-svc`.
    pub http3: bool,
    /// The certificates for the HTTPS listener, by host; reloaded when their files change.
    pub certs: Vec<TlsCertSpec>,
    /// Apps deployed at start and always served, ahead of any fleet apps.
    pub apps: Vec<AppSpec>,
    /// The instance pool every app shares.
    pub pool: PoolSettings,
    /// Limits of the HTTP front end, for every listener.
    pub http: HttpSettings,
    /// The node's own directory: the KV replica, the compile cache, components and the saved
    /// fleet state.
    pub data_dir: PathBuf,
    /// Show guest failure details in responses (dev only).
    pub expose_errors: bool,
    /// Join a fleet. Without one, the node keeps its KV's authority itself.
    pub cluster: Option<ClusterSpec>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin: Option<SocketAddr>,
    /// Without a fleet, also serve the embedded KV authority's API (`/v1/kv/...`, no token)
    /// on the admin listener, if that is bound to a loopback address.
    pub local_kv_api: bool,
    /// The readiness hooks, the drain delay and the KV lag bound.
    pub health: HealthSettings,
    /// Log one line per request (target `outpost::access`).
    pub access_log: bool,
    /// What any one app may take of the node.
    pub tenancy: Tenancy,
    /// Listeners taken over from the process this one replaces.
    pub inherited: Inherited,
    /// The node's name, for hooks and the `outpost-node` request header.
    pub name: String,
    /// The node's region (`outpost-region`), if the operator set one.
    pub region: Option<String>,
    /// Where versions have preview hosts, if anywhere.
    pub preview_domain: Option<String>,
}

/// A node's place in a fleet.
pub struct ClusterSpec {
    /// Take apps and KV data from this origin...
    pub link: OriginLink,
    /// ...under this name (its cluster certificate's).
    pub node: String,
    /// Where this node accepts links from its peers, and who they are; `None`: no peers.
    pub peering: Option<Peering>,
}

/// One deployed app, as started.
pub struct Started {
    /// The app as configured.
    pub spec: AppSpec,
    /// The app compiled and pre-linked, as the routes point at it.
    pub deployment: Arc<Deployment>,
    /// How long deploying took, in milliseconds (compiling, or loading from the cache).
    pub compile_millis: u128,
}

/// A running node: its bound addresses, and the task that ends once it has drained (with the
/// listeners' copies when a new process took them over: see [`HandedOff::release`]).
pub struct Launched {
    /// The HTTPS listener's address, with the port chosen if the spec asked for 0.
    pub https: SocketAddr,
    /// The redirect-to-HTTPS listener's address, if there is one.
    pub http_redirect: Option<SocketAddr>,
    /// The plain-HTTP listener's address, if there is one.
    pub plain: Option<SocketAddr>,
    /// The admin listener's address, if there is one.
    pub admin: Option<SocketAddr>,
    /// The spec's apps, as deployed at start.
    pub apps: Vec<Started>,
    /// Without a fleet: the apps, to replace one as it is rebuilt.
    pub local: Option<LocalApps>,
    /// Ends once the listeners have drained, the links have stopped and the KV has closed;
    /// gives the handed-off listeners if a new process took them over.
    pub done: JoinHandle<Option<HandedOff>>,
}

/// Start a node from `spec`: KV, runtime and apps, the cluster links (or a KV authority of
/// its own), then the listeners; `shutdown` starts the drain that [`Launched::done`] waits for.
pub async fn launch(spec: LaunchSpec, shutdown: ShutdownSignal) -> anyhow::Result<Launched> {
    // Peers are believed as far as the origin vouches for; a node alone has no peers.
    let head_check: outpost_kv::HeadCheck = match &spec.cluster {
        Some(cluster) => head_check(&cluster.link.identity, &cluster.link.server_name)?,
        None => std::sync::Arc::new(|_| false),
    };
    let kv = NodeKv::start(&spec.data_dir.join("kv"), head_check)?;
    let runtime = Runtime::new(
        &spec.pool,
        &spec.data_dir.join("cache"),
        Some(kv.client.clone()),
        spec.tenancy.clone(),
    )?;
    tracing::info!(
        instances = spec.pool.instances,
        memory_reservation_mib = runtime.layout().memory_reservation >> 20,
        "instance pool ready"
    );

    let mut apps = Vec::new();
    for app in spec.apps {
        apps.push(deploy(&runtime, app).await?);
    }
    outpost_runtime::memory::release_unused();
    let fixed: Vec<Arc<Deployment>> = apps.iter().map(|a| a.deployment.clone()).collect();
    let routes = Arc::new(LiveRoutes::new(routes::build(&fixed)?));
    let mut local = None;
    // The links outlive the listeners, so requests draining can still reach the KV authority.
    let (stop_links, links_stop) = watch::channel(false);
    let mut link_tasks = Vec::new();
    let tap = Arc::new(TailTap::default());
    // Without a fleet, the KV's authority lives in this process.
    let mut embedded = None;
    let mut local_kv_api = None;
    // Which node fires a trigger's tick: the origin decides in a fleet, a node alone itself.
    let tick_claims;
    if let Some(ClusterSpec {
        link,
        node,
        peering,
    }) = spec.cluster
    {
        // The apps' secrets are kept on disk sealed with a key only this node's cluster key
        // gives: the data directory alone does not hold them in clear.
        let cluster_key = std::fs::read(&link.identity.key)
            .with_context(|| format!("reading {}", link.identity.key.display()))?;
        let deployer = Arc::new(Deployer::new(
            runtime.clone(),
            routes.clone(),
            fixed,
            spec.preview_domain.is_some(),
            &spec.data_dir,
            Some(SealKey::derived(&cluster_key, "node secrets")),
        )?);
        // What this node ran last time serves before the origin is even contacted.
        let restored = deployer.restore().await?;
        tracing::info!(
            apps = restored.apps.len(),
            revision = restored.revision,
            "fleet apps restored from disk"
        );
        let claims = Arc::new(OriginClaims::new(&node));
        // What this node applied, with every component stored: a relay serves it on.
        let (desired, desired_now) = watch::channel(None);
        let mut follower_reports = None;
        if let Some(peering) = peering {
            let relay = peering.relay.then(|| {
                let (reports, reported) = watch::channel(Default::default());
                follower_reports = Some(reported);
                RelayServices {
                    kv: kv.links.clone(),
                    desired: desired_now,
                    deployer: deployer.clone(),
                    tick_claims: claims.clone(),
                    reports,
                }
            });
            link_tasks.push(tokio::spawn(peer_link::run(
                node.clone(),
                peering,
                link.identity.clone(),
                kv.links.clone(),
                relay,
                links_stop.clone(),
            )));
        }
        let own = apps.iter().map(|a| a.spec.settings.name.clone());
        tick_claims = Arc::new(TickClaims::fleet(claims.clone(), own));
        link_tasks.push(tokio::spawn(node_link::run(
            link,
            node,
            NodeServices {
                deployer,
                kv: kv.links.clone(),
                tap: tap.clone(),
                tick_claims: claims,
                desired,
                follower_reports,
            },
            links_stop.clone(),
        )));
    } else {
        tick_claims = Arc::new(TickClaims::alone());
        let authority = KvAuthority::start(&spec.data_dir.join("kv").join("authority.redb"))?;
        local_kv_api = spec.local_kv_api.then(|| authority.clone());
        embedded = Some(embedded_kv::embed(&kv, authority, "local"));
        local = Some(LocalApps {
            runtime: runtime.clone(),
            routes: routes.clone(),
            deployments: Mutex::new(fixed),
        });
    }

    let resolver = Arc::new(ReloadingResolver::load(spec.certs)?);
    let acceptor = TlsAcceptor::from(server_config(resolver.clone())?);
    let mut inherited = spec.inherited;
    let https_listener = bind(&mut inherited, "https", spec.https).await?;
    let redirect_listener = bind_optional(&mut inherited, "redirect", spec.http_redirect).await?;
    let plain_listener = bind_optional(&mut inherited, "plain", spec.plain).await?;
    let admin_listener = bind_optional(&mut inherited, "admin", spec.admin).await?;
    let https = https_listener.local_addr()?;
    // HTTP/3 on the same port over UDP: bound now (a port taken is an error at start), or, in
    // a takeover, once the old process lets go of it after its drain (which waits for this
    // one to serve), in the background (`Some(None)`).
    let quic = match spec.http3 {
        false => None,
        true if inherited.is_takeover() => Some(None),
        true => Some(Some(
            http3::endpoint(https, resolver.clone(), &spec.http, Duration::ZERO).await?,
        )),
    };
    let address = |l: &Option<TcpListener>| l.as_ref().map(|l| l.local_addr()).transpose();
    let (http_redirect, plain, admin) = (
        address(&redirect_listener)?,
        address(&plain_listener)?,
        address(&admin_listener)?,
    );
    // No app may fetch from this node's own listeners.
    let ports: Vec<u16> = [Some(https), http_redirect, plain, admin]
        .into_iter()
        .flatten()
        .map(|a| a.port())
        .collect();
    runtime.set_listening_ports(&ports);

    // Readiness and the drain sequence decide when the listeners stop.
    let (stop_listeners, listeners_stop) = watch::channel(false);
    let (handed_off, handoff_signal) = watch::channel(false);
    let mut handed = vec![("https".to_string(), &https_listener)];
    for (role, listener) in [
        ("redirect", &redirect_listener),
        ("plain", &plain_listener),
        ("admin", &admin_listener),
    ] {
        if let Some(listener) = listener {
            handed.push((role.to_string(), listener));
        }
    }
    let handoff_task = match handoff::serve_handoff(
        spec.data_dir.clone(),
        handed,
        handed_off,
        listeners_stop.clone(),
    ) {
        Ok(task) => Some(task),
        Err(err) => {
            tracing::warn!("restarts will not hand the listeners over: {err:#}");
            None
        }
    };
    let health = Arc::new(Health::new(
        routes.clone(),
        kv.progress.clone(),
        spec.health.kv_max_lag,
    ));
    tokio::spawn(run_lifecycle(
        Lifecycle {
            health: health.clone(),
            settings: spec.health,
            node: spec.name.clone(),
        },
        shutdown,
        handoff_signal,
        stop_listeners,
    ));
    tokio::spawn(watch_certificates(resolver.clone(), listeners_stop.clone()));

    let mut serving = Vec::new();
    let edge = Arc::new(Edge::new(
        runtime.clone(),
        routes.clone(),
        tap,
        EdgeSettings {
            expose_errors: spec.expose_errors,
            access_log: spec.access_log,
            front: FrontBuffering::new(
                spec.http.body_read_ahead_bytes,
                spec.http.body_read_ahead_total_bytes,
            ),
            metadata: RequestMetadata::new(
                &spec.name,
                spec.region.as_deref(),
                spec.http.trusted_proxies.clone(),
            ),
            previews: spec.preview_domain.as_deref().map(PreviewHosts::new),
            alt_svc: quic.as_ref().map(|_| {
                http::HeaderValue::try_from(format!("h3=\":{}\"; ma=86400", https.port()))
                    .expect("a port is a valid header value")
            }),
        },
    ));
    if let Some(bound) = quic {
        let (edge, settings, stop) = (edge.clone(), spec.http.clone(), listeners_stop.clone());
        let resolver = resolver.clone();
        serving.push(tokio::spawn(async move {
            let endpoint = match bound {
                Some(endpoint) => endpoint,
                None => {
                    let wait = settings.drain_timeout + Duration::from_secs(5);
                    match http3::endpoint(https, resolver, &settings, wait).await {
                        Ok(endpoint) => endpoint,
                        Err(err) => return tracing::error!("HTTP/3 not served: {err:#}"),
                    }
                }
            };
            http3::serve(endpoint, edge, settings, stop).await;
        }));
    }
    // Ticks stop with the listeners: a draining node fires no new ones.
    tokio::spawn(triggers::run(
        edge.clone(),
        tick_claims,
        listeners_stop.clone(),
    ));
    serving.push(tokio::spawn(serve(
        https_listener,
        Some(acceptor),
        edge.clone(),
        spec.http.clone(),
        listeners_stop.clone(),
    )));
    if let Some(listener) = plain_listener {
        serving.push(tokio::spawn(serve(
            listener,
            None,
            edge,
            spec.http.clone(),
            listeners_stop.clone(),
        )));
    }
    if let Some(listener) = redirect_listener {
        let redirect = Arc::new(RedirectToHttps {
            https_port: https.port(),
        });
        serving.push(tokio::spawn(serve(
            listener,
            None,
            redirect,
            spec.http.clone(),
            listeners_stop.clone(),
        )));
    }
    if let Some(listener) = admin_listener {
        let node = AdminHandler {
            health,
            runtime,
            routes,
            kv: kv.progress.clone(),
        };
        let loopback = admin.is_some_and(|a| a.ip().is_loopback());
        if local_kv_api.is_some() && !loopback {
            tracing::warn!("the KV API is served on a loopback admin listener only");
        }
        serving.push(match local_kv_api.filter(|_| loopback) {
            Some(kv) => tokio::spawn(serve(
                listener,
                None,
                Arc::new(LocalAdmin { node, kv }),
                spec.http,
                listeners_stop,
            )),
            None => tokio::spawn(serve(
                listener,
                None,
                Arc::new(node),
                spec.http,
                listeners_stop,
            )),
        });
    }
    let done = tokio::spawn(async move {
        for task in serving {
            let _ = task.await;
        }
        let _ = stop_links.send(true);
        for task in link_tasks {
            let _ = task.await;
        }
        // Requests have drained, so no handler waits on a write any more.
        kv.stop().await;
        // Its driver gone, the embedded authority's session ends and the authority closes.
        if let Some(closed) = embedded
            && !closed.wait(Duration::from_secs(10)).await
        {
            tracing::error!("the KV authority did not close; it closes when this process exits");
        }
        match handoff_task {
            Some(task) => task.await.ok().flatten(),
            None => None,
        }
    });
    // Everything that could fail has started: the process this one replaces may go.
    inherited.confirm_serving();
    Ok(Launched {
        https,
        http_redirect,
        plain,
        admin,
        apps,
        local,
        done,
    })
}

/// Deploy `app` (compile it, or load it from the cache) in a blocking task.
async fn deploy(runtime: &Arc<Runtime>, app: AppSpec) -> anyhow::Result<Started> {
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
    Ok(Started {
        spec: app,
        deployment,
        compile_millis,
    })
}

/// The apps of a node that belongs to no fleet, which stay its apps until it stops; one can
/// be replaced by a new build of itself (`outpost dev --watch`).
pub struct LocalApps {
    runtime: Arc<Runtime>,
    routes: Arc<LiveRoutes>,
    /// What the routes point at, in the order the apps were given (that order decides
    /// which app keeps a route two claim).
    deployments: Mutex<Vec<Arc<Deployment>>>,
}

impl LocalApps {
    /// Deploy `app` in place of the app of the same name and route to it in one swap: new
    /// requests go to it, requests already running finish on the old one, and no connection
    /// is closed. On an error (the component does not compile, or its routes conflict) the
    /// old one stays.
    pub async fn replace(&self, app: AppSpec) -> anyhow::Result<Started> {
        let started = deploy(&self.runtime, app).await?;
        let name = &started.spec.settings.name;
        {
            let mut deployments = self.deployments.lock().expect("not poisoned");
            let replaced: Vec<Arc<Deployment>> = deployments
                .iter()
                .map(|d| match &*d.app.name == name {
                    true => started.deployment.clone(),
                    false => d.clone(),
                })
                .collect();
            anyhow::ensure!(
                replaced.iter().any(|d| Arc::ptr_eq(d, &started.deployment)),
                "no app {name:?} is served here"
            );
            let table: Routes = routes::build(&replaced)?;
            self.routes.swap(table);
            *deployments = replaced;
        }
        outpost_runtime::memory::release_unused();
        Ok(started)
    }
}

/// The listener for `role`: the one inherited from the process this one replaces, if it
/// listens at `addr`, else a new one.
async fn bind(
    inherited: &mut Inherited,
    role: &str,
    addr: SocketAddr,
) -> anyhow::Result<TcpListener> {
    if let Some(listener) = inherited.take(role, addr) {
        return Ok(TcpListener::from_std(listener)?);
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {role} listener on {addr}"))
}

async fn bind_optional(
    inherited: &mut Inherited,
    role: &str,
    addr: Option<SocketAddr>,
) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(inherited, role, addr).await?)),
        None => Ok(None),
    }
}
