//! The fenced-operation primitive every repair runs through (both engines).
//!
//! A repair quiesces the operator (CNPG: fence the instance and turn reconciliation off;
//! mariadb-operator: `spec.suspend`), changes things (scales, orphans a StatefulSet, sets
//! markers, runs helper pods), and must put back **exactly what it changed** — on success, on
//! failure and on Ctrl-C. An [`Operation`] makes every such change and records it in a journal
//! *before* sending it (a change whose request failed is undone harmlessly), and
//! [`Operation::run`] undoes the journal in reverse order whatever happened, then says what it
//! put back and what it left in place on purpose.
//!
//! Settings the user made are never overwritten: a cluster whose reconciliation was already off,
//! or a `MariaDB` already suspended, is refused before anything is changed (the operation needs
//! the operator to act afterwards, and turning it back on would undo the user's decision); a
//! fence that was already there stays.
//!
//! The cluster Lease is taken by the caller before triage, so the plan is made and executed
//! under it.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use hasteward_exec::CancellationToken;
use hasteward_k8s::fencing::{self, Fences};
use hasteward_k8s::helper::{helper_pod, HelperSpec};
use hasteward_k8s::Kube;
use hasteward_k8s::{CnpgCluster, MariaDbCluster};
use k8s_openapi::api::apps::v1::StatefulSet;

use crate::{Error, Result};

/// The annotation that pauses CloudNativePG's reconciliation of a cluster.
pub const RECONCILIATION_LOOP: &str = "cnpg.io/reconciliationLoop";

/// When a fence this operation added stays in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepFence {
    /// Removed on every path.
    Never,
    /// Kept when the operation failed or was cancelled after its destructive step began (the
    /// data may be half written); removed otherwise.
    AfterDestructiveFailure,
    /// Kept on every path (the plan wants the instance fenced afterwards).
    Always,
}

/// One change, and how to undo it.
#[derive(Debug)]
enum Change {
    /// A fence request whose outcome is unknown (interrupted mid-request).
    FencePending {
        namespace: String,
        cluster: String,
        instance: String,
    },
    Fence {
        fences: Fences,
        keep: KeepFence,
    },
    ReconciliationOff {
        namespace: String,
        cluster: String,
    },
    Suspended {
        namespace: String,
        cluster: String,
    },
    Scaled {
        namespace: String,
        name: String,
        from: i32,
    },
    Orphaned {
        saved: Box<StatefulSet>,
        timeout: Duration,
    },
    /// Undone only on failure; on success the caller clears it once the cluster is up.
    ForceBootstrap {
        namespace: String,
        cluster: String,
    },
    /// Undone only on failure: a helper puts the saved `grastate.dat` back.
    Marker {
        restore: Box<HelperSpec>,
        what: String,
    },
    Helper {
        namespace: String,
        name: String,
    },
}

/// How the work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Succeeded,
    Failed,
    Cancelled,
}

/// A repair in progress: the changes it made, undone by [`Operation::run`].
pub struct Operation<'k> {
    kube: &'k Kube,
    cancel: CancellationToken,
    journal: Mutex<Vec<Change>>,
    destructive: Mutex<bool>,
}

impl<'k> Operation<'k> {
    /// A new operation; `cancel` (Ctrl-C, SIGTERM) stops the work at once and undoes it.
    pub fn new(kube: &'k Kube, cancel: CancellationToken) -> Self {
        Self {
            kube,
            cancel,
            journal: Mutex::new(Vec::new()),
            destructive: Mutex::new(false),
        }
    }

    fn record(&self, change: Change) {
        self.journal.lock().expect("journal").push(change);
    }

    /// Marks the start of the destructive step (fences with
    /// [`KeepFence::AfterDestructiveFailure`] stay if anything goes wrong from here).
    fn destructive_from_here(&self) {
        *self.destructive.lock().expect("destructive") = true;
    }

    /// Fences `instance` (other fences kept). Returns whether it was fenced already (by someone
    /// else; that fence stays whatever happens).
    pub async fn fence_cnpg_instance(
        &self,
        namespace: &str,
        cluster: &str,
        instance: &str,
        keep: KeepFence,
    ) -> Result<bool> {
        // Recorded first: if this request is interrupted, the undo says the fence may be there.
        let pending = || Change::FencePending {
            namespace: namespace.into(),
            cluster: cluster.into(),
            instance: instance.into(),
        };
        self.record(pending());
        let fenced = fencing::fence(
            self.kube,
            namespace,
            cluster,
            std::slice::from_ref(&instance.to_string()),
        )
        .await;
        let mut journal = self.journal.lock().expect("journal");
        journal.retain(|c| !matches!(c, Change::FencePending { instance: i, .. } if i == instance));
        let fences = match fenced {
            Ok(f) => f,
            // Rejected by the API (a definite answer): nothing was fenced.
            Err(e @ hasteward_k8s::Error::Api { .. }) => return Err(e.into()),
            Err(e) => {
                journal.push(pending());
                return Err(e.into());
            }
        };
        let already = fences.added.is_empty();
        journal.push(Change::Fence { fences, keep });
        Ok(already)
    }

    /// Turns CloudNativePG's reconciliation of `cluster` off. Refuses (nothing changed) when it
    /// is off already: someone else turned it off, and the operation needs it back on after.
    pub async fn disable_reconciliation(&self, cluster: &CnpgCluster) -> Result<()> {
        require_reconciliation_on(cluster)?;
        self.record(Change::ReconciliationOff {
            namespace: cluster.namespace.clone(),
            cluster: cluster.name.clone(),
        });
        self.kube
            .annotate_cnpg_cluster(
                &cluster.namespace,
                &cluster.name,
                RECONCILIATION_LOOP,
                Some("disabled"),
            )
            .await?;
        Ok(())
    }

    /// Suspends the `MariaDB` CR. Refuses (nothing changed) when it is suspended already by
    /// someone else: the operation needs mariadb-operator to act afterwards.
    pub async fn suspend_mariadb(&self, cr: &MariaDbCluster) -> Result<()> {
        if cr.suspended {
            return Err(Error::Refused(format!(
                "MariaDB {}/{} is suspended (spec.suspend: true) by someone else: the repair needs mariadb-operator to act afterwards and will not resume it for you. Resume it (`kubectl -n {} patch mariadb {} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'`) and run again",
                cr.namespace, cr.name, cr.namespace, cr.name
            )));
        }
        self.record(Change::Suspended {
            namespace: cr.namespace.clone(),
            cluster: cr.name.clone(),
        });
        self.kube
            .patch_mariadb(&cr.namespace, &cr.name, &suspend(true))
            .await?;
        Ok(())
    }

    /// Scales a StatefulSet; put back to its previous replicas afterwards.
    pub async fn scale(&self, namespace: &str, name: &str, replicas: i32) -> Result<()> {
        let before = self.kube.statefulset(namespace, name).await?;
        let from = before.spec.replicas.unwrap_or(1);
        self.record(Change::Scaled {
            namespace: namespace.into(),
            name: name.into(),
            from,
        });
        self.kube
            .scale_statefulset(namespace, name, replicas)
            .await?;
        Ok(())
    }

    /// Deletes a StatefulSet with `propagationPolicy: Orphan` (its pods keep running); it is
    /// recreated from `saved` afterwards.
    pub async fn orphan_statefulset(&self, saved: StatefulSet, timeout: Duration) -> Result<()> {
        let namespace = saved.metadata.namespace.clone().unwrap_or_default();
        let name = saved.metadata.name.clone().unwrap_or_default();
        self.record(Change::Orphaned {
            saved: Box::new(saved),
            timeout,
        });
        self.kube.orphan_statefulset(&namespace, &name).await?;
        wait_statefulset_gone(self.kube, &namespace, &name, timeout).await
    }

    /// Sets mariadb-operator's `forceClusterBootstrapInPod`; cleared if the operation fails.
    pub async fn force_bootstrap(&self, namespace: &str, cluster: &str, node: &str) -> Result<()> {
        self.record(Change::ForceBootstrap {
            namespace: namespace.into(),
            cluster: cluster.into(),
        });
        self.kube
            .patch_mariadb(namespace, cluster, &force_bootstrap(Some(node)))
            .await?;
        Ok(())
    }

    /// Records a marker written by a helper that `restore` (another helper) takes back if the
    /// operation fails. Call it before running the helper that writes the marker.
    pub fn marker(&self, what: String, restore: HelperSpec) {
        self.record(Change::Marker {
            restore: Box::new(restore),
            what,
        });
    }

    /// Runs a read-only helper pod to completion (deleted on every path, also when cancelled);
    /// its log on success, a failed repair with the log's tail otherwise.
    pub async fn helper(&self, spec: &HelperSpec, timeout: Duration, what: &str) -> Result<String> {
        self.run_helper(spec, timeout, what, false).await
    }

    /// [`Operation::helper`] for the helper that destroys data: once it exists, fences with
    /// [`KeepFence::AfterDestructiveFailure`] stay if anything goes wrong.
    pub async fn destructive_helper(
        &self,
        spec: &HelperSpec,
        timeout: Duration,
        what: &str,
    ) -> Result<String> {
        self.run_helper(spec, timeout, what, true).await
    }

    async fn run_helper(
        &self,
        spec: &HelperSpec,
        timeout: Duration,
        what: &str,
        destructive: bool,
    ) -> Result<String> {
        let pod = helper_pod(spec);
        let name = pod.metadata.name.clone().unwrap_or_default();
        // The journal entry stays after the helper is deleted below, so a delete that failed
        // there is retried when the operation ends.
        self.record(Change::Helper {
            namespace: spec.namespace.clone(),
            name: name.clone(),
        });
        // Set before the request: a create interrupted midway may have started the helper.
        if destructive {
            self.destructive_from_here();
        }
        if let Err(e) = self.kube.create_helper_pod(&pod).await {
            // Whether the helper exists decides whether anything destructive may have started.
            let never_existed = matches!(e, hasteward_k8s::Error::Api { .. })
                || matches!(
                    self.kube.pod(&spec.namespace, &name).await,
                    Err(hasteward_k8s::Error::NotFound { .. })
                );
            if destructive && never_existed {
                *self.destructive.lock().expect("destructive") = false;
            }
            return Err(e.into());
        }
        let outcome = self
            .kube
            .finish_helper_pod(&spec.namespace, &name, timeout)
            .await?;
        if !outcome.succeeded() {
            return Err(Error::RepairFailed(format!(
                "{what} ({}) ended {} (exit {:?}): {}",
                outcome.pod,
                outcome.phase,
                outcome.exit_code,
                tail(&outcome.log)
            )));
        }
        Ok(outcome.log)
    }

    /// Starts a helper pod that stays up (to be exec'd into) and waits until it is Running;
    /// returns its name. It is deleted when the operation ends, or earlier by the caller.
    pub async fn start_helper(&self, spec: &HelperSpec, timeout: Duration) -> Result<String> {
        let pod = helper_pod(spec);
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.record(Change::Helper {
            namespace: spec.namespace.clone(),
            name: name.clone(),
        });
        self.kube.create_helper_pod(&pod).await?;
        self.kube
            .wait_pod_running(&spec.namespace, &name, timeout)
            .await?;
        Ok(name)
    }

    /// Awaits `fut` unless the operation is cancelled first.
    pub async fn cancellable<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            r = fut => r,
            _ = self.cancel.cancelled() => Err(Error::RepairCancelled(format!("cancelled while {what}"))),
        }
    }

    /// Runs `work`, stopping it at once on cancellation, then undoes every recorded change in
    /// reverse order (what stays is said in the error or returned note). Errors from before any
    /// change are returned as they are (a refusal stays a refusal); after a change, a failure is
    /// a failed repair (exit 1).
    pub async fn run<T>(&self, work: impl Future<Output = Result<T>>) -> Result<(T, String)> {
        let result = self.cancellable("repairing", work).await;
        let ending = match &result {
            Ok(_) => Ending::Succeeded,
            Err(Error::RepairCancelled(_)) => Ending::Cancelled,
            Err(_) => Ending::Failed,
        };
        let changed = !self.journal.lock().expect("journal").is_empty();
        let destructive = *self.destructive.lock().expect("destructive");
        let (undo_errors, kept) = self.undo(ending).await;
        let mut note = kept.join("; ");
        if !undo_errors.is_empty() {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!(
                "putting back what this run changed failed: {}",
                undo_errors.join("; ")
            ));
        }
        match result {
            Ok(v) if undo_errors.is_empty() => Ok((v, note)),
            Ok(_) => Err(Error::RepairFailed(format!(
                "the repair's work succeeded, but {note}"
            ))),
            Err(e) if !changed => Err(e),
            // A gate checked midway (nothing destroyed, everything put back) is still a refusal.
            Err(Error::Refused(m)) if !destructive && undo_errors.is_empty() && note.is_empty() => {
                Err(Error::Refused(join(
                    &m,
                    "nothing was changed (what this run had changed is put back)",
                )))
            }
            Err(Error::RepairCancelled(m)) => Err(Error::RepairCancelled(join(&m, &note))),
            Err(e) => Err(Error::RepairFailed(join(&e.to_string(), &note))),
        }
    }

    /// Undoes the journal in reverse order. Returns the failures and the notes on what stays.
    /// Each undo is tried up to [`UNDO_ATTEMPTS`] times: a transient API error must not leave
    /// the operator switched off.
    async fn undo(&self, ending: Ending) -> (Vec<String>, Vec<String>) {
        let changes: Vec<Change> = std::mem::take(&mut *self.journal.lock().expect("journal"));
        let destructive = *self.destructive.lock().expect("destructive");
        let failed = ending != Ending::Succeeded;
        let mut errors = Vec::new();
        let mut kept = Vec::new();
        for change in changes.iter().rev() {
            let mut attempt = 1;
            loop {
                match self.undo_one(change, failed, destructive).await {
                    Ok(note) => {
                        kept.extend(note);
                        break;
                    }
                    Err(e) if attempt >= UNDO_ATTEMPTS => {
                        errors.push(e.to_string());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("putting back a change failed (attempt {attempt}): {e}");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        (errors, kept)
    }

    /// Undoes one change; a note when it stays on purpose.
    async fn undo_one(
        &self,
        change: &Change,
        failed: bool,
        destructive: bool,
    ) -> Result<Option<String>> {
        match change {
            Change::FencePending {
                namespace,
                cluster,
                instance,
            } => {
                return Ok(Some(format!(
                    "the request fencing {instance} was interrupted, so it may be fenced now: look at the cnpg.io/fencedInstances annotation of Cluster {namespace}/{cluster}"
                )))
            }
            Change::Helper { namespace, name } => {
                // Gone for good before the next undo touches the same volume.
                match self.kube.delete_pod(namespace, name).await {
                    Ok(uid) => {
                        self.kube
                            .wait_pod_gone(namespace, name, uid.as_deref(), HELPER_GONE_WAIT)
                            .await?
                    }
                    Err(hasteward_k8s::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Marker { restore, what } if failed => {
                self.helper(restore, restore.deadline, &format!("restoring {what}"))
                    .await?;
            }
            Change::Marker { .. } => {}
            Change::ForceBootstrap { namespace, cluster } if failed => {
                self.kube
                    .patch_mariadb(namespace, cluster, &force_bootstrap(None))
                    .await?
            }
            Change::ForceBootstrap { .. } => {}
            Change::Orphaned { saved, timeout } => {
                recreate_statefulset(self.kube, saved, *timeout).await?
            }
            Change::Scaled {
                namespace,
                name,
                from,
            } => {
                self.kube.scale_statefulset(namespace, name, *from).await?;
            }
            Change::Suspended { namespace, cluster } => {
                self.kube
                    .patch_mariadb(namespace, cluster, &suspend(false))
                    .await?
            }
            Change::ReconciliationOff { namespace, cluster } => {
                self.kube
                    .annotate_cnpg_cluster(namespace, cluster, RECONCILIATION_LOOP, None)
                    .await?
            }
            Change::Fence { fences, keep } => {
                let stays = match keep {
                    KeepFence::Never => false,
                    KeepFence::AfterDestructiveFailure => failed && destructive,
                    // The plan keeps it after the work; work that stopped before destroying
                    // anything puts the cluster back as it was.
                    KeepFence::Always => !failed || destructive,
                };
                if stays && !fences.added.is_empty() {
                    return Ok(Some(format!(
                        "{} stays fenced on purpose{}: lift it with `kubectl -n {} annotate cluster {} cnpg.io/fencedInstances-` (or remove just its name from the list) once it is dealt with",
                        fences.added.join(", "),
                        if failed && destructive { " (its data directory may be half written)" } else { "" },
                        fences.namespace,
                        fences.cluster
                    )));
                }
                fencing::unfence(self.kube, fences).await?;
            }
        }
        Ok(None)
    }
}

/// How long undoing a helper waits for its pod to be gone.
const HELPER_GONE_WAIT: Duration = Duration::from_secs(120);

/// How often putting back one change is tried.
const UNDO_ATTEMPTS: u32 = 3;

/// Refuses when CloudNativePG's reconciliation of `cluster` was turned off by someone else: a
/// repair needs the operator to recreate the pod afterwards, and turning it back on would undo
/// their decision.
pub fn require_reconciliation_on(cluster: &CnpgCluster) -> Result<()> {
    if cluster
        .annotations
        .get(RECONCILIATION_LOOP)
        .map(String::as_str)
        == Some("disabled")
    {
        return Err(Error::Refused(format!(
            "Cluster {}/{} has `{RECONCILIATION_LOOP}: disabled` set by someone else: the repair needs CloudNativePG to recreate the pod afterwards and will not override that. Remove the annotation (`kubectl -n {} annotate cluster {} {RECONCILIATION_LOOP}-`) and run again",
            cluster.namespace, cluster.name, cluster.namespace, cluster.name
        )));
    }
    Ok(())
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}; {b}")
    }
}

fn suspend(on: bool) -> serde_json::Value {
    serde_json::json!({"spec": {"suspend": on}})
}

/// The merge patch setting (or, with `None`, clearing) `forceClusterBootstrapInPod`.
pub fn force_bootstrap(node: Option<&str>) -> serde_json::Value {
    serde_json::json!({"spec": {"galera": {"recovery": {"forceClusterBootstrapInPod": node}}}})
}

/// The last lines of a helper's log, for an error message.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Waits (watching) until the StatefulSet is gone (its deletion may wait on a finalizer).
async fn wait_statefulset_gone(
    kube: &Kube,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    kube.wait_statefulset_gone(namespace, name, timeout)
        .await
        .map_err(|e| Error::RepairFailed(e.to_string()))
}

/// Recreates a StatefulSet from its saved copy unless it exists (not being deleted).
async fn recreate_statefulset(kube: &Kube, saved: &StatefulSet, timeout: Duration) -> Result<()> {
    let namespace = saved.metadata.namespace.clone().unwrap_or_default();
    let name = saved.metadata.name.clone().unwrap_or_default();
    match kube.statefulset(&namespace, &name).await {
        Ok(sts) if sts.metadata.deletion_timestamp.is_none() => Ok(()),
        Ok(_) => {
            wait_statefulset_gone(kube, &namespace, &name, timeout).await?;
            kube.recreate_statefulset(saved).await.map_err(Error::from)
        }
        Err(hasteward_k8s::Error::NotFound { .. }) => {
            kube.recreate_statefulset(saved).await.map_err(Error::from)
        }
        Err(e) => Err(Error::from(e)),
    }
}
