//! Opt-in annotations on CloudNativePG `Cluster` and MariaDB `MariaDB` resources, the earlier
//! tool's keys unchanged. `policy` opts a database in; the others override the policy's fields.
//! The operator writes `managed`, `last-backup`, `last-backup-duration`, `last-triage`,
//! `last-triage-result` and `last-repair` back, since it owns no status on those resources.

/// Prefix of every key.
pub const PREFIX: &str = "clinic.hasteward.prplanit.com/";

/// `BackupPolicy` name (required to opt in).
pub const POLICY: &str = "clinic.hasteward.prplanit.com/policy";
/// Backup schedule override.
pub const BACKUP_SCHEDULE: &str = "clinic.hasteward.prplanit.com/backup-schedule";
/// Triage schedule override.
pub const TRIAGE_SCHEDULE: &str = "clinic.hasteward.prplanit.com/triage-schedule";
/// Mode override (`triage`, `repair`, `disabled`).
pub const MODE: &str = "clinic.hasteward.prplanit.com/mode";
/// Repositories override, comma-separated.
pub const REPOSITORIES: &str = "clinic.hasteward.prplanit.com/repositories";
/// Retention overrides.
pub const RETENTION_KEEP_LAST: &str = "clinic.hasteward.prplanit.com/retention-keep-last";
/// Retention override.
pub const RETENTION_KEEP_DAILY: &str = "clinic.hasteward.prplanit.com/retention-keep-daily";
/// Retention override.
pub const RETENTION_KEEP_WEEKLY: &str = "clinic.hasteward.prplanit.com/retention-keep-weekly";
/// Retention override.
pub const RETENTION_KEEP_MONTHLY: &str = "clinic.hasteward.prplanit.com/retention-keep-monthly";
/// `"true"` opts a database out although it names a policy.
pub const EXCLUDE: &str = "clinic.hasteward.prplanit.com/exclude";
/// Repair heal timeout override (seconds).
pub const HEAL_TIMEOUT: &str = "clinic.hasteward.prplanit.com/heal-timeout";
/// Accepted for compatibility; not used.
pub const DELETE_TIMEOUT: &str = "clinic.hasteward.prplanit.com/delete-timeout";

/// Written: the operator schedules this database.
pub const MANAGED: &str = "clinic.hasteward.prplanit.com/managed";
/// Written: when the last backup ended (RFC 3339).
pub const LAST_BACKUP: &str = "clinic.hasteward.prplanit.com/last-backup";
/// Written: how long it took (`12.3s`).
pub const LAST_BACKUP_DURATION: &str = "clinic.hasteward.prplanit.com/last-backup-duration";
/// Written: `success` or `failure` of the last backup (new; the earlier tool had none).
pub const LAST_BACKUP_RESULT: &str = "clinic.hasteward.prplanit.com/last-backup-result";
/// Written: when the last successful backup ended (new).
pub const LAST_SUCCESSFUL_BACKUP: &str = "clinic.hasteward.prplanit.com/last-successful-backup";
/// Written: when the last triage ended.
pub const LAST_TRIAGE: &str = "clinic.hasteward.prplanit.com/last-triage";
/// Written: `healthy`, `unhealthy` or `split-brain`.
pub const LAST_TRIAGE_RESULT: &str = "clinic.hasteward.prplanit.com/last-triage-result";
/// Written: when the last repair ended.
pub const LAST_REPAIR: &str = "clinic.hasteward.prplanit.com/last-repair";
/// Written: when the last restore drill ended (new).
pub const LAST_DRILL: &str = "clinic.hasteward.prplanit.com/last-drill";
/// Written: `success` or `failure` of the last restore drill (new).
pub const LAST_DRILL_RESULT: &str = "clinic.hasteward.prplanit.com/last-drill-result";
/// Written: `success` (healthy afterwards), `failure` or `refused` of the last unattended repair
/// (new).
pub const LAST_REPAIR_RESULT: &str = "clinic.hasteward.prplanit.com/last-repair-result";
