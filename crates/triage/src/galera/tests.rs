//! Whole-cluster scenarios, built from realistic outputs.

use super::*;
use crate::{Observed, PodView, VolumeState};

const UUID: &str = "6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11";
const OTHER_UUID: &str = "9f3b7d20-3c44-11ef-a1b2-0242ac120002";
const NS: &str = "db";
const CLUSTER: &str = "mariadb-galera";

fn name(ordinal: u32) -> String {
    format!("{CLUSTER}-{ordinal}")
}

fn cluster(replicas: u32) -> ClusterView {
    ClusterView {
        name: CLUSTER.to_string(),
        namespace: NS.to_string(),
        replicas,
        conditions: vec![
            condition("Ready", "True", "StatefulSetReady", "Running"),
            condition("GaleraReady", "True", "GaleraReady", "Galera ready"),
        ],
        suspended: false,
        galera_recovery: None,
    }
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        kind: kind.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

fn pod(ready: bool, restarts: u32) -> Option<PodView> {
    Some(PodView {
        phase: "Running".to_string(),
        ready,
        restarts,
        node: Some("worker-1".to_string()),
    })
}

fn wsrep(state: u32, comment: &str, status: &str, size: u32, seqno: i64, uuid: &str) -> Observed {
    let ready = if state == 4 || state == 2 {
        "ON"
    } else {
        "OFF"
    };
    Observed::Output(format!(
        "WSREP_APPLY_OOOE\t0.000000\n\
         WSREP_CLUSTER_CONF_ID\t7\n\
         WSREP_CLUSTER_SIZE\t{size}\n\
         WSREP_CLUSTER_STATE_UUID\t{uuid}\n\
         WSREP_CLUSTER_STATUS\t{status}\n\
         WSREP_CONNECTED\tON\n\
         WSREP_FLOW_CONTROL_PAUSED\t0\n\
         WSREP_LAST_COMMITTED\t{seqno}\n\
         WSREP_LOCAL_RECV_QUEUE\t0\n\
         WSREP_LOCAL_STATE\t{state}\n\
         WSREP_LOCAL_STATE_COMMENT\t{comment}\n\
         WSREP_PROVIDER_NAME\tGalera\n\
         WSREP_READY\t{ready}\n"
    ))
}

fn grastate(uuid: &str, seqno: i64, safe_to_bootstrap: bool) -> Observed {
    Observed::Output(format!(
        "# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   {seqno}\n\
         safe_to_bootstrap: {}\n",
        u8::from(safe_to_bootstrap)
    ))
}

fn recovered(uuid: &str, seqno: i64) -> Observed {
    Observed::Output(format!(
        "2024-06-12 10:01:02 0 [Note] Starting MariaDB 10.11.19-MariaDB-deb12 as process 1\n\
         2024-06-12 10:01:02 0 [Note] InnoDB: Starting crash recovery from checkpoint LSN=46846\n\
         2024-06-12 10:01:03 0 [Note] WSREP: Recovered position: {uuid}:{seqno}\n\
         2024-06-12 10:01:03 0 [Note] InnoDB: Buffer pool(s) dump completed at 240612 10:01:03\n"
    ))
}

fn df(percent: u32) -> Observed {
    Observed::Output(format!(
        "Filesystem     1024-blocks    Used Available Capacity Mounted on\n\
         /dev/rbd0         10255636 4613656   5101308      {percent}% /var/lib/mysql\n"
    ))
}

fn not_attempted(why: &str) -> Observed {
    Observed::NotAttempted(why.to_string())
}

/// A Synced member of a Primary component of `size`.
fn synced(ordinal: u32, seqno: i64, size: u32) -> NodeInput {
    NodeInput {
        name: name(ordinal),
        pod: pod(true, 0),
        volume: VolumeState::Bound,
        grastate: grastate(UUID, -1, false),
        wsrep: wsrep(4, "Synced", "Primary", size, seqno, UUID),
        recovered: not_attempted("mariadbd is running"),
        log_hint: None,
        df: df(41),
    }
}

/// A node that is not running (`pod`: `None` = no pod, or a crash-looping pod).
fn crashed(ordinal: u32, pod: Option<PodView>, grastate_seqno: i64) -> NodeInput {
    NodeInput {
        name: name(ordinal),
        pod,
        volume: VolumeState::Bound,
        grastate: grastate(UUID, grastate_seqno, false),
        wsrep: not_attempted("mariadbd is not running"),
        recovered: not_attempted("not allowed: pass --recover-positions"),
        log_hint: None,
        df: df(41),
    }
}

fn with_recovered(mut node: NodeInput, uuid: &str, seqno: i64) -> NodeInput {
    node.recovered = recovered(uuid, seqno);
    node
}

fn analyze_nodes(nodes: Vec<NodeInput>) -> Report {
    let replicas = u32::try_from(nodes.len()).unwrap();
    analyze(&GaleraInput {
        cluster: cluster(replicas),
        nodes,
    })
}

fn instance(report: &Report, ordinal: u32) -> &InstanceAssessment {
    let name = name(ordinal);
    report.instances.iter().find(|i| i.name == name).unwrap()
}

fn codes(report: &Report) -> Vec<&str> {
    report.diagnoses.iter().map(|d| d.code.as_str()).collect()
}

fn leader(report: &Report) -> &str {
    match &report.authority {
        Authority::Provable { leader } => leader,
        other => panic!("not provable: {other:?}"),
    }
}

fn repair(node: &str) -> String {
    format!("hasteward repair -e galera -c {CLUSTER} -n {NS} --instance {node} --dry-run")
}

fn bootstrap(node: &str) -> String {
    format!("hasteward repair -e galera -c {CLUSTER} -n {NS} --bootstrap {node} --dry-run")
}

fn recover_positions() -> String {
    format!("hasteward triage -e galera -c {CLUSTER} -n {NS} --recover-positions")
}

fn triage_again() -> String {
    format!("hasteward triage -e galera -c {CLUSTER} -n {NS}")
}

fn details_of<'a>(report: &'a Report, code: &str) -> &'a [String] {
    &report
        .diagnoses
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("no {code}: {:?}", report.diagnoses))
        .details
}

#[test]
fn healthy_three_node_cluster() {
    let report = analyze_nodes(vec![
        synced(2, 1742, 3),
        synced(0, 1742, 3),
        synced(1, 1742, 3),
    ]);
    assert_eq!(report.verdict, Verdict::Healthy);
    assert_eq!(leader(&report), name(0), "ties go to the lowest ordinal");
    assert!(report.safe_to_heal);
    assert_eq!(report.next_command, None);
    assert!(report.diagnoses.is_empty(), "{:?}", report.diagnoses);
    let ordinals: Vec<_> = report.instances.iter().map(|i| i.ordinal).collect();
    assert_eq!(ordinals, vec![Some(0), Some(1), Some(2)]);
    let first = &report.instances[0];
    assert_eq!(first.state, InstanceState::Healthy);
    assert_eq!(first.role, crate::Role::Node);
    assert_eq!(first.position, "seqno 1742 6c0a1e3c…");
    assert_eq!(first.disk_percent, Some(41.0));
}

#[test]
fn leader_is_the_most_advanced_synced_member_not_ordinal_zero() {
    let report = analyze_nodes(vec![
        synced(0, 1740, 3),
        synced(1, 1742, 3),
        synced(2, 1741, 3),
    ]);
    assert_eq!(leader(&report), name(1));
    assert_eq!(instance(&report, 1).ordinal, Some(1));
    assert_eq!(instance(&report, 0).lag.as_deref(), Some("2 trx"));
    assert_eq!(report.verdict, Verdict::Healthy);
}

#[test]
fn crashed_node_with_recovered_position_needs_a_restart() {
    for pod in [None, pod(false, 5)] {
        let crash_looping = pod.is_some();
        let node = with_recovered(crashed(2, pod, -1), UUID, 1700);
        let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), node]);
        assert_eq!(leader(&report), name(0));
        assert_eq!(report.verdict, Verdict::Unhealthy);
        assert!(report.safe_to_heal);
        let crashed = instance(&report, 2);
        assert_eq!(crashed.lag.as_deref(), Some("42 trx"));
        assert_eq!(crashed.position, "seqno 1700 6c0a1e3c…");
        assert_eq!(crashed.remedy.as_deref(), Some(repair(&name(2)).as_str()));
        assert_eq!(report.next_command, Some(repair(&name(2))));
        assert!(codes(&report).contains(&"galera-node-down"));
        let expected = if crash_looping {
            // Restarting it five times did not catch it up: replace its data.
            InstanceState::NeedsReseed
        } else {
            InstanceState::NeedsRestart
        };
        assert_eq!(crashed.state, expected, "{}", crashed.advice);
    }
}

#[test]
fn current_down_node_needs_only_a_restart() {
    let node = with_recovered(crashed(2, None, -1), UUID, 1742);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), node]);
    let down = instance(&report, 2);
    assert_eq!(down.state, InstanceState::NeedsRestart);
    assert!(down.advice.contains("data current"), "{}", down.advice);
    assert_eq!(down.lag, None);
}

#[test]
fn unread_crashed_node_under_a_clean_quorum_is_a_laggard() {
    let report = analyze_nodes(vec![
        synced(0, 1742, 2),
        synced(1, 1742, 2),
        crashed(2, None, -1),
    ]);
    assert_eq!(leader(&report), name(0));
    assert!(report.safe_to_heal);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    let laggard = instance(&report, 2);
    assert_eq!(laggard.state, InstanceState::NeedsRestart);
    assert_eq!(laggard.position, "unread: seqno unknown");
    assert!(
        laggard.advice.contains("same cluster UUID"),
        "{}",
        laggard.advice
    );
    assert_eq!(report.next_command, Some(repair(&name(2))));
    let positions = &report.facts["positions"];
    assert_eq!(positions[2]["provenance"]["state"], "unread");
    assert_eq!(positions[0]["provenance"]["state"], "read");
    assert_eq!(positions[0]["provenance"]["source"], "wsrep status");
}

#[test]
fn unread_node_that_was_forced_primary_blocks() {
    let mut node = crashed(2, None, -1);
    node.grastate = grastate(UUID, -1, true);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), node]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    assert!(report.instances.iter().all(|i| i.remedy.is_none()));
    // No pod, a Bound volume: --recover-positions runs a helper pod on it.
    assert_eq!(report.next_command, Some(recover_positions()));
}

#[test]
fn unread_node_without_any_uuid_blocks() {
    let mut node = crashed(2, None, -1);
    node.grastate = Observed::Failed("probe pod did not start".to_string());
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), node]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(
        blockers[0].contains("probe pod did not start"),
        "{blockers:?}"
    );
    assert_eq!(instance(&report, 2).state, InstanceState::Unknown);
    assert_eq!(instance(&report, 0).state, InstanceState::Healthy);
}

#[test]
fn all_down_names_the_most_advanced_node_and_flags_a_wrong_safe_to_bootstrap() {
    let mut stale = with_recovered(crashed(0, None, -1), UUID, 1700);
    stale.grastate = grastate(UUID, -1, true);
    let report = analyze_nodes(vec![
        stale,
        with_recovered(crashed(1, None, -1), UUID, 1742),
        with_recovered(crashed(2, pod(false, 3), -1), UUID, 1738),
    ]);
    assert_eq!(leader(&report), name(1));
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert!(report.safe_to_heal);
    assert!(codes(&report).contains(&"galera-all-down"));
    assert!(codes(&report).contains(&"galera-unsafe-bootstrap-flag"));
    let flag = report
        .diagnoses
        .iter()
        .find(|d| d.code == "galera-unsafe-bootstrap-flag")
        .unwrap();
    assert!(flag.summary.contains(&name(0)) && flag.summary.contains(&name(1)));
    assert!(flag.details.iter().any(|d| d.contains("discard 42")));
    assert_eq!(report.next_command, Some(bootstrap(&name(1))));
    for i in &report.instances {
        assert_eq!(i.state, InstanceState::NeedsRestart);
        assert_eq!(i.remedy, Some(bootstrap(&name(1))));
    }
    assert_eq!(instance(&report, 0).lag.as_deref(), Some("42 trx"));
}

#[test]
fn all_down_tie_prefers_safe_to_bootstrap() {
    // A graceful stop in the order 0, 1, 2 leaves the last one with the flag.
    let mut last = crashed(2, None, 15);
    last.grastate = grastate(UUID, 15, true);
    let report = analyze_nodes(vec![crashed(0, None, 15), crashed(1, None, 15), last]);
    assert_eq!(leader(&report), name(2));
    assert!(!codes(&report).contains(&"galera-unsafe-bootstrap-flag"));
    assert_eq!(
        report.facts["positions"][2]["seqno"]["source"],
        "grastate.dat"
    );
    // Without the flag, the lowest ordinal.
    let report = analyze_nodes(vec![crashed(0, None, 15), crashed(1, None, 15)]);
    assert_eq!(leader(&report), name(0));
}

#[test]
fn all_down_with_one_unknown_position_is_undeterminable() {
    let report = analyze_nodes(vec![
        with_recovered(crashed(0, None, -1), UUID, 1742),
        with_recovered(crashed(1, None, -1), UUID, 1700),
        crashed(2, None, -1),
    ]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    assert_eq!(report.next_command, Some(recover_positions()));
    assert!(codes(&report).contains(&"galera-all-down"));
    assert!(codes(&report).contains(&"galera-undeterminable"));
    assert!(report.instances.iter().all(|i| i.remedy.is_none()));
    assert!(report
        .instances
        .iter()
        .all(|i| i.state == InstanceState::Unknown));
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!()
    };
    assert!(
        blockers.iter().any(|b| b.starts_with(&name(2))),
        "{blockers:?}"
    );
}

#[test]
fn two_cluster_uuids_are_a_split_brain() {
    let mut other = synced(2, 10, 1);
    other.wsrep = wsrep(4, "Synced", "Primary", 1, 10, OTHER_UUID);
    other.grastate = grastate(OTHER_UUID, -1, false);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), other]);
    assert_eq!(report.verdict, Verdict::Diverged);
    assert!(!report.safe_to_heal);
    assert_eq!(codes(&report)[0], "galera-split-brain");
    assert_eq!(
        report.next_command,
        Some(format!("hasteward backup -e galera -c {CLUSTER} -n {NS}"))
    );
    assert_eq!(instance(&report, 2).state, InstanceState::Diverged);
    assert!(report.instances.iter().all(|i| i.remedy.is_none()));
    let Authority::Diverged { reasons } = &report.authority else {
        panic!()
    };
    assert!(reasons[0].contains(UUID) && reasons[0].contains(OTHER_UUID));
}

#[test]
fn two_primary_components_with_one_uuid_are_a_split_brain() {
    // galera-2 was forced primary (pc.bootstrap) while 0 and 1 kept a component of two.
    let report = analyze_nodes(vec![
        synced(0, 1742, 2),
        synced(1, 1742, 2),
        synced(2, 1750, 1),
    ]);
    assert_eq!(report.verdict, Verdict::Diverged);
    assert!(report
        .instances
        .iter()
        .all(|i| i.state == InstanceState::Diverged));
}

#[test]
fn down_node_ahead_of_the_primary_component_is_diverged() {
    let ahead = with_recovered(crashed(2, None, -1), UUID, 1800);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), ahead]);
    assert_eq!(report.verdict, Verdict::Diverged);
    assert_eq!(instance(&report, 2).state, InstanceState::Diverged);
    assert_eq!(instance(&report, 0).state, InstanceState::Healthy);
}

#[test]
fn lone_non_primary_survivor_lost_quorum() {
    let mut survivor = synced(0, 57, 1);
    survivor.wsrep = wsrep(0, "Initialized", "non-Primary", 1, 57, UUID);
    let report = analyze_nodes(vec![
        survivor.clone(),
        crashed(1, None, -1),
        crashed(2, None, -1),
    ]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert_eq!(codes(&report)[0], "galera-no-primary-component");
    assert!(!codes(&report).contains(&"galera-split-brain"));
    assert_eq!(report.next_command, Some(recover_positions()));
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!()
    };
    assert!(blockers[0].contains("no Primary component"), "{blockers:?}");
    assert!(instance(&report, 0).advice.contains("lost quorum"));

    // Once the positions are recovered, the most advanced node is provable.
    let report = analyze_nodes(vec![
        survivor,
        with_recovered(crashed(1, None, -1), UUID, 60),
        with_recovered(crashed(2, None, -1), UUID, 55),
    ]);
    assert_eq!(leader(&report), name(1));
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert_eq!(report.next_command, Some(bootstrap(&name(1))));
    assert_eq!(codes(&report)[0], "galera-no-primary-component");
}

#[test]
fn hints_alone_never_make_it_provable() {
    let mut nodes: Vec<NodeInput> = (0..3).map(|i| crashed(i, None, -1)).collect();
    nodes[0].log_hint = Some(format!(
        "2024-06-12 10:01:03 0 [Note] WSREP: Recovered position: {UUID}:1742\n"
    ));
    let mut view = cluster(3);
    view.galera_recovery = Some(serde_json::json!({
        "recovered": { name(1): { "uuid": UUID, "seqno": 1700 } },
        "state": { name(2): { "uuid": UUID, "seqno": 1690, "safeToBootstrap": false } }
    }));
    let report = analyze(&GaleraInput {
        cluster: view,
        nodes,
    });
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    assert_eq!(report.next_command, Some(recover_positions()));
    assert!(
        instance(&report, 0).position.contains("1742"),
        "{}",
        instance(&report, 0).position
    );
    assert_eq!(
        report.facts["positions"][0]["seqnoHint"]["source"],
        "hint: container log"
    );
}

#[test]
fn disagreeing_hinted_uuids_block_but_are_no_split_brain() {
    let mut nodes: Vec<NodeInput> = (0..2).map(|i| crashed(i, None, -1)).collect();
    for node in &mut nodes {
        node.grastate = Observed::Failed("no probe".to_string());
    }
    let mut view = cluster(2);
    view.galera_recovery = Some(serde_json::json!({
        "state": {
            name(0): { "uuid": UUID, "seqno": 5 },
            name(1): { "uuid": OTHER_UUID, "seqno": 9 }
        }
    }));
    let report = analyze(&GaleraInput {
        cluster: view,
        nodes,
    });
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!codes(&report).contains(&"galera-split-brain"));
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!()
    };
    assert!(blockers.iter().any(|b| b.contains("hints disagree")));
}

#[test]
fn desynced_donor_is_lagging_and_the_cluster_unhealthy_with_nothing_to_run() {
    let mut donor = synced(2, 1742, 3);
    donor.wsrep = wsrep(2, "Donor/Desynced", "Primary", 3, 1742, UUID);
    donor.pod = pod(false, 0);
    let report = analyze_nodes(vec![synced(0, 1742, 3), synced(1, 1742, 3), donor]);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert!(report.safe_to_heal);
    assert_eq!(instance(&report, 2).state, InstanceState::Lagging);
    assert_eq!(codes(&report), vec!["galera-node-desynced"]);
    assert_eq!(report.diagnoses[0].severity, Severity::Info);
    assert_eq!(report.next_command, None);
}

#[test]
fn up_but_outside_the_primary_component_needs_a_restart() {
    let mut partitioned = synced(2, 1742, 1);
    partitioned.wsrep = wsrep(0, "Initialized", "non-Primary", 1, 1742, UUID);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), partitioned]);
    assert_eq!(leader(&report), name(0));
    let node = instance(&report, 2);
    assert_eq!(node.state, InstanceState::NeedsRestart);
    assert!(node.advice.contains("non-Primary"), "{}", node.advice);
    assert_eq!(report.next_command, Some(repair(&name(2))));
}

#[test]
fn ready_node_whose_status_cannot_be_read_blocks_even_under_a_clean_quorum() {
    // Ready, wsrep unreadable, grastate with the quorum's UUID: it may be serving as a second
    // Primary component (a forced pc.bootstrap keeps the UUID), so it is no laggard.
    let mut quiet = synced(2, 0, 3);
    quiet.wsrep = Observed::Failed("ERROR 1045 (28000): Access denied".to_string());
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), quiet]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert!(!report.safe_to_heal);
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(
        blockers
            .iter()
            .any(|b| b.starts_with(&name(2)) && b.contains("may be serving")),
        "{blockers:?}"
    );
    assert_eq!(instance(&report, 2).state, InstanceState::Unknown);
    assert!(report.instances.iter().all(|i| i.remedy.is_none()));
    assert_eq!(report.next_command, Some(triage_again()));
    assert!(details_of(&report, "galera-undeterminable")
        .iter()
        .any(|d| d.contains("is Ready but its wsrep status could not be read")));
}

#[test]
fn more_ready_nodes_than_the_primary_component_blocks() {
    // galera-2's wsrep status was read but says nothing of its component, and its container is
    // Ready: three Ready nodes, a component of two.
    let mut odd = synced(2, 1742, 2);
    odd.wsrep = Observed::Output(
        "WSREP_LOCAL_STATE\t4\nWSREP_LAST_COMMITTED\t1742\n\
         WSREP_CLUSTER_STATE_UUID\t6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11\n"
            .to_string(),
    );
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), odd]);
    assert_eq!(
        report.verdict,
        Verdict::Undeterminable,
        "{:?}",
        report.authority
    );
    let Authority::Undeterminable { blockers } = &report.authority else {
        panic!("{:?}", report.authority);
    };
    assert!(
        blockers[0].contains("3 nodes have a Ready container"),
        "{blockers:?}"
    );
    // A node read as non-Primary is provably outside any component: no blocker.
    let mut partitioned = synced(2, 1742, 1);
    partitioned.wsrep = wsrep(0, "Initialized", "non-Primary", 1, 1742, UUID);
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), partitioned]);
    assert!(report.safe_to_heal);
}

#[test]
fn recover_positions_is_advised_where_a_container_runs_or_the_volume_is_bound() {
    // Quorum lost; galera-2 has no pod but a Bound volume: a helper pod can recover it.
    let down = vec![
        with_recovered(crashed(0, None, -1), UUID, 1742),
        with_recovered(crashed(1, None, -1), UUID, 1700),
        crashed(2, None, -1),
    ];
    let report = analyze_nodes(down.clone());
    assert_eq!(report.next_command, Some(recover_positions()));
    assert!(details_of(&report, "galera-all-down")
        .iter()
        .any(|d| d.contains("--recover-positions") && d.contains(&name(2))));
    // Its volume not Bound (Pending): nothing can read it; triage again once it is.
    let mut unbound = down.clone();
    unbound[2].volume = VolumeState::Other("Pending".into());
    let report = analyze_nodes(unbound);
    assert_eq!(report.next_command, Some(triage_again()));
    let details = details_of(&report, "galera-undeterminable");
    assert!(
        details.iter().any(|d| d
            .contains(&format!("{} has no running container (no pod)", name(2)))
            && d.contains("not Bound")),
        "{details:?}"
    );
    // A crash-looping container can run mariadbd --wsrep-recover itself.
    let mut looping = down;
    looping[2].pod = pod(false, 4);
    let report = analyze_nodes(looping);
    assert_eq!(report.next_command, Some(recover_positions()));
}

#[test]
fn disk_low_warns_and_disk_full_crash_loop_is_critical() {
    let mut low = synced(1, 1742, 2);
    low.df = df(93);
    let mut full = with_recovered(crashed(2, pod(false, 7), -1), UUID, 1742);
    full.log_hint = Some(
        "2024-06-12 10:01:03 0 [ERROR] mariadbd: Error writing file './ib_logfile0' \
         (Errcode: 28 \"No space left on device\")"
            .to_string(),
    );
    let report = analyze_nodes(vec![synced(0, 1742, 2), low, full]);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert_eq!(codes(&report)[0], "galera-disk-full");
    assert!(codes(&report).contains(&"galera-disk-low"));
    assert!(instance(&report, 1).advice.contains("93% used"));
    let full = instance(&report, 2);
    assert_eq!(full.state, InstanceState::NeedsRestart);
    assert!(full.advice.contains("expand PVC"), "{}", full.advice);

    // Low disk alone keeps an otherwise healthy cluster from being Healthy.
    let mut low = synced(1, 1742, 2);
    low.df = df(95);
    let report = analyze_nodes(vec![synced(0, 1742, 2), low]);
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert_eq!(instance(&report, 1).state, InstanceState::Healthy);
}

#[test]
fn galera_not_ready_while_the_data_is_fine_is_a_stuck_operator() {
    let mut view = cluster(3);
    view.conditions[1] = condition("GaleraReady", "False", "RecoveryInProgress", "Recovering");
    view.galera_recovery = Some(serde_json::json!({
        "state": { name(0): { "uuid": UUID, "seqno": -1 } }
    }));
    let report = analyze(&GaleraInput {
        cluster: view,
        nodes: (0..3).map(|i| synced(i, 1742, 3)).collect(),
    });
    assert_eq!(report.verdict, Verdict::Unhealthy);
    assert_eq!(codes(&report), vec!["galera-operator-recovery-stuck"]);
}

#[test]
fn missing_volume_needs_a_reseed_and_does_not_block() {
    let mut empty = crashed(2, None, -1);
    empty.volume = VolumeState::Missing;
    empty.grastate = not_attempted("no volume");
    let report = analyze_nodes(vec![synced(0, 1742, 2), synced(1, 1742, 2), empty]);
    assert!(report.safe_to_heal);
    assert_eq!(instance(&report, 2).state, InstanceState::NeedsReseed);
    assert_eq!(instance(&report, 2).position, "no data");
    assert_eq!(
        report.facts["positions"][2]["provenance"]["state"],
        "absent"
    );
}

#[test]
fn missing_nodes_block() {
    let report = analyze(&GaleraInput {
        cluster: cluster(3),
        nodes: vec![synced(0, 1742, 3), synced(1, 1742, 3)],
    });
    assert_eq!(report.verdict, Verdict::Undeterminable);
    let report = analyze(&GaleraInput {
        cluster: cluster(3),
        nodes: vec![],
    });
    assert_eq!(report.verdict, Verdict::Undeterminable);
}

#[test]
fn grastate_of_a_serving_node_is_only_a_hint() {
    // Ready pod, wsrep unreadable, grastate claims 1742: not a position while it may serve.
    let mut node = synced(0, 0, 1);
    node.wsrep = Observed::Failed("timeout".to_string());
    node.grastate = grastate(UUID, 1742, false);
    let report = analyze_nodes(vec![node, crashed(1, None, 1700)]);
    assert_eq!(report.verdict, Verdict::Undeterminable);
    assert_eq!(report.facts["quorum"]["state"], "unobserved");
    assert!(!codes(&report).contains(&"galera-all-down"));
}

#[test]
fn facts_hold_the_input_and_derived_positions() {
    let report = analyze_nodes(vec![
        synced(0, 1742, 2),
        synced(1, 1742, 2),
        with_recovered(crashed(2, None, -1), UUID, 1700),
    ]);
    let facts = &report.facts;
    assert_eq!(facts["input"]["cluster"]["name"], CLUSTER);
    assert_eq!(
        facts["input"]["cluster"]["conditions"][1]["type"],
        "GaleraReady"
    );
    assert_eq!(facts["input"]["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(facts["positions"][2]["seqno"]["value"], 1700);
    assert_eq!(
        facts["positions"][2]["provenance"]["source"],
        "mariadbd --wsrep-recover"
    );
    assert_eq!(facts["quorum"]["state"], "primary");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"verdict\":\"unhealthy\""));
}
