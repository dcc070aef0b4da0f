//! `StandaloneDatabase`: a database that no operator manages — a bare pod or StatefulSet, or a
//! host reached over TCP — backed up on a schedule.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, DrillSpec, Retention};

/// The database server's kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StandaloneDbType {
    /// PostgreSQL (`pg_dumpall`).
    Postgres,
    /// MySQL (`mysqldump`).
    Mysql,
    /// MariaDB (`mariadb-dump`).
    Mariadb,
    /// MongoDB (`mongodump --archive`).
    Mongo,
    /// Vault or OpenBao with integrated (raft) storage: its raft snapshot, streamed into the
    /// repositories. A host target's `address` is the API URL.
    Vault,
    /// VictoriaMetrics single-node: `vmbackup` into `vmbackup.dst` (no restic repository);
    /// generations kept by `retention.keepHourly/keepDaily/keepWeekly/keepMonthly`.
    Victoriametrics,
}

/// Vault/OpenBao settings (`dbType: vault`). The token comes from `credentials.secretName`
/// (key `credentials.passwordKey`, default `token`); a pod target uses the container's
/// `VAULT_ADDR`/`BAO_ADDR`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultSpec {
    /// CA certificate (PEM) path where the CLI runs (the operator's pod for host targets, the
    /// server's container for pod targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// VictoriaMetrics settings (`dbType: victoriametrics`). The tools run in the target pod's
/// container (vmbackup must be in its image, e.g. the `vmutils` sidecar), or in the operator's
/// pod for a host target (which must then see the storage directory).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmBackupSpec {
    /// The server's `-storageDataPath` where the tools run.
    #[schemars(length(min = 1))]
    pub storage_data_path: String,
    /// The destination: `fs:///DIR`, `s3://BUCKET/PREFIX`, `gs://…` or `azblob://…`.
    #[schemars(length(min = 1))]
    pub dst: String,
    /// The HTTP address as seen where the tools run (default `http://127.0.0.1:8428` for pod
    /// targets; a host target's `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// vmbackup's `-credsFilePath` where it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    /// vmbackup's `-customS3Endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// A Secret (keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) the operator lists and
    /// deletes `s3://` generations with, for retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_credentials_secret: Option<String>,
}

/// A server reached over TCP from the operator's pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostTargetSpec {
    /// Host name or address, e.g. `pg.db.svc`; for `vault` and `victoriametrics` the API URL,
    /// e.g. `https://vault.vault.svc:8200`.
    #[schemars(length(min = 1))]
    pub address: String,
    /// Port (default: the database type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// A server inside a pod, reached with `exec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTargetSpec {
    /// The pod's name, in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The container (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// Where the database is: exactly one of `host`, `pod`, `statefulSet`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseTarget {
    /// Over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostTargetSpec>,
    /// In a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodTargetSpec>,
    /// In the StatefulSet's pod `<name>-0` (`name` is the StatefulSet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set: Option<PodTargetSpec>,
}

/// How hasteward logs in. Pod targets may omit this and use the container's own access
/// (local socket, the image's environment).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandaloneCredentials {
    /// Database user (default: `postgres`, `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A Secret in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The Secret's key holding the password (default `password`; `token` for `vault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// An inline schedule, for databases without a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// 5-field cron or `@daily`-style alias.
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub backup: String,
    /// IANA timezone (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `dbType: vault` only: when to triage (seal status, raft peers, autopilot); a verdict
    /// change becomes an Event. Default: the policy's `triageSchedule`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub triage: Option<String>,
    /// Seconds of fixed per-database delay spread (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub jitter_seconds: Option<u32>,
}

/// A database no operator manages, backed up on a schedule.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "clinic.hasteward.prplanit.com",
    version = "v1alpha1",
    kind = "StandaloneDatabase",
    namespaced,
    shortname = "sdb",
    category = "hasteward",
    status = "StandaloneDatabaseStatus",
    doc = "A database no operator manages (a pod, a StatefulSet or a host), backed up on a schedule.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.dbType"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.lastBackup"),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.lastBackupResult"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextBackup",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StandaloneDatabaseSpec {
    /// The server's kind.
    pub db_type: StandaloneDbType,
    /// Where it is.
    pub target: DatabaseTarget,
    /// How to log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<StandaloneCredentials>,
    /// A `BackupPolicy` name; `schedule`, `retention` and `repositories` here override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Inline schedule (instead of, or overriding, the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Retention (overrides the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// `BackupRepository` names (override the policy's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Stop scheduling without deleting the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Scheduled restore drills (override the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
    /// Vault/OpenBao settings (`dbType: vault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultSpec>,
    /// VictoriaMetrics settings (`dbType: victoriametrics`; required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmbackup: Option<VmBackupSpec>,
}

/// What the operator last did for the database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandaloneDatabaseStatus {
    /// `Ready` (valid and scheduled) and `LastBackupSucceeded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the last backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// `success` or `failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_result: Option<String>,
    /// When the last successful backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// Seconds the last backup took (all repositories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_duration_seconds: Option<f64>,
    /// The snapshot ids of the last successful backup, per repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_snapshots: Vec<String>,
    /// When the next backup is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<String>,
    /// When the last triage ended (`dbType: vault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_triage: Option<String>,
    /// `healthy`, `unhealthy`, `undeterminable` (`dbType: vault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_triage_result: Option<String>,
    /// When the last restore drill ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<String>,
    /// `success` or `failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_result: Option<String>,
    /// The last successful drill's restore time (the recovery time), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_restore_seconds: Option<f64>,
}
