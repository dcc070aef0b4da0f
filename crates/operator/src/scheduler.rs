//! Which job runs when: pure bookkeeping over a controlled clock, so the tests can walk time
//! forward minute by minute.
//!
//! - A job's next run is its cron's next occurrence plus the target's fixed jitter.
//! - Unchanged jobs keep their next run when the desired set is re-planned (every watch event
//!   re-plans, so this must be stable); a changed schedule re-plans from now.
//! - A job that last ran before its most recent occurrence (the operator was down, or the
//!   leader changed, at that time) runs once at once: a nightly backup is not lost to a restart.
//! - One run per exclusion group at a time (a database's backup and its repair share the
//!   target's group; a read-only triage has its own): an occurrence that finds its group busy is
//!   skipped, not queued, like a CronJob with `concurrencyPolicy: Forbid`.
//! - At most `limit` runs at a time in all; a due job waits for a free slot.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::schedule::Schedule;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    /// Back up the target into its repositories, then apply retention.
    Backup,
    /// `restic check` of a repository.
    Check,
    /// Triage (and, in repair mode, repair) of a replicated cluster.
    Triage,
    /// `restic copy` from one repository into another (target `sync/FROM/TO`).
    Sync,
    /// A restore drill of the target's latest backup in a temporary pod.
    Drill,
}

/// One schedulable job: a kind of work on a target (`standalone/db/pg`, `repository/offsite`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    /// The target.
    pub target: String,
    /// The work.
    pub kind: JobKind,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            JobKind::Backup => "backup",
            JobKind::Check => "check",
            JobKind::Triage => "triage",
            JobKind::Sync => "sync",
            JobKind::Drill => "drill",
        };
        write!(f, "{kind} {}", self.target)
    }
}

/// A job as desired now.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Which job.
    pub key: JobKey,
    /// When.
    pub schedule: Schedule,
    /// Fixed delay after each occurrence.
    pub jitter: Duration,
    /// When it last ended, as recorded in the cluster (status or annotation).
    pub last_run: Option<DateTime<Utc>>,
    /// Jobs of one group never run at the same time.
    pub group: String,
}

#[derive(Debug)]
struct Entry {
    spec: JobSpec,
    /// The cron occurrence the next run belongs to (before jitter).
    occurrence: Option<DateTime<Utc>>,
}

impl Entry {
    fn due_at(&self) -> Option<DateTime<Utc>> {
        self.occurrence.map(|o| o + self.spec.jitter)
    }
}

/// A job to start now.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// Which job.
    pub key: JobKey,
    /// The occurrence it runs for.
    pub occurrence: DateTime<Utc>,
}

/// What [`Scheduler::take_due`] decided.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    /// Start these.
    pub start: Vec<Start>,
    /// These occurrences were skipped: the target was still busy.
    pub skipped: Vec<Start>,
}

/// The schedule book.
#[derive(Debug)]
pub struct Scheduler {
    entries: BTreeMap<JobKey, Entry>,
    /// Running jobs and their groups.
    running: BTreeMap<JobKey, String>,
    limit: usize,
}

impl Scheduler {
    /// A scheduler allowing `limit` concurrent runs (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            running: BTreeMap::new(),
            limit: limit.max(1),
        }
    }

    /// Replaces the desired jobs. Returns the keys that were dropped.
    pub fn update(&mut self, specs: Vec<JobSpec>, now: DateTime<Utc>) -> Vec<JobKey> {
        let mut next: BTreeMap<JobKey, Entry> = BTreeMap::new();
        for spec in specs {
            let entry = match self.entries.remove(&spec.key) {
                Some(mut old)
                    if old.spec.schedule == spec.schedule && old.spec.jitter == spec.jitter =>
                {
                    old.spec.last_run = spec.last_run;
                    // A mode change (triage → repair) moves the job to another group at once.
                    old.spec.group = spec.group;
                    old
                }
                _ => {
                    let occurrence = first_occurrence(&spec, now);
                    Entry { spec, occurrence }
                }
            };
            next.insert(entry.spec.key.clone(), entry);
        }
        let dropped = self.entries.keys().cloned().collect();
        self.entries = next;
        dropped
    }

    /// Starts what is due at `now`, within the concurrency limit.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Decisions {
        let mut decisions = Decisions::default();
        let mut due: Vec<(DateTime<Utc>, JobKey)> = self
            .entries
            .values()
            .filter_map(|e| {
                e.due_at()
                    .filter(|t| *t <= now)
                    .map(|t| (t, e.spec.key.clone()))
            })
            .collect();
        // Oldest first, so a long queue behind the limit drains fairly.
        due.sort();
        for (_, key) in due {
            let entry = self.entries.get_mut(&key).expect("listed above");
            let occurrence = entry.occurrence.expect("due implies an occurrence");
            let start = Start {
                key: key.clone(),
                occurrence,
            };
            if self.running.values().any(|g| *g == entry.spec.group) {
                entry.occurrence = entry.spec.schedule.next_after(now - entry.spec.jitter);
                decisions.skipped.push(start);
                continue;
            }
            if self.running.len() >= self.limit {
                continue; // stays due; starts when a slot frees
            }
            entry.occurrence = entry.spec.schedule.next_after(now - entry.spec.jitter);
            self.running.insert(key.clone(), entry.spec.group.clone());
            decisions.start.push(start);
        }
        decisions
    }

    /// A run of `key` ended.
    pub fn finished(&mut self, key: &JobKey) {
        self.running.remove(key);
    }

    /// How many runs are in progress.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// When `key` runs next.
    pub fn next_run(&self, key: &JobKey) -> Option<DateTime<Utc>> {
        self.entries.get(key).and_then(Entry::due_at)
    }

    /// The earliest time anything becomes due (now-or-past when work waits for a slot).
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.entries.values().filter_map(Entry::due_at).min()
    }

    /// The earliest due time after `now`: what to sleep until while due work waits for a slot
    /// (a finished run wakes the loop for that).
    pub fn next_wake_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter_map(Entry::due_at)
            .filter(|t| *t > now)
            .min()
    }

    /// How many jobs are planned.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no job is planned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The first occurrence of a newly planned job: the next one, or at once when the most recent
/// one passed since the job last ran.
fn first_occurrence(spec: &JobSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let since = now - spec.jitter;
    if let (Some(last), Some(previous)) =
        (spec.last_run, spec.schedule.previous_at_or_before(since))
    {
        if last < previous {
            return Some(previous);
        }
    }
    spec.schedule.next_after(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn job(target: &str, cron: &str, jitter: i64, last_run: Option<&str>) -> JobSpec {
        JobSpec {
            key: JobKey {
                target: target.into(),
                kind: JobKind::Backup,
            },
            schedule: Schedule::parse(cron, None).unwrap(),
            jitter: Duration::seconds(jitter),
            last_run: last_run.map(utc),
            group: target.into(),
        }
    }

    fn started(d: &Decisions) -> Vec<(String, DateTime<Utc>)> {
        d.start
            .iter()
            .map(|s| (s.key.target.clone(), s.occurrence))
            .collect()
    }

    #[test]
    fn a_controlled_clock_fires_each_occurrence_once_at_its_minute() {
        let mut s = Scheduler::new(4);
        s.update(
            vec![job("a", "*/15 * * * *", 0, None)],
            utc("2026-11-23T10:07:00Z"),
        );
        let mut fired = Vec::new();
        let mut now = utc("2026-11-23T10:07:00Z");
        while now < utc("2026-11-23T11:07:00Z") {
            let d = s.take_due(now);
            for start in &d.start {
                fired.push(now);
                s.finished(&start.key);
            }
            now += Duration::seconds(20);
        }
        assert_eq!(
            fired,
            ["10:15", "10:30", "10:45", "11:00"]
                .iter()
                .map(|t| utc(&format!("2026-11-23T{t}:00Z")))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn jitter_delays_every_run_by_the_same_offset() {
        let mut s = Scheduler::new(4);
        s.update(
            vec![job("a", "0 2 * * *", 90, None)],
            utc("2026-11-23T00:00:00Z"),
        );
        assert_eq!(s.next_wake(), Some(utc("2026-11-23T02:01:30Z")));
        assert!(s.take_due(utc("2026-11-23T02:01:29Z")).start.is_empty());
        let d = s.take_due(utc("2026-11-23T02:01:30Z"));
        assert_eq!(
            started(&d),
            [("a".to_string(), utc("2026-11-23T02:00:00Z"))]
        );
        s.finished(&d.start[0].key);
        assert_eq!(s.next_wake(), Some(utc("2026-11-24T02:01:30Z")));
    }

    #[test]
    fn replanning_an_unchanged_job_keeps_its_next_run_and_a_changed_one_moves() {
        let mut s = Scheduler::new(4);
        let t0 = utc("2026-11-23T10:07:00Z");
        s.update(vec![job("a", "0 * * * *", 0, None)], t0);
        let key = JobKey {
            target: "a".into(),
            kind: JobKind::Backup,
        };
        assert_eq!(s.next_run(&key), Some(utc("2026-11-23T11:00:00Z")));
        // Re-planned later with the same schedule: still 11:00.
        s.update(
            vec![job("a", "0 * * * *", 0, None)],
            utc("2026-11-23T10:30:00Z"),
        );
        assert_eq!(s.next_run(&key), Some(utc("2026-11-23T11:00:00Z")));
        // A policy edit changes the schedule: re-planned at once.
        s.update(
            vec![job("a", "45 * * * *", 0, None)],
            utc("2026-11-23T10:31:00Z"),
        );
        assert_eq!(s.next_run(&key), Some(utc("2026-11-23T10:45:00Z")));
        // Removed from the desired set: dropped.
        let dropped = s.update(vec![], utc("2026-11-23T10:32:00Z"));
        assert_eq!(dropped, vec![key]);
        assert_eq!(s.next_wake(), None);
    }

    #[test]
    fn a_missed_occurrence_runs_once_at_once() {
        let mut s = Scheduler::new(4);
        // Last ran yesterday 02:00; the operator starts at 03:10 today: today's 02:00 was missed.
        let now = utc("2026-11-23T03:10:00Z");
        s.update(
            vec![job("a", "0 2 * * *", 0, Some("2026-11-22T02:00:05Z"))],
            now,
        );
        let d = s.take_due(now);
        assert_eq!(
            started(&d),
            [("a".to_string(), utc("2026-11-23T02:00:00Z"))]
        );
        s.finished(&d.start[0].key);
        assert!(s.take_due(now).start.is_empty());
        assert_eq!(s.next_wake(), Some(utc("2026-11-24T02:00:00Z")));
        // Ran after the last occurrence: nothing to catch up. Never ran: wait for the schedule.
        let mut s = Scheduler::new(4);
        s.update(
            vec![
                job("b", "0 2 * * *", 0, Some("2026-11-23T02:00:05Z")),
                job("c", "0 2 * * *", 0, None),
            ],
            now,
        );
        assert!(s.take_due(now).start.is_empty());
    }

    #[test]
    fn a_busy_target_skips_the_occurrence_and_the_limit_queues() {
        let mut s = Scheduler::new(2);
        let t0 = utc("2026-11-23T09:59:00Z");
        s.update(
            vec![
                job("a", "* * * * *", 0, None),
                job("b", "0 * * * *", 0, None),
                job("c", "0 * * * *", 0, None),
            ],
            t0,
        );
        let ten = utc("2026-11-23T10:00:00Z");
        let d = s.take_due(ten);
        // a and b start (oldest first, then by key); c waits for a slot.
        assert_eq!(
            started(&d),
            [("a".to_string(), ten), ("b".to_string(), ten)]
        );
        assert_eq!(s.running_count(), 2);
        // 10:01: a is still running: its occurrence is skipped; c still waits.
        let d = s.take_due(utc("2026-11-23T10:01:00Z"));
        assert!(d.start.is_empty());
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].key.target, "a");
        // b ends: c starts for its 10:00 occurrence.
        s.finished(&JobKey {
            target: "b".into(),
            kind: JobKind::Backup,
        });
        let d = s.take_due(utc("2026-11-23T10:01:10Z"));
        assert_eq!(started(&d), [("c".to_string(), ten)]);
    }

    #[test]
    fn a_job_in_its_own_group_runs_beside_the_targets_backup() {
        let mut s = Scheduler::new(4);
        let backup = job("cnpg/db/pg", "0 * * * *", 0, None);
        let mut triage = job("cnpg/db/pg", "*/15 * * * *", 0, None);
        triage.key.kind = JobKind::Triage;
        triage.group = "cnpg/db/pg/triage".into();
        s.update(vec![backup, triage], utc("2026-11-23T09:59:00Z"));
        let d = s.take_due(utc("2026-11-23T10:00:00Z"));
        assert_eq!(d.start.len(), 2, "{d:?}");
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn waiting_work_does_not_hide_later_wakeups_and_a_group_change_applies_at_once() {
        let mut s = Scheduler::new(1);
        let t0 = utc("2026-11-23T09:59:00Z");
        s.update(
            vec![
                job("a", "0 * * * *", 0, None),
                job("b", "0 * * * *", 0, None),
                job("c", "5 10 * * *", 0, None),
            ],
            t0,
        );
        let ten = utc("2026-11-23T10:00:00Z");
        assert_eq!(s.take_due(ten).start.len(), 1);
        // b waits for the slot (due in the past); c's 10:05 is still the next wake-up.
        assert_eq!(s.next_wake(), Some(ten));
        assert_eq!(s.next_wake_after(ten), Some(utc("2026-11-23T10:05:00Z")));
        let mut moved = job("b", "0 * * * *", 0, None);
        moved.group = "a".into();
        s.update(vec![job("a", "0 * * * *", 0, None), moved], ten);
        s.finished(&JobKey {
            target: "a".into(),
            kind: JobKind::Backup,
        });
        assert_eq!(
            s.take_due(ten).start.len(),
            1,
            "b runs once a's slot is free"
        );
    }

    #[test]
    fn backup_and_check_of_one_target_exclude_each_other() {
        let mut s = Scheduler::new(4);
        let mut check = job("repository/r", "0 * * * *", 0, None);
        check.key.kind = JobKind::Check;
        let backup = job("repository/r", "0 * * * *", 0, None);
        s.update(vec![check, backup], utc("2026-11-23T09:59:00Z"));
        let d = s.take_due(utc("2026-11-23T10:00:00Z"));
        assert_eq!(d.start.len(), 1);
        assert_eq!(d.skipped.len(), 1);
    }
}
