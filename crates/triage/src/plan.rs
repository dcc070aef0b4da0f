//! Repair plans: from a triage [`Report`] and what the user asked for to an ordered, serializable
//! [`RepairPlan`], checked against the safety gates. Pure: the plan is what `--dry-run` prints,
//! and the only thing execution accepts.
//!
//! # Gates (see `docs/safety.md`)
//! | gate | refuses when | `--force` |
//! |---|---|---|
//! | `authority-unread` | an instance that may hold data could not be read | never |
//! | `authority-undeterminable` | the authority cannot be proven (incl. data ahead of the operator's primary) | never |
//! | `split-brain` | histories diverged | only with `--instance` naming a non-primary, after a `diverged` escrow of every readable instance |
//! | `target-is-authority` | the target holds the authoritative data | never |
//! | `target-unknown` | `--instance` names no instance of the cluster | never |
//! | `target-healthy` | the target is healthy | yes (restart only) |
//! | `nothing-to-heal` | no instance needs healing | – |
//! | `all-down` (Galera) | no Primary component: healing needs a running donor | never; use `--bootstrap` |
//! | `bootstrap-not-all-down` (Galera) | `--bootstrap` while a Primary component exists | never |
//! | `bootstrap-not-most-advanced` (Galera) | `--bootstrap NODE` is not the provable most advanced node (of its lineage, when lineages diverged) | never |
//! | `bootstrap-ambiguous` (Galera) | the stopped nodes belong to more than one lineage (cluster UUID) | yes: every node of the other lineages is captured (`tar` of its data directory) first |
//! | `wal-relief-cnpg-only` | `--prune-wal` on another engine | never |
//! | `wal-relief-target-running` | the `--prune-wal` instance runs (it recycles its own WAL) | never |
//! | `wal-relief-not-authority` | the `--prune-wal` instance is neither the primary nor the authority | only when the cluster is diverged (the instance then stays fenced) |
//! | `wal-relief-no-disk-pressure` | triage saw no full or nearly full volume on it | yes |
//!
//! WAL relief also has gates only the volume can answer, checked at execution before anything
//! is removed (`hasteward_triage::cnpg::walrelief`): `wal-relief-nothing-to-remove`,
//! `wal-relief-not-archived` and `wal-relief-replicas-behind` (the last two yield to `--force`).

use serde::Serialize;

use crate::{Authority, InstanceState, Report, Role, Verdict};

/// What the user asked `repair` to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairRequest {
    /// Heal only this instance (`--instance`); otherwise every instance that needs it.
    pub instance: Option<String>,
    /// Galera: bootstrap the cluster from this node after a total outage (`--bootstrap`).
    pub bootstrap: Option<String>,
    /// CNPG: remove the WAL before the last checkpoint from this instance's full volume
    /// (`--prune-wal`).
    pub prune_wal: Option<String>,
    /// Override the gates that allow it (`--force`).
    pub force: bool,
    /// Skip the escrow backup (`--no-escrow`; loud).
    pub no_escrow: bool,
    /// This run's id, tagged `job=` on its escrow snapshots so they can be found together.
    pub job: String,
}

/// What is done to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remediation {
    /// Delete the pod; the operator recreates it on the same volume. Nothing is destroyed.
    Restart,
    /// Replace the instance's data from the authority (CNPG: `pg_basebackup`; Galera: reset
    /// `grastate.dat`/gcache so it rejoins by IST/SST).
    Reseed,
    /// Galera: start a new Primary component from this node's data.
    Bootstrap,
    /// CNPG: remove the WAL segments before the last checkpoint's REDO point from a full volume
    /// whose server cannot start.
    PruneWal,
}

/// One instance the plan acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanTarget {
    /// Instance (pod) name.
    pub instance: String,
    /// Its real ordinal.
    pub ordinal: Option<u32>,
    /// What is done.
    pub remediation: Remediation,
    /// Why (from the triage).
    pub why: String,
    /// Whether the instance stays fenced afterwards on purpose.
    pub keep_fenced: bool,
}

/// A backup taken before anything destructive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowStep {
    /// `backup` (the authority's full dump) or `diverged` (a side of a split brain).
    pub kind: String,
    /// The instance dumped.
    pub instance: String,
    /// Why.
    pub why: String,
    /// The `job=` tag of the snapshot (the repair run's id).
    pub job: String,
    /// `dump` (the running server's dump) or `datadir` (a `tar` of the data directory from a
    /// helper pod, for a node whose server cannot run).
    pub method: String,
}

/// One ordered step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    /// Stable action code (`lease.acquire`, `pod.delete`, …).
    pub action: String,
    /// The resource touched (`Pod db/pg-3`, `Lease db/hasteward-pg`).
    pub resource: String,
    /// What and why, for people.
    pub detail: String,
    /// Whether it changes anything (a dry run shows these and sends none of them).
    pub mutating: bool,
    /// Whether it destroys data (only after a successful escrow).
    pub destructive: bool,
}

/// A gate that refused the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Gate name (see the module docs).
    pub gate: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Whether `--force` would override it.
    pub overridable: bool,
}

/// The plan: what `--dry-run` prints and execution runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairPlan {
    /// `cnpg` or `galera`.
    pub engine: String,
    /// Namespace.
    pub namespace: String,
    /// Cluster.
    pub cluster: String,
    /// The triage verdict the plan was made from.
    pub verdict: Verdict,
    /// The authoritative instance, when provable.
    pub authority: Option<String>,
    /// Instances acted on, in order.
    pub targets: Vec<PlanTarget>,
    /// Backups taken first.
    pub escrow: Vec<EscrowStep>,
    /// Ordered steps (empty when refused).
    pub steps: Vec<PlanStep>,
    /// Instances left alone, and why.
    pub skipped: Vec<String>,
    /// Gates that refused; the plan runs only when this is empty.
    pub refusals: Vec<Refusal>,
    /// Warnings (e.g. `--no-escrow`).
    pub warnings: Vec<String>,
}

impl RepairPlan {
    /// Whether the plan may be executed: no gate refused and there is something to do.
    pub fn executable(&self) -> bool {
        self.refusals.is_empty() && !self.targets.is_empty()
    }
}

/// Plans a repair of the cluster `report` describes.
pub fn plan(report: &Report, request: &RepairRequest) -> RepairPlan {
    let mut plan = RepairPlan {
        engine: report.engine.clone(),
        namespace: report.namespace.clone(),
        cluster: report.cluster.clone(),
        verdict: report.verdict,
        authority: match &report.authority {
            Authority::Provable { leader } => Some(leader.clone()),
            _ => None,
        },
        targets: Vec::new(),
        escrow: Vec::new(),
        steps: Vec::new(),
        skipped: Vec::new(),
        refusals: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(node) = &request.prune_wal {
        plan_prune_wal(report, node, request, &mut plan);
    } else if let Some(node) = &request.bootstrap {
        plan_bootstrap(report, node, request, &mut plan);
    } else {
        plan_heal(report, request, &mut plan);
    }
    if !plan.refusals.is_empty() {
        plan.targets.clear();
        plan.escrow.clear();
        return plan;
    }
    if plan.targets.is_empty() {
        return plan;
    }
    plan_escrow(report, request, &mut plan);
    plan.steps = match report.engine.as_str() {
        "galera" => galera_steps(&plan),
        _ => cnpg_steps(&plan),
    };
    plan
}

fn refuse(plan: &mut RepairPlan, gate: &str, message: String, overridable: bool) {
    plan.refusals.push(Refusal {
        gate: gate.into(),
        message,
        overridable,
    });
}

/// The instance holding the data the others are rebuilt from: the provable authority.
fn authority_gates(report: &Report, request: &RepairRequest, plan: &mut RepairPlan) -> bool {
    match &report.authority {
        Authority::Provable { .. } => true,
        Authority::Undeterminable { blockers } => {
            let unread = report
                .instances
                .iter()
                .any(|i| i.state == InstanceState::Unknown && i.position.starts_with("unread"));
            let (gate, what) = if unread {
                (
                    "authority-unread",
                    "an instance that may hold data could not be read",
                )
            } else {
                (
                    "authority-undeterminable",
                    "the authoritative instance cannot be proven",
                )
            };
            refuse(
                plan,
                gate,
                format!(
                    "{what} ({}); nothing is changed. Run triage again once every instance can be read; no flag overrides this",
                    blockers.join("; ")
                ),
                false,
            );
            false
        }
        Authority::LeaderNotPrimary { leader, primary } => {
            refuse(
                plan,
                "authority-undeterminable",
                format!(
                    "the data says {leader} is ahead, but the operator's primary is {primary}: healing around {primary} would discard {leader}'s writes. Promote deliberately first; no flag overrides this"
                ),
                false,
            );
            false
        }
        Authority::Diverged { reasons } => {
            let allowed = request.force
                && request.instance.is_some()
                && report.engine == "cnpg"
                && primary_of(report).is_some();
            if !allowed {
                refuse(
                    plan,
                    "split-brain",
                    format!(
                        "histories diverged ({}): choosing a side discards the other side's writes. Take escrow backups and decide; to rebuild one named replica from the current primary anyway, pass --instance NAME --force (every readable instance is captured as a `diverged` snapshot first)",
                        reasons.join("; ")
                    ),
                    true,
                );
            }
            allowed
        }
    }
}

/// The operator's primary (CNPG `status.currentPrimary`), else the instance that acts as one.
fn primary_of(report: &Report) -> Option<&str> {
    report.operator_primary.as_deref().or_else(|| {
        report
            .instances
            .iter()
            .find(|i| i.role == Role::Primary)
            .map(|i| i.name.as_str())
    })
}

fn remediation_for(state: InstanceState) -> Option<Remediation> {
    match state {
        InstanceState::NeedsRestart => Some(Remediation::Restart),
        InstanceState::NeedsReseed | InstanceState::Diverged => Some(Remediation::Reseed),
        _ => None,
    }
}

fn plan_heal(report: &Report, request: &RepairRequest, plan: &mut RepairPlan) {
    if report.engine == "galera" && no_primary_component(report) {
        refuse(
            plan,
            "all-down",
            "no Primary component is running: a node can only be healed from a running donor. Bootstrap the most advanced node instead (hasteward repair -e galera … --bootstrap NODE --dry-run)".into(),
            false,
        );
        return;
    }
    if !authority_gates(report, request, plan) {
        return;
    }
    let authority = plan
        .authority
        .clone()
        .or_else(|| primary_of(report).map(String::from));
    match &request.instance {
        Some(name) => {
            let Some(inst) = report.instances.iter().find(|i| &i.name == name) else {
                let known: Vec<&str> = report.instances.iter().map(|i| i.name.as_str()).collect();
                refuse(
                    plan,
                    "target-unknown",
                    format!(
                        "--instance {name} is not an instance of this cluster (instances: {})",
                        known.join(", ")
                    ),
                    false,
                );
                return;
            };
            let protected = Some(name) == authority.as_ref()
                || Some(name.as_str()) == primary_of(report)
                || (report.verdict != Verdict::Diverged && inst.role == Role::Primary);
            if protected {
                refuse(
                    plan,
                    "target-is-authority",
                    format!("{name} holds the authoritative data (the primary): it is never rebuilt or restarted by repair; no flag overrides this"),
                    false,
                );
                return;
            }
            let remediation = match (remediation_for(inst.state), report.verdict) {
                (_, Verdict::Diverged) => Some(Remediation::Reseed),
                (Some(r), _) => Some(r),
                (None, _) if request.force => Some(Remediation::Restart),
                (None, _) => None,
            };
            match remediation {
                Some(r) => plan.targets.push(target(inst, r)),
                None => refuse(
                    plan,
                    "target-healthy",
                    format!(
                        "{name} is {} and needs nothing; pass --force to restart it anyway",
                        state_word(inst.state)
                    ),
                    true,
                ),
            }
        }
        None => {
            for inst in &report.instances {
                if Some(&inst.name) == authority.as_ref() {
                    continue;
                }
                match remediation_for(inst.state) {
                    Some(r) => plan.targets.push(target(inst, r)),
                    None => plan
                        .skipped
                        .push(format!("{}: {}", inst.name, state_word(inst.state))),
                }
            }
            if plan.targets.is_empty() {
                plan.skipped.insert(0, "nothing needs healing".into());
            }
        }
    }
}

fn no_primary_component(report: &Report) -> bool {
    report
        .diagnoses
        .iter()
        .any(|d| d.code == "galera-no-primary-component" || d.code == "galera-all-down")
}

fn plan_bootstrap(report: &Report, node: &str, request: &RepairRequest, plan: &mut RepairPlan) {
    if report.engine != "galera" {
        refuse(
            plan,
            "bootstrap-not-all-down",
            "--bootstrap is for -e galera (a new Primary component after a total outage)".into(),
            false,
        );
        return;
    }
    if !no_primary_component(report) {
        refuse(
            plan,
            "bootstrap-not-all-down",
            "a Primary component is running: bootstrapping another would split the cluster. Heal the broken nodes instead (--instance NAME)".into(),
            false,
        );
        return;
    }
    match &report.authority {
        Authority::Provable { leader } if leader == node => {
            let inst = report.instances.iter().find(|i| i.name == node);
            plan.targets.push(PlanTarget {
                instance: node.to_string(),
                ordinal: inst.and_then(|i| i.ordinal),
                remediation: Remediation::Bootstrap,
                why: "the most advanced node: every committed transaction is on it".into(),
                keep_fenced: false,
            });
        }
        Authority::Provable { leader } => refuse(
            plan,
            "bootstrap-not-most-advanced",
            format!("{node} is not the most advanced node; {leader} is. Bootstrapping {node} would lose the transactions only {leader} has; no flag overrides this"),
            false,
        ),
        Authority::Diverged { reasons } => plan_lineage_bootstrap(report, node, request, reasons, plan),
        _ => refuse(
            plan,
            "authority-undeterminable",
            "the most advanced node cannot be proven: recover every position first (hasteward triage -e galera … --recover-positions)".into(),
            false,
        ),
    }
}

fn plan_prune_wal(report: &Report, node: &str, request: &RepairRequest, plan: &mut RepairPlan) {
    if report.engine != "cnpg" {
        refuse(
            plan,
            "wal-relief-cnpg-only",
            "--prune-wal is for -e cnpg (PostgreSQL WAL on a full volume)".into(),
            false,
        );
        return;
    }
    let Some(inst) = report.instances.iter().find(|i| i.name == node) else {
        let known: Vec<&str> = report.instances.iter().map(|i| i.name.as_str()).collect();
        refuse(
            plan,
            "target-unknown",
            format!(
                "--prune-wal {node} is not an instance of this cluster (instances: {})",
                known.join(", ")
            ),
            false,
        );
        return;
    };
    if matches!(inst.state, InstanceState::Healthy | InstanceState::Lagging) {
        refuse(
            plan,
            "wal-relief-target-running",
            format!("{node} is running: a running server recycles its own WAL at each checkpoint, and its files are not removed under it. If its volume is filling, look at replication slots and archiving (triage lists them) or grow the volume; no flag overrides this"),
            false,
        );
        return;
    }
    let is_primary = primary_of(report) == Some(node);
    let is_leader = match &report.authority {
        Authority::Provable { leader } | Authority::LeaderNotPrimary { leader, .. } => {
            leader == node
        }
        _ => false,
    };
    if !is_primary && !is_leader {
        let allowed = report.verdict == Verdict::Diverged && request.force;
        if !allowed {
            refuse(
                plan,
                "wal-relief-not-authority",
                format!("{node} is neither the primary nor the instance whose data counts: rebuild it from the primary instead (hasteward repair -e cnpg -c {} -n {} --instance {node} --dry-run). When the cluster is diverged, --force relieves it anyway and leaves it fenced", report.cluster, report.namespace),
                report.verdict == Verdict::Diverged,
            );
            return;
        }
    }
    let pressure = inst
        .disk_percent
        .is_some_and(|p| p >= crate::cnpg::DISK_LOW_PERCENT)
        || report.diagnoses.iter().any(|d| {
            (d.code == "cnpg-disk-full" || d.code == "cnpg-disk-low")
                && d.instance.as_deref() == Some(node)
        });
    if !pressure && !request.force {
        refuse(
            plan,
            "wal-relief-no-disk-pressure",
            format!("triage saw no full or nearly full volume on {node} (no disk-full crash in its log, no usage reading at or above {:.0}%): WAL relief would not be what keeps it down. Pass --force if you know its volume is full", crate::cnpg::DISK_LOW_PERCENT),
            true,
        );
        return;
    }
    let keep_fenced = !is_primary;
    if keep_fenced {
        plan.warnings.push(format!("{node} is not the operator's primary: it stays fenced afterwards, so CloudNativePG cannot rewind it onto the current primary. Decide which side to keep, then lift the fence"));
    }
    plan.targets.push(PlanTarget {
        instance: node.to_string(),
        ordinal: inst.ordinal,
        remediation: Remediation::PruneWal,
        why: "its volume is full and its server cannot start; the WAL before the last checkpoint is not needed for its recovery".into(),
        keep_fenced,
    });
}

/// A bootstrap when the stopped nodes hold more than one history (cluster UUID): only with
/// `--force`, only from the most advanced node of its own lineage, and only after a `tar` of
/// every other lineage's data directory (its own writes are lost once it rejoins by SST).
fn plan_lineage_bootstrap(
    report: &Report,
    node: &str,
    request: &RepairRequest,
    reasons: &[String],
    plan: &mut RepairPlan,
) {
    let unknown: Vec<&str> = report
        .instances
        .iter()
        .filter(|i| {
            !i.position.starts_with("no data") && (i.lineage.is_none() || i.seqno.is_none())
        })
        .map(|i| i.name.as_str())
        .collect();
    let Some(target) = report.instances.iter().find(|i| i.name == node) else {
        refuse(
            plan,
            "target-unknown",
            format!("--bootstrap {node} is not a node of this cluster"),
            false,
        );
        return;
    };
    if !unknown.is_empty() {
        refuse(
            plan,
            "authority-undeterminable",
            format!("the position of {} is not known: recover every position first (hasteward triage -e galera … --recover-positions)", unknown.join(", ")),
            false,
        );
        return;
    }
    let (Some(lineage), Some(seqno)) = (&target.lineage, target.seqno) else {
        return;
    };
    if let Some(better) = report
        .instances
        .iter()
        .filter(|i| i.lineage.as_ref() == Some(lineage))
        .find(|i| i.seqno.is_some_and(|s| s > seqno))
    {
        refuse(
            plan,
            "bootstrap-not-most-advanced",
            format!("{node} is not the most advanced node of its lineage ({}…); {} is. No flag overrides this", lineage.get(..8).unwrap_or(lineage), better.name),
            false,
        );
        return;
    }
    let others: Vec<&crate::InstanceAssessment> = report
        .instances
        .iter()
        .filter(|i| i.lineage.is_some() && i.lineage.as_ref() != Some(lineage))
        .collect();
    let names: Vec<&str> = others.iter().map(|i| i.name.as_str()).collect();
    if !request.force {
        refuse(
            plan,
            "bootstrap-ambiguous",
            format!(
                "the stopped nodes hold more than one history ({}): bootstrapping {node} rebuilds {} by SST and their own writes are lost. Decide which history to keep; to bootstrap {node}'s anyway, pass --force (the data directories of {} are archived into the repository first)",
                reasons.join("; "),
                names.join(", "),
                names.join(", ")
            ),
            true,
        );
        return;
    }
    plan.targets.push(PlanTarget {
        instance: node.to_string(),
        ordinal: target.ordinal,
        remediation: Remediation::Bootstrap,
        why: format!(
            "forced: the most advanced node of its lineage (seqno {seqno}); {} are rebuilt from it",
            names.join(", ")
        ),
        keep_fenced: false,
    });
    if request.no_escrow {
        plan.warnings.push(format!(
            "--no-escrow: the writes only {} hold are lost WITHOUT a copy",
            names.join(", ")
        ));
        return;
    }
    plan.warnings.push(format!("forced bootstrap across lineages: the writes only {} hold survive only in their `diverged` archives", names.join(", ")));
    for other in others {
        plan.escrow.push(EscrowStep {
            kind: "diverged".into(),
            instance: other.name.clone(),
            why: "another lineage's node: its data directory, archived before it is rebuilt by SST"
                .into(),
            job: request.job.clone(),
            method: "datadir".into(),
        });
    }
}

fn target(inst: &crate::InstanceAssessment, remediation: Remediation) -> PlanTarget {
    PlanTarget {
        instance: inst.name.clone(),
        ordinal: inst.ordinal,
        remediation,
        why: inst.advice.clone(),
        keep_fenced: false,
    }
}

fn state_word(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Healthy => "healthy",
        InstanceState::Lagging => "lagging (catching up by itself)",
        InstanceState::NeedsRestart => "in need of a restart",
        InstanceState::NeedsReseed => "in need of a reseed",
        InstanceState::Diverged => "diverged",
        InstanceState::Unknown => "unknown",
    }
}

fn plan_escrow(report: &Report, request: &RepairRequest, plan: &mut RepairPlan) {
    // WAL relief: the instance's server cannot start, so there is nothing to dump; it removes
    // only WAL its recovery does not need (the rest is gated at execution). A bootstrap plans
    // its own captures (no server runs to dump).
    if plan.targets.iter().all(|t| {
        matches!(
            t.remediation,
            Remediation::PruneWal | Remediation::Bootstrap
        )
    }) {
        return;
    }
    // A bootstrap destroys nothing (it starts from the most advanced data; the others catch up
    // from it) and there is no running server to dump then.
    let destructive = plan
        .targets
        .iter()
        .any(|t| t.remediation == Remediation::Reseed);
    if !destructive && report.verdict != Verdict::Diverged {
        // Restarts destroy nothing: no escrow needed (and no repository).
        return;
    }
    if request.no_escrow {
        if destructive {
            plan.warnings.push(
                "--no-escrow: data is destroyed WITHOUT a backup taken first; if the plan is wrong, it is gone".into(),
            );
        }
        return;
    }
    if let Some(source) = plan
        .authority
        .clone()
        .or_else(|| primary_of(report).map(String::from))
    {
        plan.escrow.push(EscrowStep {
            kind: "backup".into(),
            instance: source,
            why: "a full backup of the authoritative data before anything is changed".into(),
            job: request.job.clone(),
            method: "dump".into(),
        });
    }
    if report.verdict == Verdict::Diverged {
        for inst in &report.instances {
            let readable = !inst.position.starts_with("unread");
            if readable && plan.escrow.iter().all(|e| e.instance != inst.name) {
                plan.escrow.push(EscrowStep {
                    kind: "diverged".into(),
                    instance: inst.name.clone(),
                    why: "one side of the split brain, kept so its writes can be recovered".into(),
                    job: request.job.clone(),
                    method: "dump".into(),
                });
            }
        }
    }
}

fn step(
    action: &str,
    resource: String,
    detail: String,
    mutating: bool,
    destructive: bool,
) -> PlanStep {
    PlanStep {
        action: action.into(),
        resource,
        detail,
        mutating,
        destructive,
    }
}

fn escrow_steps(plan: &RepairPlan, ns: &str, db: &str) -> Vec<PlanStep> {
    plan.escrow
        .iter()
        .filter(|e| e.method == "dump")
        .map(|e| {
            step(
                "escrow.backup",
                format!("Pod {ns}/{}", e.instance),
                format!(
                    "{db} dump of {} streamed into restic as a `{}` snapshot; a failed escrow stops the repair before anything is touched",
                    e.instance, e.kind
                ),
                false,
                false,
            )
        })
        .collect()
}

/// Fence the instance, turn reconciliation off, delete its pod: what precedes every CNPG step
/// that works on an instance's volume.
fn cnpg_quiesce_steps(cr: &str, pod: &str, instance: &str) -> [PlanStep; 3] {
    [
        step("fence.add", cr.into(), format!("add {instance} to cnpg.io/fencedInstances (read-modify-write with resourceVersion; other fences kept)"), true, false),
        step("reconciliation.disable", cr.into(), "cnpg.io/reconciliationLoop: disabled, so the operator does not recreate the pod and race for the PVC".into(), true, false),
        step("pod.delete", pod.into(), format!("delete {instance} to free its PVC"), true, false),
    ]
}

fn reconciliation_enable_step(cr: &str) -> PlanStep {
    step(
        "reconciliation.enable",
        cr.into(),
        "remove cnpg.io/reconciliationLoop (on every path)".into(),
        true,
        false,
    )
}

fn cnpg_steps(plan: &RepairPlan) -> Vec<PlanStep> {
    let ns = &plan.namespace;
    let cluster = &plan.cluster;
    let lease = format!("Lease {ns}/hasteward-{cluster}");
    let mut steps = vec![step(
        "lease.acquire",
        lease.clone(),
        "one repair per cluster: taken (renewed while running) and released on every path".into(),
        true,
        false,
    )];
    steps.extend(escrow_steps(plan, ns, "pg_dumpall"));
    let primary = plan.authority.clone().unwrap_or_default();
    for t in &plan.targets {
        let pod = format!("Pod {ns}/{}", t.instance);
        match t.remediation {
            Remediation::Restart => {
                steps.push(step(
                    "pod.delete",
                    pod.clone(),
                    format!(
                        "delete {}; CNPG recreates it on the same PVC (nothing is destroyed)",
                        t.instance
                    ),
                    true,
                    false,
                ));
            }
            Remediation::PruneWal => {
                let cr = format!("Cluster {ns}/{cluster}");
                let pvc = format!("PersistentVolumeClaim {ns}/{}", t.instance);
                steps.extend(cnpg_quiesce_steps(&cr, &pod, &t.instance));
                steps.push(step("helper.run", pvc.clone(), "read-only helper pod on the volume: pg_controldata (the last checkpoint's REDO WAL file), the pg_wal and archive_status listings, free space".into(), true, false));
                steps.push(step("replicas.read", format!("Cluster {ns}/{cluster}"), "each Ready replica's pg_last_wal_replay_lsn(): a replica behind the REDO point still needs that WAL (refused unless --force)".into(), false, false));
                steps.push(step("helper.run", pvc, "helper pod on the volume: remove the whole WAL segments that sort before the REDO WAL file, and their archive status files; history, .partial and .backup files and everything from REDO on are kept. Segments not archived yet are refused unless --force".into(), true, true));
                steps.push(reconciliation_enable_step(&cr));
                if t.keep_fenced {
                    steps.push(step("fence.keep", cr, format!("{} stays fenced on purpose (not the operator's primary: CloudNativePG must not rewind it)", t.instance), false, false));
                    continue;
                }
                steps.push(step("fence.remove", cr, format!("remove {} from cnpg.io/fencedInstances (only the fence this run added; left in place, with a message, if the removal failed midway)", t.instance), true, false));
            }
            Remediation::Reseed | Remediation::Bootstrap => {
                let cr = format!("Cluster {ns}/{cluster}");
                steps.extend(cnpg_quiesce_steps(&cr, &pod, &t.instance));
                steps.push(step("helper.run", format!("PersistentVolumeClaim {ns}/{}", t.instance), format!("helper pod (cluster image, owner reference, unique name, deadline, pinned to the PVC's node): empty the data directory and pg_basebackup -R from the primary {primary}"), true, true));
                steps.push(reconciliation_enable_step(&cr));
                steps.push(step("fence.remove", cr, format!("remove {} from cnpg.io/fencedInstances (only the fence this run added; left in place, with a message, if the reseed failed)", t.instance), true, false));
            }
        }
        steps.push(step(
            "wait.ready",
            pod,
            format!(
                "wait (--heal-timeout) until {} is Ready and streaming",
                t.instance
            ),
            false,
            false,
        ));
    }
    steps.push(step(
        "lease.release",
        lease,
        "release the lease".into(),
        true,
        false,
    ));
    steps.push(step(
        "triage",
        format!("Cluster {ns}/{cluster}"),
        "triage again and report the result".into(),
        false,
        false,
    ));
    steps
}

fn galera_steps(plan: &RepairPlan) -> Vec<PlanStep> {
    let ns = &plan.namespace;
    let cluster = &plan.cluster;
    let lease = format!("Lease {ns}/hasteward-{cluster}");
    let cr = format!("MariaDB {ns}/{cluster}");
    let mut steps = vec![step(
        "lease.acquire",
        lease.clone(),
        "one repair per cluster: taken (renewed while running) and released on every path".into(),
        true,
        false,
    )];
    steps.extend(escrow_steps(plan, ns, "mariadb-dump"));
    let sts = format!("StatefulSet {ns}/{cluster}");
    let suspend = || {
        step("cr.suspend", cr.clone(), "spec.suspend: true, so mariadb-operator does not act meanwhile (resumed on every path; refused if someone else suspended it)".into(), true, false)
    };
    let resume = || {
        step(
            "cr.resume",
            cr.clone(),
            "spec.suspend: false".into(),
            true,
            false,
        )
    };
    for t in &plan.targets {
        let pvc = format!("PersistentVolumeClaim {ns}/storage-{}", t.instance);
        let wait = |what: &str| {
            step(
                "wait.ready",
                format!("Pod {ns}/{}", t.instance),
                format!("wait (--heal-timeout) until {what} Ready and Synced"),
                false,
                false,
            )
        };
        match t.remediation {
            Remediation::Restart => {
                steps.push(step(
                    "pod.delete",
                    format!("Pod {ns}/{}", t.instance),
                    format!("delete {}; the StatefulSet recreates it and it rejoins by IST/SST (nothing is destroyed)", t.instance),
                    true,
                    false,
                ));
                steps.push(wait(&format!("{} is", t.instance)));
            }
            Remediation::Reseed | Remediation::PruneWal => {
                steps.push(suspend());
                steps.push(step("statefulset.orphan", sts.clone(), "delete the StatefulSet with propagationPolicy Orphan: the other pods keep serving and nothing recreates this one (recreated from the saved copy on every path)".into(), true, false));
                steps.push(step(
                    "pod.delete",
                    format!("Pod {ns}/{}", t.instance),
                    format!("delete {} to free its volume", t.instance),
                    true,
                    false,
                ));
                steps.push(step("helper.run", pvc, format!("helper pod on the volume: keep grastate.dat as grastate.dat.pre-heal, reset it (seqno -1, safe_to_bootstrap 0) and move galera.cache aside, so {} rejoins by SST from a Synced node", t.instance), true, true));
                steps.push(step("statefulset.recreate", sts.clone(), "create the StatefulSet again from the saved copy: it adopts the running pods and recreates this one".into(), true, false));
                steps.push(resume());
                steps.push(wait(&format!("{} is", t.instance)));
            }
            Remediation::Bootstrap => {
                steps.push(suspend());
                steps.push(step("statefulset.scale", sts.clone(), "scale to 0 and wait until every pod is gone (the scale is restored on every path)".into(), true, false));
                for e in plan.escrow.iter().filter(|e| e.method == "datadir") {
                    steps.push(step("escrow.datadir", format!("PersistentVolumeClaim {ns}/storage-{}", e.instance), format!("helper pod mounting the volume read-only: `tar` of {}'s data directory streamed into restic as a `diverged` snapshot ({}.datadir.tar); a failed capture stops the bootstrap and puts everything back", e.instance, e.instance), true, false));
                }
                steps.push(step("helper.run", pvc, format!("on every node's volume: keep a copy of grastate.dat; safe_to_bootstrap: 1 on {}, 0 on the others (every copy written back if the bootstrap fails before the cluster starts)", t.instance), true, false));
                steps.push(step("cr.patch", cr.clone(), format!("spec.galera.recovery.forceClusterBootstrapInPod: {} (removed afterwards, on every path)", t.instance), true, false));
                steps.push(step(
                    "statefulset.scale",
                    sts.clone(),
                    "scale back to the original replicas".into(),
                    true,
                    false,
                ));
                steps.push(resume());
                steps.push(wait("every node is"));
                steps.push(step(
                    "cr.patch",
                    cr.clone(),
                    "remove spec.galera.recovery.forceClusterBootstrapInPod".into(),
                    true,
                    false,
                ));
            }
        }
    }
    steps.push(step(
        "lease.release",
        lease,
        "release the lease".into(),
        true,
        false,
    ));
    steps.push(step(
        "triage",
        cr,
        "triage again and report the result".into(),
        false,
        false,
    ));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Diagnosis, InstanceAssessment, Severity};

    fn inst(name: &str, role: Role, state: InstanceState) -> InstanceAssessment {
        InstanceAssessment {
            name: name.into(),
            ordinal: crate::ordinal_of(name),
            role,
            position: if state == InstanceState::Unknown {
                "unread: no pod".into()
            } else {
                "TL 1 0/3000000".into()
            },
            lag: None,
            disk_percent: None,
            state,
            advice: format!("{name} advice"),
            remedy: None,
            lineage: None,
            seqno: None,
        }
    }

    fn report(
        engine: &str,
        verdict: Verdict,
        authority: Authority,
        instances: Vec<InstanceAssessment>,
    ) -> Report {
        Report {
            engine: engine.into(),
            namespace: "db".into(),
            cluster: "pg".into(),
            verdict,
            safe_to_heal: matches!(authority, Authority::Provable { .. }),
            operator_primary: None,
            authority,
            instances,
            diagnoses: Vec::new(),
            next_command: None,
            facts: serde_json::Value::Null,
        }
    }

    fn provable(states: [InstanceState; 2]) -> Report {
        report(
            "cnpg",
            Verdict::Unhealthy,
            Authority::Provable {
                leader: "pg-1".into(),
            },
            vec![
                inst("pg-1", Role::Primary, InstanceState::Healthy),
                inst("pg-2", Role::Replica, states[0]),
                inst("pg-3", Role::Replica, states[1]),
            ],
        )
    }

    fn actions(plan: &RepairPlan) -> Vec<&str> {
        plan.steps.iter().map(|s| s.action.as_str()).collect()
    }

    #[test]
    fn untargeted_heal_plans_every_instance_that_needs_it_after_an_escrow() {
        let r = provable([InstanceState::NeedsReseed, InstanceState::NeedsRestart]);
        let p = plan(&r, &RepairRequest::default());
        assert!(p.executable(), "{p:?}");
        assert_eq!(p.targets.len(), 2);
        assert_eq!(p.targets[0].remediation, Remediation::Reseed);
        assert_eq!(p.targets[0].ordinal, Some(2));
        assert_eq!(p.targets[1].remediation, Remediation::Restart);
        assert_eq!(p.escrow.len(), 1);
        assert_eq!(p.escrow[0].instance, "pg-1");
        let a = actions(&p);
        assert_eq!(a.first(), Some(&"lease.acquire"));
        let escrow = a.iter().position(|x| *x == "escrow.backup").unwrap();
        let first_destructive = p.steps.iter().position(|s| s.destructive).unwrap();
        let first_mutation_after_lease =
            p.steps.iter().skip(1).position(|s| s.mutating).unwrap() + 1;
        assert!(
            escrow < first_destructive && escrow < first_mutation_after_lease,
            "{a:?}"
        );
        assert_eq!(a[a.len() - 2], "lease.release");
        // Fences are removed after the reseed; reconciliation re-enabled before.
        let fence_add = a.iter().position(|x| *x == "fence.add").unwrap();
        let fence_remove = a.iter().position(|x| *x == "fence.remove").unwrap();
        assert!(fence_add < fence_remove);
    }

    #[test]
    fn a_healthy_cluster_has_nothing_to_do() {
        let r = provable([InstanceState::Healthy, InstanceState::Lagging]);
        let p = plan(&r, &RepairRequest::default());
        assert!(!p.executable());
        assert!(p.refusals.is_empty());
        assert!(p.steps.is_empty());
        assert_eq!(p.skipped[0], "nothing needs healing");
    }

    #[test]
    fn the_authority_is_never_a_target_even_forced() {
        let r = provable([InstanceState::NeedsReseed, InstanceState::Healthy]);
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("pg-1".into()),
                force: true,
                ..Default::default()
            },
        );
        assert!(!p.executable());
        assert_eq!(p.refusals[0].gate, "target-is-authority");
        assert!(!p.refusals[0].overridable);
        assert!(p.steps.is_empty() && p.escrow.is_empty());
    }

    #[test]
    fn a_healthy_target_needs_force_and_then_only_restarts() {
        let r = provable([InstanceState::Healthy, InstanceState::Healthy]);
        let req = RepairRequest {
            instance: Some("pg-2".into()),
            ..Default::default()
        };
        let p = plan(&r, &req);
        assert_eq!(p.refusals[0].gate, "target-healthy");
        assert!(p.refusals[0].overridable);
        let p = plan(&r, &RepairRequest { force: true, ..req });
        assert!(p.executable());
        assert_eq!(p.targets[0].remediation, Remediation::Restart);
        assert!(p.steps.iter().all(|s| !s.destructive));
    }

    #[test]
    fn unknown_target_is_refused() {
        let r = provable([InstanceState::NeedsReseed, InstanceState::Healthy]);
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("pg-9".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "target-unknown");
    }

    #[test]
    fn unread_or_undeterminable_authority_refuses_without_override() {
        let mut r = provable([InstanceState::NeedsReseed, InstanceState::Unknown]);
        r.verdict = Verdict::Undeterminable;
        r.authority = Authority::Undeterminable {
            blockers: vec!["pg-3: unread".into()],
        };
        for force in [false, true] {
            let p = plan(
                &r,
                &RepairRequest {
                    force,
                    instance: Some("pg-2".into()),
                    ..Default::default()
                },
            );
            assert_eq!(p.refusals[0].gate, "authority-unread");
            assert!(!p.refusals[0].overridable);
            assert!(p.steps.is_empty());
        }
        r.authority = Authority::LeaderNotPrimary {
            leader: "pg-2".into(),
            primary: "pg-1".into(),
        };
        let p = plan(
            &r,
            &RepairRequest {
                force: true,
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "authority-undeterminable");
    }

    #[test]
    fn split_brain_needs_a_named_replica_and_force_and_captures_every_side() {
        let mut r = provable([InstanceState::Diverged, InstanceState::Healthy]);
        r.verdict = Verdict::Diverged;
        r.authority = Authority::Diverged {
            reasons: vec!["pg-1 and pg-2 both wrote past 0/3000000".into()],
        };
        let p = plan(&r, &RepairRequest::default());
        assert_eq!(p.refusals[0].gate, "split-brain");
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("pg-2".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "split-brain");
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("pg-2".into()),
                force: true,
                ..Default::default()
            },
        );
        assert!(p.executable(), "{p:?}");
        let kinds: Vec<(&str, &str)> = p
            .escrow
            .iter()
            .map(|e| (e.kind.as_str(), e.instance.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("backup", "pg-1"),
                ("diverged", "pg-2"),
                ("diverged", "pg-3")
            ]
        );
        // The primary still cannot be the forced target.
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("pg-1".into()),
                force: true,
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "target-is-authority");
    }

    #[test]
    fn no_escrow_is_loud() {
        let r = provable([InstanceState::NeedsReseed, InstanceState::Healthy]);
        let p = plan(
            &r,
            &RepairRequest {
                no_escrow: true,
                ..Default::default()
            },
        );
        assert!(p.escrow.is_empty());
        assert!(p.warnings[0].contains("WITHOUT a backup"));
    }

    fn galera_all_down(leader: Option<&str>) -> Report {
        let mut r = report(
            "galera",
            Verdict::Unhealthy,
            match leader {
                Some(l) => Authority::Provable { leader: l.into() },
                None => Authority::Undeterminable {
                    blockers: vec!["galera-2: position unknown".into()],
                },
            },
            vec![
                inst("galera-0", Role::Node, InstanceState::NeedsRestart),
                inst("galera-1", Role::Node, InstanceState::NeedsRestart),
                inst("galera-2", Role::Node, InstanceState::NeedsRestart),
            ],
        );
        r.diagnoses.push(Diagnosis {
            code: "galera-all-down".into(),
            severity: Severity::Critical,
            summary: "Every node is down".into(),
            details: vec![],
            remedy: None,
            instance: None,
        });
        r
    }

    #[test]
    fn galera_all_down_heals_nothing_and_bootstraps_only_the_most_advanced() {
        let r = galera_all_down(Some("galera-0"));
        let p = plan(&r, &RepairRequest::default());
        assert_eq!(p.refusals[0].gate, "all-down");
        let p = plan(
            &r,
            &RepairRequest {
                bootstrap: Some("galera-1".into()),
                force: true,
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "bootstrap-not-most-advanced");
        let p = plan(
            &r,
            &RepairRequest {
                bootstrap: Some("galera-0".into()),
                ..Default::default()
            },
        );
        assert!(p.executable(), "{p:?}");
        assert_eq!(p.targets[0].remediation, Remediation::Bootstrap);
        let a = actions(&p);
        assert!(
            a.contains(&"cr.suspend")
                && a.contains(&"cr.resume")
                && a.contains(&"statefulset.scale")
        );
        let p = plan(
            &galera_all_down(None),
            &RepairRequest {
                bootstrap: Some("galera-0".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "authority-undeterminable");
        assert!(p.refusals[0].message.contains("--recover-positions"));
    }

    #[test]
    fn galera_bootstrap_while_a_primary_component_runs_is_refused() {
        let r = report(
            "galera",
            Verdict::Unhealthy,
            Authority::Provable {
                leader: "galera-0".into(),
            },
            vec![
                inst("galera-0", Role::Node, InstanceState::Healthy),
                inst("galera-1", Role::Node, InstanceState::Healthy),
                inst("galera-2", Role::Node, InstanceState::NeedsReseed),
            ],
        );
        let p = plan(
            &r,
            &RepairRequest {
                bootstrap: Some("galera-0".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.refusals[0].gate, "bootstrap-not-all-down");
        // Healing any node (not only the highest ordinal) is planned.
        let p = plan(
            &r,
            &RepairRequest {
                instance: Some("galera-2".into()),
                ..Default::default()
            },
        );
        assert!(p.executable());
        let p2 = plan(
            &report(
                "galera",
                Verdict::Unhealthy,
                Authority::Provable {
                    leader: "galera-2".into(),
                },
                vec![
                    inst("galera-0", Role::Node, InstanceState::NeedsReseed),
                    inst("galera-1", Role::Node, InstanceState::Healthy),
                    inst("galera-2", Role::Node, InstanceState::Healthy),
                ],
            ),
            &RepairRequest {
                instance: Some("galera-0".into()),
                ..Default::default()
            },
        );
        assert!(p2.executable(), "{p2:?}");
        assert_eq!(p2.targets[0].ordinal, Some(0));
    }

    fn disk_full_primary() -> Report {
        let mut r = report(
            "cnpg",
            Verdict::Undeterminable,
            Authority::Undeterminable {
                blockers: vec!["pg-1 unread".into()],
            },
            vec![
                inst("pg-1", Role::Primary, InstanceState::Unknown),
                inst("pg-2", Role::Replica, InstanceState::Healthy),
            ],
        );
        r.operator_primary = Some("pg-1".into());
        r.diagnoses.push(Diagnosis {
            code: "cnpg-disk-full".into(),
            severity: Severity::Critical,
            summary: "pg-1's volume is full".into(),
            details: vec!["No space left on device".into()],
            remedy: None,
            instance: Some("pg-1".into()),
        });
        r
    }

    fn relieve(node: &str, force: bool) -> RepairRequest {
        RepairRequest {
            prune_wal: Some(node.into()),
            force,
            ..RepairRequest::default()
        }
    }

    #[test]
    fn wal_relief_of_a_full_primary_that_cannot_be_read_is_planned_without_escrow() {
        let p = plan(&disk_full_primary(), &relieve("pg-1", false));
        assert!(p.executable(), "{p:?}");
        assert_eq!(p.targets[0].remediation, Remediation::PruneWal);
        assert!(!p.targets[0].keep_fenced);
        assert!(p.escrow.is_empty(), "its server is down: nothing to dump");
        assert_eq!(
            actions(&p),
            vec![
                "lease.acquire",
                "fence.add",
                "reconciliation.disable",
                "pod.delete",
                "helper.run",
                "replicas.read",
                "helper.run",
                "reconciliation.enable",
                "fence.remove",
                "wait.ready",
                "lease.release",
                "triage"
            ]
        );
        let destructive: Vec<&PlanStep> = p.steps.iter().filter(|s| s.destructive).collect();
        assert_eq!(destructive.len(), 1);
        assert!(destructive[0].detail.contains("before the REDO WAL file"));
    }

    #[test]
    fn wal_relief_gates() {
        // A running instance manages its own WAL.
        let p = plan(&disk_full_primary(), &relieve("pg-2", true));
        assert_eq!(p.refusals[0].gate, "wal-relief-target-running");
        // A down replica is rebuilt, not relieved.
        let mut r = disk_full_primary();
        r.instances[1].state = InstanceState::NeedsReseed;
        let p = plan(&r, &relieve("pg-2", true));
        assert_eq!(p.refusals[0].gate, "wal-relief-not-authority");
        assert!(!p.refusals[0].overridable);
        // ... unless the cluster is diverged and --force is given: then it stays fenced.
        r.verdict = Verdict::Diverged;
        let p = plan(&r, &relieve("pg-2", false));
        assert!(p.refusals[0].overridable);
        r.diagnoses[0].instance = Some("pg-2".into());
        let p = plan(&r, &relieve("pg-2", true));
        assert!(p.executable(), "{p:?}");
        assert!(p.targets[0].keep_fenced);
        assert!(actions(&p).contains(&"fence.keep"));
        assert!(!actions(&p).contains(&"wait.ready"));
        assert!(p.warnings[0].contains("stays fenced"));
        // No sign of a full volume: refused unless forced.
        let mut r = disk_full_primary();
        r.diagnoses.clear();
        let p = plan(&r, &relieve("pg-1", false));
        assert_eq!(p.refusals[0].gate, "wal-relief-no-disk-pressure");
        assert!(plan(&r, &relieve("pg-1", true)).executable());
        r.instances[0].disk_percent = Some(97.0);
        assert!(plan(&r, &relieve("pg-1", false)).executable());
        // Unknown instance; wrong engine.
        assert_eq!(
            plan(&r, &relieve("pg-9", true)).refusals[0].gate,
            "target-unknown"
        );
        r.engine = "galera".into();
        assert_eq!(
            plan(&r, &relieve("pg-1", true)).refusals[0].gate,
            "wal-relief-cnpg-only"
        );
    }

    #[test]
    fn a_bootstrap_across_lineages_needs_force_and_archives_the_other_lineage_first() {
        let node = |name: &str, uuid: &str, seqno: i64| InstanceAssessment {
            role: Role::Node,
            position: format!("seqno {seqno} {uuid}…"),
            lineage: Some(uuid.into()),
            seqno: Some(seqno),
            ..inst(name, Role::Node, InstanceState::NeedsRestart)
        };
        let mut r = report(
            "galera",
            Verdict::Diverged,
            Authority::Diverged {
                reasons: vec!["two cluster UUIDs".into()],
            },
            vec![
                node("galera-0", "aaaa", 12),
                node("galera-1", "aaaa", 10),
                node("galera-2", "bbbb", 30),
            ],
        );
        r.diagnoses.push(Diagnosis {
            code: "galera-all-down".into(),
            severity: Severity::Critical,
            summary: "Every node is down".into(),
            details: vec![],
            remedy: None,
            instance: None,
        });
        let boot = |node: &str, force: bool| RepairRequest {
            bootstrap: Some(node.into()),
            force,
            job: "repair-x".into(),
            ..RepairRequest::default()
        };
        let p = plan(&r, &boot("galera-0", false));
        assert_eq!(p.refusals[0].gate, "bootstrap-ambiguous");
        assert!(p.refusals[0].overridable);
        // Not the most advanced of its own lineage: never.
        let p = plan(&r, &boot("galera-1", true));
        assert_eq!(p.refusals[0].gate, "bootstrap-not-most-advanced");
        assert!(!p.refusals[0].overridable);
        // Forced: galera-2's data directory is archived after the scale-down, before any flag.
        let p = plan(&r, &boot("galera-0", true));
        assert!(p.executable(), "{p:?}");
        assert_eq!(p.escrow.len(), 1);
        assert_eq!(p.escrow[0].instance, "galera-2");
        assert_eq!(p.escrow[0].method, "datadir");
        assert_eq!(p.escrow[0].kind, "diverged");
        let a = actions(&p);
        let scale = a.iter().position(|x| *x == "statefulset.scale").unwrap();
        let capture = a.iter().position(|x| *x == "escrow.datadir").unwrap();
        let flags = a.iter().position(|x| *x == "helper.run").unwrap();
        assert!(scale < capture && capture < flags, "{a:?}");
        assert!(!a.contains(&"escrow.backup"), "{a:?}");
        // An unknown position still blocks, forced or not.
        r.instances[1].seqno = None;
        let p = plan(&r, &boot("galera-0", true));
        assert_eq!(p.refusals[0].gate, "authority-undeterminable");
    }

    #[test]
    fn galera_steps_suspend_and_resume_around_each_reseed_as_executed() {
        let r = report(
            "galera",
            Verdict::Unhealthy,
            Authority::Provable {
                leader: "galera-0".into(),
            },
            vec![
                inst("galera-0", Role::Node, InstanceState::Healthy),
                inst("galera-1", Role::Node, InstanceState::NeedsRestart),
                inst("galera-2", Role::Node, InstanceState::NeedsReseed),
            ],
        );
        let p = plan(&r, &RepairRequest::default());
        let a = actions(&p);
        let restart = a.iter().position(|x| *x == "pod.delete").unwrap();
        let suspend = a.iter().position(|x| *x == "cr.suspend").unwrap();
        assert!(restart < suspend, "a restart needs no suspension: {a:?}");
        let from_suspend: Vec<&str> = a[suspend..].to_vec();
        assert_eq!(
            &from_suspend[..7],
            &[
                "cr.suspend",
                "statefulset.orphan",
                "pod.delete",
                "helper.run",
                "statefulset.recreate",
                "cr.resume",
                "wait.ready"
            ]
        );
    }
}

#[cfg(test)]
mod escrow_tests {
    use super::*;

    #[test]
    fn restarts_alone_need_no_escrow() {
        let r = Report {
            engine: "cnpg".into(),
            namespace: "db".into(),
            cluster: "pg".into(),
            verdict: Verdict::Unhealthy,
            authority: Authority::Provable {
                leader: "pg-1".into(),
            },
            safe_to_heal: true,
            operator_primary: None,
            instances: vec![
                crate::InstanceAssessment {
                    name: "pg-1".into(),
                    ordinal: Some(1),
                    role: Role::Primary,
                    position: "TL 1 0/1".into(),
                    lag: None,
                    disk_percent: None,
                    state: InstanceState::Healthy,
                    advice: String::new(),
                    remedy: None,
                    lineage: None,
                    seqno: None,
                },
                crate::InstanceAssessment {
                    name: "pg-2".into(),
                    ordinal: Some(2),
                    role: Role::Replica,
                    position: "TL 1 0/1".into(),
                    lag: None,
                    disk_percent: None,
                    state: InstanceState::NeedsRestart,
                    advice: String::new(),
                    remedy: None,
                    lineage: None,
                    seqno: None,
                },
            ],
            diagnoses: Vec::new(),
            next_command: None,
            facts: serde_json::Value::Null,
        };
        let p = plan(&r, &RepairRequest::default());
        assert!(p.executable());
        assert!(p.escrow.is_empty());
        assert!(p.steps.iter().all(|s| !s.destructive));
    }
}

/// The plan as text: targets, escrow, numbered steps (destructive ones marked), refusals.
pub fn render_plan_text(plan: &RepairPlan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "repair plan for {} cluster {}/{} (triage verdict: {}, authority: {})",
        plan.engine,
        plan.namespace,
        plan.cluster,
        plan.verdict.as_str(),
        plan.authority.as_deref().unwrap_or("not provable")
    );
    for r in &plan.refusals {
        let _ = writeln!(
            out,
            "REFUSED ({}): {}{}",
            r.gate,
            r.message,
            if r.overridable {
                ""
            } else {
                " [not overridable]"
            }
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    if !plan.targets.is_empty() {
        out.push_str("targets:\n");
        for t in &plan.targets {
            let remediation = match t.remediation {
                Remediation::Restart => "restart",
                Remediation::Reseed => "reseed",
                Remediation::Bootstrap => "bootstrap",
                Remediation::PruneWal => "prune WAL",
            };
            let _ = writeln!(out, "  {} → {remediation}: {}", t.instance, t.why);
        }
    }
    if !plan.steps.is_empty() {
        out.push_str("steps:\n");
        for (i, s) in plan.steps.iter().enumerate() {
            let mark = if s.destructive {
                " [destructive]"
            } else if !s.mutating {
                " [read-only]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>2}. {} {}{mark}\n      {}",
                i + 1,
                s.action,
                s.resource,
                s.detail
            );
        }
    }
    for s in &plan.skipped {
        let _ = writeln!(out, "left alone: {s}");
    }
    out.trim_end().to_string()
}
