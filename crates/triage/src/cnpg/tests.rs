//! Scenario tests: whole clusters as plain data, through [`analyze`].

use super::*;
use crate::{InstanceAssessment, Observed, PodView, Role, VolumeState};

const SYSTEM: u64 = 7_301_234_567_890_123_456;
const FORK_1_TO_2: &str = "1\t0/3000108\tno recovery target specified\n";

fn controldata(system: u64, timeline: u32, checkpoint: &str, state: &str) -> Observed {
    Observed::Output(format!(
        "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           {system}
Database cluster state:               {state}
pg_control last modified:             Mon 23 Nov 2026 05:50:01 PM UTC
Latest checkpoint location:           {checkpoint}
Latest checkpoint's REDO location:    {checkpoint}
Latest checkpoint's REDO WAL file:    {timeline:08X}0000000000000003
Latest checkpoint's TimeLineID:       {timeline}
Latest checkpoint's PrevTimeLineID:   {timeline}
Time of latest checkpoint:            Mon 23 Nov 2026 05:50:01 PM UTC
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
"
    ))
}

fn out(text: &str) -> Observed {
    Observed::Output(text.to_string())
}

fn not_attempted() -> Observed {
    Observed::NotAttempted("pod not running".into())
}

fn df(percent: u32) -> Observed {
    out(&format!(
        "Filesystem     1024-blocks    Used Available Capacity Mounted on\n\
         /dev/rbd0         10255636 4613656   5101308      {percent}% /var/lib/postgresql/data\n"
    ))
}

fn ready_pod() -> Option<PodView> {
    Some(PodView {
        phase: "Running".into(),
        ready: true,
        restarts: 0,
        node: Some("node-a".into()),
    })
}

fn crashloop_pod() -> Option<PodView> {
    Some(PodView {
        phase: "Running".into(),
        ready: false,
        restarts: 7,
        node: Some("node-b".into()),
    })
}

/// A live primary on `timeline` (history given when above 1).
fn primary(name: &str, timeline: u32, history: &str, checkpoint: &str) -> InstanceInput {
    InstanceInput {
        name: name.into(),
        pod: ready_pod(),
        volume: VolumeState::Bound,
        controldata: controldata(SYSTEM, timeline, checkpoint, "in production"),
        history: out(history),
        df: df(48),
        wal_bytes: Some(16_777_216),
        crash_log: None,
        in_recovery: out("f\n"),
        receive_lsn: out("|||\n"),
    }
}

/// A live replica streaming on `timeline` at `replay`.
fn replica(
    name: &str,
    timeline: u32,
    history: &str,
    checkpoint: &str,
    replay: &str,
) -> InstanceInput {
    InstanceInput {
        name: name.into(),
        pod: ready_pod(),
        volume: VolumeState::Bound,
        controldata: controldata(SYSTEM, timeline, checkpoint, "in archive recovery"),
        history: out(history),
        df: df(40),
        wal_bytes: Some(16_777_216),
        crash_log: None,
        in_recovery: out("t\n"),
        receive_lsn: out(&format!("{replay}|{replay}|streaming|{timeline}\n")),
    }
}

/// An instance whose pod is down but whose volume a probe read.
fn probed(
    name: &str,
    timeline: u32,
    history: &str,
    checkpoint: &str,
    state: &str,
) -> InstanceInput {
    InstanceInput {
        name: name.into(),
        pod: crashloop_pod(),
        volume: VolumeState::Bound,
        controldata: controldata(SYSTEM, timeline, checkpoint, state),
        history: out(history),
        df: df(40),
        wal_bytes: None,
        crash_log: Some("LOG:  database system was interrupted".into()),
        in_recovery: not_attempted(),
        receive_lsn: not_attempted(),
    }
}

fn cluster(primary: &str, names: &[&str]) -> ClusterView {
    ClusterView {
        name: "pg".into(),
        namespace: "db".into(),
        phase: Some("Cluster in healthy state".into()),
        instances: names.len() as u32,
        ready_instances: Some(names.len() as u32),
        current_primary: Some(primary.into()),
        target_primary: Some(primary.into()),
        instance_names: names.iter().map(|n| n.to_string()).collect(),
        fenced: vec![],
    }
}

fn queries(instance: &str, replication: &str, slots: &str, wal: &str) -> Option<PrimaryQueries> {
    Some(PrimaryQueries {
        instance: instance.into(),
        stat_replication: out(replication),
        slots: out(slots),
        wal: out(wal),
    })
}

const SLOTS_2_3: &str =
    "_cnpg_pg_2|physical|t|0/3000148|reserved|0\n_cnpg_pg_3|physical|t|0/3000148|reserved|0\n";

fn healthy() -> CnpgInput {
    CnpgInput {
        cluster: cluster("pg-1", &["pg-1", "pg-2", "pg-3"]),
        instances: vec![
            primary("pg-1", 1, "", "0/3000060"),
            replica("pg-2", 1, "", "0/3000060", "0/3000148"),
            replica("pg-3", 1, "", "0/3000060", "0/3000148"),
        ],
        primary: queries(
            "pg-1",
            "pg-2|streaming|0/3000148|0/3000148|0/3000148|0/3000148|0.000512|async\n\
             pg-3|streaming|0/3000148|0/3000148|0/3000148|0/3000148|0.000498|async\n",
            SLOTS_2_3,
            "0/3000148|000000010000000000000003|1|0|-1\n",
        ),
    }
}

fn instance<'a>(report: &'a Report, name: &str) -> &'a InstanceAssessment {
    report.instances.iter().find(|i| i.name == name).unwrap()
}

fn codes(report: &Report) -> Vec<&str> {
    report.diagnoses.iter().map(|d| d.code.as_str()).collect()
}

fn repair(name: &str) -> Option<String> {
    Some(format!(
        "hasteward repair -e cnpg -c pg -n db --instance {name} --dry-run"
    ))
}

const BACKUP: &str = "hasteward backup -e cnpg -c pg -n db";

#[test]
fn healthy_primary_and_two_streaming_replicas() {
    let report = analyze(&healthy());
    assert_eq!(report.verdict, Verdict::Healthy, "{:#?}", report.diagnoses);
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-1".into()
        }
    );
    assert!(report.safe_to_heal);
    assert_eq!(report.next_command, None);
    assert!(report.diagnoses.is_empty(), "{:#?}", report.diagnoses);
    let ordinals: Vec<_> = report.instances.iter().map(|i| i.ordinal).collect();
    assert_eq!(ordinals, vec![Some(1), Some(2), Some(3)]);
    let pg1 = instance(&report, "pg-1");
    assert_eq!(pg1.role, Role::Primary);
    assert_eq!(pg1.position, "TL 1 0/3000148");
    assert_eq!(pg1.disk_percent, Some(48.0));
    for name in ["pg-2", "pg-3"] {
        let replica = instance(&report, name);
        assert_eq!(replica.role, Role::Replica);
        assert_eq!(replica.state, InstanceState::Healthy);
        assert_eq!(replica.lag.as_deref(), Some("0 B"));
        assert_eq!(replica.remedy, None);
    }
    // The facts say which position stood for each instance.
    let lineages = &report.facts["lineages"];
    assert_eq!(
        lineages[0]["evidence"]["lineage"]["positionSource"],
        "current-wal"
    );
    assert_eq!(
        lineages[1]["evidence"]["lineage"]["positionSource"],
        "replay-lsn"
    );
    assert_eq!(report.facts["input"]["cluster"]["currentPrimary"], "pg-1");
    assert_eq!(
        report.facts["primary"]["wal"]["parsed"]["insertTimeline"],
        1
    );
}

#[test]
fn lagging_replica() {
    let mut input = healthy();
    input.instances[2] = replica("pg-3", 1, "", "0/1000028", "0/1000000");
    input.primary = queries(
        "pg-1",
        "pg-2|streaming|0/5000000|0/5000000|0/5000000|0/5000000|0.0005|async\n\
         pg-3|catchup|0/5000000|0/2000000|0/2000000|0/1000000|12.5|async\n",
        SLOTS_2_3,
        "0/5000000|000000010000000000000005|1|0|-1\n",
    );
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert!(report.safe_to_heal);
    let pg3 = instance(&report, "pg-3");
    assert_eq!(pg3.state, InstanceState::Lagging);
    assert_eq!(pg3.lag.as_deref(), Some("67.1 MB"));
    assert_eq!(pg3.remedy, None);
    assert_eq!(codes(&report), vec!["cnpg-replica-lagging"]);
    assert_eq!(instance(&report, "pg-2").state, InstanceState::Healthy);
    assert_eq!(report.next_command, None);
}

/// pg-1 failed, pg-2 was promoted to TL 2. pg-1 came back as a replica following TL 2 (its
/// restartpoint is still on TL 1); pg-3 stayed on TL 1 and does not stream.
fn promoted() -> CnpgInput {
    let mut pg1 = replica("pg-1", 1, "", "0/3000028", "0/5000000");
    pg1.receive_lsn = out("0/5000000|0/5000000|streaming|2\n");
    let mut pg3 = replica("pg-3", 1, "", "0/3000060", "0/3000100");
    pg3.receive_lsn = out("0/3000100|0/3000100||\n");
    CnpgInput {
        cluster: cluster("pg-2", &["pg-1", "pg-2", "pg-3"]),
        instances: vec![pg1, primary("pg-2", 2, FORK_1_TO_2, "0/4000060"), pg3],
        primary: queries(
            "pg-2",
            "pg-1|streaming|0/5000000|0/5000000|0/5000000|0/5000000|0.0004|async\n",
            "_cnpg_pg_1|physical|t|0/5000000|reserved|0\n_cnpg_pg_3|physical|f|0/3000100|reserved|33554176\n",
            "0/5000000|000000020000000000000005|2|0|-1\n",
        ),
    }
}

#[test]
fn replica_left_on_the_old_timeline_at_the_switch_needs_a_restart() {
    let report = analyze(&promoted());
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-2".into()
        }
    );
    assert!(report.safe_to_heal);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    // It replayed nothing past the switch (0/3000100 ≤ 0/3000108): it can follow TL 2.
    let pg3 = instance(&report, "pg-3");
    assert_eq!(pg3.state, InstanceState::NeedsRestart, "{}", pg3.advice);
    assert!(
        pg3.advice.contains("a restart lets it follow TL 2"),
        "{}",
        pg3.advice
    );
    assert_eq!(pg3.position, "TL 1 0/3000060");
    assert_eq!(pg3.remedy, repair("pg-3"));
    assert_eq!(codes(&report), vec!["cnpg-replica-old-timeline"]);
    assert_eq!(report.next_command, repair("pg-3"));
    // Following the new timeline, though its restartpoint is on the old one: healthy.
    let pg1 = instance(&report, "pg-1");
    assert_eq!(pg1.state, InstanceState::Healthy, "{}", pg1.advice);
    assert!(pg1.advice.contains("onto TL 2"));
    assert_eq!(
        report.facts["lineages"][0]["evidence"]["lineage"]["positionSource"],
        "checkpoint"
    );
}

/// Right after the failover the replication views do not answer: pg-1 (restartpoint still on
/// TL 1, cleanly restarted) cannot be told to stream or not, so it is not reseeded.
#[test]
fn unknown_streaming_off_the_timeline_is_unknown_not_reseeded() {
    let mut input = promoted();
    input.instances[0].controldata = controldata(SYSTEM, 1, "0/3000028", "shut down in recovery");
    input.instances[0].receive_lsn = Observed::Failed("connection refused".into());
    if let Some(p) = input.primary.as_mut() {
        p.stat_replication = Observed::Failed("the database system is starting up".into());
    }
    let report = analyze(&input);
    assert!(report.safe_to_heal);
    let pg1 = instance(&report, "pg-1");
    assert_eq!(pg1.state, InstanceState::Unknown, "{}", pg1.advice);
    assert_eq!(pg1.remedy, None);
    assert!(pg1.advice.contains("triage again"), "{}", pg1.advice);
    assert!(
        !codes(&report).contains(&"cnpg-replica-old-timeline") || {
            // Only pg-3's (whose receiver answered) may be reported.
            report
                .diagnoses
                .iter()
                .filter(|d| d.code == "cnpg-replica-old-timeline")
                .all(|d| d.summary.starts_with("pg-3"))
        }
    );
}

#[test]
fn two_primaries_that_both_wrote_past_the_fork_diverge() {
    let mut pg1 = probed("pg-1", 1, "", "0/5000000", "in production");
    pg1.crash_log = None;
    let input = CnpgInput {
        cluster: cluster("pg-2", &["pg-1", "pg-2", "pg-3"]),
        instances: vec![
            pg1,
            primary("pg-2", 2, FORK_1_TO_2, "0/6000000"),
            replica("pg-3", 2, FORK_1_TO_2, "0/5000000", "0/6000000"),
        ],
        primary: queries(
            "pg-2",
            "pg-3|streaming|0/6000000|0/6000000|0/6000000|0/6000000|0.0004|async\n",
            "_cnpg_pg_3|physical|t|0/6000000|reserved|0\n",
            "0/6000000|000000020000000000000006|2|0|-1\n",
        ),
    };
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Diverged);
    assert!(!report.safe_to_heal);
    let Authority::Diverged { reasons } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert_eq!(reasons.len(), 2, "{reasons:#?}"); // pg-1 against pg-2 and against pg-3
    assert!(
        reasons[0].contains("pg-1 (TL 1 at 0/5000000, 33.6 MB WAL past fork)"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[0].contains("pg-2 (TL 2 at 0/6000000, 50.3 MB WAL past fork)"),
        "{}",
        reasons[0]
    );
    assert!(reasons[0].contains("diverged at 0/3000108 on TL 1"));
    for name in ["pg-1", "pg-2", "pg-3"] {
        let i = instance(&report, name);
        assert_eq!(i.state, InstanceState::Diverged, "{name}");
        assert_eq!(i.remedy.as_deref(), Some(BACKUP));
    }
    assert_eq!(codes(&report)[0], "cnpg-split-brain");
    assert_eq!(report.next_command.as_deref(), Some(BACKUP));
}

#[test]
fn two_writable_instances_are_two_primaries() {
    let mut input = healthy();
    input.instances[1].in_recovery = out("f\n");
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Diverged);
    let Authority::Diverged { reasons } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(reasons[0].contains("pg-1, pg-2 all accept writes"));
    assert_eq!(instance(&report, "pg-3").state, InstanceState::Unknown);
}

/// pg-2 was promoted to TL 2 and wrote; the operator still names pg-1 (down, on TL 1, nothing
/// written past the switch point) as primary.
#[test]
fn leader_not_primary() {
    let input = CnpgInput {
        cluster: cluster("pg-1", &["pg-1", "pg-2"]),
        instances: vec![
            probed("pg-1", 1, "", "0/3000028", "shut down"),
            primary("pg-2", 2, FORK_1_TO_2, "0/3000160"),
        ],
        primary: None,
    };
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::LeaderNotPrimary {
            leader: "pg-2".into(),
            primary: "pg-1".into()
        }
    );
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    assert_eq!(codes(&report), vec!["cnpg-authority-not-primary"]);
    assert_eq!(report.next_command.as_deref(), Some(BACKUP));
    assert!(instance(&report, "pg-2").advice.contains("not the primary"));
    assert!(instance(&report, "pg-1")
        .advice
        .contains("lacks history that pg-2 holds"));
    // The position fell back to the checkpoint (no WAL query), and says why.
    assert_eq!(
        report.facts["lineages"][1]["evidence"]["lineage"]["positionNote"],
        "checkpoint: no WAL receiver to pin the replay timeline"
    );
}

/// Restored to 0/5000000 on TL 2 after TL 2 had started at 0/9000000: TL 3's history goes
/// backwards.
const REWOUND: &str = "1\t0/9000000\tno recovery target specified\n\
                       2\t0/5000000\tbefore 2026-11-20 10:00:00+00\n";

fn rewound() -> CnpgInput {
    CnpgInput {
        cluster: cluster("pg-1", &["pg-1", "pg-2"]),
        instances: vec![
            primary("pg-1", 3, REWOUND, "0/50000A0"),
            replica("pg-2", 3, REWOUND, "0/50000A0", "0/5001000"),
        ],
        primary: queries(
            "pg-1",
            "pg-2|streaming|0/5001000|0/5001000|0/5001000|0/5001000|0.0004|async\n",
            "_cnpg_pg_2|physical|t|0/5001000|reserved|0\n",
            "0/5001000|000000030000000000000005|3|0|-1\n",
        ),
    }
}

#[test]
fn rewound_timeline_is_reported_and_still_provable() {
    let report = analyze(&rewound());
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-1".into()
        }
    );
    assert_eq!(report.verdict, Verdict::Healthy);
    assert_eq!(codes(&report), vec!["cnpg-timeline-rewind"]);
    let rewind = &report.diagnoses[0];
    assert_eq!(rewind.severity, Severity::Info);
    assert!(
        rewind
            .summary
            .contains("TL 3 (pg-1, pg-2) was restored to 0/5000000 on TL 2"),
        "{}",
        rewind.summary
    );
}

#[test]
fn rewind_warns_about_wal_the_restore_discarded() {
    let mut input = rewound();
    input.cluster = cluster("pg-1", &["pg-1", "pg-2", "pg-3"]);
    let mut pg3 = probed("pg-3", 1, "", "0/7000000", "shut down in recovery");
    pg3.pod = None;
    input.instances.push(pg3);
    let report = analyze(&input);
    // TL 3's history left TL 1 at the restore point 0/5000000 (not at the first switch,
    // 0/9000000): pg-3 holds TL 1 WAL past it, TL 3 wrote past it too.
    assert_eq!(report.verdict, Verdict::Diverged);
    let Authority::Diverged { reasons } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(
        reasons[0].contains("diverged at 0/5000000 on TL 1"),
        "{reasons:?}"
    );
    assert_eq!(instance(&report, "pg-3").state, InstanceState::Diverged);
    let rewind = report
        .diagnoses
        .iter()
        .find(|d| d.code == "cnpg-timeline-rewind")
        .unwrap();
    assert_eq!(rewind.severity, Severity::Warning);
    assert!(
        rewind.details[0].starts_with("pg-3 (TL 1 0/7000000) holds 33.6 MB"),
        "{:?}",
        rewind.details
    );
}

#[test]
fn an_instance_below_the_restore_point_is_dominated() {
    let mut input = rewound();
    input.cluster = cluster("pg-1", &["pg-1", "pg-2", "pg-3"]);
    let mut pg3 = probed("pg-3", 1, "", "0/4000000", "shut down in recovery");
    pg3.pod = None;
    input.instances.push(pg3);
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-1".into()
        }
    );
    // Its data is TL 3's up to where it stands: a restart lets it follow TL 3.
    assert_eq!(instance(&report, "pg-3").state, InstanceState::NeedsRestart);
}

/// pg-1 was the primary on TL 1 and crashed (`in production`) with its last checkpoint before
/// the switch; pg-2 was promoted to TL 2 and writes. pg-1 may hold unreplicated writes past the
/// switch: whether it does cannot be told from its checkpoint.
#[test]
fn a_crashed_old_primary_checkpointed_before_the_fork_is_undeterminable() {
    let mut pg1 = probed("pg-1", 1, "", "0/3000028", "in production");
    pg1.pod = None;
    let input = CnpgInput {
        cluster: cluster("pg-2", &["pg-1", "pg-2"]),
        instances: vec![pg1, primary("pg-2", 2, FORK_1_TO_2, "0/4000060")],
        primary: queries(
            "pg-2",
            "",
            "",
            "0/5000000|000000020000000000000005|2|0|-1\n",
        ),
    };
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    assert_eq!(
        report.authority,
        Authority::Undeterminable {
            blockers: vec![
                "pg-1: crashed; its last checkpoint (0/3000028 on TL 1) is before the fork at 0/3000108, so whether it wrote past it is unknown".into()
            ]
        }
    );
    assert_eq!(instance(&report, "pg-1").state, InstanceState::Unknown);
    assert_eq!(instance(&report, "pg-1").remedy, None);
    let undeterminable = &report.diagnoses[0];
    assert_eq!(undeterminable.code, "cnpg-undeterminable");
    assert!(
        undeterminable.details[1].starts_with("to fix: escrow pg-1's volume"),
        "{:?}",
        undeterminable.details
    );
    // A clean shutdown before the switch is exact: pg-2 provably holds everything.
    let mut input = input;
    input.instances[0].controldata = controldata(SYSTEM, 1, "0/3000028", "shut down");
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-2".into()
        }
    );
}

#[test]
fn unread_instance_with_a_bound_volume_blocks_the_authority() {
    let mut input = healthy();
    input.instances[1].pod = crashloop_pod();
    input.instances[1].controldata = Observed::Failed("container postgres is not running".into());
    input.instances[1].in_recovery = not_attempted();
    input.instances[1].receive_lsn = not_attempted();
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert_eq!(
        blockers,
        &vec![
            "pg-2: Bound volume, pg_controldata failed: container postgres is not running"
                .to_string()
        ]
    );
    let pg2 = instance(&report, "pg-2");
    assert_eq!(pg2.state, InstanceState::Unknown);
    assert!(pg2.position.starts_with("unread: "));
    assert_eq!(pg2.remedy, None);
    assert_eq!(instance(&report, "pg-3").state, InstanceState::Unknown);
    assert_eq!(codes(&report), vec!["cnpg-undeterminable"]);
    // Nothing to run but triage again, once pg-2 can be read; the diagnosis says what to fix.
    assert_eq!(
        report.next_command.as_deref(),
        Some("hasteward triage -e cnpg -c pg -n db")
    );
    assert_eq!(
        report.diagnoses[0].details[1],
        "to fix: make pg-2's pod run so it can be read, then triage again"
    );
}

#[test]
fn timeline_above_one_without_its_history_is_unread() {
    let mut input = promoted();
    input.instances[1].history = Observed::Failed("cat: can't open '00000002.history'".into());
    let report = analyze(&input);
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(
        blockers[0].starts_with("pg-2: on TL 2 but 00000002.history failed"),
        "{blockers:?}"
    );
}

#[test]
fn an_expected_instance_nobody_looked_at_blocks() {
    let mut input = healthy();
    input.instances.pop();
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::Undeterminable {
            blockers: vec!["pg-3: listed in status.instanceNames but nothing was collected".into()]
        }
    );
}

#[test]
fn missing_volume_is_absent_and_does_not_block() {
    let mut input = healthy();
    input.instances[2] = InstanceInput {
        name: "pg-3".into(),
        pod: None,
        volume: VolumeState::Missing,
        controldata: not_attempted(),
        history: not_attempted(),
        df: not_attempted(),
        wal_bytes: None,
        crash_log: None,
        in_recovery: not_attempted(),
        receive_lsn: not_attempted(),
    };
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-1".into()
        }
    );
    assert_eq!(report.verdict, Verdict::Unhealthy);
    let pg3 = instance(&report, "pg-3");
    assert_eq!(pg3.state, InstanceState::NeedsReseed);
    assert_eq!(pg3.position, "absent: its PVC does not exist");
    assert_eq!(pg3.remedy, repair("pg-3"));
    assert_eq!(report.facts["lineages"][2]["evidence"]["state"], "absent");
}

#[test]
fn different_system_identifiers_diverge() {
    let mut input = healthy();
    input.instances[2].controldata = controldata(
        7_309_999_999_999_999_999,
        1,
        "0/3000060",
        "in archive recovery",
    );
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Diverged);
    let Authority::Diverged { reasons } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(reasons
        .iter()
        .all(|r| r.contains("are different database clusters")));
    assert!(reasons[0].contains("pg-3 (system 7309999999999999999)"));
    assert_eq!(instance(&report, "pg-3").state, InstanceState::Diverged);
}

#[test]
fn divergence_among_readable_instances_survives_the_gate() {
    let mut input = healthy();
    input.instances[2].controldata = controldata(
        7_309_999_999_999_999_999,
        1,
        "0/3000060",
        "in archive recovery",
    );
    input.instances[1].controldata = Observed::Failed("exec timed out".into());
    let report = analyze(&input);
    assert!(matches!(report.authority, Authority::Undeterminable { .. }));
    assert_eq!(report.verdict, Verdict::Diverged);
    assert_eq!(
        codes(&report),
        vec!["cnpg-split-brain", "cnpg-undeterminable"]
    );
}

fn not_streaming_pg3(slots: &str) -> Report {
    let mut input = healthy();
    input.instances[2] = probed("pg-3", 1, "", "0/3000060", "in archive recovery");
    input.primary = queries(
        "pg-1",
        "pg-2|streaming|0/5000000|0/5000000|0/5000000|0/5000000|0.0005|async\n",
        slots,
        "0/5000000|000000010000000000000005|1|0|-1\n",
    );
    analyze(&input)
}

#[test]
fn crashlooping_replica_with_a_slot_needs_a_restart() {
    let report = not_streaming_pg3(
        "_cnpg_pg_2|physical|t|0/5000000|reserved|0\n_cnpg_pg_3|physical|f|0/3000060|reserved|33554330\n",
    );
    assert!(report.safe_to_heal);
    let pg3 = instance(&report, "pg-3");
    assert_eq!(pg3.state, InstanceState::NeedsRestart, "{}", pg3.advice);
    assert!(pg3.advice.contains("_cnpg_pg_3"));
    assert_eq!(pg3.lag.as_deref(), Some("≤ 33.6 MB"));
    assert_eq!(codes(&report), vec!["cnpg-replica-not-streaming"]);
    assert_eq!(report.next_command, repair("pg-3"));
}

#[test]
fn crashlooping_replica_without_a_slot_needs_a_reseed() {
    for slots in [
        "_cnpg_pg_2|physical|t|0/5000000|reserved|0\n",
        "_cnpg_pg_2|physical|t|0/5000000|reserved|0\n_cnpg_pg_3|physical|f|0/3000060|lost|33554330\n",
        // pg-30's slot is not pg-3's.
        "_cnpg_pg_30|physical|f|0/3000060|reserved|33554330\n",
    ] {
        let report = not_streaming_pg3(slots);
        assert_eq!(instance(&report, "pg-3").state, InstanceState::NeedsReseed, "{slots}");
    }
}

#[test]
fn corrupt_replica_needs_a_reseed() {
    let mut input = healthy();
    let mut pg2 = probed("pg-2", 1, "", "0/3000060", "in crash recovery");
    pg2.crash_log = Some(
        "PANIC:  could not locate a valid checkpoint record\nLOG:  startup process was terminated by signal 6".into(),
    );
    input.instances[1] = pg2;
    let report = analyze(&input);
    let pg2 = instance(&report, "pg-2");
    assert_eq!(pg2.state, InstanceState::NeedsReseed);
    assert_eq!(report.diagnoses[0].code, "cnpg-pgdata-corruption");
    assert_eq!(report.diagnoses[0].severity, Severity::Critical);
    assert_eq!(report.next_command, repair("pg-2"));
}

#[test]
fn full_and_low_disks() {
    let mut input = healthy();
    input.instances[0].df = df(93);
    let mut pg3 = probed("pg-3", 1, "", "0/3000060", "in archive recovery");
    pg3.crash_log = Some(
        "FATAL:  could not write to file \"pg_wal/xlogtemp.31\": No space left on device".into(),
    );
    pg3.wal_bytes = Some(9_800_000_000);
    input.instances[2] = pg3;
    let report = analyze(&input);
    assert_eq!(codes(&report), vec!["cnpg-disk-full", "cnpg-disk-low"]);
    assert_eq!(
        report.diagnoses[0].details,
        vec!["no space left on device", "pg_wal holds 9.8 GB"]
    );
    let pg1 = instance(&report, "pg-1");
    assert_eq!(pg1.state, InstanceState::Healthy);
    assert!(pg1.advice.contains("93% full"));
    assert_eq!(instance(&report, "pg-3").state, InstanceState::NeedsReseed);
    assert_eq!(report.verdict, Verdict::Unhealthy);
}

#[test]
fn inactive_slot_retaining_wal_and_fencing_are_reported() {
    let mut input = healthy();
    input.cluster.fenced = vec!["pg-9".into()];
    input.primary = queries(
        "pg-1",
        "pg-2|streaming|0/3000148|0/3000148|0/3000148|0/3000148|0.0005|async\n\
         pg-3|streaming|0/3000148|0/3000148|0/3000148|0/3000148|0.0005|async\n",
        &format!("{SLOTS_2_3}_cnpg_pg_9|physical|f|0/1000000|extended|5368709120\n"),
        "0/3000148|000000010000000000000003|1|0|-1\n",
    );
    let report = analyze(&input);
    assert_eq!(
        codes(&report),
        vec!["cnpg-fenced", "cnpg-slot-retaining-wal"]
    );
    let slot = &report.diagnoses[1];
    assert!(slot.summary.contains("_cnpg_pg_9 holds back 5.4 GB"));
    assert_eq!(
        slot.details,
        vec![
            "max_slot_wal_keep_size is -1: nothing caps what it retains",
            "no instance of the cluster owns it"
        ]
    );
    assert_eq!(report.verdict, Verdict::Unhealthy);
}

#[test]
fn unreadable_replication_status_is_not_called_healthy() {
    let mut input = healthy();
    input.primary = None;
    input.instances[2].receive_lsn = Observed::Failed("connection refused".into());
    let report = analyze(&input);
    assert!(report.safe_to_heal);
    assert_eq!(instance(&report, "pg-2").state, InstanceState::Healthy);
    assert_eq!(instance(&report, "pg-3").state, InstanceState::Unknown);
    assert!(codes(&report).contains(&"cnpg-replication-unread"));
    assert_eq!(report.verdict, Verdict::Unhealthy);
}

#[test]
fn primary_down_needs_a_restart() {
    let mut input = healthy();
    input.instances[0].pod = crashloop_pod();
    input.primary = None;
    let report = analyze(&input);
    assert_eq!(
        report.authority,
        Authority::Provable {
            leader: "pg-1".into()
        }
    );
    assert_eq!(instance(&report, "pg-1").state, InstanceState::NeedsRestart);
    assert_eq!(report.diagnoses[0].code, "cnpg-primary-not-running");
    assert_eq!(report.next_command, repair("pg-1"));
}

#[test]
fn every_volume_missing_is_undeterminable() {
    let mut input = healthy();
    for i in &mut input.instances {
        i.volume = VolumeState::Missing;
        i.controldata = not_attempted();
    }
    let report = analyze(&input);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(
        matches!(&report.authority, Authority::Undeterminable { blockers } if blockers[0].contains("every volume is missing"))
    );
}
