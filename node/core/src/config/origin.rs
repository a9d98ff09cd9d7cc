//! The origin's `origin.toml`: data directory, the admin API listener and its certificate, the
//! cluster listener and its credentials, and the admin tokens (as sha256 hashes only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use outpost_kv::quota::{Quota, QuotaPolicy};

use super::ClusterIdentity;
use super::error::in_range;
use super::{ConfigError, read_toml};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// List apps, versions and fleet status.
    Read,
    /// Upload components, create versions, activate, roll back.
    Deploy,
    /// Delete apps.
    Admin,
}

/// A token the admin API accepts, known only by the sha256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The token's name, unique among the tokens; messages about the token use it.
    pub name: String,
    /// The sha256 of the token's secret; the secret itself is never stored.
    pub sha256: [u8; 32],
    /// What the token may do (at least one right).
    pub rights: Vec<Right>,
}

/// A validated `origin.toml`.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// The origin's name; `origin` when not given.
    pub name: String,
    /// Where the origin keeps its state; `origin-data` next to origin.toml when not given.
    pub data_dir: PathBuf,
    /// The admin API's HTTPS listener (`[admin] listen`).
    pub admin_listen: SocketAddr,
    /// The certificate chain the admin API presents (`[admin] cert`).
    pub admin_cert: PathBuf,
    /// The private key of `admin_cert` (`[admin] key`).
    pub admin_key: PathBuf,
    /// Largest component the admin API accepts.
    pub max_component_bytes: u64,
    /// The cluster listener (QUIC, UDP) nodes connect to (`[cluster] listen`).
    pub cluster_listen: SocketAddr,
    /// The origin's cluster CA, certificate and key (`[cluster]`).
    pub cluster_identity: ClusterIdentity,
    /// The tokens the admin API accepts (`[[tokens]]`).
    pub tokens: Vec<TokenSpec>,
    /// What each app may take of the KV (`[kv]`).
    pub kv_quotas: QuotaPolicy,
    /// The fleet's PostgreSQL database (`[database]`), which several origins may share, all
    /// active: the registry, the components and the KV authority live there. `None`: the
    /// embedded stores in `data_dir`, for one origin.
    pub database: Option<DatabaseSettings>,
    /// The key file apps' secrets are sealed with at rest (`[secrets] key_file`, 32 bytes or
    /// 64 hex digits; every origin of a fleet on one database needs the same). `None`: the
    /// origin refuses secrets.
    pub secrets_key_file: Option<PathBuf>,
    /// The origin.toml this came from, for messages.
    pub source: PathBuf,
}

/// Where the fleet's database is and how to trust it (`[database]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `postgresql://USER[:PASSWORD]@HOST[,HOST...][:PORT]/DATABASE[?...]` (`url`).
    pub url: String,
    /// The CA certificate (PEM) the database's server certificate must chain to (`ca`): with
    /// it, the connection is TLS or nothing; without it, plain.
    pub ca: Option<PathBuf>,
}

/// Each app's KV allowance when origin.toml does not say.
pub(super) const DEFAULT_KV_MB_PER_APP: u64 = 1024;
pub(super) const DEFAULT_KV_WRITES_PER_SECOND: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginFile {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    admin: AdminFile,
    cluster: ClusterFile,
    #[serde(default)]
    tokens: Vec<TokenFile>,
    #[serde(default)]
    kv: KvFile,
    database: Option<DatabaseFile>,
    secrets: Option<SecretsFile>,
}

/// `[secrets]`: how apps' secrets are sealed at rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    key_file: PathBuf,
}

/// `[database]`: where the fleet's state lives when it is not embedded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    url: String,
    ca: Option<PathBuf>,
}

/// `[kv]`: every app's quota, and some apps' own under `[kv.apps.NAME]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KvFile {
    max_mb_per_app: Option<u64>,
    writes_per_second_per_app: Option<u32>,
    #[serde(default)]
    apps: std::collections::BTreeMap<String, KvAppFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvAppFile {
    max_mb: Option<u64>,
    writes_per_second: Option<u32>,
}

impl KvFile {
    fn quotas(self, err: impl Fn(&str, String) -> ConfigError) -> Result<QuotaPolicy, ConfigError> {
        let at_least_one = |field: String, value: u64| {
            if value == 0 {
                Err(err(&field, "must be at least 1".into()))
            } else {
                Ok(value)
            }
        };
        let quota = |fields: [String; 2], mb: u64, rate: u32| -> Result<Quota, ConfigError> {
            let [mb_field, rate_field] = fields;
            Ok(Quota {
                max_bytes: at_least_one(mb_field, mb)?.saturating_mul(1 << 20),
                writes_per_second: at_least_one(rate_field, rate.into())? as u32,
            })
        };
        let mb = self.max_mb_per_app.unwrap_or(DEFAULT_KV_MB_PER_APP);
        let rate = self
            .writes_per_second_per_app
            .unwrap_or(DEFAULT_KV_WRITES_PER_SECOND);
        let default = quota(
            [
                "kv.max_mb_per_app".into(),
                "kv.writes_per_second_per_app".into(),
            ],
            mb,
            rate,
        )?;
        let mut tenants = std::collections::HashMap::new();
        for (app, own) in self.apps {
            let fields = [
                format!("kv.apps.{app}.max_mb"),
                format!("kv.apps.{app}.writes_per_second"),
            ];
            let own = quota(
                fields,
                own.max_mb.unwrap_or(mb),
                own.writes_per_second.unwrap_or(rate),
            )?;
            tenants.insert(app, own);
        }
        Ok(QuotaPolicy { default, tenants })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: String,
    cert: PathBuf,
    key: PathBuf,
    max_component_mb: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    listen: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    sha256: String,
    rights: Vec<Right>,
}

impl OriginConfig {
    /// Read and validate `origin.toml` at `file`; relative paths are taken from its directory, and
    /// an error names the offending field.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let parsed: OriginFile = read_toml(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let err = |field: &str, message: String| ConfigError::field(file, field, message);
        let existing = |field: &str, path: &Path| -> Result<PathBuf, ConfigError> {
            let full = base.join(path);
            if full.is_file() {
                Ok(full)
            } else {
                Err(err(
                    field,
                    format!("{} is not a readable file", full.display()),
                ))
            }
        };
        let addr = |field: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|_| {
                err(
                    field,
                    format!("{text:?} is not an address such as \"0.0.0.0:7443\""),
                )
            })
        };

        let mut tokens = Vec::new();
        for (i, token) in parsed.tokens.into_iter().enumerate() {
            let field = |name: &str| format!("tokens[{i}].{name}");
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(&token.sha256, &mut sha256)
                .map_err(|_| err(&field("sha256"), "must be 64 hex digits: the sha256 of the token (`outpost token new` prints one)".into()))?;
            if token.rights.is_empty() {
                return Err(err(
                    &field("rights"),
                    "give at least one of \"read\", \"deploy\", \"admin\"".into(),
                ));
            }
            if tokens.iter().any(|t: &TokenSpec| t.name == token.name) {
                return Err(err(
                    &field("name"),
                    format!("two tokens are named {:?}", token.name),
                ));
            }
            tokens.push(TokenSpec {
                name: token.name,
                sha256,
                rights: token.rights,
            });
        }

        let max_mb = in_range(
            parsed.admin.max_component_mb,
            "admin.max_component_mb",
            1..=1024,
            64,
        )
        .map_err(|e| err(&e.field, e.message))?;
        Ok(OriginConfig {
            name: parsed.name.unwrap_or_else(|| "origin".into()),
            data_dir: base.join(
                parsed
                    .data_dir
                    .unwrap_or_else(|| PathBuf::from("origin-data")),
            ),
            admin_listen: addr("admin.listen", &parsed.admin.listen)?,
            admin_cert: existing("admin.cert", &parsed.admin.cert)?,
            admin_key: existing("admin.key", &parsed.admin.key)?,
            max_component_bytes: max_mb << 20,
            cluster_listen: addr("cluster.listen", &parsed.cluster.listen)?,
            cluster_identity: ClusterIdentity {
                ca: existing("cluster.ca", &parsed.cluster.ca)?,
                cert: existing("cluster.cert", &parsed.cluster.cert)?,
                key: existing("cluster.key", &parsed.cluster.key)?,
            },
            tokens,
            kv_quotas: parsed.kv.quotas(err)?,
            database: parsed
                .database
                .map(|database| {
                    let url = database.url;
                    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                        return Err(err(
                            "database.url",
                            "must be a URL such as \"postgresql://outpost@db.internal/outpost\""
                                .into(),
                        ));
                    }
                    let ca = database
                        .ca
                        .map(|ca| existing("database.ca", &ca))
                        .transpose()?;
                    Ok(DatabaseSettings { url, ca })
                })
                .transpose()?,
            secrets_key_file: parsed
                .secrets
                .map(|secrets| existing("secrets.key_file", &secrets.key_file))
                .transpose()?,
            source: file.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<OriginConfig, ConfigError> {
        let dir = crate::test_support::temp_dir("origin-config");
        for f in ["a.pem", "a-key.pem", "ca.pem"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        std::fs::write(dir.join("origin.toml"), text).unwrap();
        let result = OriginConfig::load(&dir.join("origin.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    const BASE: &str = "[admin]\nlisten = \"127.0.0.1:9443\"\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\
                        [cluster]\nlisten = \"127.0.0.1:7443\"\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n";

    #[test]
    fn tokens_and_defaults() {
        let cfg = load(&format!(
            "{BASE}[[tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nrights = [\"read\", \"deploy\"]\n",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(cfg.tokens[0].rights, vec![Right::Read, Right::Deploy]);
        assert_eq!(cfg.max_component_bytes, 64 << 20);
        assert!(cfg.data_dir.ends_with("origin-data"));
        assert_eq!(
            cfg.kv_quotas.of("any"),
            Quota {
                max_bytes: DEFAULT_KV_MB_PER_APP << 20,
                writes_per_second: DEFAULT_KV_WRITES_PER_SECOND
            }
        );
    }

    #[test]
    fn a_database_is_a_postgresql_url() {
        assert_eq!(load(BASE).unwrap().database, None);
        let url = "postgresql://outpost@db.internal:5432/fleet";
        let cfg = load(&format!(
            "{BASE}[database]\nurl = \"{url}\"\nca = \"ca.pem\"\n"
        ))
        .unwrap();
        let database = cfg.database.unwrap();
        assert_eq!(database.url, url);
        assert!(database.ca.unwrap().ends_with("ca.pem"));
        let missing = load(&format!(
            "{BASE}[database]\nurl = \"{url}\"\nca = \"nope.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(missing.contains("database.ca"), "{missing}");
        let refused = load(&format!("{BASE}[database]\nurl = \"db.internal\"\n"))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("database.url"), "{refused}");
    }

    #[test]
    fn kv_quotas_for_every_app_and_for_some() {
        let cfg = load(&format!(
            "{BASE}[kv]\nmax_mb_per_app = 10\n[kv.apps.shop]\nwrites_per_second = 5000\n"
        ))
        .unwrap();
        assert_eq!(cfg.kv_quotas.of("blog").max_bytes, 10 << 20);
        assert_eq!(
            cfg.kv_quotas.of("shop"),
            Quota {
                max_bytes: 10 << 20,
                writes_per_second: 5000
            }
        );
        let err = load(&format!("{BASE}[kv.apps.shop]\nmax_mb = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`kv.apps.shop.max_mb`") && err.contains("at least 1"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (extra, needle) in [
            (
                "[[tokens]]\nname = \"x\"\nsha256 = \"nothex\"\nrights = [\"read\"]\n",
                "`tokens[0].sha256`",
            ),
            (
                &format!(
                    "[[tokens]]\nname = \"x\"\nsha256 = \"{}\"\nrights = []\n",
                    "00".repeat(32)
                ),
                "`tokens[0].rights`",
            ),
            (
                &format!(
                    "[[tokens]]\nname = \"x\"\nsha256 = \"{}\"\nrights = [\"root\"]\n",
                    "00".repeat(32)
                ),
                "unknown variant `root`",
            ),
        ] {
            let err = load(&format!("{BASE}{extra}")).unwrap_err().to_string();
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
        let err = load(&BASE.replace("ca.pem", "missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`cluster.ca`"), "{err}");
    }
}
