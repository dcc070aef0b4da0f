//! What the collector hands over: the Cluster's status and, per instance, the raw text of every
//! command it ran. Nothing is parsed or defaulted here; a command that did not run says why.

use serde::Serialize;

use crate::{Observed, PodView, VolumeState};

/// Everything collected about one CloudNativePG cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgInput {
    /// The `Cluster` resource, as far as triage needs it.
    pub cluster: ClusterView,
    /// One entry per instance the collector looked at (normally `status.instanceNames`).
    pub instances: Vec<InstanceInput>,
    /// The queries run on the live primary; `None` when no primary could be queried.
    pub primary: Option<PrimaryQueries>,
}

/// The `Cluster` resource's spec and status fields triage uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `status.phase`, e.g. `Cluster in healthy state`.
    pub phase: Option<String>,
    /// `spec.instances`.
    pub instances: u32,
    /// `status.readyInstances`.
    pub ready_instances: Option<u32>,
    /// `status.currentPrimary`.
    pub current_primary: Option<String>,
    /// `status.targetPrimary` (differs from the current one during a switchover or failover).
    pub target_primary: Option<String>,
    /// `status.instanceNames`: the instances that should exist.
    pub instance_names: Vec<String>,
    /// The `cnpg.io/fencedInstances` annotation, parsed (`*` means every instance).
    pub fenced: Vec<String>,
}

/// What was observed of one instance. Each [`Observed`] holds the raw output of the command named
/// in its doc (see [`super::commands`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInput {
    /// Instance (pod and PVC) name, e.g. `pg-2`.
    pub name: String,
    /// The pod; `None` when there is no pod.
    pub pod: Option<PodView>,
    /// The data volume (PVC).
    pub volume: VolumeState,
    /// [`super::CONTROLDATA_SCRIPT`]: `pg_controldata` of the data directory.
    pub controldata: Observed,
    /// [`super::history_script`] for the timeline `controldata` reported: the current timeline's
    /// history file. Ignored on timeline 1, which has none.
    pub history: Observed,
    /// [`super::DF_SCRIPT`]: `df -kP` of the data directory.
    pub df: Observed,
    /// Size of `pg_wal` in bytes, when measured.
    pub wal_bytes: Option<u64>,
    /// The tail of the `postgres` container's log, when the pod is crash-looping.
    pub crash_log: Option<String>,
    /// [`super::IN_RECOVERY_SQL`]: `t` on a replica, `f` on a primary.
    pub in_recovery: Observed,
    /// [`super::RECEIVE_SQL`], run on replicas: the WAL receiver's view.
    pub receive_lsn: Observed,
}

/// The queries run on the live primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryQueries {
    /// The instance they ran on (normally `status.currentPrimary`); its live WAL position comes
    /// from `wal`.
    pub instance: String,
    /// [`super::STAT_REPLICATION_SQL`].
    pub stat_replication: Observed,
    /// [`super::SLOTS_SQL`].
    pub slots: Observed,
    /// [`super::WAL_SQL`].
    pub wal: Observed,
}
