//! Types shared by the resources: secret references, retention, conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in a given namespace (cluster-scoped resources must name it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Secret namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A whole Secret in a given namespace: every key becomes an environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Secret namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
}

/// Which snapshots to keep after each backup (restic `forget`); restic keeps the union.
///
/// Every number has a maximum in the schema: a value the API server accepted but the operator
/// could not read would stop the watch of the whole kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_last: Option<u32>,
    /// Keep the newest per hour, for N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest per day, for N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_daily: Option<u32>,
    /// Keep the newest per week, for N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest per month, for N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest per year, for N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this, relative to the newest snapshot (`30d`, `1y6m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[ymdh])+$"))]
    pub keep_within: Option<String>,
}

impl Retention {
    /// True when no rule is set: retention is then not applied at all.
    pub fn is_empty(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .all(|n| n.unwrap_or(0) == 0)
            && self.keep_within.as_deref().unwrap_or("").is_empty()
    }
}

/// The status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// It holds.
    True,
    /// It does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// A status condition, shaped like `metav1.Condition` so `kubectl wait --for=condition=Ready`
/// and generic tooling read it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase reason.
    pub reason: String,
    /// What happened, for humans.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition type: the resource is valid and scheduled.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the last scheduled backup succeeded.
pub const CONDITION_LAST_BACKUP: &str = "LastBackupSucceeded";

/// A scheduled restore drill: the database's latest backup in its first repository restored
/// into a temporary pod running the database's image, then checked (every database has tables
/// and rows, every assertion holds). PostgreSQL, MariaDB and MySQL.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// 5-field cron.
    #[schemars(regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$"))]
    pub schedule: String,
    /// IANA timezone of the schedule (default: the policy's, else UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// SQL that must return true in the restored copy, e.g. `SELECT count(*) > 0 FROM orders`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assert_sql: Vec<String>,
    /// The database the assertions run in (default: the first restored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert_database: Option<String>,
    /// The drill pod's image (default: a CNPG cluster's `spec.imageName`, a MariaDB CR's
    /// `spec.image`, a pod target's own image; required for a host target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The uid the drill server runs as (default: 26 for CNPG, else 999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: Option<u32>,
}
