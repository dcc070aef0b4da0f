//! Cluster-level diagnoses: the authority's, the crash logs', the disks', the slots', fencing,
//! and timeline rewinds. Per-instance findings come from the assessment.

use super::assess::{crash_findings, disk_percent, slot_of, Context, DISK_LOW_PERCENT};
use super::lineage::{deepest_rewind, Lineage};
use super::parse::format_lsn;
use super::{backup_command, repair_command};
use crate::{human_bytes, Authority, Diagnosis, Severity};

/// An inactive slot holding back more WAL than this is reported.
pub const SLOT_RETENTION_THRESHOLD_BYTES: u64 = 1024 * 1024 * 1024;

fn diagnosis(code: &str, severity: Severity, summary: String) -> Diagnosis {
    Diagnosis {
        code: code.to_string(),
        severity,
        summary,
        details: Vec::new(),
        remedy: None,
        instance: None,
    }
}

/// Every cluster-level diagnosis, unsorted.
pub fn cluster_diagnoses(ctx: &Context, lineages: &[Lineage]) -> Vec<Diagnosis> {
    let mut out = authority_diagnoses(ctx);
    out.extend(crash_diagnoses(ctx));
    out.extend(disk_diagnoses(ctx));
    out.extend(fenced_diagnosis(ctx));
    out.extend(transition_diagnosis(ctx));
    out.extend(replication_unread_diagnosis(ctx));
    out.extend(slot_diagnoses(ctx));
    out.extend(rewind_diagnoses(lineages));
    out
}

fn authority_diagnoses(ctx: &Context) -> Vec<Diagnosis> {
    let cluster = &ctx.input.cluster;
    let mut out = Vec::new();
    if !ctx.decision.divergences.is_empty() {
        let mut d = diagnosis(
            "cnpg-split-brain",
            Severity::Critical,
            format!(
                "instances hold diverged histories ({}): escrow every side before anything else",
                ctx.decision.diverged.join(", ")
            ),
        );
        d.details = ctx.decision.divergences.clone();
        d.remedy = Some(backup_command(cluster));
        out.push(d);
    }
    match &ctx.decision.authority {
        Authority::Undeterminable { blockers } => {
            let mut d = diagnosis(
                "cnpg-undeterminable",
                Severity::Critical,
                "the authoritative instance cannot be decided from what could be read".into(),
            );
            d.details = blockers.clone();
            d.details.extend(what_to_fix(ctx));
            out.push(d);
        }
        Authority::LeaderNotPrimary { leader, primary } => {
            let mut d = diagnosis(
                "cnpg-authority-not-primary",
                Severity::Critical,
                format!("{leader} holds the most advanced history, but the primary is {primary}"),
            );
            d.details = vec![
                format!("writes on {primary} would fork away from {leader}'s history"),
                "escrow every instance, then promote the authority by hand".into(),
            ];
            d.remedy = Some(backup_command(cluster));
            out.push(d);
        }
        Authority::Provable { .. } | Authority::Diverged { .. } => {}
    }
    out
}

/// What would let the authority be decided, one line per unread or undecided instance.
fn what_to_fix(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    for instance in &ctx.input.instances {
        let name = &instance.name;
        if ctx.decision.undecided.contains(name) {
            out.push(format!(
                "to fix: escrow {name}'s volume and read its WAL past its last checkpoint by hand (pg_waldump); keep it from starting, it could be rewound onto the other history"
            ));
        } else if ctx.decision.unread.contains(name) {
            out.push(match &instance.pod {
                Some(pod) if pod.is_running() && pod.ready => format!(
                    "to fix: {name} runs but its data could not be read: find out why, then triage again"
                ),
                _ => format!("to fix: make {name}'s pod run so it can be read, then triage again"),
            });
        }
    }
    out
}

fn crash_diagnoses(ctx: &Context) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    for instance in &ctx.input.instances {
        let found = crash_findings(instance);
        let name = &instance.name;
        if !found.corruption.is_empty() {
            let mut d = diagnosis(
                "cnpg-pgdata-corruption",
                Severity::Critical,
                format!("{name}'s log shows a corrupt data directory"),
            );
            d.details = found.corruption.clone();
            d.remedy = instance_remedy(ctx, name);
            out.push(d);
        }
        if !found.disk_full.is_empty() {
            let mut d = diagnosis(
                "cnpg-disk-full",
                Severity::Critical,
                format!("{name}'s volume is full"),
            );
            d.details = found.disk_full.clone();
            d.details.extend(wal_detail(instance.wal_bytes));
            d.instance = Some(name.clone());
            d.remedy = wal_relief_remedy(ctx, name).or_else(|| instance_remedy(ctx, name));
            out.push(d);
        }
    }
    out
}

/// Repair for a non-leader when the authority is provable; escrow for the authority itself.
fn instance_remedy(ctx: &Context, name: &str) -> Option<String> {
    let cluster = &ctx.input.cluster;
    if ctx.decision.leader.as_deref() == Some(name) {
        Some(backup_command(cluster))
    } else if ctx.decision.is_provable() {
        Some(repair_command(cluster, name))
    } else {
        None
    }
}

/// WAL relief for the operator's primary (the instance whose data counts) when it is full.
fn wal_relief_remedy(ctx: &Context, name: &str) -> Option<String> {
    let cluster = &ctx.input.cluster;
    (cluster.current_primary.as_deref() == Some(name)).then(|| {
        format!(
            "hasteward repair -e cnpg -c {} -n {} --prune-wal {name} --dry-run",
            cluster.name, cluster.namespace
        )
    })
}

fn wal_detail(wal_bytes: Option<u64>) -> Option<String> {
    wal_bytes.map(|b| format!("pg_wal holds {}", human_bytes(b)))
}

fn disk_diagnoses(ctx: &Context) -> Vec<Diagnosis> {
    ctx.input
        .instances
        .iter()
        .filter_map(|instance| {
            let percent = disk_percent(instance).filter(|p| *p >= DISK_LOW_PERCENT)?;
            let mut d = diagnosis(
                "cnpg-disk-low",
                Severity::Warning,
                format!(
                    "{}'s volume is {percent:.0}% full: expand it",
                    instance.name
                ),
            );
            d.details.extend(wal_detail(instance.wal_bytes));
            d.instance = Some(instance.name.clone());
            Some(d)
        })
        .collect()
}

fn fenced_diagnosis(ctx: &Context) -> Option<Diagnosis> {
    let fenced = &ctx.input.cluster.fenced;
    if fenced.is_empty() {
        return None;
    }
    let who = if fenced.iter().any(|f| f == "*") {
        "every instance".to_string()
    } else {
        fenced.join(", ")
    };
    let mut d = diagnosis(
        "cnpg-fenced",
        Severity::Warning,
        format!("{who} fenced: postgres is stopped there on purpose"),
    );
    d.details = vec![
        "cnpg.io/fencedInstances is set; lift the fence only once its reason is understood".into(),
    ];
    Some(d)
}

fn transition_diagnosis(ctx: &Context) -> Option<Diagnosis> {
    let cluster = &ctx.input.cluster;
    let (Some(current), Some(target)) = (&cluster.current_primary, &cluster.target_primary) else {
        return None;
    };
    (current != target).then(|| {
        diagnosis(
            "cnpg-primary-transition",
            Severity::Warning,
            format!("a switchover or failover is under way ({current} → {target}): triage again once it settles"),
        )
    })
}

fn replication_unread_diagnosis(ctx: &Context) -> Option<Diagnosis> {
    if !ctx.decision.is_provable() {
        return None;
    }
    let reason = ctx.replication.as_ref().err()?;
    let mut d = diagnosis(
        "cnpg-replication-unread",
        Severity::Warning,
        "the primary's replication status could not be read".into(),
    );
    d.details = vec![format!("pg_stat_replication {reason}")];
    Some(d)
}

fn slot_diagnoses(ctx: &Context) -> Vec<Diagnosis> {
    let Ok(slots) = &ctx.slots else {
        return Vec::new();
    };
    let unlimited = ctx
        .wal
        .as_ref()
        .is_ok_and(|w| w.max_slot_wal_keep_size == "-1");
    slots
        .iter()
        .filter(|s| !s.active && s.bytes_behind.unwrap_or(0) > SLOT_RETENTION_THRESHOLD_BYTES)
        .map(|slot| {
            let mut d = diagnosis(
                "cnpg-slot-retaining-wal",
                Severity::Warning,
                format!(
                    "inactive slot {} holds back {} of WAL on the primary",
                    slot.slot_name,
                    human_bytes(slot.bytes_behind.unwrap_or(0))
                ),
            );
            if unlimited {
                d.details
                    .push("max_slot_wal_keep_size is -1: nothing caps what it retains".into());
            }
            let owner = ctx
                .input
                .instances
                .iter()
                .find(|i| slot_of(std::slice::from_ref(slot), &i.name).is_some());
            match owner {
                Some(instance) => d.details.push(format!("it belongs to {}", instance.name)),
                None => d.details.push("no instance of the cluster owns it".into()),
            }
            d
        })
        .collect()
}

/// One diagnosis per distinct rewound history, naming every instance on it. Info, unless an
/// instance on an ancestor timeline holds WAL past the restore point (the restore discarded it).
fn rewind_diagnoses(lineages: &[Lineage]) -> Vec<Diagnosis> {
    let readable: Vec<_> = lineages
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.data()?)))
        .collect();
    let mut out: Vec<Diagnosis> = Vec::new();
    let mut seen = Vec::new();
    for (_, data) in &readable {
        let Some((low, high)) = deepest_rewind(&data.switches) else {
            continue;
        };
        let key = (data.timeline, &data.switches);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let holders: Vec<&str> = readable
            .iter()
            .filter(|(_, o)| o.timeline == data.timeline && o.switches == data.switches)
            .map(|(n, _)| *n)
            .collect();
        let mut d = diagnosis(
            "cnpg-timeline-rewind",
            Severity::Info,
            format!(
                "TL {} ({}) was restored to {} on TL {}, below the earlier switch at {}: a point-in-time restore",
                data.timeline,
                holders.join(", "),
                format_lsn(low.lsn),
                low.parent_timeline,
                format_lsn(high.lsn)
            ),
        );
        let rewound_index = data
            .switches
            .iter()
            .position(|s| std::ptr::eq(s, low))
            .unwrap_or(0);
        let ancestors: Vec<u32> = data.switches[..=rewound_index]
            .iter()
            .map(|s| s.parent_timeline)
            .collect();
        for (name, other) in &readable {
            if ancestors.contains(&other.timeline) && other.position > low.lsn {
                d.severity = Severity::Warning;
                d.details.push(format!(
                    "{name} ({}) holds {} of WAL past the restore point that the restore discarded",
                    other.describe(),
                    human_bytes(other.position - low.lsn)
                ));
            }
        }
        out.push(d);
    }
    out
}
