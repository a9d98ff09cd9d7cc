//! What the operator lets any one tenant take of a node, in node.toml: ceilings over each app's
//! own `[limits]` (`[limits]`), how much its guests may log (`[log]`), and where its outbound
//! requests may go (`[outbound]`, in [`super::egress`]). An app asks; the node decides.

use std::time::Duration;

use serde::Deserialize;

use super::error::in_range;
use super::{AppLimits, EgressPolicy, FieldError};

/// The node's rules for every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    /// Which addresses the apps' outbound requests may reach (`[outbound]`).
    pub egress: EgressPolicy,
    /// The most any app's `[limits]` may ask for (`[limits]`).
    pub ceilings: LimitCeilings,
    /// How much guests may write to stdout and stderr (`[log]`).
    pub guest_log: GuestLogLimits,
}

impl Tenancy {
    /// `outpost dev`: the author's machine, where fetching local services is what development
    /// needs and a burst of debug output should not be cut.
    pub fn for_development() -> Self {
        Tenancy {
            egress: EgressPolicy::for_development(),
            ceilings: LimitCeilings::default(),
            guest_log: GuestLogLimits {
                lines_per_second: 10_000,
                bytes_per_second: 64 << 20,
                node_lines_per_second: 10_000,
                node_bytes_per_second: 64 << 20,
            },
        }
    }
}

/// The most any app's `[limits]` may ask for on this node; an app that asks for more runs with
/// the ceiling (and the node says so in its log when the app is deployed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCeilings {
    /// The most CPU time per request (`max_cpu_ms`, up to 60 s; default 30 s).
    pub cpu: Duration,
    /// The most wall-clock time per request (`max_timeout_ms`, up to 15 min; default 300 s).
    pub timeout: Duration,
    /// The most linear memory per instance, in bytes (`max_memory_mb`; default and maximum: what a
    /// pool slot holds).
    pub memory_bytes: u64,
    /// The largest request body, in bytes (`max_body_mb`, up to 1024 MiB; default 100 MiB).
    pub body_bytes: u64,
}

impl Default for LimitCeilings {
    fn default() -> Self {
        LimitCeilings {
            cpu: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
            memory_bytes: 4096 << 20,
            body_bytes: 100 << 20,
        }
    }
}

impl LimitCeilings {
    /// `limits` lowered to the ceilings, and a description of each limit that was lowered.
    pub fn clamp(&self, limits: &AppLimits) -> (AppLimits, Vec<String>) {
        let mut lowered = Vec::new();
        let mut clamp = |name: &str, asked: u64, ceiling: u64, shown: fn(u64) -> String| {
            if asked <= ceiling {
                return asked;
            }
            lowered.push(format!(
                "{name} {} > node ceiling {}",
                shown(asked),
                shown(ceiling)
            ));
            ceiling
        };
        let ms = |v: u64| format!("{v} ms");
        let ms_of = |d: Duration| d.as_millis() as u64;
        let clamped = AppLimits {
            cpu: Duration::from_millis(clamp("cpu_ms", ms_of(limits.cpu), ms_of(self.cpu), ms)),
            timeout: Duration::from_millis(clamp(
                "timeout_ms",
                ms_of(limits.timeout),
                ms_of(self.timeout),
                ms,
            )),
            memory_bytes: clamp("memory_mb", limits.memory_bytes, self.memory_bytes, |v| {
                format!("{} MiB", v >> 20)
            }),
            body_bytes: clamp("body_kb", limits.body_bytes, self.body_bytes, |v| {
                format!("{} KiB", v >> 10)
            }),
        };
        (clamped, lowered)
    }
}

/// How much guests may write to stdout and stderr before their lines are dropped (and counted
/// in `outpost_guest_log_dropped_total`): per app, and for all guests on the node together, so
/// one app's flood neither crowds out another's lines nor the node's own. Each budget holds ten
/// seconds' worth, so a short burst passes whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLogLimits {
    /// Lines per second one app's guests may write (default 100).
    pub lines_per_second: u32,
    /// Bytes per second one app's guests may write (default 256 KiB).
    pub bytes_per_second: u64,
    /// Lines per second all guests on the node may write together (default 1000).
    pub node_lines_per_second: u32,
    /// Bytes per second all guests on the node may write together (default 2 MiB).
    pub node_bytes_per_second: u64,
}

impl Default for GuestLogLimits {
    fn default() -> Self {
        GuestLogLimits {
            lines_per_second: 100,
            bytes_per_second: 256 << 10,
            node_lines_per_second: 1000,
            node_bytes_per_second: 2 << 20,
        }
    }
}

/// `[limits]` in node.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CeilingsFile {
    max_cpu_ms: Option<u64>,
    max_timeout_ms: Option<u64>,
    max_memory_mb: Option<u64>,
    max_body_mb: Option<u64>,
}

/// `[log]` in node.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    /// One access-log line per request.
    pub(super) requests: Option<bool>,
    guest_lines_per_second: Option<u64>,
    guest_kb_per_second: Option<u64>,
    guest_total_lines_per_second: Option<u64>,
    guest_total_kb_per_second: Option<u64>,
}

impl CeilingsFile {
    /// The ceilings; memory defaults to (and may not exceed) what a pool slot holds.
    pub(super) fn ceilings(&self, pool_memory_bytes: u64) -> Result<LimitCeilings, FieldError> {
        let d = LimitCeilings::default();
        let pool_mb = pool_memory_bytes >> 20;
        Ok(LimitCeilings {
            cpu: Duration::from_millis(in_range(
                self.max_cpu_ms,
                "limits.max_cpu_ms",
                1..=60_000,
                d.cpu.as_millis() as u64,
            )?),
            timeout: Duration::from_millis(in_range(
                self.max_timeout_ms,
                "limits.max_timeout_ms",
                1..=15 * 60_000,
                d.timeout.as_millis() as u64,
            )?),
            memory_bytes: in_range(
                self.max_memory_mb,
                "limits.max_memory_mb",
                1..=pool_mb.max(1),
                pool_mb,
            )? << 20,
            body_bytes: in_range(
                self.max_body_mb,
                "limits.max_body_mb",
                0..=1024,
                d.body_bytes >> 20,
            )? << 20,
        })
    }
}

impl LogFile {
    pub(super) fn guest_limits(&self) -> Result<GuestLogLimits, FieldError> {
        let d = GuestLogLimits::default();
        let lines = |value, field| in_range(value, field, 1..=1_000_000, 0);
        let kb = |value, field| in_range(value, field, 1..=1 << 20, 0);
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        Ok(GuestLogLimits {
            lines_per_second: or(
                lines(self.guest_lines_per_second, "log.guest_lines_per_second")?,
                d.lines_per_second.into(),
            ) as u32,
            bytes_per_second: or(
                kb(self.guest_kb_per_second, "log.guest_kb_per_second")? << 10,
                d.bytes_per_second,
            ),
            node_lines_per_second: or(
                lines(
                    self.guest_total_lines_per_second,
                    "log.guest_total_lines_per_second",
                )?,
                d.node_lines_per_second.into(),
            ) as u32,
            node_bytes_per_second: or(
                kb(
                    self.guest_total_kb_per_second,
                    "log.guest_total_kb_per_second",
                )? << 10,
                d.node_bytes_per_second,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_asking_above_a_ceiling_gets_the_ceiling_and_a_reason() {
        let ceilings = LimitCeilings {
            cpu: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            body_bytes: 1 << 20,
        };
        let asked = AppLimits {
            cpu: Duration::from_millis(5000),
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            body_bytes: 512 << 10,
        };
        let (limits, lowered) = ceilings.clamp(&asked);
        assert_eq!(limits.cpu, Duration::from_millis(100));
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.body_bytes, 512 << 10);
        assert_eq!(lowered.len(), 2, "{lowered:?}");
        assert!(lowered[0].starts_with("cpu_ms 5000 ms"), "{lowered:?}");
        assert!(lowered[1].starts_with("memory_mb 256 MiB"), "{lowered:?}");

        let (same, none) = ceilings.clamp(&AppLimits {
            cpu: Duration::from_millis(10),
            ..limits.clone()
        });
        assert!(none.is_empty());
        assert_eq!(same.cpu, Duration::from_millis(10));
    }

    #[test]
    fn ceilings_and_log_budgets_are_validated_by_field() {
        let file: CeilingsFile = toml::from_str("max_memory_mb = 512").unwrap();
        assert_eq!(
            file.ceilings(128 << 20).unwrap_err().field,
            "limits.max_memory_mb"
        );
        assert_eq!(file.ceilings(1024 << 20).unwrap().memory_bytes, 512 << 20);
        let defaults = CeilingsFile::default().ceilings(128 << 20).unwrap();
        assert_eq!(defaults.memory_bytes, 128 << 20);

        let log: LogFile = toml::from_str("guest_lines_per_second = 0").unwrap();
        assert_eq!(
            log.guest_limits().unwrap_err().field,
            "log.guest_lines_per_second"
        );
        let log: LogFile = toml::from_str("guest_kb_per_second = 16").unwrap();
        let limits = log.guest_limits().unwrap();
        assert_eq!(limits.bytes_per_second, 16 << 10);
        assert_eq!(limits.lines_per_second, 100);
    }
}
