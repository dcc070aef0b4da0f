//! CloudNativePG: dump from and restore into `status.currentPrimary` (container `postgres`,
//! local connections as `postgres`, so no password is needed), with the replicas fenced for
//! the restore.
//!
//! # Guarantees
//! - The primary must be Running with its `postgres` container Ready; otherwise nothing runs.
//! - Replicas are fenced through `cnpg.io/fencedInstances` without touching fences that were
//!   already there, and only the fences this run added are removed afterwards — after a
//!   successful restore, a failed one, or a cancelled one. If removing them fails, the run
//!   fails and says which instances are still fenced.
//! - A primary that is itself fenced (or `*`) is refused: the restore could not run.

use hasteward_k8s::fencing::{self, Fences};
use hasteward_k8s::{require_ready, CnpgCluster, Kube, PodRunner};
use hasteward_model::{DbType, SnapshotLabels};
use hasteward_restic::Restic;
use serde::Serialize;

use super::{PodAuth, PodDatabase};
use crate::flows::{self, RestoreOptions, RestoreResult, SnapshotSelector, StreamSettings};
use crate::{Error, Result};

/// The container CNPG runs PostgreSQL in.
pub const CONTAINER: &str = "postgres";
/// The superuser CNPG's local connections use.
pub const SUPERUSER: &str = "postgres";

/// A CNPG cluster resolved to its primary.
#[derive(Debug)]
pub struct CnpgTarget {
    /// The cluster as read.
    pub cluster: CnpgCluster,
    /// The primary's pod name.
    pub primary: String,
    /// The primary as a flow target.
    pub database: PodDatabase<PodRunner>,
}

impl CnpgTarget {
    /// Instances other than the primary.
    pub fn replicas(&self) -> Vec<String> {
        self.cluster
            .instance_names
            .iter()
            .filter(|n| **n != self.primary)
            .cloned()
            .collect()
    }
}

/// Reads the cluster and checks its primary.
pub async fn resolve(kube: &Kube, namespace: &str, name: &str) -> Result<CnpgTarget> {
    let cluster = kube.cnpg_cluster(namespace, name).await?;
    let primary =
        cluster
            .current_primary
            .clone()
            .ok_or_else(|| hasteward_k8s::Error::Resource {
                kind: "Cluster".into(),
                namespace: namespace.into(),
                name: name.into(),
                detail: "has no status.currentPrimary yet (is the cluster initialised?)".into(),
            })?;
    let pod = kube.pod(namespace, &primary).await?;
    require_ready(&pod, CONTAINER)?;
    let runner = PodRunner::new(kube, namespace, &primary, CONTAINER);
    let location = runner.location();
    Ok(CnpgTarget {
        database: PodDatabase::new(
            runner,
            location,
            DbType::Postgres,
            SUPERUSER,
            PodAuth::Container,
        ),
        cluster,
        primary,
    })
}

/// A CNPG restore's result: the flow's, plus the fencing done around it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgRestoreResult {
    /// The restore itself.
    #[serde(flatten)]
    pub restore: RestoreResult,
    /// The primary restored into.
    pub primary: String,
    /// Replicas fenced for the restore (and unfenced after).
    pub fenced: Vec<String>,
    /// Fences that were there before and were left alone.
    pub preexisting_fences: Vec<String>,
}

/// Restores into the primary with the replicas fenced.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    kube: &Kube,
    restic: &Restic,
    target: &CnpgTarget,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    options: &RestoreOptions,
    settings: &StreamSettings,
) -> Result<CnpgRestoreResult> {
    let existing = fencing::parse(
        target
            .cluster
            .annotations
            .get(fencing::FENCED_INSTANCES)
            .map(String::as_str),
    )
    .map_err(|detail| Error::Refused(format!("Cluster {}: {detail}", target.cluster.name)))?;
    if fencing::is_fenced(&existing, &target.primary) {
        return Err(Error::Refused(format!(
            "the primary {} of Cluster {}/{} is fenced ({} = {:?}); unfence it before restoring",
            target.primary,
            target.cluster.namespace,
            target.cluster.name,
            fencing::FENCED_INSTANCES,
            existing
        )));
    }
    // Pick the snapshot before fencing anything, so a bad selector changes nothing.
    flows::select_snapshot(restic, labels, selector).await?;
    let fences = fencing::fence(
        kube,
        &target.cluster.namespace,
        &target.cluster.name,
        &target.replicas(),
    )
    .await?;
    let result = flows::restore(
        restic,
        &target.database,
        labels,
        selector,
        options,
        settings,
    )
    .await;
    let unfenced = fencing::unfence(kube, &fences).await;
    finish(result, unfenced, &fences, target)
}

fn finish(
    result: Result<RestoreResult>,
    unfenced: hasteward_k8s::Result<()>,
    fences: &Fences,
    target: &CnpgTarget,
) -> Result<CnpgRestoreResult> {
    match (result, unfenced) {
        (Ok(restore), Ok(())) => Ok(CnpgRestoreResult {
            restore,
            primary: target.primary.clone(),
            fenced: fences.added.clone(),
            preexisting_fences: fences.preexisting.clone(),
        }),
        (Ok(_), Err(e)) => Err(Error::Refused(format!(
            "the restore succeeded, but the fences hasteward added could not be removed ({e}); instances {:?} of Cluster {}/{} are still fenced: remove them from {}",
            fences.added, target.cluster.namespace, target.cluster.name, fencing::FENCED_INSTANCES
        ))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(u)) => {
            tracing::error!(
                "could not remove fences {:?} after a failed restore: {u}",
                fences.added
            );
            Err(e)
        }
    }
}
