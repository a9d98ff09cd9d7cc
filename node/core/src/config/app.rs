//! An app's `outpost.toml`: name, component, routes, limits, outbound allow-list, config values,
//! cron triggers, and where to deploy it.
//!
//! Three forms: [`AppManifest`] is what an app *is*, minus its component (the form that travels
//! to the origin and on to every node, as JSON); [`AppSettings`] is a manifest validated into
//! what the runtime uses; [`AppSpec`] is a local `outpost.toml` (manifest + component path +
//! how to build it + deploy target).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_router::RoutePattern;
use serde::{Deserialize, Serialize};

use super::error::in_range;
use super::{AllowedOrigin, ConfigError, FieldError, OutboundPolicy, read_toml};
use crate::cron::{MAX_TRIGGERS, Trigger};

/// Per-request limits of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLimits {
    /// CPU time the handler may spend per request (time inside the guest, not time waiting).
    pub cpu: Duration,
    /// Wall-clock time for the whole request, waiting on fetches and the client included.
    pub timeout: Duration,
    /// Linear memory the instance may grow to.
    pub memory_bytes: u64,
    /// Request body size; larger bodies get 413.
    pub body_bytes: u64,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            cpu: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
            memory_bytes: 128 << 20,
            body_bytes: 1 << 20,
        }
    }
}

/// An app without its component. Absent limits take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// The app's name: 1 to 63 lowercase letters, digits and inner '-'.
    pub name: String,
    /// Route patterns the app serves, as written; none means every route (`*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Per-request limits as asked for (`[limits]`); those left out take their defaults.
    #[serde(default)]
    pub limits: LimitsManifest,
    /// The origins the handler may fetch from (`[outbound]`).
    #[serde(default)]
    pub outbound: OutboundManifest,
    /// Config values for the handler (`[config]`), by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The KV namespaces the app may open (`[kv]`).
    #[serde(default, skip_serializing_if = "KvManifest::is_empty")]
    pub kv: KvManifest,
    /// Whether requests reuse instances, and for how many requests (`[instance]`).
    #[serde(default, skip_serializing_if = "InstanceManifest::is_default")]
    pub instance: InstanceManifest,
    /// Requests sent on a schedule (`[[triggers]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerManifest>,
}

/// One `[[triggers]]` entry: on each tick of `cron`, one node of the fleet sends the app a
/// `POST` to `path` marked with the `outpost-trigger` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerManifest {
    /// The schedule: five cron fields, or six with seconds first, in UTC.
    pub cron: String,
    /// The path of the request each tick sends.
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".to_string()
}

impl TriggerManifest {
    /// The key the fleet knows this trigger by (see [`Trigger::key`]).
    pub fn key(&self) -> String {
        crate::cron::trigger_key(&self.cron, &self.path)
    }
}

/// How requests get their instance (`[instance]`). By default each request gets a fresh one.
/// With `reuse`, as in Workers, an instance that answered a request cleanly serves the next
/// request of the same app version, one at a time, up to `max_requests`; never another app's or
/// version's, never after a trap, a limit breach or a timeout. Globals then persist between
/// requests, which is faster for engines with a large heap (JavaScript, Python) but means the
/// handler must not keep one client's data for the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceManifest {
    #[serde(default)]
    pub reuse: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
}

impl InstanceManifest {
    fn is_default(&self) -> bool {
        *self == InstanceManifest::default()
    }
}

/// The KV namespaces an app may open (`[kv] namespaces`). Each is the app's own: app `shop`'s
/// namespace `carts` is stored as `shop/carts`, which no other app can reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvManifest {
    #[serde(default)]
    pub namespaces: Vec<String>,
}

impl KvManifest {
    fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Whether the app may open its namespace `name`.
    pub fn binds(&self, name: &str) -> bool {
        self.namespaces.iter().any(|n| n == name)
    }
}

/// Per-request limits as written in `[limits]`, each optional; [`AppManifest::settings`] checks
/// them and fills in the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsManifest {
    /// CPU time per request, in ms (1 to 60 000; default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Wall-clock time per request, in ms (1 to 900 000 and at least `cpu_ms`; default 30 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Linear memory per instance, in MiB (1 to 4096; default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Largest request body, in KiB (0 to 1 048 576; default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_kb: Option<u64>,
}

/// The `[outbound]` table as written: the origins the handler may fetch from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundManifest {
    /// Origins such as `https://api.example.com` or `https://*.example.com`; empty: no fetches.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A validated app: what the runtime and the router use.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The app's name, checked: 1 to 63 lowercase letters, digits and inner '-'.
    pub name: String,
    /// The parsed route patterns; `*` (every route) when the manifest lists none.
    pub routes: Vec<RoutePattern>,
    /// Per-request limits with the defaults filled in (before any node's ceilings).
    pub limits: AppLimits,
    /// The parsed allow-list of origins the handler may fetch from.
    pub outbound: OutboundPolicy,
    /// Values the handler reads through `wasi:config` and its environment.
    pub config: Vec<(String, String)>,
    /// KV namespaces the handler may open, by the name it uses.
    pub kv_namespaces: Vec<String>,
    /// With instance reuse, how many requests one instance serves; `None`: a fresh instance per
    /// request.
    pub reuse_requests: Option<u32>,
    /// The app's cron triggers, parsed.
    pub triggers: Vec<Trigger>,
}

/// Where `outpost deploy` sends an app, from the `[deploy]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployTarget {
    /// The origin's admin API, as `https://host:port`.
    pub origin: Option<String>,
    /// A bearer token (prefer the OUTPOST_TOKEN environment variable).
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for the origin, when it is not publicly trusted.
    pub ca: Option<PathBuf>,
}

/// The language an app's handler is written in, which decides how `outpost build` builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, built with cargo for the wasm32-wasip2 target.
    Rust,
    /// JavaScript or TypeScript (also accepted as javascript, typescript or ts).
    #[serde(alias = "javascript", alias = "typescript", alias = "ts")]
    #[value(alias = "javascript", alias = "typescript", alias = "ts")]
    Js,
    /// Python (also accepted as py).
    #[serde(alias = "py")]
    #[value(alias = "py")]
    Python,
}

impl Language {
    /// The language's name in lowercase, as written in `[build] language`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Js => "js",
            Language::Python => "python",
        }
    }
}

/// How `outpost build` makes the component, from the `[build]` table. Everything is optional:
/// the language is found from the app's files when not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSettings {
    /// The handler's language; `None`: found from the app's files.
    pub language: Option<Language>,
    /// JS: the module whose default export handles requests (default: package.json's `main`,
    /// else `src/index.ts`, `src/index.js`...). Python: the module file (default `app.py`).
    pub entry: Option<PathBuf>,
    /// A command of your own (run with `sh -c` in the app's directory) instead of the
    /// language's build; it must write the component named by `component`.
    pub command: Option<String>,
}

/// A local app: an `outpost.toml` and the component it names.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The manifest validated into what the runtime uses.
    pub settings: AppSettings,
    /// The app as it travels to the origin, without its component.
    pub manifest: AppManifest,
    /// The `.wasm` component, resolved against the file's directory (absolute when it exists).
    pub component: PathBuf,
    /// How `outpost build` makes the component (`[build]`).
    pub build: BuildSettings,
    /// Where `outpost deploy` sends the app (`[deploy]`), its `ca` resolved against the file's
    /// directory.
    pub deploy: DeployTarget,
    /// The file this came from, for messages.
    pub source: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppFile {
    name: String,
    component: PathBuf,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    limits: LimitsManifest,
    #[serde(default)]
    outbound: OutboundManifest,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    kv: KvManifest,
    #[serde(default)]
    instance: InstanceManifest,
    #[serde(default)]
    triggers: Vec<TriggerManifest>,
    #[serde(default)]
    build: BuildSettings,
    #[serde(default)]
    deploy: DeployTarget,
}

impl AppManifest {
    /// Validate into settings; the error names the offending field.
    pub fn settings(&self) -> Result<AppSettings, FieldError> {
        validate_name(&self.name).map_err(|m| FieldError::new("name", m))?;

        let route_texts = if self.routes.is_empty() {
            vec!["*".to_string()]
        } else {
            self.routes.clone()
        };
        let routes = route_texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                RoutePattern::parse(text)
                    .map_err(|e| FieldError::new(format!("routes[{i}]"), e.reason))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let defaults = AppLimits::default();
        let l = &self.limits;
        let cpu_ms = in_range(
            l.cpu_ms,
            "limits.cpu_ms",
            1..=60_000,
            defaults.cpu.as_millis() as u64,
        )?;
        let timeout_ms = in_range(
            l.timeout_ms,
            "limits.timeout_ms",
            1..=15 * 60_000,
            defaults.timeout.as_millis() as u64,
        )?;
        if timeout_ms < cpu_ms {
            return Err(FieldError::new(
                "limits.timeout_ms",
                format!("is {timeout_ms} ms, less than limits.cpu_ms ({cpu_ms} ms)"),
            ));
        }
        let memory_mb = in_range(
            l.memory_mb,
            "limits.memory_mb",
            1..=4096,
            defaults.memory_bytes >> 20,
        )?;
        let body_kb = in_range(
            l.body_kb,
            "limits.body_kb",
            0..=1 << 20,
            defaults.body_bytes >> 10,
        )?;

        let origins = self
            .outbound
            .allow
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                AllowedOrigin::parse(entry)
                    .map_err(|m| FieldError::new(format!("outbound.allow[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;

        for (key, value) in &self.config {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(FieldError::new(
                    format!("config.{key}"),
                    "a key cannot be empty or hold '=' or NUL",
                ));
            }
            if value.contains('\0') {
                return Err(FieldError::new(
                    format!("config.{key}"),
                    "a value cannot hold NUL",
                ));
            }
        }

        for (i, namespace) in self.kv.namespaces.iter().enumerate() {
            validate_namespace_name(namespace)
                .map_err(|m| FieldError::new(format!("kv.namespaces[{i}]"), m))?;
            if self.kv.namespaces[..i].contains(namespace) {
                return Err(FieldError::new(
                    format!("kv.namespaces[{i}]"),
                    format!("{namespace:?} is listed twice"),
                ));
            }
        }

        let reuse_requests = match (self.instance.reuse, self.instance.max_requests) {
            (false, Some(_)) => {
                return Err(FieldError::new(
                    "instance.max_requests",
                    "applies only with instance.reuse = true",
                ));
            }
            (false, None) => None,
            (true, max) => Some(in_range(
                max.map(u64::from),
                "instance.max_requests",
                1..=1_000_000,
                DEFAULT_REUSE_REQUESTS,
            )? as u32),
        };

        if self.triggers.len() > MAX_TRIGGERS {
            return Err(FieldError::new(
                "triggers",
                format!("an app has at most {MAX_TRIGGERS} triggers"),
            ));
        }
        let mut triggers: Vec<Trigger> = Vec::with_capacity(self.triggers.len());
        for (i, entry) in self.triggers.iter().enumerate() {
            let trigger = Trigger::new(&entry.cron, &entry.path)
                .map_err(|(field, m)| FieldError::new(format!("triggers[{i}].{field}"), m))?;
            if triggers.iter().any(|t| t.key() == trigger.key()) {
                return Err(FieldError::new(
                    format!("triggers[{i}]"),
                    "the same schedule and path are listed twice",
                ));
            }
            triggers.push(trigger);
        }

        Ok(AppSettings {
            name: self.name.clone(),
            routes,
            limits: AppLimits {
                cpu: Duration::from_millis(cpu_ms),
                timeout: Duration::from_millis(timeout_ms),
                memory_bytes: memory_mb << 20,
                body_bytes: body_kb << 10,
            },
            outbound: OutboundPolicy::new(origins),
            config: self
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            kv_namespaces: self.kv.namespaces.clone(),
            reuse_requests,
            triggers,
        })
    }
}

/// Requests one reused instance serves before a fresh one takes over.
const DEFAULT_REUSE_REQUESTS: u64 = 1000;

impl AppSpec {
    /// Load `outpost.toml` from an app directory, or the file itself when given one.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = if path.is_dir() {
            path.join("outpost.toml")
        } else {
            path.to_path_buf()
        };
        if !file.exists() {
            return Err(ConfigError::file(
                &file,
                "not found: an app directory needs an outpost.toml (see docs/configuration.md)",
            ));
        }
        let parsed: AppFile = read_toml(&file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let in_file = |e: FieldError| ConfigError::field(&file, e.field, e.message);

        if parsed.component.as_os_str().is_empty() {
            return Err(ConfigError::field(
                &file,
                "component",
                "must be the path of a .wasm component",
            ));
        }
        // Absolute when the file exists, so messages and logs show where it really is.
        let component = base.join(&parsed.component);
        let component = std::fs::canonicalize(&component).unwrap_or(component);

        let config = parsed
            .config
            .into_iter()
            .map(|(key, value)| {
                config_string(value)
                    .map(|v| (key.clone(), v))
                    .map_err(|m| FieldError::new(format!("config.{key}"), m))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(in_file)?;
        let manifest = AppManifest {
            name: parsed.name,
            routes: parsed.routes,
            limits: parsed.limits,
            outbound: parsed.outbound,
            config,
            kv: parsed.kv,
            instance: parsed.instance,
            triggers: parsed.triggers,
        };
        let settings = manifest.settings().map_err(in_file)?;
        let mut deploy = parsed.deploy;
        deploy.ca = deploy.ca.map(|ca| base.join(ca));
        Ok(AppSpec {
            settings,
            manifest,
            component,
            build: parsed.build,
            deploy,
            source: file.to_path_buf(),
        })
    }

    /// An app made of a bare component: every route, default limits, nothing outbound.
    pub fn from_component(path: &Path) -> Result<Self, ConfigError> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("app")
            .to_ascii_lowercase()
            .replace('_', "-");
        let name: String = stem
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(63)
            .collect();
        let name = name.trim_matches('-');
        let manifest = AppManifest {
            name: if name.is_empty() {
                "app".into()
            } else {
                name.to_string()
            },
            ..AppManifest::default()
        };
        let settings = manifest
            .settings()
            .map_err(|e| ConfigError::field(path, e.field, e.message))?;
        Ok(AppSpec {
            settings,
            manifest,
            component: path.to_path_buf(),
            build: BuildSettings::default(),
            deploy: DeployTarget::default(),
            source: path.to_path_buf(),
        })
    }
}

/// KV namespace names: short, plain, and free of the `/` that separates app from namespace.
pub fn validate_namespace_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid namespace: use 1 to 64 letters, digits, '-' and '_'"
        ))
    }
}

/// Config values are strings to the handler; TOML numbers and booleans are written out.
fn config_string(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(
            "must be a string, number or boolean (config values are strings to the handler)".into(),
        ),
    }
}

/// App names are DNS-label-like: they appear in logs, metrics and URLs.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid app name: use 1 to 63 lowercase letters, digits and inner '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AppSpec, ConfigError> {
        let dir = crate::test_support::temp_dir("app-config");
        std::fs::write(dir.join("outpost.toml"), text).unwrap();
        let result = AppSpec::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn full_file_parses_with_defaults_filled_in() {
        let app = load(
            r#"
name = "shop-api"
component = "target/shop.wasm"
routes = ["shop.example.com/api/*"]
[limits]
cpu_ms = 20
body_kb = 64
[outbound]
allow = ["https://origin.example.com"]
[config]
GREETING = "hello"
RETRIES = 3
[deploy]
origin = "https://origin.internal:9443"
ca = "certs/ca.pem"
"#,
        )
        .unwrap();
        let s = &app.settings;
        assert_eq!(s.name, "shop-api");
        assert!(app.component.ends_with("target/shop.wasm"));
        assert_eq!(s.routes.len(), 1);
        assert_eq!(s.limits.cpu, Duration::from_millis(20));
        assert_eq!(s.limits.body_bytes, 64 * 1024);
        assert_eq!(s.limits.memory_bytes, 128 << 20);
        assert!(s.outbound.allows("https", "origin.example.com"));
        assert_eq!(
            s.config,
            vec![
                ("GREETING".into(), "hello".into()),
                ("RETRIES".into(), "3".into())
            ]
        );
        assert_eq!(
            app.deploy.origin.as_deref(),
            Some("https://origin.internal:9443")
        );
        assert!(app.deploy.ca.unwrap().ends_with("certs/ca.pem"));
    }

    #[test]
    fn manifest_round_trips_through_json_and_validates_alike() {
        let app = load(
            "name = \"a\"\ncomponent = \"x.wasm\"\n[limits]\ncpu_ms = 7\n[config]\nK = true\n",
        )
        .unwrap();
        let json = serde_json::to_string(&app.manifest).unwrap();
        assert_eq!(
            json,
            r#"{"name":"a","limits":{"cpu_ms":7},"outbound":{"allow":[]},"config":{"K":"true"}}"#
        );
        let back: AppManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, app.manifest);
        assert_eq!(
            back.settings().unwrap().limits.cpu,
            Duration::from_millis(7)
        );
        let bad: AppManifest =
            serde_json::from_str(r#"{"name":"a","limits":{"memory_mb":0}}"#).unwrap();
        assert_eq!(bad.settings().unwrap_err().field, "limits.memory_mb");
    }

    #[test]
    fn errors_name_file_and_field() {
        let cases = [
            ("name = \"Bad Name\"\ncomponent = \"x.wasm\"", "`name`"),
            ("component = \"x.wasm\"", "missing field `name`"),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\nroutes = [\"https://x/\"]",
                "`routes[0]`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[limits]\ncpu_ms = 0",
                "`limits.cpu_ms`: is 0",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[limits]\ncpu_ms = 100\ntimeout_ms = 50",
                "`limits.timeout_ms`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[outbound]\nallow = [\"x.com\"]",
                "`outbound.allow[0]`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[config]\nX = [1]",
                "`config.X`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\ncpu_ms = 5",
                "unknown field `cpu_ms`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[limits]\ncpu = 5",
                "unknown field `cpu`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[deploy]\nurl = \"x\"",
                "unknown field `url`",
            ),
            (
                "name = \"a\"\ncomponent = \"x.wasm\"\n[build]\nlanguage = \"cobol\"",
                "unknown variant `cobol`",
            ),
            ("name = ", "line 1"),
        ];
        for (text, needle) in cases {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains("outpost.toml"), "{err}");
            assert!(err.contains(needle), "expected {needle:?} in: {err}");
        }
    }

    #[test]
    fn instance_reuse_is_opt_in_and_bounded() {
        let fresh = load("name = \"a\"\ncomponent = \"a.wasm\"\n").unwrap();
        assert_eq!(fresh.settings.reuse_requests, None);
        let reused =
            load("name = \"a\"\ncomponent = \"a.wasm\"\n[instance]\nreuse = true\n").unwrap();
        assert_eq!(reused.settings.reuse_requests, Some(1000));
        let json = serde_json::to_string(&reused.manifest).unwrap();
        assert!(json.contains(r#""instance":{"reuse":true}"#), "{json}");
        let capped = load(
            "name = \"a\"\ncomponent = \"a.wasm\"\n[instance]\nreuse = true\nmax_requests = 5\n",
        )
        .unwrap();
        assert_eq!(capped.settings.reuse_requests, Some(5));
        for (text, needle) in [
            (
                "[instance]\nmax_requests = 5\n",
                "applies only with instance.reuse",
            ),
            (
                "[instance]\nreuse = true\nmax_requests = 0\n",
                "`instance.max_requests`: is 0",
            ),
        ] {
            let err = load(&format!("name = \"a\"\ncomponent = \"a.wasm\"\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn build_table_names_language_entry_and_command() {
        let app = load(
            "name = \"a\"\ncomponent = \"dist/a.wasm\"\n[build]\nlanguage = \"typescript\"\nentry = \"src/worker.ts\"\n",
        )
        .unwrap();
        assert_eq!(app.build.language, Some(Language::Js));
        assert_eq!(app.build.entry.as_deref(), Some(Path::new("src/worker.ts")));
        let app =
            load("name = \"a\"\ncomponent = \"a.wasm\"\n[build]\nlanguage = \"py\"\n").unwrap();
        assert_eq!(app.build.language, Some(Language::Python));
        let app = load("name = \"a\"\ncomponent = \"a.wasm\"\n").unwrap();
        assert_eq!(app.build, BuildSettings::default());
    }

    #[test]
    fn bare_component_gets_a_name_and_a_catch_all_route() {
        let app = AppSpec::from_component(Path::new("/x/json_to_csv.wasm")).unwrap();
        assert_eq!(app.settings.name, "json-to-csv");
        assert_eq!(app.settings.routes, vec![RoutePattern::parse("*").unwrap()]);
    }

    #[test]
    fn missing_file_says_what_is_needed() {
        let err = AppSpec::load(Path::new("/nonexistent-dir/outpost.toml")).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
