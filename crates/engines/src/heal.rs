//! Executes an approved repair plan ([`hasteward_triage::plan::RepairPlan`]): escrow backups
//! first (a failed one stops everything), then each target's remediation through the fenced
//! primitives of [`crate::repair`].
//!
//! The CLI's `repair` and the operator's unattended repair run this same code, so both keep the
//! same order and gates; they differ only in how progress is shown ([`Progress`]). The caller
//! holds the cluster's Lease for the whole run: every step checks it is still held.

use std::future::Future;
use std::time::Duration;

use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::LeaseGuard;
use hasteward_k8s::{Kube, PodRunner};
use hasteward_model::{DbType, Engine, SnapshotKind, SnapshotLabels};
use hasteward_restic::Restic;
use hasteward_triage::plan::{EscrowStep, Remediation, RepairPlan};
use hasteward_triage::Report;

use crate::flows::StreamSettings;
use crate::pod::{PodAuth, PodDatabase};
use crate::repair::{
    cnpg_prune_wal, cnpg_reseed, galera_bootstrap, galera_reseed, CnpgPruneWal, CnpgReseed, Escrow,
    GaleraBootstrap, GaleraReseed,
};
use crate::target::Target;
use crate::{Error, Result};

/// A replicated engine a plan can be executed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEngine {
    /// CloudNativePG.
    Cnpg,
    /// MariaDB Operator with Galera.
    Galera,
}

impl ClusterEngine {
    /// The database container of the engine's pods.
    pub fn container(self) -> &'static str {
        match self {
            Self::Cnpg => "postgres",
            Self::Galera => "mariadb",
        }
    }
}

/// Where and how a plan runs.
pub struct PlanContext<'a> {
    /// The API client.
    pub kube: &'a Kube,
    /// The cluster's engine.
    pub engine: ClusterEngine,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub cluster: &'a str,
    /// How long each wait for a healed instance may take.
    pub heal_timeout: Duration,
    /// `--force` was given (a WAL relief's gates).
    pub force: bool,
    /// The escrow repository (`None` only when the plan has no escrow).
    pub restic: Option<&'a Restic>,
    /// Stream settings for the escrow backups.
    pub stream: &'a StreamSettings,
    /// The cluster's Lease, held by the caller.
    pub lease: &'a LeaseGuard,
}

/// How a run shows what it does.
pub trait Progress: Send {
    /// A step began.
    fn started(&mut self, step: &str);
    /// A step ended (`error`: how it failed).
    fn ended(&mut self, step: &str, error: Option<&str>);
    /// A line for people (an escrow saved, a helper's log).
    fn said(&mut self, text: &str);
    /// Something left in place on purpose, or worth a second look.
    fn warned(&mut self, text: String);
}

/// Runs `work` between [`Progress::started`] and [`Progress::ended`].
async fn step<T, E: Into<Error>>(
    progress: &mut dyn Progress,
    name: &str,
    work: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    progress.started(name);
    let result = work.await.map_err(Into::into);
    progress.ended(
        name,
        result.as_ref().err().map(ToString::to_string).as_deref(),
    );
    result
}

/// Stops when the lease was lost (a renewal failed: another run may have taken over).
fn still_ours(lease: &LeaseGuard) -> Result<()> {
    if lease.lost() {
        return Err(Error::RepairFailed(
            "the cluster lease could not be renewed (another run may have taken it over): stopping before the next step".into(),
        ));
    }
    Ok(())
}

/// Executes an approved plan (no refusals) under the caller's lease: escrow backups first (a
/// failed one stops everything), then each target. `report` is the triage the plan was made
/// from.
pub async fn execute(
    cx: &PlanContext<'_>,
    plan: &RepairPlan,
    report: &Report,
    progress: &mut dyn Progress,
    cancel: &CancellationToken,
) -> Result<()> {
    if !plan.refusals.is_empty() {
        return Err(Error::RepairFailed(format!(
            "the plan was refused ({}): nothing is executed",
            plan.refusals[0].message
        )));
    }
    if !plan.escrow.is_empty() && cx.restic.is_none() {
        return Err(Error::RepairFailed(
            "the plan takes escrow backups but no repository was given for them".into(),
        ));
    }
    if let Some(restic) = cx.restic {
        // Data-directory captures run inside the bootstrap, once every pod is gone.
        for e in plan.escrow.iter().filter(|e| e.method == "dump") {
            still_ours(cx.lease)?;
            escrow(cx, restic, e, progress).await?;
        }
    }
    let timeout = cx.heal_timeout;
    for t in &plan.targets {
        still_ours(cx.lease)?;
        if cancel.is_cancelled() {
            return Err(Error::RepairCancelled(
                "cancelled before every step ran; the steps done so far are complete".into(),
            ));
        }
        let (name, done) = match t.remediation {
            Remediation::Restart => {
                let old = step(
                    progress,
                    "pod.delete",
                    cx.kube.delete_pod(cx.namespace, &t.instance),
                )
                .await?;
                let wait = cx.kube.wait_pod_ready(
                    cx.namespace,
                    &t.instance,
                    cx.engine.container(),
                    old.as_deref(),
                    timeout,
                );
                tokio::select! {
                    r = step(progress, "wait.ready", wait) => r?,
                    _ = cancel.cancelled() => return Err(Error::RepairCancelled(format!(
                        "cancelled while waiting for {} to be Ready", t.instance))),
                };
                continue;
            }
            Remediation::Reseed if cx.engine == ClusterEngine::Galera => {
                let reseed = GaleraReseed {
                    namespace: cx.namespace.to_string(),
                    cluster: cx.cluster.to_string(),
                    node: t.instance.clone(),
                    timeout,
                };
                let done =
                    step(progress, "reseed", galera_reseed(cx.kube, &reseed, cancel)).await?;
                ("reseed", done)
            }
            Remediation::Reseed => {
                let reseed = CnpgReseed {
                    namespace: cx.namespace.to_string(),
                    cluster: cx.cluster.to_string(),
                    instance: t.instance.clone(),
                    timeout,
                };
                let done = step(progress, "reseed", cnpg_reseed(cx.kube, &reseed, cancel)).await?;
                ("reseed", done)
            }
            Remediation::PruneWal => {
                let relief = CnpgPruneWal {
                    namespace: cx.namespace.to_string(),
                    cluster: cx.cluster.to_string(),
                    instance: t.instance.clone(),
                    keep_fenced: t.keep_fenced,
                    force: cx.force,
                    timeout,
                };
                let done = step(
                    progress,
                    "prune-wal",
                    cnpg_prune_wal(cx.kube, &relief, cancel),
                )
                .await?;
                ("prune-wal", done)
            }
            Remediation::Bootstrap => {
                let bootstrap = GaleraBootstrap {
                    namespace: cx.namespace.to_string(),
                    cluster: cx.cluster.to_string(),
                    node: t.instance.clone(),
                    nodes: report.instances.iter().map(|i| i.name.clone()).collect(),
                    captures: plan
                        .escrow
                        .iter()
                        .filter(|e| e.method == "datadir")
                        .map(|e| e.instance.clone())
                        .collect(),
                    timeout,
                };
                let escrow = cx.restic.map(|restic| Escrow {
                    restic,
                    settings: cx.stream,
                    job: plan
                        .escrow
                        .first()
                        .map(|e| e.job.clone())
                        .unwrap_or_default(),
                });
                let done = step(
                    progress,
                    "bootstrap",
                    galera_bootstrap(cx.kube, &bootstrap, escrow.as_ref(), cancel),
                )
                .await?;
                ("bootstrap", done)
            }
        };
        let (log, note) = done;
        progress.said(&format!("{}: {name}: {}", t.instance, log.trim()));
        if !note.is_empty() {
            progress.warned(note);
        }
    }
    Ok(())
}

/// One escrow backup: the instance's dump (CNPG: `pg_dumpall` in its `postgres` container;
/// Galera: any Synced node, without the operator's accounts) streamed into restic through the
/// commit gate, as an `escrow` (the authority) or `diverged` snapshot named by the instance.
async fn escrow(
    cx: &PlanContext<'_>,
    restic: &Restic,
    e: &EscrowStep,
    progress: &mut dyn Progress,
) -> Result<()> {
    let kind = match e.kind.as_str() {
        "diverged" => SnapshotKind::Diverged,
        _ => SnapshotKind::Escrow,
    };
    let (engine, db_type, db) = match cx.engine {
        ClusterEngine::Galera => {
            let db = crate::pod::galera::resolve(cx.kube, cx.namespace, cx.cluster).await?;
            (Engine::Galera, DbType::Mariadb, db)
        }
        ClusterEngine::Cnpg => {
            let runner = PodRunner::new(cx.kube, cx.namespace, &e.instance, "postgres");
            let location = runner.location();
            let db = PodDatabase::new(
                runner,
                location,
                DbType::Postgres,
                "postgres",
                PodAuth::Container,
            );
            (Engine::Cnpg, DbType::Postgres, db)
        }
    };
    // A diverged side is named by its instance; the authority's escrow is the backup set's file.
    let file = match kind {
        SnapshotKind::Diverged => format!("{}.{}", e.instance, db_type.dump_file()),
        _ => db_type.dump_file().to_string(),
    };
    let labels = SnapshotLabels {
        engine,
        cluster: cx.cluster.to_string(),
        namespace: cx.namespace.to_string(),
        kind,
        db_type: Some(db_type),
        file,
        database: None,
        job: Some(e.job.clone()),
    };
    let result = step(
        progress,
        "escrow.backup",
        crate::flows::backup(restic, &db, &labels, cx.stream),
    )
    .await?;
    progress.said(&format!(
        "escrow: {} of {} saved as snapshot {} ({} bytes, sha256 {})",
        e.kind,
        db.location(),
        result.short_id,
        result.bytes,
        &result.sha256[..16.min(result.sha256.len())]
    ));
    Ok(())
}
