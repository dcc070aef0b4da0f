//! CloudNativePG triage: from what the instances report (`pg_controldata`, the timeline history,
//! a few SQL queries, pods and PVCs) to a [`Report`].
//!
//! # Why WAL lineage, not the operator's status
//! `status.currentPrimary` says whom the operator *believes* is primary. After a lost status
//! update, a manual promotion or a restore, that belief and the data can disagree, and healing
//! around the wrong instance throws away committed writes. So the authority is decided from the
//! data alone: each instance's timeline, the chain of timeline switches in its history file, and
//! its WAL position ([`lineage`]). Two instances are related by [`relate`]:
//!
//! - identical chains on one timeline: the higher position holds everything the other does;
//! - one chain extends the other: the extender holds more unless the ancestor wrote past the
//!   switch point; if only the ancestor did (a restore on a bumped timeline that never wrote),
//!   the ancestor holds more; if both did, they diverged;
//! - a real fork (or sibling timelines): whoever alone wrote past the fork holds more; both →
//!   diverged;
//! - the fork point is the lowest switch LSN past the shared chain, not the first one: a later
//!   switch below an earlier one (a point-in-time restore) left the parent's WAL there;
//! - "wrote nothing past the fork" needs an exact position (a live one, or the checkpoint of a
//!   clean shutdown, or a live standby's replay at or below the fork). A crashed instance's
//!   checkpoint is only a lower bound: at or below the fork it is [`Relation::Undecided`], which
//!   blocks the authority like an unread instance;
//! - different `Database system identifier`s: different `initdb`s, never related (diverged).
//!
//! The leader is the instance no other dominates (ties: the current primary, the highest
//! position, the name). Only when it is `status.currentPrimary` is the authority
//! [`Authority::Provable`], and only then are restarts and reseeds advised.
//!
//! # Fail closed
//! - **Legibility gate**: an instance whose volume may hold data but whose lineage could not be
//!   read (controldata failed, or timeline above 1 without its history) blocks the decision:
//!   [`Authority::Undeterminable`], one blocker per instance. A missing PVC is provably empty
//!   ([`Evidence::Absent`]) and does not block. Divergences between the readable instances are
//!   still reported (an unread member cannot undo them), and make the verdict `diverged`.
//! - Positions are never defaulted: the live primary's `pg_current_wal_lsn()` and a replica's
//!   replay LSN are used only when provably on the timeline the history describes; otherwise the
//!   checkpoint (a lower bound) stands, and the facts say which was used and why.
//! - Two instances answering `pg_is_in_recovery() = f` are two primaries: diverged.
//! - `LeaderNotPrimary` maps to the `undeterminable` verdict: the data names a leader, but acting
//!   on it means a manual promotion, so nothing destructive is safe.
//!
//! A timeline history whose switch LSNs go backwards is the fingerprint of a point-in-time
//! restore: reported (`cnpg-timeline-rewind`), not a divergence by itself.
//!
//! Everything here is pure; the collector runs [`commands`] and hands the raw text over in a
//! [`CnpgInput`].

mod assess;
mod authority;
pub mod commands;
mod diagnose;
mod input;
pub mod lineage;
mod parse;
#[cfg(test)]
mod tests;
pub mod walrelief;

pub use assess::{slot_of, DISK_LOW_PERCENT, LAG_THRESHOLD_BYTES};
pub use authority::{decide_authority, AuthorityDecision};
pub use commands::*;
pub use diagnose::SLOT_RETENTION_THRESHOLD_BYTES;
pub use input::{ClusterView, CnpgInput, InstanceInput, PrimaryQueries};
pub use lineage::{
    build_lineages, relate, Evidence, Fork, Lineage, LineageData, PositionSource, Relation,
};
pub use parse::*;

use serde::Serialize;

use crate::{Authority, Diagnosis, InstanceState, Report, Severity, Verdict};

/// The repair command for one instance (restart or reseed, decided by the repair itself).
pub fn repair_command(cluster: &ClusterView, instance: &str) -> String {
    format!(
        "hasteward repair -e cnpg -c {} -n {} --instance {instance} --dry-run",
        cluster.name, cluster.namespace
    )
}

/// Triage again: what to run when nothing can be done until unread instances can be read.
pub fn triage_command(cluster: &ClusterView) -> String {
    format!(
        "hasteward triage -e cnpg -c {} -n {}",
        cluster.name, cluster.namespace
    )
}

/// The escrow command: back up every instance before anything irreversible.
pub fn backup_command(cluster: &ClusterView) -> String {
    format!(
        "hasteward backup -e cnpg -c {} -n {}",
        cluster.name, cluster.namespace
    )
}

/// The report's `facts`: the input in full, plus what was derived from it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Facts<'a> {
    input: &'a CnpgInput,
    lineages: &'a [Lineage],
    primary: Option<PrimaryFacts<'a>>,
}

/// The primary's queries, parsed (or why not).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrimaryFacts<'a> {
    instance: &'a str,
    stat_replication: ParsedFact<'a, Vec<ReplicationRow>>,
    slots: ParsedFact<'a, Vec<Slot>>,
    wal: ParsedFact<'a, WalStatus>,
}

/// `{"parsed": …}` or `{"unread": "why"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ParsedFact<'a, T> {
    Parsed(&'a T),
    Unread(&'a str),
}

impl<'a, T> From<&'a Result<T, String>> for ParsedFact<'a, T> {
    fn from(result: &'a Result<T, String>) -> Self {
        match result {
            Ok(value) => Self::Parsed(value),
            Err(reason) => Self::Unread(reason),
        }
    }
}

/// Triage of one CloudNativePG cluster.
pub fn analyze(input: &CnpgInput) -> Report {
    let lineages = build_lineages(input);
    let decision = decide_authority(input, &lineages);
    let leader = decision
        .leader
        .as_deref()
        .and_then(|name| lineages.iter().find(|l| l.name == name))
        .and_then(Lineage::data);
    let primary_query = |pick: fn(&PrimaryQueries) -> &crate::Observed| match &input.primary {
        Some(p) => Ok(pick(p)),
        None => Err("not attempted: no primary was queried".to_string()),
    };
    let ctx = assess::Context {
        input,
        decision: &decision,
        leader,
        replication: primary_query(|p| &p.stat_replication)
            .and_then(|o| parse_observed(o, parse_stat_replication)),
        slots: primary_query(|p| &p.slots).and_then(|o| parse_observed(o, parse_slots)),
        wal: primary_query(|p| &p.wal).and_then(|o| parse_observed(o, parse_wal)),
    };
    let (instances, mut diagnoses) = assess::assess_instances(&ctx, &lineages);
    diagnoses.extend(diagnose::cluster_diagnoses(&ctx, &lineages));
    diagnoses.sort_by_key(|d| std::cmp::Reverse(d.severity));

    let verdict = verdict(&decision, &instances, &diagnoses);
    let next_command = next_command(&diagnoses, &instances)
        .or_else(|| (verdict == Verdict::Undeterminable).then(|| triage_command(&input.cluster)));
    let facts = Facts {
        input,
        lineages: &lineages,
        primary: input.primary.as_ref().map(|p| PrimaryFacts {
            instance: &p.instance,
            stat_replication: (&ctx.replication).into(),
            slots: (&ctx.slots).into(),
            wal: (&ctx.wal).into(),
        }),
    };
    Report {
        operator_primary: input.cluster.current_primary.clone(),
        engine: "cnpg".into(),
        namespace: input.cluster.namespace.clone(),
        cluster: input.cluster.name.clone(),
        verdict,
        safe_to_heal: decision.is_provable(),
        authority: decision.authority.clone(),
        instances,
        diagnoses,
        next_command,
        facts: serde_json::to_value(&facts)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
    }
}

fn verdict(
    decision: &AuthorityDecision,
    instances: &[crate::InstanceAssessment],
    diagnoses: &[Diagnosis],
) -> Verdict {
    if !decision.divergences.is_empty() {
        return Verdict::Diverged;
    }
    match decision.authority {
        Authority::Diverged { .. } => Verdict::Diverged,
        Authority::Undeterminable { .. } | Authority::LeaderNotPrimary { .. } => {
            Verdict::Undeterminable
        }
        Authority::Provable { .. } => {
            let all_healthy = instances.iter().all(|i| i.state == InstanceState::Healthy);
            let nothing_to_fix = diagnoses.iter().all(|d| d.severity < Severity::Warning);
            if all_healthy && nothing_to_fix {
                Verdict::Healthy
            } else {
                Verdict::Unhealthy
            }
        }
    }
}

/// The remedy of the most severe diagnosis that has one, else the first instance remedy. (An
/// undeterminable verdict with no remedy anywhere falls back to triaging again.)
fn next_command(
    diagnoses: &[Diagnosis],
    instances: &[crate::InstanceAssessment],
) -> Option<String> {
    diagnoses
        .iter()
        .find_map(|d| d.remedy.clone())
        .or_else(|| instances.iter().find_map(|i| i.remedy.clone()))
}
