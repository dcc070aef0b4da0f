//! Who holds the authoritative data, and whether that can be proven.
//!
//! Two situations, told apart by whether any node reports itself a member of a Primary
//! component:
//!
//! * **Quorum**: the leader is the most advanced Synced member. Other nodes are either behind
//!   it (they rejoin by IST/SST) or evidence of divergence. A node whose position is unknown is
//!   a harmless laggard only under a *clean* quorum: no divergence evidence, the node's
//!   authoritative UUID is the quorum's, and it cannot be serving (no pod, pod not running, or
//!   container not Ready). A Ready node whose wsrep status could not be read may be a second
//!   Primary component (a forced `pc.bootstrap` keeps the UUID); so may any Ready node beyond
//!   the component's `wsrep_cluster_size`: both block. A crashed node with `safe_to_bootstrap: 1` is not
//!   harmless: that flag is set by a forced bootstrap (`pc.bootstrap`), so it may have
//!   committed on its own.
//! * **Quorum lost** (every node down, or the survivors `non-Primary`): the leader is the node
//!   with the highest seqno, ties to `safe_to_bootstrap: 1`, then the lowest ordinal. Every node
//!   that may hold data must have a known position, or the decision is refused: bootstrapping
//!   the wrong node throws away the writes of the right one. A survivor without a Primary
//!   component has lost quorum; that is not a split brain, and it is provable like the all-down
//!   case once every position is known.
//!
//! Divergence evidence: more than one authoritative cluster UUID; more Primary members than
//! their largest component (two Primary components); a non-member, same UUID, ahead of the best
//! member. Hints (log scrapes, the CR's `galeraRecovery`) never prove anything; when no
//! authoritative UUID exists at all, disagreeing hinted UUIDs are a blocker, not a split brain.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::Authority;

use super::facts::{Liveness, NodeFacts};
use super::input::ClusterView;

/// Whether a Primary component exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub(crate) enum Quorum {
    /// Some node reports `wsrep_cluster_status = Primary`.
    Primary {
        /// Its cluster UUID, when the members agree on one.
        uuid: Option<String>,
        /// The highest seqno among its members.
        best_seqno: Option<i64>,
    },
    /// Live nodes, none in a Primary component.
    NoPrimary,
    /// No node reports Primary, but a running node's wsrep status could not be read: it may be
    /// in one.
    Unobserved,
    /// No node's wsrep status could be read and none runs.
    AllDown,
}

/// One piece of divergence evidence and the nodes it implicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Divergence {
    pub(crate) reason: String,
    pub(crate) nodes: Vec<usize>,
}

/// The outcome of [`decide`]. Node indices refer to the slice passed in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub(crate) authority: Authority,
    /// The provable leader.
    pub(crate) leader: Option<usize>,
    pub(crate) quorum: Quorum,
    pub(crate) divergences: Vec<Divergence>,
    pub(crate) blockers: Vec<String>,
    /// Some blocker is a stopped node whose position `--wsrep-recover` could tell.
    pub(crate) recover_positions_helps: bool,
    /// Nodes with `safe_to_bootstrap: 1` that are behind the leader (quorum lost only).
    pub(crate) unsafe_bootstrap_flags: Vec<usize>,
}

impl Decision {
    /// The authority is provable.
    pub(crate) fn is_provable(&self) -> bool {
        matches!(self.authority, Authority::Provable { .. })
    }

    /// The node is named in divergence evidence.
    pub(crate) fn implicates(&self, node: usize) -> bool {
        self.divergences.iter().any(|d| d.nodes.contains(&node))
    }

    /// The leader's seqno.
    pub(crate) fn leader_seqno(&self, nodes: &[NodeFacts]) -> Option<i64> {
        nodes[self.leader?].position().map(|(seqno, _)| seqno)
    }
}

/// Decides the authority. Pure.
pub(crate) fn decide(nodes: &[NodeFacts], cluster: &ClusterView) -> Decision {
    let mut decision = Decision {
        authority: Authority::Undeterminable { blockers: vec![] },
        leader: None,
        quorum: quorum_of(nodes),
        divergences: uuid_divergence(nodes).into_iter().collect(),
        blockers: completeness_blockers(nodes, cluster),
        recover_positions_helps: false,
        unsafe_bootstrap_flags: vec![],
    };
    decision.blockers.extend(hinted_uuid_blocker(nodes));
    let leader = match decision.quorum.clone() {
        Quorum::Primary { uuid, best_seqno } => {
            decide_with_quorum(nodes, uuid.as_deref(), best_seqno, &mut decision)
        }
        Quorum::NoPrimary | Quorum::Unobserved | Quorum::AllDown => {
            decide_without_quorum(nodes, &mut decision)
        }
    };
    decision.authority = if !decision.divergences.is_empty() {
        Authority::Diverged {
            reasons: decision
                .divergences
                .iter()
                .map(|d| d.reason.clone())
                .collect(),
        }
    } else if !decision.blockers.is_empty() {
        Authority::Undeterminable {
            blockers: decision.blockers.clone(),
        }
    } else if let Some(leader) = leader {
        decision.leader = Some(leader);
        Authority::Provable {
            leader: nodes[leader].name.clone(),
        }
    } else {
        decision
            .blockers
            .push("no node holds a known position".into());
        Authority::Undeterminable {
            blockers: decision.blockers.clone(),
        }
    };
    decision
}

fn quorum_of(nodes: &[NodeFacts]) -> Quorum {
    let members: Vec<&NodeFacts> = nodes.iter().filter(|n| n.is_primary_member()).collect();
    if members.is_empty() {
        return if nodes.iter().any(|n| n.liveness == Liveness::RunningUnread) {
            Quorum::Unobserved
        } else if nodes.iter().any(|n| n.wsrep.is_some()) {
            Quorum::NoPrimary
        } else {
            Quorum::AllDown
        };
    }
    let uuids: Vec<Option<&str>> = members
        .iter()
        .map(|n| n.uuid.as_ref().map(|u| u.value.as_str()))
        .collect();
    let uuid = match uuids.first() {
        Some(Some(first)) if uuids.iter().all(|u| *u == Some(*first)) => Some(first.to_string()),
        _ => None,
    };
    Quorum::Primary {
        uuid,
        best_seqno: members
            .iter()
            .filter_map(|n| n.seqno.as_ref())
            .map(|s| s.value)
            .max(),
    }
}

/// (a) More than one authoritative cluster UUID: the histories split.
fn uuid_divergence(nodes: &[NodeFacts]) -> Option<Divergence> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(uuid) = &node.uuid {
            groups.entry(uuid.value.as_str()).or_default().push(i);
        }
    }
    if groups.len() < 2 {
        return None;
    }
    let primary_uuids: Vec<&str> = nodes
        .iter()
        .filter(|n| n.is_primary_member())
        .filter_map(|n| n.uuid.as_ref().map(|u| u.value.as_str()))
        .collect();
    let described: Vec<String> = groups
        .iter()
        .map(|(uuid, members)| format!("{uuid} ({})", names(nodes, members)))
        .collect();
    // With one Primary history, the other histories are the diverged ones; otherwise all are.
    let reference = match primary_uuids.first() {
        Some(first) if primary_uuids.iter().all(|u| u == first) => Some(*first),
        _ => None,
    };
    let implicated = groups
        .iter()
        .filter(|(uuid, _)| Some(**uuid) != reference)
        .flat_map(|(_, members)| members.iter().copied())
        .collect();
    Some(Divergence {
        reason: format!("cluster UUIDs differ: {}", described.join(" vs ")),
        nodes: implicated,
    })
}

/// Nodes missing from the input block: they may hold data nobody read.
fn completeness_blockers(nodes: &[NodeFacts], cluster: &ClusterView) -> Vec<String> {
    let expected = usize::try_from(cluster.replicas).unwrap_or(usize::MAX);
    if nodes.is_empty() {
        return vec!["no nodes were collected".to_string()];
    }
    if nodes.len() < expected {
        return vec![format!(
            "only {} of {} nodes were collected",
            nodes.len(),
            cluster.replicas
        )];
    }
    vec![]
}

/// With no authoritative UUID anywhere, hinted UUIDs that disagree block (they once produced
/// phantom split brains, so they are never divergence evidence).
fn hinted_uuid_blocker(nodes: &[NodeFacts]) -> Option<String> {
    if nodes.iter().any(|n| n.uuid.is_some()) {
        return None;
    }
    let mut hinted: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n.uuid_hint.as_ref().map(|u| u.value.as_str()))
        .collect();
    hinted.sort_unstable();
    hinted.dedup();
    (hinted.len() > 1).then(|| {
        format!(
            "no authoritative cluster UUID, and the hints disagree ({})",
            hinted.join(", ")
        )
    })
}

/// A Primary component exists. Returns the leader candidate.
fn decide_with_quorum(
    nodes: &[NodeFacts],
    quorum_uuid: Option<&str>,
    best_seqno: Option<i64>,
    decision: &mut Decision,
) -> Option<usize> {
    decision.divergences.extend(two_primary_components(nodes));
    if let Some(best) = best_seqno {
        decision
            .divergences
            .extend(non_members_ahead(nodes, quorum_uuid, best));
    }
    decision.blockers.extend(ready_outside_the_component(nodes));
    let clean = decision.divergences.is_empty() && quorum_uuid.is_some();
    for (i, node) in nodes.iter().enumerate().filter(|(_, n)| n.is_unread()) {
        if let Some(why_not) = laggard_objection(node, clean, quorum_uuid) {
            decision.blockers.push(format!("{}: {why_not}", node.name));
            decision.recover_positions_helps |= nodes[i].recoverable_offline();
        }
    }
    let leader = quorum_leader(nodes);
    if leader.is_none() {
        decision
            .blockers
            .push("the Primary component has no Synced member with a readable position".into());
    }
    leader
}

/// Why an unread node cannot be treated as a laggard of the quorum (`None`: it can).
fn laggard_objection(node: &NodeFacts, clean: bool, quorum_uuid: Option<&str>) -> Option<String> {
    let reason = node.unread_reason();
    if !clean {
        return Some(format!("position unknown ({reason})"));
    }
    if node.liveness == Liveness::RunningUnread {
        return Some(format!(
            "its container is Ready but its wsrep status could not be read ({reason}): it may be \
             serving, possibly as a second Primary component (a forced pc.bootstrap keeps the \
             cluster UUID)"
        ));
    }
    match node.uuid.as_ref().map(|u| u.value.as_str()) {
        None => Some(format!(
            "position and cluster UUID unknown ({reason}): it cannot be tied to the quorum"
        )),
        Some(uuid) if Some(uuid) != quorum_uuid => Some(format!(
            "position unknown and cluster UUID {uuid} is not the quorum's"
        )),
        Some(_) if node.safe_to_bootstrap == Some(true) && !node.is_primary_member() => {
            Some(format!(
                "position unknown and safe_to_bootstrap: 1 (it was forced primary, \
                 e.g. pc.bootstrap, and may hold writes the quorum lacks) ({reason})"
            ))
        }
        Some(_) => None,
    }
}

/// More nodes with a Ready container (and not read as outside a Primary component) than the
/// Primary component has members: some serving node is outside that component.
fn ready_outside_the_component(nodes: &[NodeFacts]) -> Option<String> {
    let size = nodes
        .iter()
        .filter(|n| n.is_primary_member())
        .filter_map(|n| n.wsrep.as_ref()?.cluster_size)
        .max()?;
    let ready: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].may_be_in_a_primary_component())
        .collect();
    let count = u32::try_from(ready.len()).unwrap_or(u32::MAX);
    (count > size).then(|| {
        format!(
            "{count} nodes have a Ready container ({}) but the Primary component has {size} \
             members: a node outside it may be serving on its own",
            names(nodes, &ready)
        )
    })
}

/// (b′) More Primary members than the largest component they report: two Primary components.
fn two_primary_components(nodes: &[NodeFacts]) -> Option<Divergence> {
    let members: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].is_primary_member())
        .collect();
    let largest = members
        .iter()
        .filter_map(|&i| nodes[i].wsrep.as_ref()?.cluster_size)
        .max()?;
    let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
    (count > largest).then(|| Divergence {
        reason: format!(
            "{count} nodes report Primary ({}) but no component has more than {largest}: \
             more than one Primary component",
            names(nodes, &members)
        ),
        nodes: members,
    })
}

/// (c) A node outside the Primary component, same history, ahead of its best member.
fn non_members_ahead(nodes: &[NodeFacts], quorum_uuid: Option<&str>, best: i64) -> Vec<Divergence> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_primary_member())
        .filter_map(|(i, n)| {
            let (seqno, uuid) = n.position()?;
            (Some(uuid) == quorum_uuid && seqno > best).then(|| Divergence {
                reason: format!(
                    "{} is at seqno {seqno}, ahead of the Primary component (seqno {best}): \
                     it holds writes the component does not have",
                    n.name
                ),
                nodes: vec![i],
            })
        })
        .collect()
}

/// The most advanced Synced member (Donor/Desynced if none is Synced); ties by ordinal.
fn quorum_leader(nodes: &[NodeFacts]) -> Option<usize> {
    let in_state = |state: u32| {
        (0..nodes.len())
            .filter(|&i| nodes[i].is_primary_member())
            .filter(|&i| nodes[i].wsrep.as_ref().and_then(|w| w.local_state) == Some(state))
            .filter(|&i| nodes[i].position().is_some())
            .max_by_key(|&i| {
                (
                    nodes[i].seqno.as_ref().map(|s| s.value),
                    tiebreak(&nodes[i]),
                )
            })
    };
    in_state(4).or_else(|| in_state(2))
}

/// No Primary component: every node with data needs a known position.
fn decide_without_quorum(nodes: &[NodeFacts], decision: &mut Decision) -> Option<usize> {
    if decision.quorum == Quorum::NoPrimary {
        let live: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].wsrep.is_some())
            .collect();
        let unknown = nodes.iter().any(NodeFacts::is_unread);
        if unknown {
            decision.blockers.push(format!(
                "no Primary component: {} lost quorum, and not every position is known",
                names(nodes, &live)
            ));
        }
    }
    for node in nodes.iter().filter(|n| n.is_unread()) {
        decision.blockers.push(format!(
            "{}: position unknown ({})",
            node.name,
            node.unread_reason()
        ));
        decision.recover_positions_helps |= node.recoverable_offline();
    }
    let leader = (0..nodes.len())
        .filter(|&i| nodes[i].position().is_some())
        .max_by_key(|&i| {
            let node = &nodes[i];
            (
                node.seqno.as_ref().map(|s| s.value),
                node.safe_to_bootstrap == Some(true),
                tiebreak(node),
            )
        })?;
    let leader_seqno = nodes[leader].seqno.as_ref().map(|s| s.value);
    decision.unsafe_bootstrap_flags = (0..nodes.len())
        .filter(|&i| nodes[i].safe_to_bootstrap == Some(true))
        .filter(|&i| {
            nodes[i]
                .seqno
                .as_ref()
                .is_some_and(|s| Some(s.value) < leader_seqno)
        })
        .collect();
    Some(leader)
}

/// Lower ordinals win ties (then names): deterministic, and what the operator would pick.
fn tiebreak(node: &NodeFacts) -> Reverse<(u32, &str)> {
    Reverse((node.ordinal.unwrap_or(u32::MAX), node.name.as_str()))
}

/// `a, b, c`.
pub(crate) fn names(nodes: &[NodeFacts], indices: &[usize]) -> String {
    indices
        .iter()
        .map(|&i| nodes[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
