//! Cron schedules: standard 5-field expressions read in an IANA timezone, with a fixed
//! per-target jitter. Pure; the clock is passed in.
//!
//! The earlier tool required 6 fields (seconds first) while its docs showed 5, so both forms are
//! in the wild: a 6-field expression whose seconds field is `0` is read as the 5-field
//! expression after it; any other seconds field is refused, since schedules here have minute
//! granularity.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Why a schedule cannot be used; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {reason}; use 5 fields, minute hour day-of-month month day-of-week, e.g. `0 2 * * *`")]
    Cron {
        /// The expression as written.
        expr: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The timezone is not an IANA name.
    #[error("unknown timezone `{0}`: use an IANA name such as `UTC` or `Europe/Berlin`")]
    Timezone(String),
}

/// A parsed schedule (cheap to clone).
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Arc<Cron>,
    tz: Tz,
    /// The 5-field expression actually used.
    pub expression: String,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.tz == other.tz
    }
}

/// Parsed schedules by (expression, timezone). Every planning pass resolves every target, and
/// parsing dominated that (about 55 µs a target); a thousand targets share a handful of
/// expressions. Bounded: cleared when it grows past [`CACHE_LIMIT`] distinct entries.
type ParseCache = Mutex<HashMap<(String, String), Result<Schedule, ScheduleError>>>;

const CACHE_LIMIT: usize = 4096;

fn cache() -> &'static ParseCache {
    static CACHE: OnceLock<ParseCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl Schedule {
    /// Parses `expr` in `timezone` (UTC when `None` or empty).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let key = (expr.to_string(), timezone.unwrap_or("").to_string());
        let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(&key) {
            return hit.clone();
        }
        let parsed = Self::parse_uncached(expr, timezone);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, parsed.clone());
        parsed
    }

    fn parse_uncached(expr: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match timezone.map(str::trim).filter(|t| !t.is_empty()) {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::Timezone(name.into()))?,
        };
        let expression = normalize(expr)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&expression)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.trim().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            cron: Arc::new(cron),
            tz,
            expression,
        })
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last time at or before `at` that the schedule fired.
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The timezone's name.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }
}

/// Trims, and reads the earlier tool's `0 <5 fields>` as the 5 fields.
fn normalize(expr: &str) -> Result<String, ScheduleError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let bad = |reason: &str| ScheduleError::Cron {
        expr: expr.trim().to_string(),
        reason: reason.to_string(),
    };
    match fields.len() {
        1 if fields[0].starts_with('@') => Ok(fields[0].to_string()),
        5 => Ok(fields.join(" ")),
        6 if fields[0] == "0" => Ok(fields[1..].join(" ")),
        6 => Err(bad(
            "6 fields with a seconds field other than `0`; schedules have minute granularity",
        )),
        0 => Err(bad("empty")),
        n => Err(bad(&format!("{n} fields"))),
    }
}

/// A fixed offset in `[0, max_seconds)` derived from `key`, so one target always runs at the
/// same offset (stable across restarts and replicas) while many targets spread out.
pub fn jitter(key: &str, max_seconds: u32) -> Duration {
    if max_seconds == 0 {
        return Duration::zero();
    }
    // FNV-1a: tiny, deterministic across builds and platforms (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::seconds((hash % u64::from(max_seconds)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_fire_at_the_next_matching_minute() {
        let s = Schedule::parse("0 2 * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T01:59:59Z")),
            Some(utc("2026-11-23T02:00:00Z"))
        );
        // Strictly after: at 02:00:00 the next run is tomorrow.
        assert_eq!(
            s.next_after(utc("2026-11-23T02:00:00Z")),
            Some(utc("2026-11-24T02:00:00Z"))
        );
        let every15 = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            every15.next_after(utc("2026-11-23T10:07:00Z")),
            Some(utc("2026-11-23T10:15:00Z"))
        );
    }

    #[test]
    fn the_earlier_tools_six_field_form_with_zero_seconds_is_read_as_five() {
        let six = Schedule::parse("0 0 2 * * *", None).unwrap();
        assert_eq!(six.expression, "0 2 * * *");
        assert_eq!(six, Schedule::parse("0 2 * * *", None).unwrap());
        let err = Schedule::parse("30 0 2 * * *", None).unwrap_err();
        assert!(err.to_string().contains("minute granularity"), "{err}");
    }

    #[test]
    fn invalid_expressions_and_timezones_say_what_to_write() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "0 25 * * *",
            "a b c d e",
            "* * * * * * * *",
        ] {
            let err = Schedule::parse(bad, None).unwrap_err();
            assert!(err.to_string().contains("e.g. `0 2 * * *`"), "{bad}: {err}");
        }
        let err = Schedule::parse("0 2 * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(err, ScheduleError::Timezone("Mars/Olympus".into()));
    }

    #[test]
    fn aliases_work() {
        let s = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T10:07:00Z")),
            Some(utc("2026-11-23T11:00:00Z"))
        );
    }

    #[test]
    fn timezones_shift_the_firing_instant_and_follow_dst() {
        let berlin = Schedule::parse("0 2 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: CET = UTC+1.
        assert_eq!(
            berlin.next_after(utc("2026-11-23T00:00:00Z")),
            Some(utc("2026-11-23T01:00:00Z"))
        );
        // Summer: CEST = UTC+2.
        assert_eq!(
            berlin.next_after(utc("2026-07-01T00:00:00Z")),
            Some(utc("2026-07-01T00:00:00Z") + Duration::hours(24))
        );
        assert_eq!(berlin.timezone(), "Europe/Berlin");
        let ny = Schedule::parse("30 9 * * 1-5", Some("America/New_York")).unwrap();
        // Friday 2026-11-27 09:30 EST = 14:30 UTC; after it, Monday.
        let fri = chrono_tz::America::New_York
            .with_ymd_and_hms(2026, 11, 27, 9, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ny.next_after(fri - Duration::seconds(1)), Some(fri));
        assert_eq!(ny.next_after(fri), Some(utc("2026-11-30T14:30:00Z")));
    }

    #[test]
    fn previous_occurrence_is_inclusive() {
        let s = Schedule::parse("0 2 * * *", None).unwrap();
        assert_eq!(
            s.previous_at_or_before(utc("2026-11-23T02:00:00Z")),
            Some(utc("2026-11-23T02:00:00Z"))
        );
        assert_eq!(
            s.previous_at_or_before(utc("2026-11-23T01:00:00Z")),
            Some(utc("2026-11-22T02:00:00Z"))
        );
    }

    #[test]
    fn jitter_is_stable_bounded_and_spreads() {
        assert_eq!(jitter("standalone/db/a", 0), Duration::zero());
        assert_eq!(
            jitter("standalone/db/a", 600),
            jitter("standalone/db/a", 600)
        );
        let offsets: std::collections::HashSet<_> = (0..100)
            .map(|i| jitter(&format!("standalone/db/pg-{i}"), 600))
            .inspect(|d| assert!(*d >= Duration::zero() && *d < Duration::seconds(600)))
            .collect();
        assert!(offsets.len() > 80, "{}", offsets.len());
    }
}
