//! Retention policies, spelled as restic `forget` flags.

use serde::{Deserialize, Serialize};

/// Which snapshots to keep. restic keeps the union of every rule, so "30 days but never fewer
/// than 5" is `keep_within = Some("30d")` plus `keep_last = Some(5)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep the newest per hour for N hours that have snapshots.
    pub keep_hourly: Option<u32>,
    /// Per day.
    pub keep_daily: Option<u32>,
    /// Per week.
    pub keep_weekly: Option<u32>,
    /// Per month.
    pub keep_monthly: Option<u32>,
    /// Per year.
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this duration, relative to the newest snapshot (`30d`, `1y6m`).
    pub keep_within: Option<String>,
}

impl KeepPolicy {
    /// True when no rule is set (restic would refuse; hasteward refuses first).
    pub fn is_empty(&self) -> bool {
        self.to_args().is_empty()
    }

    /// The `forget` flags for this policy.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let counts = [
            ("--keep-last", self.keep_last),
            ("--keep-hourly", self.keep_hourly),
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
            ("--keep-yearly", self.keep_yearly),
        ];
        for (flag, n) in counts {
            if let Some(n) = n.filter(|n| *n > 0) {
                args.push(flag.to_string());
                args.push(n.to_string());
            }
        }
        if let Some(within) = self.keep_within.as_deref().filter(|w| !w.is_empty()) {
            args.push("--keep-within".to_string());
            args.push(within.to_string());
        }
        args
    }

    /// Checks a `--keep-within` duration the way restic reads it (`1y2m3d4h`).
    pub fn valid_duration(text: &str) -> bool {
        let mut digits = false;
        let mut any = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits = true;
            } else if matches!(c, 'y' | 'm' | 'd' | 'h') && digits {
                digits = false;
                any = true;
            } else {
                return false;
            }
        }
        any && !digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_but_never_fewer_than_five() {
        let p = KeepPolicy {
            keep_last: Some(5),
            keep_within: Some("30d".into()),
            ..KeepPolicy::default()
        };
        assert_eq!(p.to_args(), ["--keep-last", "5", "--keep-within", "30d"]);
        assert!(KeepPolicy::default().is_empty());
        let zero = KeepPolicy {
            keep_daily: Some(0),
            ..KeepPolicy::default()
        };
        assert!(zero.is_empty());
    }

    #[test]
    fn durations() {
        assert!(KeepPolicy::valid_duration("30d"));
        assert!(KeepPolicy::valid_duration("1y6m"));
        assert!(!KeepPolicy::valid_duration("30"));
        assert!(!KeepPolicy::valid_duration("d"));
        assert!(!KeepPolicy::valid_duration("30 days"));
    }
}
