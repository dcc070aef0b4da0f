//! `BackupPolicy`: schedules, mode, retention and repositories shared by many databases.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, DrillSpec, Retention};

/// What the operator does on a database's triage schedule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Read-only triage: report, never change anything.
    #[default]
    Triage,
    /// Triage, then repair what the plan's gates allow (escrow backup first).
    Repair,
    /// Schedule nothing.
    Disabled,
}

/// Schedules and retention applied to every database that names this policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "clinic.hasteward.prplanit.com",
    version = "v1alpha1",
    kind = "BackupPolicy",
    shortname = "bp",
    shortname = "bpol",
    category = "hasteward",
    status = "BackupPolicyStatus",
    doc = "Schedules, mode, retention and repositories for the databases that name this policy.",
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backupSchedule"),
    printcolumn(name = "Triage", type_ = "string", json_path = ".spec.triageSchedule"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Repositories",
        type_ = "string",
        json_path = ".spec.repositories"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// Backup schedule: standard 5-field cron (`0 2 * * *`) or `@daily`-style alias. The earlier
    /// tool's 6-field form with a `0` seconds field is accepted and read as 5 fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub backup_schedule: Option<String>,
    /// Triage schedule, same syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub triage_schedule: Option<String>,
    /// IANA timezone the schedules are read in (default UTC), e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Start each run up to this many seconds late, by a fixed per-database offset, so many
    /// databases on one schedule do not all start at once (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub jitter_seconds: Option<u32>,
    /// What the triage schedule does.
    #[serde(default)]
    pub mode: PolicyMode,
    /// Retention applied after each successful backup, per repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// `BackupRepository` names; each scheduled backup goes into every one of them.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Seconds a repair waits for a healed instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub heal_timeout: Option<u32>,
    /// Accepted for compatibility with the earlier tool; not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604800))]
    pub delete_timeout: Option<u32>,
    /// Scheduled restore drills of every database using the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
}

/// What the operator found when it read the policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// `Ready` is False with the reason when a schedule, timezone or repository is invalid.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many databases use this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<u32>,
}
