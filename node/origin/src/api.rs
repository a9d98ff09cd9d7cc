//! The origin's admin API (HTTPS, bearer tokens). JSON in and out; every refusal is a 4xx with
//! `{"error": "...", "field": "..."}` saying why.
//!
//! | method and path                  | right  | does                                        |
//! | -------------------------------- | ------ | ------------------------------------------- |
//! | `GET /healthz`                   | none   | liveness                                    |
//! | `GET /v1/status`                 | read   | revision, active versions, nodes and what they run |
//! | `GET /v1/apps`                   | read   | every app with its active version           |
//! | `GET /v1/apps/{app}`             | read   | one app with all its versions               |
//! | `PUT /v1/blobs/{sha256}`         | deploy | upload a component (checked: parses, links) |
//! | `POST /v1/apps/{app}/versions`   | deploy | `{component, manifest, note?, activate?, percent?}` (`percent`: a gradual deployment beside the active version) |
//! | `POST /v1/apps/{app}/activate`   | deploy | `{version}`                                 |
//! | `POST /v1/apps/{app}/split`      | deploy | `{versions: [{version, percent}, ...]}`, the first becomes the active one |
//! | `POST /v1/apps/{app}/rollback`   | deploy | `{version?}` (default: the one before)      |
//! | `DELETE /v1/apps/{app}`          | admin  | remove the app from the fleet               |
//! | `GET /v1/apps/{app}/secrets`     | read   | the names of its secrets (never a value)    |
//! | `PUT /v1/apps/{app}/secrets/{name}` | deploy | set a secret: the body is its value (text, up to 64 KiB) |
//! | `DELETE /v1/apps/{app}/secrets/{name}` | deploy | delete a secret                      |
//! | `GET /v1/kv/{app}/{ns}/keys`     | read   | list keys (`?prefix=&cursor=&limit=`)       |
//! | `GET /v1/kv/{app}/{ns}/values/{key}` | read | a value's raw bytes                       |
//! | `PUT /v1/kv/{app}/{ns}/values/{key}` | deploy | write (`?ttl=SECS`, `outpost-kv-metadata` header) |
//! | `DELETE /v1/kv/{app}/{ns}/values/{key}` | deploy | delete                                |
//! | `GET /v1/tail/{app}`             | read   | live request lines, NDJSON (`?status=5xx,404&sample=0.1`) |
//! | `GET /metrics`                   | read   | Prometheus metrics                          |
//!
//! KV endpoints answer from the origin's authority, so what they read is the latest committed.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Denied, Tokens};
use super::kv::KvAuthority;
use super::link::NodeDirectory;
use super::registry::{Registry, RegistryError, Rollout};
use crate::components::{ComponentError, Components};
use crate::tail::TailHub;
use outpost_core::api::{
    ActiveApp, ActiveVersion, AppDetail, AppList, AppSummary, BlobStored, Deleted, FleetStatus,
    SecretInfo, SecretList, SecretStored, VersionCreated,
};
use outpost_core::blobs::sha256_hex;
use outpost_core::config::{AppManifest, Right, validate_name};
use outpost_core::metrics::{metrics, status_class};
use outpost_core::wire::{VersionShare, is_sha256_hex};
use outpost_net::listener::{Connection, Handler};
use outpost_runtime::ComponentValidator;
use outpost_runtime::body::{ResponseBody, full_response};

/// Largest JSON request body.
const MAX_JSON: usize = 1 << 20;

/// The admin API handler: routes each request, checks its bearer token and answers in JSON.
pub struct AdminApi {
    /// Apps and versions; every change to what is active is published from here.
    pub registry: Arc<Registry>,
    /// Uploaded components, stored by sha256.
    pub components: Components,
    /// The bearer tokens that may call the API, and the rights of each.
    pub tokens: Tokens,
    /// The nodes seen on the cluster link, reported by `GET /v1/status`.
    pub nodes: Arc<NodeDirectory>,
    /// The KV authority the `/v1/kv` endpoints read from and write through.
    pub kv: KvAuthority,
    /// Where `GET /v1/tail/{app}` subscribes to the records nodes send.
    pub tail: Arc<TailHub>,
    /// Checks that an uploaded component parses and links before it is stored.
    pub validator: Arc<ComponentValidator>,
    /// Largest component body `PUT /v1/blobs/{sha256}` reads, in bytes; past it: 413.
    pub max_component_bytes: u64,
}

/// A refusal: status, message, and the field it is about.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub(super) fn field(
        status: StatusCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            RegistryError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            RegistryError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            RegistryError::Unavailable(m) => database_unavailable("registry", &m),
            RegistryError::Storage(m) => {
                tracing::error!("registry storage error: {m}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the origin's storage failed",
                )
            }
        }
    }
}

/// The answer while the database is out of reach: 503, and the reason in the origin's log.
fn database_unavailable(what: &str, reason: &str) -> ApiError {
    tracing::warn!("{what} unavailable: {reason}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the origin's database is out of reach; retry shortly",
    )
}

impl From<ComponentError> for ApiError {
    fn from(err: ComponentError) -> Self {
        match err {
            ComponentError::Unavailable(m) => database_unavailable("component store", &m),
            ComponentError::Storage(m) => {
                tracing::error!("component storage error: {m}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the origin's component storage failed: {m}"),
                )
            }
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or unknown bearer token (Authorization: Bearer ...)",
            ),
            Denied::Forbidden { token, needs } => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("token {token:?} lacks the {needs:?} right"),
            ),
        }
    }
}

type ApiResult = Result<(StatusCode, serde_json::Value), ApiError>;

pub(super) type Response = http::Response<ResponseBody>;

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes.push(b'\n');
    full_response(status.as_u16(), "application/json", Bytes::from(bytes))
}

impl ApiError {
    pub(super) fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        json_response(self.status, &body)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    component: String,
    manifest: AppManifest,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    activate: bool,
    /// A share of the traffic beside the active version, instead of all of it.
    #[serde(default)]
    percent: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Split {
    versions: Vec<VersionShare>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rollback {
    #[serde(default)]
    version: Option<u64>,
}

impl Handler for AdminApi {
    type Body = ResponseBody;

    async fn handle(
        &self,
        request: http::Request<Incoming>,
        _connection: Connection,
    ) -> http::Response<ResponseBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let response = self
            .route(request)
            .await
            .unwrap_or_else(ApiError::into_response);
        let status = response.status().as_u16();
        metrics()
            .admin_requests
            .with_label_values(&[status_class(status)])
            .inc();
        tracing::info!(target: "outpost::admin", %method, path, status, "admin request");
        response
    }
}

impl AdminApi {
    /// `GET /metrics`: the process's metrics, with the origin's gauges brought up to date.
    fn metrics(&self) -> Response {
        let m = metrics();
        let connected = self.nodes.snapshot().iter().filter(|n| n.connected).count();
        m.origin_nodes_connected.set(connected as i64);
        full_response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(m.render()),
        )
    }

    fn authorize(&self, request: &http::Request<Incoming>, right: Right) -> Result<(), ApiError> {
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.tokens.authorize(header, right)?;
        Ok(())
    }

    async fn route(&self, request: http::Request<Incoming>) -> Result<Response, ApiError> {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        let right = match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => {
                return Ok(json_response(StatusCode::OK, &json!({ "ok": true })));
            }
            (&Method::GET, ["metrics"]) => {
                // Prometheus sends the token with `authorization: { credentials: ... }`.
                self.authorize(&request, Right::Read)?;
                return Ok(self.metrics());
            }
            (&Method::GET, ["v1", ..]) => Right::Read,
            // "Is this component there already?", asked before an upload.
            (&Method::HEAD, ["v1", "blobs", _]) => Right::Deploy,
            (&Method::DELETE, ["v1", "apps", _]) => Right::Admin,
            (&Method::DELETE, ["v1", "apps", _, "secrets", _]) => Right::Deploy,
            (&Method::DELETE, ["v1", "kv", ..]) => Right::Deploy,
            (&Method::PUT | &Method::POST, ["v1", ..]) => Right::Deploy,
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no such endpoint: {method} {path}"),
                ));
            }
        };
        if let Err(denied) = self.authorize(&request, right) {
            // Refused before a byte of the body is read: a stranger cannot make the origin
            // take in (or wait for) an upload. The connection closes after the answer; the
            // CLI asks before it uploads (`HEAD /v1/blobs/...`), so it sees the refusal.
            let mut response = denied.into_response();
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Ok(response);
        }
        if let ["v1", "kv", rest @ ..] = segments.as_slice() {
            return super::kv_api::kv_request(&self.kv, rest, request).await;
        }
        if let (&Method::GET, ["v1", "tail", app]) = (&method, segments.as_slice()) {
            return self.tail_request(app, request).await;
        }
        self.json_request(&method, &path, &segments, request)
            .await
            .map(|(status, body)| json_response(status, &body))
    }

    async fn json_request(
        &self,
        method: &Method,
        path: &str,
        segments: &[&str],
        request: http::Request<Incoming>,
    ) -> ApiResult {
        match (method, segments) {
            (&Method::GET, ["v1", "status"]) => self.status(),
            (&Method::GET, ["v1", "apps"]) => self.list_apps().await,
            (&Method::GET, ["v1", "apps", app]) => {
                // Config values are for those who may deploy; a `read` token (Prometheus, a
                // dashboard) sees their names only.
                let reveal = self.authorize(&request, Right::Deploy).is_ok();
                self.show_app(app, reveal).await
            }
            (&Method::HEAD, ["v1", "blobs", sha256]) => self.has_blob(sha256).await,
            (&Method::GET, ["v1", "apps", app, "secrets"]) => {
                let secrets = self
                    .registry
                    .secret_names(app)
                    .await?
                    .into_iter()
                    .map(|(name, updated_at)| SecretInfo { name, updated_at })
                    .collect();
                let list = SecretList {
                    app: app.to_string(),
                    secrets,
                };
                Ok((StatusCode::OK, json!(list)))
            }
            (&Method::PUT, ["v1", "apps", app, "secrets", name]) => {
                let (app, name) = (app.to_string(), name.to_string());
                let value = read_secret_body(request).await?;
                let replaced = self.registry.put_secret(&app, &name, &value).await?;
                // The value is never logged; its name is.
                tracing::info!(app, name, replaced, "secret set");
                Ok((
                    StatusCode::OK,
                    json!(SecretStored {
                        app,
                        name,
                        replaced
                    }),
                ))
            }
            (&Method::DELETE, ["v1", "apps", app, "secrets", name]) => {
                self.registry.delete_secret(app, name).await?;
                tracing::info!(app, name, "secret deleted");
                let deleted = Deleted {
                    deleted: name.to_string(),
                };
                Ok((StatusCode::OK, json!(deleted)))
            }
            (&Method::DELETE, ["v1", "apps", app]) => {
                self.registry.delete_app(app).await?;
                let deleted = Deleted {
                    deleted: app.to_string(),
                };
                Ok((StatusCode::OK, json!(deleted)))
            }
            (&Method::PUT, ["v1", "blobs", sha256]) => {
                let sha256 = sha256.to_string();
                self.put_blob(&sha256, request).await
            }
            (&Method::POST, ["v1", "apps", app, action]) => {
                let (app, action) = (app.to_string(), action.to_string());
                let body = read_json_body(request).await?;
                match action.as_str() {
                    "versions" => self.new_version(&app, parse(&body)?).await,
                    "activate" => {
                        let Activate { version } = parse(&body)?;
                        self.registry.activate(&app, version).await?;
                        let active = ActiveVersion {
                            app,
                            active: version,
                            split: Vec::new(),
                        };
                        Ok((StatusCode::OK, json!(active)))
                    }
                    "split" => {
                        let Split { versions } = parse(&body)?;
                        let (version, split) = self.registry.split(&app, &versions).await?;
                        tracing::info!(app, ?split, "traffic split");
                        let active = ActiveVersion {
                            app,
                            active: version,
                            split,
                        };
                        Ok((StatusCode::OK, json!(active)))
                    }
                    "rollback" => {
                        let rollback: Rollback = if body.is_empty() {
                            Rollback::default()
                        } else {
                            parse(&body)?
                        };
                        let version = self.registry.rollback(&app, rollback.version).await?;
                        let active = ActiveVersion {
                            app,
                            active: version,
                            split: Vec::new(),
                        };
                        Ok((StatusCode::OK, json!(active)))
                    }
                    other => Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("no such action: {other}"),
                    )),
                }
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {path}"),
            )),
        }
    }

    fn status(&self) -> ApiResult {
        let state = self.registry.current_state();
        let status = FleetStatus {
            revision: state.revision,
            apps: state
                .releases
                .iter()
                .map(|r| ActiveApp {
                    name: r.app.clone(),
                    active: r.version,
                    sha256: r.sha256.clone(),
                    split: state.split_of(r).unwrap_or_default(),
                })
                .collect(),
            nodes: self.nodes.snapshot(),
        };
        Ok((StatusCode::OK, json!(status)))
    }

    async fn list_apps(&self) -> ApiResult {
        let apps: Vec<AppSummary> = self
            .registry
            .apps()
            .await?
            .into_iter()
            .map(|a| AppSummary {
                versions: a.next_version - 1,
                name: a.name,
                active: a.active,
                updated_at: a.updated_at,
            })
            .collect();
        Ok((StatusCode::OK, json!(AppList { apps })))
    }

    async fn show_app(&self, app: &str, reveal_config: bool) -> ApiResult {
        let (record, mut versions) = self.registry.app(app).await?;
        if !reveal_config {
            for version in &mut versions {
                version.manifest.config.values_mut().for_each(String::clear);
            }
        }
        let detail = AppDetail {
            app: record,
            versions,
            config_hidden: !reveal_config,
        };
        Ok((StatusCode::OK, json!(detail)))
    }

    async fn has_blob(&self, sha256: &str) -> ApiResult {
        if self.components.contains(sha256).await? {
            let stored = BlobStored {
                sha256: sha256.to_string(),
                size: None,
                stored: true,
            };
            Ok((StatusCode::OK, json!(stored)))
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no component {sha256}"),
            ))
        }
    }

    async fn put_blob(&self, sha256: &str, request: http::Request<Incoming>) -> ApiResult {
        if !is_sha256_hex(sha256) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{sha256:?} is not a lowercase hex sha256"),
            ));
        }
        let bytes = Limited::new(request.into_body(), self.max_component_bytes as usize)
            .collect()
            .await
            .map_err(|err| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the component could not be read within the {} MiB limit: {err}",
                        self.max_component_bytes >> 20
                    ),
                )
            })?
            .to_bytes();
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body hashes to {actual}, not {sha256}"),
            ));
        }
        if self.components.contains(sha256).await? {
            let there = BlobStored {
                sha256: sha256.to_string(),
                size: Some(bytes.len() as u64),
                stored: false,
            };
            return Ok((StatusCode::OK, json!(there)));
        }
        let validator = self.validator.clone();
        let checked = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || validator.check(&bytes))
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("validation failed to run: {e}"),
                    )
                })?
        };
        if let Err(reason) = checked {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("component refused: {reason:#}"),
            ));
        }
        self.components.put(&bytes).await?;
        tracing::info!(sha256, size = bytes.len(), "component stored");
        let stored = BlobStored {
            sha256: sha256.to_string(),
            size: Some(bytes.len() as u64),
            stored: true,
        };
        Ok((StatusCode::CREATED, json!(stored)))
    }

    async fn new_version(&self, app: &str, request: NewVersion) -> ApiResult {
        validate_name(app)
            .map_err(|m| ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "app", m))?;
        if request.manifest.name != app {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "manifest.name",
                format!(
                    "is {:?} but the URL names app {app:?}",
                    request.manifest.name
                ),
            ));
        }
        let settings = request.manifest.settings().map_err(|e| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("manifest.{}", e.field),
                e.message,
            )
        })?;
        if !self.components.contains(&request.component).await? {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "component",
                format!(
                    "no component {} was uploaded (PUT /v1/blobs/{{sha256}} first)",
                    request.component
                ),
            ));
        }
        if settings.reuse_requests.is_some() {
            let wasm = self.components.read(&request.component).await?;
            outpost_runtime::check_reuse(&wasm, true).map_err(|reason| {
                ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "manifest.instance.reuse",
                    reason,
                )
            })?;
        }
        let rollout = match (request.activate, request.percent) {
            (true, Some(_)) => {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "percent",
                    "give activate or percent, not both",
                ));
            }
            (true, None) => Rollout::Activate,
            (false, Some(percent)) => Rollout::Percent(percent),
            (false, None) => Rollout::Upload,
        };
        let version = self
            .registry
            .create_version(
                app,
                &request.component,
                request.manifest,
                request.note,
                rollout,
            )
            .await?;
        tracing::info!(app, version = version.version, ?rollout, "version created");
        let percent = match rollout {
            Rollout::Upload => 0,
            Rollout::Activate => 100,
            Rollout::Percent(percent) => percent,
        };
        let created = VersionCreated {
            app: app.to_string(),
            version: version.version,
            sha256: version.sha256,
            active: percent == 100,
            percent,
        };
        Ok((StatusCode::CREATED, json!(created)))
    }
}

/// A secret's value from a request body: text, within the size a secret may have.
async fn read_secret_body(request: http::Request<Incoming>) -> Result<String, ApiError> {
    const LIMIT: usize = crate::registry::secrets::MAX_VALUE_BYTES;
    let bytes = Limited::new(request.into_body(), LIMIT)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a secret is at most {} KiB", LIMIT >> 10),
            )
        })?
        .to_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a secret's value is text (UTF-8)",
        )
    })
}

async fn read_json_body(request: http::Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(request.into_body(), MAX_JSON)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}
