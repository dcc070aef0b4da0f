//! Per-instance assessment: what state each instance is in, one sentence of advice, and the
//! hasteward command that fixes it. Destructive advice (restart, reseed) is only given when the
//! authority is provable; otherwise every instance but the diverged sides is `Unknown`.

use super::authority::AuthorityDecision;
use super::input::{CnpgInput, InstanceInput};
use super::lineage::{Evidence, Lineage, LineageData};
use super::parse::{
    format_lsn, parse_in_recovery, parse_observed, parse_receive, scan_crash_log, CrashFindings,
    ReplicationRow, Slot, WalStatus,
};
use super::{backup_command, repair_command};
use crate::{
    human_bytes, ordinal_of, parse_df_percent, Authority, Diagnosis, InstanceAssessment,
    InstanceState, Role, Severity,
};

/// A replica streaming less than this far behind (one WAL segment) counts as healthy.
pub const LAG_THRESHOLD_BYTES: u64 = 16 * 1024 * 1024;

/// Data-volume use from which the disk counts as low.
pub const DISK_LOW_PERCENT: f64 = 90.0;

/// What the assessment needs besides the instance itself.
pub struct Context<'a> {
    /// The whole input.
    pub input: &'a CnpgInput,
    /// The authority.
    pub decision: &'a AuthorityDecision,
    /// The leader's lineage, when the authority is provable.
    pub leader: Option<&'a LineageData>,
    /// The primary's `pg_stat_replication`, or why it is not known.
    pub replication: Result<Vec<ReplicationRow>, String>,
    /// The primary's replication slots, or why they are not known.
    pub slots: Result<Vec<Slot>, String>,
    /// The primary's WAL state, or why it is not known.
    pub wal: Result<WalStatus, String>,
}

impl Context<'_> {
    fn provable(&self) -> bool {
        self.decision.is_provable()
    }

    fn repair(&self, instance: &str) -> Option<String> {
        Some(repair_command(&self.input.cluster, instance))
    }

    fn backup(&self) -> Option<String> {
        Some(backup_command(&self.input.cluster))
    }
}

/// The verdict on one instance before it is dressed as an [`InstanceAssessment`].
struct Judgement {
    state: InstanceState,
    advice: String,
    remedy: Option<String>,
    lag: Option<String>,
    finding: Option<Finding>,
}

/// A per-instance diagnosis (its remedy is the instance's).
struct Finding {
    code: &'static str,
    severity: Severity,
    summary: String,
    details: Vec<String>,
}

impl Judgement {
    fn new(state: InstanceState, advice: impl Into<String>, remedy: Option<String>) -> Self {
        Self {
            state,
            advice: advice.into(),
            remedy,
            lag: None,
            finding: None,
        }
    }

    fn unknown(advice: impl Into<String>) -> Self {
        Self::new(InstanceState::Unknown, advice, None)
    }

    fn with_finding(mut self, code: &'static str, severity: Severity, summary: String) -> Self {
        self.finding = Some(Finding {
            code,
            severity,
            summary,
            details: Vec::new(),
        });
        self
    }

    fn with_details(mut self, details: Vec<String>) -> Self {
        if let Some(finding) = &mut self.finding {
            finding.details = details;
        }
        self
    }
}

/// Assesses every instance (in ordinal order) and returns the per-instance diagnoses.
pub fn assess_instances(
    ctx: &Context,
    lineages: &[Lineage],
) -> (Vec<InstanceAssessment>, Vec<Diagnosis>) {
    let mut assessments = Vec::new();
    let mut diagnoses = Vec::new();
    for (instance, lineage) in ctx.input.instances.iter().zip(lineages) {
        let (assessment, diagnosis) = assess(ctx, instance, lineage);
        assessments.push(assessment);
        diagnoses.extend(diagnosis);
    }
    assessments.sort_by(|a, b| {
        (a.ordinal.is_none(), a.ordinal, &a.name).cmp(&(b.ordinal.is_none(), b.ordinal, &b.name))
    });
    (assessments, diagnoses)
}

fn assess(
    ctx: &Context,
    instance: &InstanceInput,
    lineage: &Lineage,
) -> (InstanceAssessment, Option<Diagnosis>) {
    let judgement = judge(ctx, instance, lineage);
    let diagnosis = judgement.finding.map(|f| Diagnosis {
        code: f.code.to_string(),
        severity: f.severity,
        summary: f.summary,
        details: f.details,
        remedy: judgement.remedy.clone(),
        instance: Some(instance.name.clone()),
    });
    let assessment = InstanceAssessment {
        name: instance.name.clone(),
        ordinal: ordinal_of(&instance.name),
        role: role_of(ctx.input, instance),
        position: position_text(lineage),
        lag: judgement.lag,
        disk_percent: disk_percent(instance),
        state: judgement.state,
        advice: judgement.advice,
        remedy: judgement.remedy,
        lineage: None,
        seqno: None,
    };
    (assessment, diagnosis)
}

/// Used percentage of the data volume, from `df`.
pub fn disk_percent(instance: &InstanceInput) -> Option<f64> {
    instance.df.output().and_then(parse_df_percent)
}

/// What the crash log (if any) says.
pub fn crash_findings(instance: &InstanceInput) -> CrashFindings {
    instance
        .crash_log
        .as_deref()
        .map(scan_crash_log)
        .unwrap_or_default()
}

/// Primary or replica: what the instance itself answered, else whether it is `currentPrimary`.
fn role_of(input: &CnpgInput, instance: &InstanceInput) -> Role {
    match parse_observed(&instance.in_recovery, parse_in_recovery) {
        Ok(false) => Role::Primary,
        Ok(true) => Role::Replica,
        Err(_) if input.cluster.current_primary.as_deref() == Some(&instance.name) => Role::Primary,
        Err(_) => Role::Replica,
    }
}

fn position_text(lineage: &Lineage) -> String {
    match &lineage.evidence {
        Evidence::Read { lineage, .. } => lineage.describe(),
        Evidence::Unread { reason } => format!("unread: {reason}"),
        Evidence::Absent { reason } => format!("absent: {reason}"),
    }
}

fn judge(ctx: &Context, instance: &InstanceInput, lineage: &Lineage) -> Judgement {
    match &lineage.evidence {
        Evidence::Unread { reason } => Judgement::unknown(format!(
            "Its data could not be read ({reason}), so nothing about it can be decided."
        )),
        Evidence::Absent { reason } if ctx.provable() => Judgement::new(
            InstanceState::NeedsReseed,
            format!("It holds no data ({reason}); rebuild it from the primary."),
            ctx.repair(&instance.name),
        )
        .with_finding(
            "cnpg-instance-no-data",
            Severity::Warning,
            format!("{} holds no data ({reason})", instance.name),
        ),
        Evidence::Absent { .. } => Judgement::unknown(unprovable_advice()),
        Evidence::Read { lineage: data, .. } => match ctx.leader {
            Some(leader) if ctx.provable() => {
                if ctx.decision.leader.as_deref() == Some(instance.name.as_str()) {
                    judge_primary(ctx, instance, data)
                } else {
                    judge_replica(ctx, instance, data, leader)
                }
            }
            _ => judge_unprovable(ctx, &instance.name),
        },
    }
}

fn unprovable_advice() -> &'static str {
    "The authority is not provable, so it needs manual review."
}

fn judge_unprovable(ctx: &Context, name: &str) -> Judgement {
    if ctx.decision.diverged.iter().any(|d| d == name) {
        return Judgement::new(
            InstanceState::Diverged,
            "It holds writes another instance lacks: escrow it, then decide by hand which side to keep.",
            ctx.backup(),
        );
    }
    match &ctx.decision.authority {
        Authority::LeaderNotPrimary { leader, .. } if leader == name => Judgement::new(
            InstanceState::Unknown,
            "It holds the most advanced history but is not the primary: escrow, then review by hand before promoting it.",
            ctx.backup(),
        ),
        Authority::LeaderNotPrimary { leader, primary } if primary == name => Judgement::new(
            InstanceState::Unknown,
            format!("It is the primary but lacks history that {leader} holds: escrow, then review by hand."),
            ctx.backup(),
        ),
        _ => Judgement::unknown(unprovable_advice()),
    }
}

fn is_serving(instance: &InstanceInput) -> bool {
    instance.pod.as_ref().is_some_and(|pod| pod.ready)
}

fn judge_primary(ctx: &Context, instance: &InstanceInput, data: &LineageData) -> Judgement {
    let name = &instance.name;
    let crash = crash_findings(instance);
    if !is_serving(instance) {
        if !crash.corruption.is_empty() {
            return Judgement::new(
                InstanceState::Unknown,
                "Its log shows a corrupt data directory, yet it holds the authoritative data: escrow it and review by hand.",
                ctx.backup(),
            );
        }
        if !crash.disk_full.is_empty() {
            return Judgement::new(
                InstanceState::NeedsRestart,
                "Its volume is full: expand it, and postgres will start again.",
                None,
            );
        }
        let why = if instance.pod.is_none() {
            "has no pod"
        } else {
            "is not ready"
        };
        return Judgement::new(
            InstanceState::NeedsRestart,
            format!("The primary {why}; restart it."),
            ctx.repair(name),
        )
        .with_finding(
            "cnpg-primary-not-running",
            Severity::Critical,
            format!("primary {name} {why}"),
        );
    }
    match disk_percent(instance).filter(|p| *p >= DISK_LOW_PERCENT) {
        Some(percent) => Judgement::new(
            InstanceState::Healthy,
            format!("It serves as primary, but its volume is {percent:.0}% full: expand it."),
            None,
        ),
        None => Judgement::new(
            InstanceState::Healthy,
            format!("Primary on TL {}, serving.", data.timeline),
            None,
        ),
    }
}

/// Whether a replica streams from the primary, and the evidence.
enum Streaming<'a> {
    /// It does (with the primary's walsender row when that was read).
    Yes(Option<&'a ReplicationRow>),
    /// It does not.
    No(String),
    /// Could not be told.
    Unknown(String),
}

fn streaming<'a>(ctx: &'a Context, instance: &InstanceInput) -> Streaming<'a> {
    match &ctx.replication {
        Ok(rows) => match rows.iter().find(|r| r.application_name == instance.name) {
            Some(row) => Streaming::Yes(Some(row)),
            None => Streaming::No("not in the primary's pg_stat_replication".into()),
        },
        Err(reason) => match parse_observed(&instance.receive_lsn, parse_receive) {
            Ok(receive) if receive.receiver_status.as_deref() == Some("streaming") => {
                Streaming::Yes(None)
            }
            Ok(_) => Streaming::No("its WAL receiver is not streaming".into()),
            Err(_) if !is_serving(instance) => Streaming::No("its pod is not ready".into()),
            Err(_) => Streaming::Unknown(format!("pg_stat_replication {reason}")),
        },
    }
}

fn judge_replica(
    ctx: &Context,
    instance: &InstanceInput,
    data: &LineageData,
    leader: &LineageData,
) -> Judgement {
    let crash = crash_findings(instance);
    if !crash.corruption.is_empty() {
        return Judgement::new(
            InstanceState::NeedsReseed,
            "Its log shows a corrupt data directory; rebuild it from the primary.",
            ctx.repair(&instance.name),
        );
    }
    if !crash.disk_full.is_empty() {
        return Judgement::new(
            InstanceState::NeedsReseed,
            "Its volume is full; rebuild it from the primary (or expand the volume).",
            ctx.repair(&instance.name),
        );
    }
    let streaming = streaming(ctx, instance);
    let same_line = data.timeline == leader.timeline && data.switches == leader.switches;
    match streaming {
        Streaming::Yes(row) => judge_streaming(ctx, &instance.name, data, leader, row, same_line),
        // Just after a failover the replication views may not answer yet, while a replica
        // following the new timeline still has its restartpoint on the old one: no verdict.
        Streaming::Unknown(why) => Judgement::unknown(format!(
            "Whether it streams from the primary could not be read ({why}): triage again."
        )),
        _ if !same_line => judge_off_timeline(ctx, &instance.name, data, leader),
        Streaming::No(why) => judge_not_streaming(ctx, instance, data, leader, &why),
    }
}

fn judge_streaming(
    ctx: &Context,
    name: &str,
    data: &LineageData,
    leader: &LineageData,
    row: Option<&ReplicationRow>,
    same_line: bool,
) -> Judgement {
    let lag = lag_behind(ctx, data, leader, row);
    let state = row.map_or("streaming", |r| r.state.as_str());
    let lagging =
        state != "streaming" || lag.is_some_and(|l| l.exact && l.bytes > LAG_THRESHOLD_BYTES);
    let following = if same_line {
        String::new()
    } else {
        format!(
            " onto TL {} (its last restartpoint is on TL {})",
            leader.timeline, data.timeline
        )
    };
    let mut judgement = if lagging {
        Judgement::new(
            InstanceState::Lagging,
            format!("It is {state}{following} and catching up by itself."),
            None,
        )
        .with_finding(
            "cnpg-replica-lagging",
            Severity::Info,
            format!(
                "{name} is {state}{}",
                lag.map_or(String::new(), |l| format!(", {} behind", l.text()))
            ),
        )
    } else {
        Judgement::new(
            InstanceState::Healthy,
            format!("Streaming from the primary{following}."),
            None,
        )
    };
    judgement.lag = lag.map(|l| l.text());
    judgement
}

fn judge_off_timeline(
    ctx: &Context,
    name: &str,
    data: &LineageData,
    leader: &LineageData,
) -> Judgement {
    let switch_index = (data.timeline < leader.timeline)
        .then(|| {
            leader
                .switches
                .iter()
                .position(|s| s.parent_timeline == data.timeline)
        })
        .flatten();
    let details = vec![
        format!("{name}: {}", data.describe()),
        format!("primary: {}", leader.describe()),
    ];
    let Some(index) = switch_index else {
        return Judgement::new(
            InstanceState::NeedsReseed,
            format!(
                "Its TL {} is not in the primary's history (it holds nothing the primary lacks): rebuild it from the primary.",
                data.timeline
            ),
            ctx.repair(name),
        )
        .with_finding(
            "cnpg-replica-branched",
            Severity::Warning,
            format!("{name} is on TL {}, a branch the primary's history does not contain", data.timeline),
        )
        .with_details(details);
    };
    // Where the primary's history left this timeline: the lowest switch from there on.
    let fork = leader.switches[index..]
        .iter()
        .map(|s| s.lsn)
        .min()
        .unwrap_or_default();
    let summary = format!(
        "{name} is on TL {}, the primary on TL {}",
        data.timeline, leader.timeline
    );
    let (state, advice) = if data.wrote_past(fork) == Some(false) {
        (
            InstanceState::NeedsRestart,
            format!(
                "It is left on TL {} at or before the primary's switch at {} and does not stream: a restart lets it follow TL {} (rebuild it if it cannot).",
                data.timeline,
                format_lsn(fork),
                leader.timeline
            ),
        )
    } else {
        (
            InstanceState::NeedsReseed,
            format!(
                "It is left on TL {} while the primary is on TL {} and it does not stream: rebuild it from the primary.",
                data.timeline, leader.timeline
            ),
        )
    };
    Judgement::new(state, advice, ctx.repair(name))
        .with_finding("cnpg-replica-old-timeline", Severity::Warning, summary)
        .with_details(details)
}

fn judge_not_streaming(
    ctx: &Context,
    instance: &InstanceInput,
    data: &LineageData,
    leader: &LineageData,
    why: &str,
) -> Judgement {
    let name = &instance.name;
    if is_serving(instance) && data.position >= leader.position {
        return Judgement::new(
            InstanceState::Healthy,
            "Ready and caught up, though not streaming.",
            None,
        );
    }
    let lag = lag_behind(ctx, data, leader, None).map(|l| l.text());
    let summary = format!("{name} does not stream from the primary ({why})");
    let mut judgement = match &ctx.slots {
        Ok(slots) => match slot_of(slots, name).filter(|s| s.retains_wal()) {
            Some(slot) => Judgement::new(
                InstanceState::NeedsRestart,
                format!(
                    "It does not stream, but slot {} still holds WAL from {}: restart it to catch up.",
                    slot.slot_name,
                    format_lsn(slot.restart_lsn.unwrap_or_default())
                ),
                ctx.repair(name),
            ),
            None => Judgement::new(
                InstanceState::NeedsReseed,
                "It does not stream and no replication slot holds the WAL it needs: rebuild it from the primary.",
                ctx.repair(name),
            ),
        },
        Err(reason) => Judgement::new(
            InstanceState::NeedsRestart,
            format!("It does not stream and its slot could not be read ({reason}): try a restart before a reseed."),
            ctx.repair(name),
        ),
    };
    judgement = judgement
        .with_finding("cnpg-replica-not-streaming", Severity::Warning, summary)
        .with_details(vec![
            format!("{name}: {} ({})", data.describe(), data.position_note),
            format!("primary: {}", leader.describe()),
        ]);
    judgement.lag = lag;
    judgement
}

/// The CloudNativePG slot of `instance`: `_cnpg_<instance with - as _>`, or any slot ending in
/// `_<instance with - as _>` (the prefix is configurable).
pub fn slot_of<'a>(slots: &'a [Slot], instance: &str) -> Option<&'a Slot> {
    let suffix = instance.replace('-', "_");
    let exact = format!("_cnpg_{suffix}");
    let tail = format!("_{suffix}");
    slots
        .iter()
        .find(|s| s.slot_name == exact)
        .or_else(|| slots.iter().find(|s| s.slot_name.ends_with(&tail)))
}

/// How far a replica is behind.
#[derive(Clone, Copy)]
struct Lag {
    bytes: u64,
    /// False when a side is only known from a checkpoint (then it is an upper bound).
    exact: bool,
}

impl Lag {
    fn text(self) -> String {
        let bytes = human_bytes(self.bytes);
        if self.exact {
            bytes
        } else {
            format!("≤ {bytes}")
        }
    }
}

/// From the walsender row and the primary's current WAL when both were read; otherwise from the
/// two positions (an upper bound when the replica's is only a checkpoint).
fn lag_behind(
    ctx: &Context,
    data: &LineageData,
    leader: &LineageData,
    row: Option<&ReplicationRow>,
) -> Option<Lag> {
    if let (Some(replay), Ok(wal)) = (row.and_then(|r| r.replay_lsn), &ctx.wal) {
        return Some(Lag {
            bytes: wal.current_lsn.saturating_sub(replay),
            exact: true,
        });
    }
    if data.timeline != leader.timeline {
        return None;
    }
    use super::lineage::PositionSource::Checkpoint;
    Some(Lag {
        bytes: leader.position.saturating_sub(data.position),
        exact: data.position_source != Checkpoint && leader.position_source != Checkpoint,
    })
}
