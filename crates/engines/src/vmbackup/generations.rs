//! Backup generations under one destination, named like vmbackupmanager's: `latest`, then
//! `hourly/2026-11-24:05`, `daily/2026-11-24`, `weekly/2026-W48`, `monthly/2026-11`.
//!
//! Pure: names from a time, which names a retention keeps. Every name format sorts
//! chronologically as text, so "newest first" is a reverse text sort.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::{Error, Result};

/// The generation every run updates first, and the origin the periodic ones copy from.
pub const LATEST: &str = "latest";

/// A periodic generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// `hourly/YYYY-MM-DD:HH`.
    Hourly,
    /// `daily/YYYY-MM-DD`.
    Daily,
    /// `weekly/YYYY-Www` (ISO week).
    Weekly,
    /// `monthly/YYYY-MM`.
    Monthly,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 4] = [Self::Hourly, Self::Daily, Self::Weekly, Self::Monthly];

    /// The directory (prefix) its generations live in.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    /// The generation name for time `t` (UTC).
    pub fn name_at(self, t: DateTime<Utc>) -> String {
        match self {
            Self::Hourly => format!("{}:{:02}", t.format("%Y-%m-%d"), t.hour()),
            Self::Daily => t.format("%Y-%m-%d").to_string(),
            Self::Weekly => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Self::Monthly => t.format("%Y-%m").to_string(),
        }
    }

    /// Whether `name` has this period's format (so unrelated entries are never deleted).
    pub fn matches(self, name: &str) -> bool {
        let b = name.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        match self {
            Self::Hourly => {
                b.len() == 13
                    && digits(0..4)
                    && b[4] == b'-'
                    && digits(5..7)
                    && b[7] == b'-'
                    && digits(8..10)
                    && b[10] == b':'
                    && digits(11..13)
            }
            Self::Daily => {
                b.len() == 10
                    && digits(0..4)
                    && b[4] == b'-'
                    && digits(5..7)
                    && b[7] == b'-'
                    && digits(8..10)
            }
            Self::Weekly => b.len() == 8 && digits(0..4) && &b[4..6] == b"-W" && digits(6..8),
            Self::Monthly => b.len() == 7 && digits(0..4) && b[4] == b'-' && digits(5..7),
        }
    }

    /// Parses `hourly`, `daily`, `weekly` or `monthly`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|p| p.dir() == s).ok_or_else(|| {
            Error::Usage(format!(
                "unknown generation period `{s}` (expected hourly, daily, weekly or monthly)"
            ))
        })
    }
}

/// How many generations of each period to keep; `None` writes and prunes none of that period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Keep {
    /// Hourly generations.
    pub hourly: Option<u32>,
    /// Daily generations.
    pub daily: Option<u32>,
    /// Weekly generations.
    pub weekly: Option<u32>,
    /// Monthly generations.
    pub monthly: Option<u32>,
}

impl Keep {
    /// The count for `period`.
    pub fn of(&self, period: Period) -> Option<u32> {
        match period {
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
            Period::Monthly => self.monthly,
        }
    }

    /// Whether no period is set.
    pub fn is_empty(&self) -> bool {
        Period::ALL.iter().all(|p| self.of(*p).is_none())
    }

    /// The periods a backup writes: those with a count above zero; daily when none is set.
    pub fn periods_written(&self) -> Vec<Period> {
        if self.is_empty() {
            return vec![Period::Daily];
        }
        Period::ALL
            .into_iter()
            .filter(|p| self.of(*p).is_some_and(|n| n > 0))
            .collect()
    }
}

/// The generations of one period to delete: all but the newest `keep` complete ones, and every
/// incomplete one older than the newest complete one kept (a failed run's leftovers; a newer
/// incomplete one may be a run in progress and is left alone). Names not in the period's
/// format are never returned.
pub fn expired(period: Period, generations: &[(String, bool)], keep: u32) -> Vec<String> {
    let mut ours: Vec<&(String, bool)> = generations
        .iter()
        .filter(|(name, _)| period.matches(name))
        .collect();
    ours.sort_by(|a, b| b.0.cmp(&a.0));
    let mut kept = 0u32;
    let mut newest_complete: Option<&str> = None;
    let mut out = Vec::new();
    for (name, complete) in ours {
        if *complete {
            newest_complete.get_or_insert(name);
            if kept < keep {
                kept += 1;
                continue;
            }
            out.push(name.clone());
        } else if newest_complete.is_some_and(|n| name.as_str() < n) {
            out.push(name.clone());
        }
    }
    out
}

/// Checks a generation given by a person (`latest`, `daily/2026-11-24`, …).
pub fn validate(generation: &str) -> Result<()> {
    if generation == LATEST {
        return Ok(());
    }
    if let Some((dir, name)) = generation.split_once('/') {
        if let Ok(p) = Period::parse(dir) {
            if p.matches(name) {
                return Ok(());
            }
        }
    }
    Err(Error::Usage(format!(
        "invalid generation `{generation}`: use `latest` or PERIOD/NAME as `hasteward snapshots -e vmbackup` lists them (e.g. daily/2026-11-24)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_sort_chronologically_and_match_their_period() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 5, 7, 0).unwrap();
        assert_eq!(Period::Hourly.name_at(t), "2026-11-24:05");
        assert_eq!(Period::Daily.name_at(t), "2026-11-24");
        assert_eq!(Period::Weekly.name_at(t), "2026-W48");
        assert_eq!(Period::Monthly.name_at(t), "2026-11");
        // ISO week-years: 2027-01-01 is in 2026-W53.
        let ny = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(Period::Weekly.name_at(ny), "2026-W53");
        for p in Period::ALL {
            assert!(p.matches(&p.name_at(t)), "{p:?}");
            assert!(!p.matches("latest"));
            assert!(!p.matches("../etc"));
        }
        assert!(!Period::Daily.matches("2026-11-24:05"));
    }

    #[test]
    fn retention_keeps_the_newest_complete_generations() {
        let gens: Vec<(String, bool)> = [
            ("2026-11-20", true),
            ("2026-11-21", false), // a failed run, older than kept ones: removed
            ("2026-11-22", true),
            ("2026-11-23", true),
            ("2026-11-24", false), // newest, maybe in progress: left
            ("notes", true),       // not ours: never touched
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        assert_eq!(
            expired(Period::Daily, &gens, 2),
            vec!["2026-11-21", "2026-11-20"]
        );
        assert_eq!(
            expired(Period::Daily, &gens, 0),
            vec!["2026-11-23", "2026-11-22", "2026-11-21", "2026-11-20"]
        );
        assert_eq!(expired(Period::Daily, &gens, 9), vec!["2026-11-21"]);
        assert!(expired(Period::Weekly, &gens, 0).is_empty());
    }

    #[test]
    fn periods_written_follow_the_retention() {
        assert_eq!(Keep::default().periods_written(), vec![Period::Daily]);
        let k = Keep {
            daily: Some(7),
            weekly: Some(4),
            hourly: Some(0),
            ..Keep::default()
        };
        assert_eq!(k.periods_written(), vec![Period::Daily, Period::Weekly]);
    }

    #[test]
    fn generations_from_people_are_checked() {
        for ok in [
            "latest",
            "daily/2026-11-24",
            "weekly/2026-W48",
            "hourly/2026-11-24:05",
        ] {
            validate(ok).unwrap();
        }
        for bad in [
            "",
            "daily",
            "daily/../../x",
            "yearly/2026",
            "latest/x",
            "/etc",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
