//! Named findings with stable codes, most severe first. Repair remedies appear only with a
//! provable authority; otherwise the remedy is an escrow backup (split brain) or a triage that
//! may recover positions.

use crate::{Diagnosis, InstanceAssessment, InstanceState, Severity};

use super::assess::DISK_LOW_PERCENT;
use super::authority::{names, Decision, Quorum};
use super::commands::Commands;
use super::facts::{Liveness, NodeFacts};
use super::input::ClusterView;

/// Everything the diagnoses look at.
pub(crate) struct Findings<'a> {
    pub(crate) cluster: &'a ClusterView,
    pub(crate) nodes: &'a [NodeFacts],
    pub(crate) decision: &'a Decision,
    pub(crate) instances: &'a [InstanceAssessment],
    pub(crate) commands: Commands<'a>,
}

/// All diagnoses, most severe first.
pub(crate) fn diagnose(f: &Findings<'_>) -> Vec<Diagnosis> {
    let mut all: Vec<Diagnosis> = [
        split_brain(f),
        quorum_lost(f),
        undeterminable(f),
        operator_recovery_stuck(f),
        operator_suspended(f),
    ]
    .into_iter()
    .flatten()
    .chain(unsafe_bootstrap_flags(f))
    .chain(node_problems(f))
    .chain(disk(f))
    .collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.severity));
    all
}

fn diagnosis(
    code: &str,
    severity: Severity,
    summary: String,
    details: Vec<String>,
    remedy: Option<String>,
) -> Diagnosis {
    Diagnosis {
        code: code.to_string(),
        severity,
        summary,
        details,
        remedy,
        instance: None,
    }
}

fn split_brain(f: &Findings<'_>) -> Option<Diagnosis> {
    if f.decision.divergences.is_empty() {
        return None;
    }
    let mut details: Vec<String> = f
        .decision
        .divergences
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    details.push(
        "Nothing destructive is safe: escrow a backup of what the cluster serves, then a person \
         decides which history to keep."
            .to_string(),
    );
    Some(diagnosis(
        "galera-split-brain",
        Severity::Critical,
        "Nodes hold diverged histories (split brain)".to_string(),
        details,
        Some(f.commands.escrow()),
    ))
}

/// The leader's bootstrap when provable, else a triage that recovers positions when that helps.
fn bootstrap_or_recover(f: &Findings<'_>) -> Option<String> {
    match f.decision.leader {
        Some(leader) => Some(f.commands.bootstrap(&f.nodes[leader].name)),
        None if f.decision.recover_positions_helps => Some(f.commands.recover_positions()),
        None => None,
    }
}

fn quorum_lost(f: &Findings<'_>) -> Option<Diagnosis> {
    let (code, summary) = match f.decision.quorum {
        Quorum::AllDown => ("galera-all-down", "Every node is down"),
        Quorum::NoPrimary => (
            "galera-no-primary-component",
            "No Primary component: the running nodes lost quorum and refuse writes",
        ),
        Quorum::Primary { .. } | Quorum::Unobserved => return None,
    };
    let mut details: Vec<String> = f.nodes.iter().map(position_line).collect();
    details.push(match f.decision.leader {
        Some(leader) => format!(
            "{} is the most advanced node: bootstrap the cluster from it; the others rejoin by \
             IST/SST.",
            f.nodes[leader].name
        ),
        None => "The most advanced node cannot be named until every position is known.".to_string(),
    });
    if f.decision.leader.is_none() {
        details.extend(what_to_fix(f));
    }
    Some(diagnosis(
        code,
        Severity::Critical,
        summary.to_string(),
        details,
        bootstrap_or_recover(f),
    ))
}

fn position_line(node: &NodeFacts) -> String {
    let source = match &node.seqno {
        Some(seqno) if node.position().is_some() => format!(", from {}", seqno.source),
        _ => String::new(),
    };
    let flag = match node.safe_to_bootstrap {
        Some(true) => ", safe_to_bootstrap: 1",
        _ => "",
    };
    format!(
        "{}: {}{source}{flag}",
        node.name,
        super::assess::position_text(node)
    )
}

fn undeterminable(f: &Findings<'_>) -> Option<Diagnosis> {
    if f.decision.blockers.is_empty() {
        return None;
    }
    let remedy = f
        .decision
        .recover_positions_helps
        .then(|| f.commands.recover_positions());
    let mut details = f.decision.blockers.clone();
    details.extend(what_to_fix(f));
    Some(diagnosis(
        "galera-undeterminable",
        Severity::Critical,
        "The authoritative node cannot be proven from what could be read".to_string(),
        details,
        remedy,
    ))
}

/// One line per node whose position is unknown: what would let it be read.
fn what_to_fix(f: &Findings<'_>) -> Vec<String> {
    let unread: Vec<&NodeFacts> = f.nodes.iter().filter(|n| n.is_unread()).collect();
    let mut out = Vec::new();
    let recoverable: Vec<&str> = unread
        .iter()
        .filter(|n| n.recoverable_offline())
        .map(|n| n.name.as_str())
        .collect();
    if !recoverable.is_empty() {
        out.push(format!(
            "to fix: triage again with --recover-positions to run mariadbd --wsrep-recover for {} \
             (in its container when one runs, else in a helper pod on its volume)",
            recoverable.join(", ")
        ));
    }
    for node in &unread {
        match &node.liveness {
            Liveness::Down { reason } if !node.volume_bound => out.push(format!(
                "to fix: {} has no running container ({reason}) and its volume storage-{} is not \
                 Bound, so its position cannot be read: make the volume available, then triage \
                 again",
                node.name, node.name
            )),
            Liveness::RunningUnread => out.push(format!(
                "to fix: {} is Ready but its wsrep status could not be read: find out why \
                 (credentials, timeout), then triage again",
                node.name
            )),
            _ => {}
        }
    }
    out
}

/// `safe_to_bootstrap: 1` on a node behind the most advanced one: the operator (or a person
/// following the flag) would bootstrap it and discard the newer writes.
fn unsafe_bootstrap_flags(f: &Findings<'_>) -> Vec<Diagnosis> {
    let Some(leader) = f.decision.leader.map(|l| &f.nodes[l]) else {
        return vec![];
    };
    let leader_seqno = leader.position().map_or(-1, |p| p.0);
    f.decision
        .unsafe_bootstrap_flags
        .iter()
        .map(|&i| {
            let node = &f.nodes[i];
            let seqno = node.seqno.as_ref().map_or(-1, |s| s.value);
            diagnosis(
                "galera-unsafe-bootstrap-flag",
                Severity::Critical,
                format!(
                    "{} has safe_to_bootstrap: 1 but {} is more advanced",
                    node.name, leader.name
                ),
                vec![
                    format!("{}: seqno {seqno}, safe_to_bootstrap: 1", node.name),
                    format!("{}: seqno {leader_seqno}", leader.name),
                    format!(
                        "Bootstrapping {} would discard {} transactions; bootstrap {} instead.",
                        node.name,
                        leader_seqno - seqno,
                        leader.name
                    ),
                ],
                Some(f.commands.bootstrap(&leader.name)),
            )
        })
        .collect()
}

/// Nodes that need a restart or reseed, are still joining, or could not be read, while a
/// Primary component serves (with quorum lost, [`quorum_lost`] covers the nodes).
fn node_problems(f: &Findings<'_>) -> Vec<Diagnosis> {
    let with_quorum = matches!(f.decision.quorum, Quorum::Primary { .. });
    f.nodes
        .iter()
        .zip(f.instances)
        .filter_map(|(node, assessment)| node_problem(node, assessment, with_quorum, f))
        .collect()
}

fn node_problem(
    node: &NodeFacts,
    assessment: &InstanceAssessment,
    with_quorum: bool,
    f: &Findings<'_>,
) -> Option<Diagnosis> {
    let details = vec![assessment.advice.clone()];
    if node.is_transitional() {
        let w = node.wsrep.as_ref()?;
        let mut details = details;
        details.extend(
            w.local_recv_queue
                .map(|q| format!("wsrep_local_recv_queue {q}")),
        );
        details.extend(
            w.flow_control_paused
                .map(|p| format!("wsrep_flow_control_paused {p}")),
        );
        return Some(diagnosis(
            "galera-node-desynced",
            Severity::Info,
            format!("{} is {}", node.name, w.state_text()),
            details,
            None,
        ));
    }
    if !with_quorum || !f.decision.is_provable() {
        return None;
    }
    let (code, severity, summary) = match (assessment.state, &node.liveness) {
        (InstanceState::Lagging, Liveness::Starting) => (
            "galera-node-down",
            Severity::Info,
            format!("{} is starting", node.name),
        ),
        (InstanceState::NeedsRestart | InstanceState::NeedsReseed, Liveness::Live) => (
            "galera-node-down",
            Severity::Warning,
            format!("{} is up but not in the Primary component", node.name),
        ),
        (InstanceState::NeedsRestart | InstanceState::NeedsReseed, _) => (
            "galera-node-down",
            Severity::Warning,
            format!("{} is down", node.name),
        ),
        (InstanceState::Unknown, _) => (
            "galera-node-unread",
            Severity::Warning,
            format!("{} could not be read", node.name),
        ),
        _ => return None,
    };
    Some(diagnosis(
        code,
        severity,
        summary,
        details,
        assessment.remedy.clone(),
    ))
}

fn disk(f: &Findings<'_>) -> Vec<Diagnosis> {
    f.nodes
        .iter()
        .filter_map(|node| {
            let used = node
                .disk_percent
                .map_or_else(String::new, |p| format!(" ({p:.0}% used)"));
            if node.disk_full {
                return Some(diagnosis(
                    "galera-disk-full",
                    Severity::Critical,
                    format!("{}: data volume full{used}", node.name),
                    vec![format!(
                        "Expand PVC storage-{} (or free space) before restarting it: a full \
                         volume crashes mariadbd again.",
                        node.name
                    )],
                    None,
                ));
            }
            let percent = node.disk_percent.filter(|p| *p >= DISK_LOW_PERCENT)?;
            Some(diagnosis(
                "galera-disk-low",
                Severity::Warning,
                format!("{}: data volume {percent:.0}% used", node.name),
                vec![format!(
                    "Expand PVC storage-{} before it fills: a full volume crashes mariadbd.",
                    node.name
                )],
                None,
            ))
        })
        .collect()
}

/// `GaleraReady` is False although a Primary component serves and every node is Healthy or
/// catching up by itself: the operator's recovery is stuck, not the data.
fn operator_recovery_stuck(f: &Findings<'_>) -> Option<Diagnosis> {
    let condition = f.cluster.condition("GaleraReady")?;
    let data_fine = f.decision.is_provable()
        && matches!(f.decision.quorum, Quorum::Primary { .. })
        && f.instances
            .iter()
            .all(|i| matches!(i.state, InstanceState::Healthy | InstanceState::Lagging));
    if condition.status != "False" || !data_fine {
        return None;
    }
    let mut details = vec![format!(
        "GaleraReady=False ({}): {}",
        condition.reason, condition.message
    )];
    let serving: Vec<usize> = (0..f.nodes.len())
        .filter(|&i| f.nodes[i].is_serving())
        .collect();
    details.push(format!(
        "Serving in the Primary component: {}",
        names(f.nodes, &serving)
    ));
    if let Some(status) = &f.cluster.galera_recovery {
        details.push(format!("status.galeraRecovery: {status}"));
    }
    details.push(
        "The data needs no repair; read the mariadb-operator log for why its recovery does not \
         finish."
            .to_string(),
    );
    Some(diagnosis(
        "galera-operator-recovery-stuck",
        Severity::Warning,
        "The operator reports Galera not ready, but every node's data is fine".to_string(),
        details,
        None,
    ))
}

fn operator_suspended(f: &Findings<'_>) -> Option<Diagnosis> {
    f.cluster.suspended.then(|| {
        diagnosis(
            "galera-operator-suspended",
            Severity::Info,
            "The MariaDB resource is suspended: the operator does not reconcile or recover it"
                .to_string(),
            vec!["spec.suspend is true (an interrupted repair may have left it so).".to_string()],
            None,
        )
    })
}
