//! What the collector hands over for a Galera cluster: the `MariaDB` CR's view, and per node its
//! pod, volume and the raw outputs of a few commands. Raw text stays raw ([`Observed`]); it is
//! parsed in this crate so the parsers can be tested against captured outputs.

use serde::Serialize;

use crate::{Observed, PodView, VolumeState};

/// Everything read from one Galera cluster. Serialized in full as the report's `facts.input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraInput {
    /// The `MariaDB` custom resource.
    pub cluster: ClusterView,
    /// One entry per expected node (`<cluster>-0` … `<cluster>-(replicas-1)`), in any order.
    pub nodes: Vec<NodeInput>,
}

/// The `MariaDB` custom resource, as far as triage needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.conditions` (`Ready`, `GaleraReady`, …).
    pub conditions: Vec<Condition>,
    /// `spec.suspend`: the operator does not reconcile (and so does not recover) the cluster.
    pub suspended: bool,
    /// `status.galeraRecovery` verbatim. The operator's snapshot of what it last saw, so only
    /// ever a hint: stale snapshots once produced phantom split brains.
    pub galera_recovery: Option<serde_json::Value>,
}

impl ClusterView {
    /// The condition of this type, if the CR has one.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// One entry of `status.conditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `type` (`Ready`, `GaleraReady`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `reason`.
    pub reason: String,
    /// `message`.
    pub message: String,
}

/// One Galera node (pod `<cluster>-N`, data volume `storage-<cluster>-N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInput {
    /// Pod name, e.g. `mariadb-galera-1`.
    pub name: String,
    /// The pod; `None` when there is none.
    pub pod: Option<PodView>,
    /// The data volume (`storage-<pod>`).
    pub volume: VolumeState,
    /// `cat /var/lib/mysql/grastate.dat` ([`super::GRASTATE_COMMAND`]), from the pod or from a
    /// read-only probe that mounts the volume.
    pub grastate: Observed,
    /// Output of [`super::WSREP_STATUS_SQL`] run with `mariadb --batch --skip-column-names`.
    pub wsrep: Observed,
    /// The error-log text written by `mariadbd --wsrep-recover` (it contains
    /// `WSREP: Recovered position: <uuid>:<seqno>`). `NotAttempted` unless the user allowed it
    /// (`--recover-positions`): it needs the node stopped.
    pub recovered: Observed,
    /// Tail of the `mariadb` container log. Scraped only as a hint, and for disk-full messages.
    pub log_hint: Option<String>,
    /// `df -kP /var/lib/mysql` ([`super::DF_COMMAND`]).
    pub df: Observed,
}
