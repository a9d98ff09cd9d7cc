//! The CLI's client for the origin's admin API: HTTPS with a bearer token, JSON answers, and
//! one clear line when something goes wrong. Plain HTTP is allowed to this machine only (the
//! admin listener of `outpost dev`), so no token crosses a network in clear.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use std::sync::atomic::{AtomicUsize, Ordering};

use outpost_core::api::{FleetStatus, NodeStatus};
use outpost_core::config::DeployTarget;

/// Where the origin is and how to talk to it, from flags, then `outpost.toml`, then the
/// environment (`OUTPOST_ORIGIN`, `OUTPOST_TOKEN`, `OUTPOST_CA`).
#[derive(Debug, Clone, Default, clap::Args)]
pub(super) struct OriginArgs {
    /// The origin's admin API, e.g. https://origin.example.com:9443; several origins of one
    /// fleet separated by commas, tried in turn.
    #[arg(long)]
    pub origin: Option<String>,
    /// Bearer token for the admin API.
    #[arg(long)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for the origin, if it is not publicly trusted.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// How long `fleet_status` waits for each origin.
const STATUS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct AdminClient {
    /// The fleet's origins, in the order given.
    origins: Vec<Target>,
    /// The origin that answered last, tried first next time.
    current: AtomicUsize,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

/// One origin's admin API.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    /// Over TLS (`https://`), else plain HTTP to this machine.
    tls: bool,
}

impl Target {
    fn parse(origin: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = origin
            .parse()
            .map_err(|_| anyhow!("{origin:?} is not a URL such as https://origin:9443"))?;
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("{origin:?} has no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if loopback => false,
            _ => bail!(
                "the origin URL must start with https:// (http:// only to this machine) \
                 (got {origin:?})"
            ),
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            authority: format!("{}:{port}", uri.host().unwrap_or_default()),
            host,
            port,
            tls,
        })
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// A connection to an origin, over TLS or not.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl AdminClient {
    /// A client for the admin API at `url` alone, with no token: `outpost dev`'s.
    pub(super) fn local(url: &str) -> anyhow::Result<Self> {
        Ok(AdminClient {
            origins: vec![Target::parse(url)?],
            current: AtomicUsize::new(0),
            token: None,
            tls: Arc::new(client_tls(None)?),
        })
    }

    pub(super) fn new(args: &OriginArgs, from_app: Option<&DeployTarget>) -> anyhow::Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let origin = args
            .origin
            .clone()
            .or_else(|| from_app.and_then(|d| d.origin.clone()))
            .or_else(|| env("OUTPOST_ORIGIN"))
            .ok_or_else(|| anyhow!("no origin given: use --origin, [deploy] origin in outpost.toml, or OUTPOST_ORIGIN"))?;
        let token = args
            .token
            .clone()
            .or_else(|| from_app.and_then(|d| d.token.clone()))
            .or_else(|| env("OUTPOST_TOKEN"));
        let ca = args
            .ca
            .clone()
            .or_else(|| from_app.and_then(|d| d.ca.clone()))
            .or_else(|| env("OUTPOST_CA").map(PathBuf::from));
        let origins = origin
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(Target::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        if origins.is_empty() {
            bail!("no origin given: {origin:?} lists none");
        }
        let tls = Arc::new(client_tls(ca.as_deref())?);
        Ok(AdminClient {
            origins,
            current: AtomicUsize::new(0),
            token,
            tls,
        })
    }

    /// One client for each origin of the fleet, with the same token and trust: for a command
    /// that needs every origin (a tail), not the first that answers.
    pub(super) fn each_origin(&self) -> Vec<AdminClient> {
        self.origins
            .iter()
            .map(|target| AdminClient {
                origins: vec![target.clone()],
                current: AtomicUsize::new(0),
                token: self.token.clone(),
                tls: self.tls.clone(),
            })
            .collect()
    }

    /// `/v1/status` of the whole fleet. Each origin knows the nodes linked to it, so this
    /// asks every origin at once and merges what those that answer within a few seconds say:
    /// every node (where it is connected, else where it was in contact last), and the apps
    /// from the origin at the newest revision. An error only if no origin answers.
    pub(super) async fn fleet_status(&self) -> anyhow::Result<FleetStatus> {
        if self.origins.len() == 1 {
            return self.get("/v1/status").await;
        }
        let mut asked = tokio::task::JoinSet::new();
        for origin in self.each_origin() {
            asked.spawn(async move {
                tokio::time::timeout(STATUS_PATIENCE, origin.get::<FleetStatus>("/v1/status"))
                    .await
                    .unwrap_or_else(|_| {
                        Err(anyhow!(
                            "{}: no answer within {STATUS_PATIENCE:?}",
                            origin.origin()
                        ))
                    })
            });
        }
        let (mut newest, mut nodes, mut errors) =
            (None::<FleetStatus>, Vec::<NodeStatus>::new(), Vec::new());
        while let Some(answer) = asked.join_next().await {
            let status = match answer.context("a status task failed")? {
                Ok(status) => status,
                Err(err) => {
                    errors.push(err);
                    continue;
                }
            };
            for node in &status.nodes {
                let rank = |n: &NodeStatus| (n.connected, n.last_contact_ms);
                match nodes.iter_mut().find(|n| n.name == node.name) {
                    Some(known) if rank(known) >= rank(node) => {}
                    Some(known) => *known = node.clone(),
                    None => nodes.push(node.clone()),
                }
            }
            if newest.as_ref().is_none_or(|n| n.revision < status.revision) {
                newest = Some(status);
            }
        }
        let Some(mut status) = newest else {
            return Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| anyhow!("no origin answered")));
        };
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        status.nodes = nodes;
        Ok(status)
    }

    /// The origin in use (the one that answered last), as a URL.
    pub(super) fn origin(&self) -> String {
        self.origins[self.current.load(Ordering::Relaxed) % self.origins.len()].url()
    }

    /// A connection to the first origin that takes one, starting with the one that answered
    /// last; the others only when it cannot be reached (nothing is sent before).
    async fn connect(&self) -> anyhow::Result<(&Target, Box<dyn Connection>)> {
        let first = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in (first..first + self.origins.len()).map(|i| i % self.origins.len()) {
            let target = &self.origins[i];
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| anyhow!("{:?}: {e}", target.host))?;
            let attempt = async {
                let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
                if !target.tls {
                    return Ok(Box::new(tcp) as Box<dyn Connection>);
                }
                let tls = TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(Box::new(tls) as Box<dyn Connection>)
            };
            match attempt.await {
                Ok(connection) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok((target, connection));
                }
                Err(e) => errors.push(format!("{}: {e}", target.url())),
            }
        }
        if let [only] = errors.as_slice() {
            bail!("cannot reach the origin at {only}");
        }
        bail!("cannot reach any origin: {}", errors.join("; "))
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(
            http::Method::GET,
            path,
            "application/json",
            Full::new(Bytes::new()),
        )
        .await
    }

    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<T> {
        let bytes = Bytes::from(serde_json::to_vec(body)?);
        self.send(
            http::Method::POST,
            path,
            "application/json",
            Full::new(bytes),
        )
        .await
    }

    pub(super) async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(
            http::Method::DELETE,
            path,
            "application/json",
            Full::new(Bytes::new()),
        )
        .await
    }

    /// Upload bytes, advancing `progress` as they go out.
    pub(super) async fn put_with_progress<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
        progress: ProgressBar,
    ) -> anyhow::Result<T> {
        let body = ProgressBody {
            data: bytes,
            sent: 0,
            progress,
        };
        self.send(http::Method::PUT, path, "application/wasm", body)
            .await
    }

    async fn send<T: DeserializeOwned, B>(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: B,
    ) -> anyhow::Result<T>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let answer = self.exchange(method, path, content_type, &[], body).await?;
        answer.json()
    }

    /// Send a request with extra headers; the answer whatever its status.
    pub(super) async fn exchange<B>(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> anyhow::Result<Answer>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let response = self.open(method, path, content_type, headers, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// Send a request; the response with its body still streaming.
    pub(super) async fn open<B>(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: B,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (target, connection) = self.connect().await?;
        let unreachable =
            |e: &dyn std::fmt::Display| anyhow!("cannot reach the origin at {}: {e}", target.url());
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(connection)).await?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &target.authority)
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        sender
            .send_request(request.body(body)?)
            .await
            .map_err(|e| unreachable(&e))
    }
}

/// What the origin answered.
pub(super) struct Answer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The JSON body of a success as the type the endpoint answers with, or the origin's
    /// refusal as an error.
    pub(super) fn json<T: DeserializeOwned>(self) -> anyhow::Result<T> {
        let status = self.status;
        if !status.is_success() {
            return Err(self.refusal());
        }
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the origin answered {status} with JSON this CLI cannot read (are both of \
                 version {}?)",
                env!("CARGO_PKG_VERSION")
            )
        })
    }

    /// The origin's refusal (`{"error": ..., "field": ...}`) as an error.
    fn refusal(&self) -> anyhow::Error {
        let status = self.status;
        let value: Value = match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(_) => {
                return anyhow!("the origin answered {status} with something that is not JSON");
            }
        };
        let message = value["error"].as_str().unwrap_or("no reason given");
        let field = value["field"]
            .as_str()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default();
        anyhow!("the origin refused ({}): {message}{field}", status.as_u16())
    }

    /// The raw body of a success, or the origin's refusal as an error.
    pub(super) fn bytes(self) -> anyhow::Result<Bytes> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(self.refusal())
        }
    }
}

fn client_tls(ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| anyhow!("{}: {e}", path.display()))?)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A body sent in 64 KiB frames, each one ticking a progress bar.
struct ProgressBody {
    data: Bytes,
    sent: usize,
    progress: ProgressBar,
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.data.len() {
            self.progress.finish();
            return Poll::Ready(None);
        }
        let end = (self.sent + 64 * 1024).min(self.data.len());
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        self.progress.set_position(end as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}
