//! `BackupRepository`: a restic repository, its password and backend credentials, and its
//! check schedule.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeyRef, SecretRef};

/// Where the repository is and how to open it. Secrets reach restic only as files and
/// environment variables, never argv.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticSpec {
    /// The repository: a path, `s3:https://host/bucket/prefix`, `rest:…`, `sftp:…`.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// The repository password.
    pub password_secret_ref: SecretKeyRef,
    /// Every key of this Secret becomes an environment variable of restic (for example
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_secret_ref: Option<SecretRef>,
}

/// A scheduled `restic check`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckSpec {
    /// 5-field cron.
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub schedule: String,
    /// IANA timezone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Also read this part of the pack data: `10%`, `1/7`, or `rotate/7` for a different
    /// seventh each day so a week reads everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+|rotate/[0-9]+)$"))]
    pub read_data_subset: Option<String>,
}

/// A scheduled copy of this repository's hasteward snapshots into another repository
/// (`restic copy`, the destination created with this one's chunker parameters).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// The destination `BackupRepository`'s name.
    #[schemars(length(min = 1))]
    pub to: String,
    /// 5-field cron.
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub schedule: String,
    /// IANA timezone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Retention applied to the destination after each copy (per backup set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::common::Retention>,
}

/// The last copy into one destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    /// `success` or `failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_result: Option<String>,
    /// Snapshots copied by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A restic repository that backups go into.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "clinic.hasteward.prplanit.com",
    version = "v1alpha1",
    kind = "BackupRepository",
    shortname = "br",
    shortname = "brepo",
    category = "hasteward",
    status = "BackupRepositoryStatus",
    doc = "A restic repository: location, password, backend credentials and check schedule.",
    printcolumn(
        name = "Repository",
        type_ = "string",
        json_path = ".spec.restic.repository"
    ),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "Snapshots",
        type_ = "integer",
        json_path = ".status.snapshotCount"
    ),
    printcolumn(
        name = "Total",
        type_ = "integer",
        json_path = ".status.totalSize",
        priority = 1
    ),
    printcolumn(
        name = "Dedup",
        type_ = "integer",
        json_path = ".status.deduplicatedSize",
        priority = 1
    ),
    printcolumn(
        name = "Last Check",
        type_ = "string",
        json_path = ".status.lastCheckResult"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackupRepositorySpec {
    /// The restic repository.
    pub restic: ResticSpec,
    /// Scheduled integrity checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
    /// Scheduled copies into other repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<SyncSpec>,
    /// The repository keeps its history against its writer (S3 Object Lock with a writer
    /// credential that cannot delete object versions, or an append-only REST server): hasteward
    /// never runs retention with `restic.envSecretRef`, only with
    /// `maintenanceCredentialsSecretRef`, and without one applies no retention (a
    /// `RetentionFailed` Event says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
    /// The maintenance credential for an immutable repository: every key of this Secret becomes
    /// an environment variable of restic for `forget`/`prune`, over `restic.envSecretRef`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_credentials_secret_ref: Option<SecretRef>,
}

/// What the operator last saw of the repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRepositoryStatus {
    /// The last operation on it succeeded and its secrets resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// When the last check ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// `healthy`, `damaged` or `failed` (could not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_result: Option<String>,
    /// When the last backup into it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// Snapshots in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<u64>,
    /// Restored size of every snapshot, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    /// Bytes stored after deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated_size: Option<u64>,
    /// The last copy into each destination, by destination name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub syncs: std::collections::BTreeMap<String, SyncStatus>,
    /// The last error, for humans; empty after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Ready` and friends.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
