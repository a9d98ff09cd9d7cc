//! Apps' cron triggers: a schedule (POSIX/Vixie cron, five fields, or six with seconds first,
//! read in UTC by `croner`) and the path its ticks are sent to. A tick is named by its
//! scheduled time in seconds since the Unix epoch: the name every node and the origin agree on
//! when they decide which node fires it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The most triggers one app may have.
pub const MAX_TRIGGERS: usize = 16;

/// The longest path a trigger may name, in bytes.
const MAX_PATH: usize = 1024;

/// A cron schedule, as written and as parsed.
#[derive(Clone)]
pub struct Schedule {
    /// The expression with its fields separated by one space, as keys and headers show it.
    text: String,
    cron: Cron,
}

impl Schedule {
    /// The ticks of `text`: five fields (minute, hour, day of month, month, day of week) or six
    /// (seconds first); names (`MON`, `JAN`) and nicknames (`@hourly`) as cron reads them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = normalized(text);
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|e| format!("{text:?} is not a cron schedule: {e}"))?;
        let schedule = Schedule { text, cron };
        // A pattern that never matches (30 February) would leave its trigger asleep forever.
        if schedule.next_after(0).is_none() {
            return Err(format!("{:?} never fires", schedule.text));
        }
        Ok(schedule)
    }

    /// The expression, its fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `unix_secs`, if the schedule has one.
    pub fn next_after(&self, unix_secs: u64) -> Option<u64> {
        let start = DateTime::<Utc>::from_timestamp(i64::try_from(unix_secs).ok()?, 0)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp()).ok()
    }

    /// The last tick at or before `unix_secs`, if the schedule has one.
    pub fn latest_at_or_before(&self, unix_secs: u64) -> Option<u64> {
        let start = DateTime::<Utc>::from_timestamp(i64::try_from(unix_secs).ok()?, 0)?;
        let latest = self.cron.find_previous_occurrence(&start, true).ok()?;
        u64::try_from(latest.timestamp()).ok()
    }

    /// How many ticks fall strictly between `after` and `before`, counting at most `cap`.
    pub fn ticks_between(&self, after: u64, before: u64, cap: u64) -> u64 {
        let mut count = 0;
        let mut at = after;
        while count < cap {
            match self.next_after(at) {
                Some(next) if next < before => {
                    count += 1;
                    at = next;
                }
                _ => break,
            }
        }
        count
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Schedule::parse(text)
    }
}

/// One trigger of an app: its schedule, and the path of the request each tick sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// When it fires.
    pub schedule: Schedule,
    /// The path (and query) of the request each tick sends, from `/`.
    pub path: String,
}

impl Trigger {
    /// A trigger firing `path` on `cron`; the error says which is wrong.
    pub fn new(cron: &str, path: &str) -> Result<Self, (&'static str, String)> {
        let schedule = Schedule::parse(cron).map_err(|m| ("cron", m))?;
        check_path(path).map_err(|m| ("path", m))?;
        Ok(Trigger {
            schedule,
            path: path.to_string(),
        })
    }

    /// The name the fleet knows this trigger by: its schedule and its path. Changing either
    /// makes another trigger, whose ticks are decided afresh.
    pub fn key(&self) -> String {
        trigger_key(self.schedule.as_str(), &self.path)
    }
}

/// Whether a claim of `tick` wins for a trigger whose last fired tick is `last`: a trigger's
/// ticks move forward only, so neither a second claim of one tick nor a late claim of an older
/// tick fires. The one rule of the origin's registry and of a node alone.
pub fn claim_wins(last: Option<u64>, tick: u64) -> bool {
    last.is_none_or(|last| last < tick)
}

/// The key of the trigger firing `path` on `cron` (see [`Trigger::key`]), from the manifest's
/// text without parsing it.
pub fn trigger_key(cron: &str, path: &str) -> String {
    format!("{} {path}", normalized(cron))
}

/// A cron expression with its fields separated by one space.
fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A path a request can carry as it is: from `/`, visible ASCII, no fragment.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    if let Some(bad) = path.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
        return Err(format!(
            "{path:?} holds {bad:?}: a path is visible ASCII (percent-encode the rest) without '#'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04 00:00:00 UTC, a Friday.
    const MIDNIGHT: u64 = 1_796_342_400;

    #[test]
    fn five_fields_tick_on_minutes_and_six_on_seconds() {
        let every_five = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(every_five.next_after(MIDNIGHT), Some(MIDNIGHT + 300));
        assert_eq!(every_five.next_after(MIDNIGHT + 299), Some(MIDNIGHT + 300));
        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(every_second.next_after(MIDNIGHT), Some(MIDNIGHT + 1));
        let at_ten = Schedule::parse("10 * * * * *").unwrap();
        assert_eq!(at_ten.next_after(MIDNIGHT), Some(MIDNIGHT + 10));
        assert_eq!(at_ten.next_after(MIDNIGHT + 10), Some(MIDNIGHT + 70));
        let mondays = Schedule::parse("0 9 * * MON").unwrap();
        assert_eq!(
            mondays.next_after(MIDNIGHT),
            Some(MIDNIGHT + 3 * 86_400 + 9 * 3600)
        );
        assert_eq!(
            every_five.latest_at_or_before(MIDNIGHT + 299),
            Some(MIDNIGHT)
        );
        assert_eq!(
            every_five.latest_at_or_before(MIDNIGHT + 300),
            Some(MIDNIGHT + 300)
        );
    }

    #[test]
    fn ticks_between_counts_the_ones_strictly_inside() {
        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(every_second.ticks_between(MIDNIGHT, MIDNIGHT + 1, 100), 0);
        assert_eq!(every_second.ticks_between(MIDNIGHT, MIDNIGHT + 5, 100), 4);
        assert_eq!(
            every_second.ticks_between(MIDNIGHT, MIDNIGHT + 5_000, 100),
            100
        );
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(hourly.ticks_between(MIDNIGHT, MIDNIGHT + 86_400, 100), 23);
    }

    #[test]
    fn bad_schedules_and_paths_say_what_is_wrong() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "0 0 31 2 *",
            "hello",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Trigger::new("* * * * *", "cron").unwrap_err().0, "path");
        assert_eq!(Trigger::new("* * * * *", "/a b").unwrap_err().0, "path");
        assert_eq!(Trigger::new("* * * * *", "/a#b").unwrap_err().0, "path");
        assert_eq!(Trigger::new("* *", "/").unwrap_err().0, "cron");
        let trigger = Trigger::new("  */5   * * * * ", "/cron?job=sweep").unwrap();
        assert_eq!(trigger.key(), "*/5 * * * * /cron?job=sweep");
    }
}
