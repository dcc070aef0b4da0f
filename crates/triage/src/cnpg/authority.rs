//! Who holds the authoritative data: the legibility gate, pairwise [`relate`], and the leader.

use super::input::CnpgInput;
use super::lineage::{relate, Fork, Lineage, LineageData, Relation};
use super::parse::{format_lsn, parse_in_recovery, parse_observed};
use crate::{human_bytes, Authority};

/// The authority and what the assessment needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityDecision {
    /// The outcome.
    pub authority: Authority,
    /// The instance the data points to, when one was found (even if not provable).
    pub leader: Option<String>,
    /// Instances on a side of a divergence.
    pub diverged: Vec<String>,
    /// Divergences among the readable instances, one line each. Found even when an unread
    /// instance makes the authority undeterminable: an unread member cannot undo them.
    pub divergences: Vec<String>,
    /// Instances whose lineage could not be read (they block the decision).
    pub unread: Vec<String>,
    /// Instances whose writes past a fork cannot be told from their checkpoint (they block the
    /// decision).
    pub undecided: Vec<String>,
}

impl AuthorityDecision {
    /// Whether the authority is provable (the only case destructive remedies are safe).
    pub fn is_provable(&self) -> bool {
        matches!(self.authority, Authority::Provable { .. })
    }
}

/// Decides the authority. Order: divergences are collected over every readable pair; then the
/// legibility gate (any unread instance → undeterminable); then divergence; then the leader,
/// compared with `status.currentPrimary`.
pub fn decide_authority(input: &CnpgInput, lineages: &[Lineage]) -> AuthorityDecision {
    let readable: Vec<(&str, &LineageData)> = lineages
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.data()?)))
        .collect();
    let (mut divergences, mut diverged) = wal_divergences(&readable);
    let writable = writable_instances(input);
    if writable.len() > 1 {
        divergences.push(format!(
            "{} all accept writes (pg_is_in_recovery() = f): more than one primary",
            writable.join(", ")
        ));
        diverged.extend(writable);
    }
    diverged.sort();
    diverged.dedup();
    let unread: Vec<String> = lineages
        .iter()
        .filter(|l| matches!(l.evidence, super::Evidence::Unread { .. }))
        .map(|l| l.name.clone())
        .collect();
    let (undecided, undecided_lines) = undecided_blockers(&readable);
    let decide = |authority, leader| AuthorityDecision {
        authority,
        leader,
        diverged: diverged.clone(),
        divergences: divergences.clone(),
        unread: unread.clone(),
        undecided: undecided.clone(),
    };

    let mut blockers = blockers(input, lineages);
    blockers.extend(undecided_lines);
    if !blockers.is_empty() {
        return decide(Authority::Undeterminable { blockers }, None);
    }
    if !divergences.is_empty() {
        let reasons = divergences.clone();
        return decide(Authority::Diverged { reasons }, None);
    }
    let primary = input.cluster.current_primary.as_deref();
    let Some(leader) = choose_leader(&readable, primary) else {
        let blocker = if readable.is_empty() {
            "no instance holds readable data (every volume is missing)"
        } else {
            "no instance holds every other instance's history"
        };
        return decide(undeterminable(blocker), None);
    };
    let authority = match primary {
        None => undeterminable(&format!(
            "status.currentPrimary is not set; the data points to {leader}"
        )),
        Some(primary) if primary == leader => Authority::Provable {
            leader: leader.to_string(),
        },
        Some(primary) => Authority::LeaderNotPrimary {
            leader: leader.to_string(),
            primary: primary.to_string(),
        },
    };
    decide(authority, Some(leader.to_string()))
}

fn undeterminable(blocker: &str) -> Authority {
    Authority::Undeterminable {
        blockers: vec![blocker.to_string()],
    }
}

/// One line per unread instance, and per expected instance nothing was collected for.
fn blockers(input: &CnpgInput, lineages: &[Lineage]) -> Vec<String> {
    let unread = lineages.iter().filter_map(|l| match &l.evidence {
        super::Evidence::Unread { reason } => Some(format!("{}: {reason}", l.name)),
        _ => None,
    });
    let unobserved = input
        .cluster
        .instance_names
        .iter()
        .filter(|name| !lineages.iter().any(|l| &l.name == *name))
        .map(|name| format!("{name}: listed in status.instanceNames but nothing was collected"));
    unread.chain(unobserved).collect()
}

/// The instances whose writes past a fork cannot be told (the position is only a checkpoint at
/// or below the fork: they may hold writes nobody else has), and one blocker line each.
fn undecided_blockers(readable: &[(&str, &LineageData)]) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for (i, (a_name, a)) in readable.iter().enumerate() {
        for (b_name, b) in &readable[i + 1..] {
            let Relation::Undecided { lsn, first, second } = relate(a, b) else {
                continue;
            };
            let sides = [(first, *a_name, *a), (second, *b_name, *b)];
            for (unknown, name, data) in sides {
                if unknown && !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                    out.push(undecided_reason(name, data, lsn));
                }
            }
        }
    }
    (names, out)
}

fn undecided_reason(name: &str, data: &LineageData, fork: u64) -> String {
    let checkpoint = format_lsn(data.checkpoint);
    let fork = format_lsn(fork);
    if data.cluster_state == "in production" {
        format!(
            "{name}: crashed; its last checkpoint ({checkpoint} on TL {}) is before the fork at {fork}, so whether it wrote past it is unknown",
            data.timeline
        )
    } else {
        format!(
            "{name}: not shut down cleanly ({}); its last checkpoint ({checkpoint} on TL {}) is before the fork at {fork}, so whether it holds WAL past it is unknown",
            data.cluster_state, data.timeline
        )
    }
}

/// Instances that answered `pg_is_in_recovery() = f`.
fn writable_instances(input: &CnpgInput) -> Vec<String> {
    input
        .instances
        .iter()
        .filter(|i| parse_observed(&i.in_recovery, parse_in_recovery) == Ok(false))
        .map(|i| i.name.clone())
        .collect()
}

/// Every diverged pair, as a reason line, and the instances involved.
fn wal_divergences(readable: &[(&str, &LineageData)]) -> (Vec<String>, Vec<String>) {
    let mut reasons = Vec::new();
    let mut names = Vec::new();
    for (i, (a_name, a)) in readable.iter().enumerate() {
        for (b_name, b) in &readable[i + 1..] {
            if let Relation::Diverged(fork) = relate(a, b) {
                reasons.push(divergence_reason((a_name, a), (b_name, b), &fork));
                names.extend([a_name.to_string(), b_name.to_string()]);
            }
        }
    }
    (reasons, names)
}

fn divergence_reason(a: (&str, &LineageData), b: (&str, &LineageData), fork: &Fork) -> String {
    match fork {
        Fork::ForeignSystem => format!(
            "{} (system {}) and {} (system {}) are different database clusters: WAL cannot relate them",
            a.0, a.1.system_identifier, b.0, b.1.system_identifier
        ),
        Fork::At { lsn, timeline } => {
            let side = |(name, l): (&str, &LineageData)| {
                format!(
                    "{name} (TL {} at {}, {} WAL past fork)",
                    l.timeline,
                    format_lsn(l.position),
                    human_bytes(l.position.saturating_sub(*lsn))
                )
            };
            let on = timeline.map_or(String::new(), |tl| format!(" on TL {tl}"));
            format!(
                "{} and {} diverged at {}{on}: each holds writes the other lacks (weigh the content, not the WAL volume)",
                side(a),
                side(b),
                format_lsn(*lsn)
            )
        }
    }
}

/// The instance no other dominates; ties go to the current primary, then the highest position,
/// then the name.
fn choose_leader<'a>(
    readable: &[(&'a str, &LineageData)],
    primary: Option<&str>,
) -> Option<&'a str> {
    let dominated = |(name, l): &(&str, &LineageData)| {
        readable
            .iter()
            .any(|(other, o)| other != name && relate(o, l) == Relation::FirstDominates)
    };
    readable
        .iter()
        .filter(|candidate| !dominated(candidate))
        .min_by(|(a_name, a), (b_name, b)| {
            let is_primary = |name: &str| Some(name) == primary;
            is_primary(b_name)
                .cmp(&is_primary(a_name))
                .then(b.position.cmp(&a.position))
                .then(a_name.cmp(b_name))
        })
        .map(|(name, _)| *name)
}
