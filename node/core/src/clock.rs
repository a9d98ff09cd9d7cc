//! The wall clock, read in one place: every timestamp Outpost writes (KV entries, records,
//! reports, certificates' "now") is milliseconds or microseconds since the Unix epoch from
//! here, and a clock set before 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    unix_micros() / 1000
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_micros() / 1_000_000
}

/// Ids of this run's writes start here. The origin recognises a retried write by its writer and
/// id, so each run must use ids no earlier run used: the clock in microseconds, scaled so a run
/// would need over a thousand writes per microsecond to reach the next run's range.
pub fn write_id_base() -> u64 {
    unix_micros().saturating_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let (secs, millis, micros) = (unix_secs(), unix_millis(), unix_micros());
        assert!(secs > 1_600_000_000, "the clock reads {secs}");
        assert!(millis / 1000 >= secs && millis / 1000 <= secs + 1);
        assert!(micros / 1000 >= millis);
        assert!(write_id_base() >= micros * 1024);
    }
}
