//! Galera (mariadb-operator) triage: which node holds the authoritative data, and what to do
//! about every node.
//!
//! The collector runs a few commands per node ([`GRASTATE_COMMAND`], [`WSREP_STATUS_SQL`],
//! [`DF_COMMAND`], optionally `mariadbd --wsrep-recover`) and hands the raw outputs over as a
//! [`GaleraInput`]; [`analyze`] turns that into a [`Report`]. No I/O happens here.
//!
//! # Why it is built this way
//! * **Authoritative values and hints are kept apart.** A node's seqno counts only when read from
//!   the node itself: a fresh `--wsrep-recover`, the live `wsrep_last_committed`, or the
//!   `grastate.dat` of a node that is not serving. Log scrapes and the CR's `galeraRecovery` are
//!   shown, but never make anything provable: stale operator snapshots once produced phantom
//!   split brains.
//! * **Cannot read it → refuse.** `grastate.dat` says `seqno: -1` after a crash (and while
//!   running); that is "unknown", never a value. With quorum lost, one unknown position blocks
//!   the choice of a bootstrap node; the remedy is to recover positions
//!   (`hasteward triage … --recover-positions`) where a container runs to do it in, and a
//!   helper pod on the volume otherwise.
//! * **Clean quorum.** While a Primary component serves, a crashed node whose position is
//!   unknown but whose cluster UUID is the component's is a laggard: IST/SST catches it up.
//!   Only a node that cannot be serving (no pod, pod not running, container not Ready) can be
//!   one: a Ready node whose wsrep status could not be read may be a second Primary component
//!   (a forced `pc.bootstrap` keeps the UUID), and so may any Ready node beyond the component's
//!   `wsrep_cluster_size`.
//! * **Losing quorum is not a split brain.** A survivor in a `non-Primary` component refuses
//!   writes; it and the down nodes are compared like the all-down case. A split brain is proven
//!   only by two cluster UUIDs, two Primary components, or a non-member ahead of the component.
//! * **Real ordinals.** Every assessment carries the ordinal parsed from the pod name, and the
//!   leader is named by its pod name, never by a defaulted index.
//!
//! # Verdicts
//! `Diverged` and `Undeterminable` follow the authority. `Healthy` needs every node Synced in
//! the Primary component and no warning. A node that is Joining, Joined or Donor/Desynced
//! (`wsrep_local_state` 1–3, e.g. a donor serving an SST, or `wsrep_desync` for a backup) is
//! `Lagging`: the cluster is then `Unhealthy` (it has one serving node less), but there is
//! nothing to run, so `next_command` stays empty: wait. An `Undeterminable` verdict with no
//! remedy anywhere suggests triaging again once the unread nodes can be read.

mod assess;
mod authority;
mod commands;
mod diagnose;
mod facts;
mod input;
mod parse;
#[cfg(test)]
mod tests;

pub use input::{ClusterView, Condition, GaleraInput, NodeInput};
pub use parse::{
    canonical_uuid, galera_recovery_hints, parse_grastate, parse_log_hint, parse_position,
    parse_recovered_position, parse_wsrep_status, GraState, Position, PositionHint, WsrepStatus,
    DATA_DIR, DF_COMMAND, GRASTATE_COMMAND, GRASTATE_PATH, STATE_SYNCED, WSREP_STATUS_SQL,
};

use serde::Serialize;

use crate::{Authority, Diagnosis, InstanceAssessment, InstanceState, Report, Severity, Verdict};

use authority::{Decision, Quorum};
use commands::Commands;
use diagnose::Findings;
use facts::NodeFacts;

/// The report's `facts`: the input verbatim, plus what was derived from it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Facts<'a> {
    input: &'a GaleraInput,
    /// Per node, in ordinal order: position with provenance, parsed outputs, hints, notes.
    positions: &'a [NodeFacts],
    quorum: &'a Quorum,
}

/// Triage of one Galera cluster. Pure: same input, same report.
pub fn analyze(input: &GaleraInput) -> Report {
    let nodes = derive_nodes(input);
    let decision = authority::decide(&nodes, &input.cluster);
    let commands = Commands::new(&input.cluster);
    let instances = assess::assess(&nodes, &decision, &commands);
    let diagnoses = diagnose::diagnose(&Findings {
        cluster: &input.cluster,
        nodes: &nodes,
        decision: &decision,
        instances: &instances,
        commands,
    });
    let facts = Facts {
        input,
        positions: &nodes,
        quorum: &decision.quorum,
    };
    let verdict = verdict_of(&decision, &instances, &diagnoses);
    // Undeterminable with nothing to run: triage again once the unread nodes can be read.
    let next_command = next_command(&diagnoses, &instances)
        .or_else(|| (verdict == Verdict::Undeterminable).then(|| commands.triage()));
    Report {
        operator_primary: None,
        engine: "galera".to_string(),
        namespace: input.cluster.namespace.clone(),
        cluster: input.cluster.name.clone(),
        verdict,
        safe_to_heal: decision.is_provable(),
        next_command,
        facts: serde_json::to_value(facts).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("facts not serializable: {e}") }),
        ),
        authority: decision.authority,
        instances,
        diagnoses,
    }
}

/// Node facts in ordinal order (nodes without an ordinal last, then by name).
fn derive_nodes(input: &GaleraInput) -> Vec<NodeFacts> {
    let mut nodes: Vec<NodeFacts> = input
        .nodes
        .iter()
        .map(|node| NodeFacts::derive(node, &input.cluster))
        .collect();
    nodes.sort_by(|a, b| {
        (a.ordinal.unwrap_or(u32::MAX), &a.name).cmp(&(b.ordinal.unwrap_or(u32::MAX), &b.name))
    });
    nodes
}

fn verdict_of(
    decision: &Decision,
    instances: &[InstanceAssessment],
    diagnoses: &[Diagnosis],
) -> Verdict {
    match decision.authority {
        Authority::Diverged { .. } => Verdict::Diverged,
        Authority::Undeterminable { .. } => Verdict::Undeterminable,
        Authority::Provable { .. } | Authority::LeaderNotPrimary { .. } => {
            let all_healthy = instances.iter().all(|i| i.state == InstanceState::Healthy);
            let warned = diagnoses.iter().any(|d| d.severity >= Severity::Warning);
            if all_healthy && !warned {
                Verdict::Healthy
            } else {
                Verdict::Unhealthy
            }
        }
    }
}

/// The remedy of the most severe diagnosis that has one, else the first instance remedy.
fn next_command(diagnoses: &[Diagnosis], instances: &[InstanceAssessment]) -> Option<String> {
    diagnoses
        .iter()
        .find_map(|d| d.remedy.clone())
        .or_else(|| instances.iter().find_map(|i| i.remedy.clone()))
}
