//! A tail client's choice of records: which statuses, and what fraction of requests.

use outpost_core::wire::RequestRecord;

/// Which records a tail client gets: by status, and a sample of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct TailFilter {
    /// Empty: every status. Otherwise exact codes (`503`) and classes (`5` for `5xx`).
    statuses: Vec<StatusMatch>,
    /// Keep this fraction of requests, chosen by request id (so every client watching the
    /// same app with the same rate sees the same requests).
    sample: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    Exact(u16),
    Class(u16),
}

impl TailFilter {
    /// `status`: a comma-separated list of codes and classes (`5xx,429`); `sample`: 0 < rate <= 1.
    pub fn parse(status: Option<&str>, sample: Option<&str>) -> Result<TailFilter, String> {
        let mut statuses = Vec::new();
        for item in status.unwrap_or_default().split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let lower = item.to_ascii_lowercase();
            let matched = match lower.strip_suffix("xx") {
                Some(class) => class
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .map(StatusMatch::Class),
                None => lower
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(StatusMatch::Exact),
            };
            statuses.push(matched.ok_or_else(|| {
                format!("status {item:?}: give codes (404) or classes (5xx), comma-separated")
            })?);
        }
        let sample = match sample {
            None => 1.0,
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|rate| *rate > 0.0 && *rate <= 1.0)
                .ok_or_else(|| format!("sample {text:?}: give a rate above 0 and at most 1"))?,
        };
        Ok(TailFilter { statuses, sample })
    }

    /// Whether `record` matches the statuses and falls within the sample.
    pub fn keeps(&self, record: &RequestRecord) -> bool {
        let status_ok = self.statuses.is_empty()
            || self.statuses.iter().any(|m| match m {
                StatusMatch::Exact(code) => record.status == *code,
                StatusMatch::Class(class) => record.status / 100 == *class,
            });
        status_ok && (self.sample >= 1.0 || fraction(&record.request_id) < self.sample)
    }
}

/// A stable number in [0, 1) from a request id: FNV-1a, then splitmix64's finalizer, since
/// ids differ only in their last characters and FNV alone leaves the high bits alike.
fn fraction(id: &str) -> f64 {
    let mut z = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16, id: &str) -> RequestRecord {
        RequestRecord {
            node: "n".into(),
            app: "a".into(),
            version: "v".into(),
            at_ms: 0,
            request_id: id.into(),
            client: "192.0.2.1".into(),
            method: "GET".into(),
            path: "/".into(),
            status,
            micros: 1,
            guest_us: 1,
            trigger: None,
        }
    }

    #[test]
    fn statuses_by_code_and_class() {
        let all = TailFilter::parse(None, None).unwrap();
        assert!(all.keeps(&record(200, "x")) && all.keeps(&record(503, "x")));
        let some = TailFilter::parse(Some("5xx, 404"), None).unwrap();
        assert!(some.keeps(&record(500, "x")));
        assert!(some.keeps(&record(404, "x")));
        assert!(!some.keeps(&record(403, "x")));
        assert!(!some.keeps(&record(200, "x")));
        assert!(TailFilter::parse(Some("6xx"), None).is_err());
        assert!(TailFilter::parse(Some("abc"), None).is_err());
        assert!(TailFilter::parse(Some("99"), None).is_err());
    }

    #[test]
    fn sampling_keeps_about_the_rate_and_is_stable_per_request() {
        assert!(TailFilter::parse(None, Some("0")).is_err());
        assert!(TailFilter::parse(None, Some("1.5")).is_err());
        let tenth = TailFilter::parse(None, Some("0.1")).unwrap();
        let kept = (0..10_000)
            .filter(|i| tenth.keeps(&record(200, &format!("{i:016x}"))))
            .count();
        assert!((800..1200).contains(&kept), "{kept}");
        let id = (0..10_000)
            .map(|i| format!("{i:016x}"))
            .find(|id| tenth.keeps(&record(200, id)))
            .unwrap();
        assert!(
            tenth.keeps(&record(500, &id)),
            "the same request id, the same choice"
        );
    }
}
