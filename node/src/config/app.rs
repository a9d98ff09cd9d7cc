//! An app's `outpost.toml`: name, component, routes, limits, outbound allow-list, config values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_router::RoutePattern;
use serde::Deserialize;

use super::{AllowedOrigin, ConfigError, OutboundPolicy, read_toml};

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

/// A validated app definition.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub component: PathBuf,
    pub routes: Vec<RoutePattern>,
    pub limits: AppLimits,
    pub outbound: OutboundPolicy,
    /// Values the handler reads through `wasi:config` and its environment.
    pub config: Vec<(String, String)>,
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
    limits: LimitsFile,
    #[serde(default)]
    outbound: OutboundFile,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    cpu_ms: Option<u64>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    body_kb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    #[serde(default)]
    allow: Vec<String>,
}

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
                "not found: an app directory needs an outpost.toml (see README: outpost.toml reference)",
            ));
        }
        let parsed: AppFile = read_toml(&file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::validate(parsed, &file, base)
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
        Ok(AppSpec {
            name: if name.is_empty() { "app".into() } else { name },
            component: path.to_path_buf(),
            routes: vec![RoutePattern::parse("*").expect("valid pattern")],
            limits: AppLimits::default(),
            outbound: OutboundPolicy::default(),
            config: Vec::new(),
            source: path.to_path_buf(),
        })
    }

    fn validate(parsed: AppFile, file: &Path, base: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, message: String| ConfigError::field(file, field, message);

        validate_name(&parsed.name).map_err(|m| err("name", m))?;

        if parsed.component.as_os_str().is_empty() {
            return Err(err(
                "component",
                "must be the path of a .wasm component".into(),
            ));
        }
        // Absolute when the file exists, so messages and logs show where it really is.
        let component = base.join(&parsed.component);
        let component = std::fs::canonicalize(&component).unwrap_or(component);

        let route_texts = if parsed.routes.is_empty() {
            vec!["*".to_string()]
        } else {
            parsed.routes
        };
        let routes = route_texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                RoutePattern::parse(text).map_err(|e| err(&format!("routes[{i}]"), e.reason))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let defaults = AppLimits::default();
        let l = &parsed.limits;
        let cpu_ms = in_range(l.cpu_ms, 1, 60_000, defaults.cpu.as_millis() as u64)
            .map_err(|m| err("limits.cpu_ms", m))?;
        let timeout_ms = in_range(
            l.timeout_ms,
            1,
            15 * 60_000,
            defaults.timeout.as_millis() as u64,
        )
        .map_err(|m| err("limits.timeout_ms", m))?;
        if timeout_ms < cpu_ms {
            return Err(err(
                "limits.timeout_ms",
                format!("is {timeout_ms} ms, less than limits.cpu_ms ({cpu_ms} ms)"),
            ));
        }
        let memory_mb = in_range(l.memory_mb, 1, 4096, defaults.memory_bytes >> 20)
            .map_err(|m| err("limits.memory_mb", m))?;
        let body_kb = in_range(l.body_kb, 0, 1 << 20, defaults.body_bytes >> 10)
            .map_err(|m| err("limits.body_kb", m))?;

        let origins = parsed
            .outbound
            .allow
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                AllowedOrigin::parse(entry).map_err(|m| err(&format!("outbound.allow[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let config = parsed
            .config
            .into_iter()
            .map(|(key, value)| {
                let field = format!("config.{key}");
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    return Err(err(&field, "a key cannot be empty or hold '=' or NUL".into()));
                }
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(err(
                            &field,
                            "must be a string, number or boolean (config values are strings to the handler)".into(),
                        ));
                    }
                };
                if value.contains('\0') {
                    return Err(err(&field, "a value cannot hold NUL".into()));
                }
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(AppSpec {
            name: parsed.name,
            component,
            routes,
            limits: AppLimits {
                cpu: Duration::from_millis(cpu_ms),
                timeout: Duration::from_millis(timeout_ms),
                memory_bytes: memory_mb << 20,
                body_bytes: body_kb << 10,
            },
            outbound: OutboundPolicy::new(origins),
            config,
            source: file.to_path_buf(),
        })
    }
}

/// App names are DNS-label-like: they appear in logs, metrics and (later) URLs.
fn validate_name(name: &str) -> Result<(), String> {
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

fn in_range(value: Option<u64>, min: u64, max: u64, default: u64) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(format!("is {v}; it must be between {min} and {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AppSpec, ConfigError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("outpost-app-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
"#,
        )
        .unwrap();
        assert_eq!(app.name, "shop-api");
        assert!(app.component.ends_with("target/shop.wasm"));
        assert_eq!(app.routes.len(), 1);
        assert_eq!(app.limits.cpu, Duration::from_millis(20));
        assert_eq!(app.limits.body_bytes, 64 * 1024);
        assert_eq!(app.limits.memory_bytes, 128 << 20);
        assert!(app.outbound.allows("https", "origin.example.com"));
        assert_eq!(
            app.config,
            vec![
                ("GREETING".into(), "hello".into()),
                ("RETRIES".into(), "3".into())
            ]
        );
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
            ("name = ", "line 1"),
        ];
        for (text, needle) in cases {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains("outpost.toml"), "{err}");
            assert!(err.contains(needle), "expected {needle:?} in: {err}");
        }
    }

    #[test]
    fn bare_component_gets_a_name_and_a_catch_all_route() {
        let app = AppSpec::from_component(Path::new("/x/json_to_csv.wasm")).unwrap();
        assert_eq!(app.name, "json-to-csv");
        assert_eq!(app.routes, vec![RoutePattern::parse("*").unwrap()]);
    }

    #[test]
    fn missing_file_says_what_is_needed() {
        let err = AppSpec::load(Path::new("/nonexistent-dir/outpost.toml")).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
