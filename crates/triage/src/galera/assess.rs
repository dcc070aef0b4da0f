//! Per-node assessment: what state each node is in and what to do about it.
//!
//! Only a provable authority gets remedies. Without one, a node named in divergence evidence
//! is `Diverged`, a node that serves (or catches up by itself) says so, and every other node is
//! `Unknown`: manual review.
//!
//! With a Primary component, a node that is down needs a restart: IST (or SST) brings it up to
//! date, whether it is current, behind, or its position is unknown under a clean quorum. A node
//! that keeps crashing while not current is reseeded: restarting it again will not help. With
//! quorum lost, every node waits for the bootstrap of the leader.

use crate::{InstanceAssessment, InstanceState, Role};

use super::authority::{Decision, Quorum};
use super::commands::Commands;
use super::facts::{Liveness, NodeFacts};

/// Used percentage from which the disk gets a warning.
pub(crate) const DISK_LOW_PERCENT: f64 = 90.0;

/// State, advice and remedy of one node.
struct Verdict {
    state: InstanceState,
    advice: String,
    remedy: Option<String>,
}

fn verdict(state: InstanceState, advice: impl Into<String>, remedy: Option<String>) -> Verdict {
    Verdict {
        state,
        advice: advice.into(),
        remedy,
    }
}

/// Assesses every node, in the order given (ordinal order).
pub(crate) fn assess(
    nodes: &[NodeFacts],
    decision: &Decision,
    commands: &Commands<'_>,
) -> Vec<InstanceAssessment> {
    let leader_seqno = decision.leader_seqno(nodes);
    (0..nodes.len())
        .map(|i| {
            let node = &nodes[i];
            let mut v = if !decision.is_provable() {
                unprovable(nodes, i, decision)
            } else if matches!(decision.quorum, Quorum::Primary { .. }) {
                with_quorum(nodes, i, decision, commands)
            } else {
                without_quorum(nodes, i, decision, commands)
            };
            if let Some(percent) = node.disk_percent.filter(|p| *p >= DISK_LOW_PERCENT) {
                v.advice
                    .push_str(&format!(" Data volume {percent:.0}% used."));
            }
            InstanceAssessment {
                name: node.name.clone(),
                ordinal: node.ordinal,
                role: Role::Node,
                position: position_text(node),
                lag: lag_text(node, leader_seqno),
                disk_percent: node.disk_percent,
                state: v.state,
                advice: v.advice,
                remedy: v.remedy,
                lineage: node.uuid.as_ref().map(|u| u.value.clone()),
                seqno: node.seqno.as_ref().map(|s| s.value),
            }
        })
        .collect()
}

/// `seqno 42 6c0a1e3c…`, `unread: …`, or `no data`.
pub(crate) fn position_text(node: &NodeFacts) -> String {
    let uuid = node.uuid_for_display().map(short_uuid);
    match (&node.seqno, uuid, node.may_hold_data) {
        (_, _, false) => "no data".to_string(),
        (Some(seqno), Some(uuid), _) if node.uuid.is_some() => {
            format!("seqno {} {uuid}", seqno.value)
        }
        (Some(seqno), _, _) => format!("unread: seqno {}, cluster UUID unknown", seqno.value),
        (None, _, _) => match &node.seqno_hint {
            Some(hint) => format!(
                "unread: seqno unknown ({} says {})",
                hint.source, hint.value
            ),
            None => "unread: seqno unknown".to_string(),
        },
    }
}

fn short_uuid(uuid: &str) -> String {
    format!("{}…", uuid.get(..8).unwrap_or(uuid))
}

fn lag_text(node: &NodeFacts, leader_seqno: Option<i64>) -> Option<String> {
    let behind = leader_seqno? - node.position()?.0;
    (behind > 0).then(|| format!("{behind} trx"))
}

/// No provable authority: no remedies.
fn unprovable(nodes: &[NodeFacts], i: usize, decision: &Decision) -> Verdict {
    let node = &nodes[i];
    if decision.implicates(i) {
        let reasons: Vec<&str> = decision
            .divergences
            .iter()
            .filter(|d| d.nodes.contains(&i))
            .map(|d| d.reason.as_str())
            .collect();
        return verdict(
            InstanceState::Diverged,
            format!(
                "Diverged: {}. Escrow a backup and decide by hand (manual review).",
                reasons.join("; ")
            ),
            None,
        );
    }
    if node.is_serving() {
        return verdict(
            InstanceState::Healthy,
            "Synced in a Primary component; the cluster as a whole needs manual review.",
            None,
        );
    }
    if node.is_transitional() {
        return transitional(node);
    }
    let lost_quorum = if node.wsrep.is_some() {
        "Up in a non-Primary component (lost quorum; it refuses writes). "
    } else {
        ""
    };
    let why = if node.is_unread() {
        format!("position unknown ({})", node.unread_reason())
    } else {
        let first = decision.blockers.first().map(String::as_str);
        format!(
            "the authority is not provable ({})",
            first.unwrap_or("see diagnoses")
        )
    };
    verdict(
        InstanceState::Unknown,
        format!("{lost_quorum}Cannot assess: {why}. Manual review."),
        None,
    )
}

fn transitional(node: &NodeFacts) -> Verdict {
    let state = node
        .wsrep
        .as_ref()
        .map(|w| w.state_text())
        .unwrap_or_default();
    verdict(
        InstanceState::Lagging,
        format!("{state}: catching up by itself (or serving as a donor); wait."),
        None,
    )
}

/// Provable, with a Primary component.
fn with_quorum(
    nodes: &[NodeFacts],
    i: usize,
    decision: &Decision,
    commands: &Commands<'_>,
) -> Verdict {
    let node = &nodes[i];
    let leader = decision.leader.map_or("", |l| nodes[l].name.as_str());
    let leader_seqno = decision.leader_seqno(nodes);
    let repair = Some(commands.repair_instance(&node.name));
    match &node.liveness {
        Liveness::Live => live_in_quorum(node, decision.leader == Some(i), repair),
        Liveness::RunningUnread => verdict(
            InstanceState::Unknown,
            format!(
                "Running, but its wsrep status could not be read ({}): triage again.",
                node.unread_reason()
            ),
            None,
        ),
        _ if !node.may_hold_data => verdict(
            InstanceState::NeedsReseed,
            format!("No data volume: it must be seeded from {leader} by SST."),
            repair,
        ),
        _ if node.disk_full => verdict(
            InstanceState::NeedsRestart,
            format!(
                "Its data volume is full: expand PVC storage-{} first, then restart it; \
                 a restart alone crashes again.",
                node.name
            ),
            repair,
        ),
        Liveness::Starting => verdict(
            InstanceState::Lagging,
            format!(
                "Starting (not Ready yet, no restart), {}: wait while it joins.",
                standing(node, leader_seqno, leader)
            ),
            None,
        ),
        Liveness::CrashLooping { restarts } if is_current(node, leader_seqno) => verdict(
            InstanceState::NeedsRestart,
            format!(
                "Crash-looping ({restarts} restarts), {}: its data needs no reseed; \
                 read its log for the cause.",
                standing(node, leader_seqno, leader)
            ),
            repair,
        ),
        Liveness::CrashLooping { restarts } => verdict(
            InstanceState::NeedsReseed,
            format!(
                "Crash-looping ({restarts} restarts), {}: restarting again will not help; \
                 reseed it from {leader} by SST.",
                standing(node, leader_seqno, leader)
            ),
            repair,
        ),
        Liveness::Down { reason } => verdict(
            InstanceState::NeedsRestart,
            format!(
                "Down ({reason}), {}: a restart rejoins it by IST/SST.",
                standing(node, leader_seqno, leader)
            ),
            repair,
        ),
    }
}

/// A node whose wsrep status was read, while a Primary component exists.
fn live_in_quorum(node: &NodeFacts, is_leader: bool, repair: Option<String>) -> Verdict {
    if node.is_serving() {
        let role = if is_leader {
            " (most advanced: the authority)"
        } else {
            ""
        };
        return verdict(
            InstanceState::Healthy,
            format!("Synced in the Primary component{role}."),
            None,
        );
    }
    if node.is_transitional() {
        return transitional(node);
    }
    let on_off = |v: Option<bool>| match v {
        Some(true) => "ON",
        Some(false) => "OFF",
        None => "?",
    };
    let w = node.wsrep.clone().unwrap_or_default();
    verdict(
        InstanceState::NeedsRestart,
        format!(
            "Up but not serving in the Primary component ({}, {}, connected {}, ready {}): \
             a restart makes it rejoin by IST/SST.",
            w.cluster_status.as_deref().unwrap_or("status unknown"),
            w.state_text(),
            on_off(w.connected),
            on_off(w.ready)
        ),
        repair,
    )
}

fn is_current(node: &NodeFacts, leader_seqno: Option<i64>) -> bool {
    matches!((node.position(), leader_seqno), (Some((seqno, _)), Some(best)) if seqno >= best)
}

/// `data current (seqno 42)`, `12 trx behind galera-0`, or `position unknown, same cluster
/// UUID as the Primary component`.
fn standing(node: &NodeFacts, leader_seqno: Option<i64>, leader: &str) -> String {
    match (node.position(), leader_seqno) {
        (Some((seqno, _)), Some(best)) if seqno >= best => format!("data current (seqno {seqno})"),
        (Some((seqno, _)), Some(best)) => format!("{} trx behind {leader}", best - seqno),
        _ => "position unknown, same cluster UUID as the Primary component".to_string(),
    }
}

/// Provable, no Primary component: bootstrap the leader, the others rejoin it.
fn without_quorum(
    nodes: &[NodeFacts],
    i: usize,
    decision: &Decision,
    commands: &Commands<'_>,
) -> Verdict {
    let node = &nodes[i];
    let Some(leader) = decision.leader else {
        return unprovable(nodes, i, decision);
    };
    let leader_name = &nodes[leader].name;
    let bootstrap = Some(commands.bootstrap(leader_name));
    let disk = if node.disk_full {
        format!(
            " Its data volume is full: expand PVC storage-{} first.",
            node.name
        )
    } else {
        String::new()
    };
    if !node.may_hold_data {
        return verdict(
            InstanceState::NeedsReseed,
            format!("No data volume: seeded by SST once {leader_name} has bootstrapped the cluster.{disk}"),
            bootstrap,
        );
    }
    let seqno = node.position().map(|p| p.0).unwrap_or(-1);
    if leader == i {
        let flag = match node.safe_to_bootstrap {
            Some(true) => "",
            _ => " (its safe_to_bootstrap is 0: the bootstrap sets it)",
        };
        return verdict(
            InstanceState::NeedsRestart,
            format!(
                "Most advanced node (seqno {seqno}): bootstrap the cluster from it{flag}.{disk}"
            ),
            bootstrap,
        );
    }
    let standing = standing(node, decision.leader_seqno(nodes), leader_name);
    verdict(
        InstanceState::NeedsRestart,
        format!(
            "{standing}: rejoins by IST/SST once {leader_name} has bootstrapped the cluster.{disk}"
        ),
        bootstrap,
    )
}
