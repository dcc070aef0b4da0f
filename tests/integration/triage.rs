//! Triage scenarios built on real servers: testkit PostgreSQL (primary, streaming replicas,
//! promotions) and a 3-node Galera cluster, put into each state for real, then read by
//! `hasteward triage` through the API simulator (each pod's exec runs against its server; the
//! container's fixed data paths are mapped with kubesim `mounts`). The verdict, the authority and
//! the per-instance states come from the JSON envelope; every run must send no mutation.

use std::path::Path;
use std::time::{Duration, Instant};

use hasteward_kubesim::{PodExec, SimConfig, Simulator};
use hasteward_testkit::{Galera, Postgres};
use serde_json::{json, Value};

use crate::support::*;

pub(crate) const NS: &str = "db";
pub(crate) const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

pub(crate) fn pod(name: &str, container: &str, labels: Value, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": container, "image": "test"}], "nodeName": "node-a"},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": container, "ready": ready, "restartCount": if ready { 0 } else { 7 },
             "image": "test", "imageID": ""}
        ]}
    })
}

pub(crate) fn pvc(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    })
}

/// The exec environment of a CNPG instance pod backed by `pg`.
pub(crate) fn pg_exec(pod: &str, pg: &Postgres) -> PodExec {
    PodExec {
        namespace: NS.into(),
        pod: pod.into(),
        env: [
            (
                "PGHOST".to_string(),
                pg.data_dir().parent().unwrap().display().to_string(),
            ),
            ("PGPORT".to_string(), pg.port().to_string()),
        ]
        .into(),
        path_prepend: vec![pg.bin_dir().to_path_buf()],
        mounts: [(PGDATA.to_string(), pg.data_dir().to_path_buf())].into(),
        ..PodExec::default()
    }
}

/// A simulator for CNPG cluster `pg` with `instances` (name, server, ready) and `primary`.
pub(crate) fn cnpg_sim(
    primary: &str,
    instances: &[(&str, &Postgres)],
) -> (Simulator, tempfile::TempDir) {
    let names: Vec<&str> = instances.iter().map(|(n, _)| *n).collect();
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": NS},
            "spec": {"instances": names.len()},
            "status": {"phase": "Cluster in healthy state", "currentPrimary": primary,
                "targetPrimary": primary, "instanceNames": names,
                "readyInstances": names.len()}
        }),
    ];
    let mut exec = Vec::new();
    for (name, server) in instances {
        objects.push(pod(
            name,
            "postgres",
            json!({"cnpg.io/cluster": "pg"}),
            true,
        ));
        objects.push(pvc(name));
        exec.push(pg_exec(name, server));
    }
    start_sim(objects, exec)
}

pub(crate) fn start_sim(objects: Vec<Value>, exec: Vec<PodExec>) -> (Simulator, tempfile::TempDir) {
    let sim = Simulator::start(SimConfig { objects, exec }).expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    sim.write_kubeconfig(&dir.path().join("kubeconfig"), Some(NS))
        .unwrap();
    (sim, dir)
}

/// Runs `hasteward triage -o json`; returns the report (`data`) and how long it took. Asserts
/// exit 0 and that no mutating request reached the API.
fn triage(sim: &Simulator, dir: &Path, engine: &str, cluster: &str) -> (Value, Duration) {
    triage_with(sim, dir, engine, cluster, &[])
}

fn triage_with(
    sim: &Simulator,
    dir: &Path,
    engine: &str,
    cluster: &str,
    extra: &[&str],
) -> (Value, Duration) {
    sim.clear_requests();
    let mut args: Vec<String> = [
        "triage",
        "--kubeconfig",
        &dir.join("kubeconfig").display().to_string(),
        "-e",
        engine,
        "-c",
        cluster,
        "-n",
        NS,
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let started = Instant::now();
    let (code, out, err) = run(&args, None);
    let took = started.elapsed();
    assert_eq!(code, 0, "triage failed:\n{out}\n{err}");
    let mutations: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(mutations.is_empty(), "triage mutated: {mutations:?}");
    crate::kube::assert_role_allows("hasteward-backup", &sim.requests());
    (envelope(&out)["data"].clone(), took)
}

/// Runs `hasteward repair … -o json` with `extra` flags; returns (exit code, envelope). Asserts that
/// no mutating request reached the API: none at all in a dry run; a refused real run only takes
/// and releases the cluster's lease (it is taken before the triage).
pub(crate) fn repair_no_mutation(
    sim: &Simulator,
    dir: &Path,
    engine: &str,
    extra: &[&str],
) -> (i32, Value) {
    sim.clear_requests();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &dir.join("kubeconfig").display().to_string(),
        "-e",
        engine,
        "-c",
        if engine == "cnpg" { "pg" } else { "galera" },
        "-n",
        NS,
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, out, err) = run(&args, None);
    let dry_run = extra.contains(&"--dry-run");
    let mutations: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .filter(|r| dry_run || !r.path.contains("/leases"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        mutations.is_empty(),
        "repair {extra:?} mutated: {mutations:?}\n{err}"
    );
    let lease = if engine == "cnpg" {
        "hasteward-pg"
    } else {
        "hasteward-galera"
    };
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), lease)
        .is_none());
    (code, envelope(&out))
}

fn plan_targets(env: &Value) -> Vec<(String, String)> {
    env["data"]["plan"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["instance"].as_str().unwrap().to_string(),
                t["remediation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn instance_of<'a>(report: &'a Value, instance: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == instance)
        .unwrap_or_else(|| panic!("no instance {instance} in {report:#}"))
}

fn state_of<'a>(report: &'a Value, instance: &str) -> &'a str {
    instance_of(report, instance)["state"].as_str().unwrap()
}

fn diagnosis_codes(report: &Value) -> Vec<String> {
    report["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["code"].as_str().map(String::from))
        .collect()
}

fn summary(report: &Value) -> String {
    serde_json::to_string_pretty(&json!({
        "verdict": report["verdict"], "authority": report["authority"],
        "instances": report["instances"], "diagnoses": report["diagnoses"],
    }))
    .unwrap()
}

#[test]
fn cnpg_healthy_then_lagging_replica() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    let r3 = p.start_replica_named("pg-3");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    p.wait_replica_caught_up(&r2);
    p.wait_replica_caught_up(&r3);
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2), ("pg-3", &r3)]);

    let (report, took) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(report["verdict"], "healthy", "{s}");
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["authority"]["leader"], "pg-1", "{s}");
    assert_eq!(report["safeToHeal"], true);
    for i in ["pg-1", "pg-2", "pg-3"] {
        assert_eq!(state_of(&report, i), "healthy", "{i}: {s}");
    }
    let ordinals: Vec<Value> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ordinal"].clone())
        .collect();
    assert_eq!(ordinals, [json!(1), json!(2), json!(3)]);
    eprintln!("triage of 3 CNPG instances through the simulator: {took:?}");

    // pg-3 stops replaying while the primary writes: it lags, still streaming.
    r3.psql("postgres", "SELECT pg_wal_replay_pause()");
    p.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1, 1000000) g",
    );
    p.wait_replica_caught_up(&r2);
    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(state_of(&report, "pg-3"), "lagging", "{s}");
    assert_eq!(state_of(&report, "pg-2"), "healthy", "{s}");
    assert_eq!(report["authority"]["leader"], "pg-1", "{s}");
    assert_ne!(report["verdict"], "diverged", "{s}");
    // Disk use is the volume's, not the host's: on the default 8 GiB volumes a few hundred MiB
    // is a few percent, whatever the machine's disk holds.
    for i in ["pg-1", "pg-2", "pg-3"] {
        let percent = instance_of(&report, i)["diskPercent"].as_f64();
        assert!(
            matches!(percent, Some(p) if p < 50.0),
            "{i}: {percent:?}: {s}"
        );
    }

    // pg-2's volume is sized just above what its data directory holds: it is over 90% full.
    let used_kib = du_kib(r2.data_dir());
    sim.set_exec(PodExec {
        volume_size_kib: Some(used_kib * 100 / 95),
        ..pg_exec("pg-2", &r2)
    });
    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    let percent = instance_of(&report, "pg-2")["diskPercent"]
        .as_f64()
        .unwrap();
    assert!((90.0..=100.0).contains(&percent), "{percent}: {s}");
    assert!(
        diagnosis_codes(&report).contains(&"cnpg-disk-low".to_string()),
        "{s}"
    );
    assert!(s.contains("pg-2's volume is"), "{s}");
}

/// KiB that `du` counts under `dir`.
fn du_kib(dir: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du -sk {}: {out:?}", dir.display()))
}

/// The primary pg-1 dies; pg-2 is promoted (timeline 2) and written to (1000 more rows of `t`).
/// pg-3 still points at the dead primary and stays on timeline 1, at the switch point: it holds
/// nothing past the fork, so restarted (CNPG points it at the new primary) it follows timeline
/// 2. CNPG removed pg-1 (no pod, no PVC). Returns (the stopped pg-1, pg-2, pg-3).
pub(crate) fn failover_leaving_a_replica_behind() -> (Postgres, Postgres, Postgres) {
    let mut p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    let r3 = p.start_replica_named("pg-3");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    p.wait_replica_caught_up(&r2);
    p.wait_replica_caught_up(&r3);
    r3.psql("postgres", "SELECT pg_wal_replay_pause()");
    p.stop();
    r2.promote();
    r2.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1, 1000) g",
    );
    r2.psql("postgres", "CHECKPOINT");
    (p, r2, r3)
}

#[test]
fn cnpg_replica_left_on_the_old_timeline_after_a_failover_needs_a_restart() {
    let (_p, r2, r3) = failover_leaving_a_replica_behind();
    let (sim, dir) = cnpg_sim("pg-2", &[("pg-2", &r2), ("pg-3", &r3)]);

    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["authority"]["leader"], "pg-2", "{s}");
    assert_eq!(state_of(&report, "pg-2"), "healthy", "{s}");
    assert_eq!(state_of(&report, "pg-3"), "needs-restart", "{s}");
    assert_eq!(report["verdict"], "unhealthy", "{s}");
    let next = report["nextCommand"].as_str().unwrap_or_default();
    assert!(next.contains("--instance pg-3"), "{s}\nnext: {next}");

    // The human report, and --fail-on for monitoring.
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let base = [
        "triage",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "cnpg",
        "-c",
        "pg",
        "-n",
        NS,
    ];
    let args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    eprintln!("{out}");
    assert!(
        out.starts_with("CNPG cluster db/pg: UNHEALTHY\nauthority: pg-2 (provable)"),
        "{out}"
    );
    assert!(out.contains("needs restart"), "{out}");
    assert!(out.contains(&format!("next: {next}")), "{out}");
    let mut fail_on = args.clone();
    fail_on.extend(["--fail-on".to_string(), "unhealthy".into()]);
    let (code, _, err) = run(&fail_on, None);
    assert_eq!(code, 1, "{err}");
    let mut fail_on = args;
    fail_on.extend(["--fail-on".to_string(), "diverged".into()]);
    assert_eq!(run(&fail_on, None).0, 0);

    // repair --dry-run: the exact plan (restart pg-3; a restart destroys nothing, so no
    // escrow), nothing sent.
    let (code, env) = repair_no_mutation(&sim, dir.path(), "cnpg", &["--dry-run"]);
    assert_eq!(code, 0, "{env:#}");
    assert_eq!(
        plan_targets(&env),
        [("pg-3".to_string(), "restart".to_string())]
    );
    let plan = &env["data"]["plan"];
    assert_eq!(plan["escrow"], json!([]), "{env:#}");
    let actions: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "lease.acquire",
            "pod.delete",
            "wait.ready",
            "lease.release",
            "triage"
        ],
        "{env:#}"
    );
    // The primary is never a target, whatever the flags.
    let (code, env) =
        repair_no_mutation(&sim, dir.path(), "cnpg", &["--instance", "pg-2", "--force"]);
    assert_eq!(code, 3, "{env:#}");
    assert_eq!(
        env["errors"][0]["code"],
        "repair.refused.target-is-authority"
    );
}

#[test]
fn cnpg_two_primaries_that_both_wrote_are_diverged_and_no_leader_is_named() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    p.wait_replica_caught_up(&r2);
    // A split: pg-2 is promoted while pg-1 keeps running; both take writes.
    r2.promote();
    r2.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1, 5000) g",
    );
    p.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1, 5000) g",
    );
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);

    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(report["verdict"], "diverged", "{s}");
    assert_eq!(report["authority"]["outcome"], "diverged", "{s}");
    assert_eq!(report["safeToHeal"], false, "{s}");
    assert!(report["authority"].get("leader").is_none(), "{s}");

    // repair refuses a split brain (no dry run needed: nothing is sent).
    let (code, env) = repair_no_mutation(&sim, dir.path(), "cnpg", &[]);
    assert_eq!(code, 3, "{env:#}");
    assert_eq!(env["errors"][0]["code"], "repair.refused.split-brain");
    // Forced onto a named replica, the plan captures every side first.
    let (code, env) = repair_no_mutation(
        &sim,
        dir.path(),
        "cnpg",
        &["--instance", "pg-2", "--force", "--dry-run"],
    );
    assert_eq!(code, 0, "{env:#}");
    let escrow: Vec<(&str, &str)> = env["data"]["plan"]["escrow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["instance"].as_str().unwrap()))
        .collect();
    assert_eq!(
        escrow,
        [("backup", "pg-1"), ("diverged", "pg-2")],
        "{env:#}"
    );
}

#[test]
fn cnpg_an_instance_that_cannot_be_read_blocks_the_authority() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    // pg-2's pod is Pending but its volume is Bound: it may hold data nobody read.
    let mut pending = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    pending["status"] = json!({"phase": "Pending"});
    sim.put(pending);

    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(report["verdict"], "undeterminable", "{s}");
    assert_eq!(report["safeToHeal"], false, "{s}");
    assert_eq!(state_of(&report, "pg-2"), "unknown", "{s}");

    for flags in [
        &[][..],
        &["--force"][..],
        &["--instance", "pg-2", "--force"][..],
    ] {
        let (code, env) = repair_no_mutation(&sim, dir.path(), "cnpg", flags);
        assert_eq!(code, 3, "{flags:?}: {env:#}");
        assert_eq!(env["errors"][0]["code"], "repair.refused.authority-unread");
    }
}

/// A simulator for Galera cluster `galera` over `g`; `ready[i]` = node i's container is Ready.
pub(crate) fn galera_sim(g: &Galera, ready: &[bool]) -> (Simulator, tempfile::TempDir) {
    let labels = json!({"app.kubernetes.io/instance": "galera"});
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({
            "apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB",
            "metadata": {"name": "galera", "namespace": NS},
            "spec": {"replicas": ready.len(), "galera": {"enabled": true},
                "rootPasswordSecretKeyRef": {"name": "galera-root", "key": "password"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "StatefulSetReady", "message": "Running"},
                {"type": "GaleraReady", "status": "True", "reason": "GaleraReady", "message": "Galera ready"}
            ]}
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "galera-root", "namespace": NS},
            "data": {"password": base64(g.password().as_bytes())}
        }),
    ];
    let mut exec = Vec::new();
    for (i, ready) in ready.iter().enumerate() {
        let name = format!("galera-{i}");
        objects.push(pod(&name, "mariadb", labels.clone(), *ready));
        objects.push(pvc(&format!("storage-{name}")));
        exec.push(galera_pod_exec(&name, g, i));
    }
    start_sim(objects, exec)
}

#[test]
fn galera_healthy_then_a_crashed_node_then_a_lone_non_primary_survivor() {
    let mut g = Galera::start(3);
    g.sql(0, None, "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1), (2)");
    for i in 0..3 {
        g.wait_synced(i);
    }
    let (sim, dir) = galera_sim(&g, &[true, true, true]);
    let (report, took) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_eq!(report["verdict"], "healthy", "{s}");
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    for i in 0..3 {
        assert_eq!(state_of(&report, &format!("galera-{i}")), "healthy", "{s}");
    }
    eprintln!("triage of 3 Galera nodes through the simulator: {took:?}");
    k_secret_never_sent(&sim, g.password());

    // Node 2 crashes (kill -9): its container crash-loops; grastate says seqno -1. The other
    // two still form the Primary component, so the authority stays provable.
    g.kill_node(2);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3)");
    drop(sim);
    let (sim, dir) = galera_sim(&g, &[true, true, false]);
    let (report, _) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(state_of(&report, "galera-0"), "healthy", "{s}");
    // Crash-looping with seqno -1: restart or, since restarts keep failing, reseed by SST.
    assert!(
        ["needs-restart", "needs-reseed"].contains(&state_of(&report, "galera-2")),
        "{s}"
    );
    assert_eq!(report["verdict"], "unhealthy", "{s}");
    assert!(
        report["nextCommand"]
            .as_str()
            .unwrap_or_default()
            .contains("--instance galera-2"),
        "{s}"
    );
    // Its recovered position (mariadbd --wsrep-recover, opt-in) is one transaction behind.
    let (report, _) = triage_with(
        &sim,
        dir.path(),
        "galera",
        "galera",
        &["--recover-positions"],
    );
    let s = summary(&report);
    let node2 = &report["instances"][2];
    assert!(
        node2["position"].as_str().unwrap().starts_with("seqno "),
        "{s}"
    );
    assert!(
        report["facts"]["input"]["nodes"][2]["recovered"]["value"]
            .as_str()
            .unwrap_or_default()
            .contains("WSREP: Recovered position:"),
        "{s}"
    );

    // Node 1 crashes too: node 0 is alone in a non-Primary component. Not provable.
    g.kill_node(1);
    wait_for("node 0 non-Primary", Duration::from_secs(60), || {
        g.status(0, "wsrep_cluster_status") != "Primary"
    });
    drop(sim);
    let (sim, dir) = galera_sim(&g, &[true, false, false]);
    let (report, _) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_ne!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["safeToHeal"], false, "{s}");
    assert!(
        diagnosis_codes(&report).contains(&"galera-no-primary-component".to_string()),
        "{s}"
    );
    drop(sim);
}

/// The exec environment of pod `pod` backed by node `i` of `g`: the container's own
/// configuration (`$HOME/.my.cnf` including the node's server options, and its socket for the
/// clients) and its data directory at `/var/lib/mysql`.
fn galera_pod_exec(pod: &str, g: &Galera, i: usize) -> PodExec {
    let home = g.socket(i).parent().unwrap().join(format!("home-{pod}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".my.cnf"),
        format!(
            "!include {}\n[client]\nsocket={}\n",
            g.config_file(i).display(),
            g.socket(i).display()
        ),
    )
    .unwrap();
    PodExec {
        namespace: NS.into(),
        pod: pod.into(),
        env: [("HOME".to_string(), home.display().to_string())].into(),
        mounts: [("/var/lib/mysql".to_string(), g.data_dir(i))].into(),
        ..PodExec::default()
    }
}

fn k_secret_never_sent(sim: &Simulator, secret: &str) {
    for r in sim.requests() {
        let text = format!("{} {} {:?} {:?}", r.path, r.query, r.body, r.exec_command);
        assert!(!text.contains(secret), "secret sent: {text}");
    }
}

#[test]
fn galera_two_cluster_uuids_are_a_split_brain() {
    // Two separately bootstrapped clusters presented as one MariaDB: node 0 of each.
    let a = Galera::start(1);
    let b = Galera::start(1);
    let labels = json!({"app.kubernetes.io/instance": "galera"});
    // One simulator whose galera-0 is cluster a's node and galera-1 cluster b's node. Root
    // connects over the node's socket as the OS user (unix_socket), so one Secret serves both.
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({
            "apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB",
            "metadata": {"name": "galera", "namespace": NS},
            "spec": {"replicas": 2, "galera": {"enabled": true},
                "rootPasswordSecretKeyRef": {"name": "galera-root", "key": "password"}}
        }),
    ];
    objects.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "galera-root", "namespace": NS},
        "data": {"password": base64(a.password().as_bytes())}
    }));
    let mut exec = Vec::new();
    for (i, g) in [&a, &b].iter().enumerate() {
        let name = format!("galera-{i}");
        objects.push(pod(&name, "mariadb", labels.clone(), true));
        objects.push(pvc(&format!("storage-{name}")));
        exec.push(galera_pod_exec(&name, g, 0));
    }
    let (sim, dir) = start_sim(objects, exec);
    let (report, _) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_eq!(report["verdict"], "diverged", "{s}");
    assert_eq!(report["authority"]["outcome"], "diverged", "{s}");
    assert_eq!(report["safeToHeal"], false, "{s}");
}

#[test]
fn galera_all_nodes_down_at_different_positions_names_the_most_advanced() {
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    for i in 0..3 {
        g.wait_synced(i);
    }
    // Node 2 crashes first; node 1 leaves cleanly later; node 0 takes more writes and crashes
    // last: three different positions, node 0 the most advanced, two of them only recoverable
    // with mariadbd --wsrep-recover (grastate seqno -1).
    g.sql(0, None, "INSERT INTO shop.t VALUES (1)");
    g.kill_node(2);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (2)");
    g.stop_node(1);
    g.wait_cluster_size(0, 1);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3), (4)");
    g.kill_node(0);
    let (sim, dir) = galera_sim(&g, &[false, false, false]);

    // Without recovering positions, the crashed nodes' positions are unknown: refuse.
    let (report, _) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_eq!(report["verdict"], "undeterminable", "{s}");
    assert_eq!(report["safeToHeal"], false, "{s}");
    let next = report["nextCommand"].as_str().unwrap_or_default();
    assert!(next.contains("--recover-positions"), "{s}\nnext: {next}");

    // With --recover-positions, mariadbd --wsrep-recover runs in the (crash-looping) containers.
    let (report, _) = triage_with(
        &sim,
        dir.path(),
        "galera",
        "galera",
        &["--recover-positions"],
    );
    let s = summary(&report);
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["authority"]["leader"], "galera-0", "{s}");
    let next = report["nextCommand"].as_str().unwrap_or_default();
    assert!(next.contains("--bootstrap galera-0"), "{s}\nnext: {next}");

    // A safe_to_bootstrap flag on a node that is not the most advanced is flagged, and does
    // not move the authority.
    let grastate = g.data_dir(1).join("grastate.dat");
    let text = std::fs::read_to_string(&grastate).unwrap();
    std::fs::write(
        &grastate,
        text.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"),
    )
    .unwrap();
    let (report, _) = triage_with(
        &sim,
        dir.path(),
        "galera",
        "galera",
        &["--recover-positions"],
    );
    let s = summary(&report);
    assert_eq!(report["authority"]["leader"], "galera-0", "{s}");
    assert!(
        diagnosis_codes(&report).contains(&"galera-unsafe-bootstrap-flag".to_string()),
        "{s}"
    );

    // repair: healing needs a donor (refused); the bootstrap plan names galera-0 only.
    let (code, env) = repair_no_mutation(&sim, dir.path(), "galera", &["--recover-positions"]);
    assert_eq!(code, 3, "{env:#}");
    assert_eq!(env["errors"][0]["code"], "repair.refused.all-down");
    let (code, env) = repair_no_mutation(
        &sim,
        dir.path(),
        "galera",
        &[
            "--recover-positions",
            "--bootstrap",
            "galera-1",
            "--force",
            "--dry-run",
        ],
    );
    assert_eq!(code, 3, "{env:#}");
    assert_eq!(
        env["errors"][0]["code"],
        "repair.refused.bootstrap-not-most-advanced"
    );
    let (code, env) = repair_no_mutation(
        &sim,
        dir.path(),
        "galera",
        &[
            "--recover-positions",
            "--bootstrap",
            "galera-0",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{env:#}");
    assert_eq!(
        plan_targets(&env),
        [("galera-0".to_string(), "bootstrap".to_string())]
    );
}

#[test]
fn cnpg_old_primary_rewound_onto_the_new_timeline_is_a_healthy_replica() {
    let mut p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    p.wait_replica_caught_up(&r2);
    // Failover: pg-2 is promoted and written to while pg-1 also took a write (diverged); then
    // pg-1 is rewound onto timeline 2 with pg_rewind and follows pg-2.
    r2.promote();
    r2.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1, 1000) g",
    );
    p.psql("postgres", "INSERT INTO t VALUES (-1)");
    // pg_rewind reads the source's timeline from its control file: checkpoint it first.
    r2.psql("postgres", "CHECKPOINT");
    p.shut_down();
    p.rewind_onto(&r2, "pg-1");
    let (sim, dir) = cnpg_sim("pg-2", &[("pg-1", &p), ("pg-2", &r2)]);

    let (report, _) = triage(&sim, dir.path(), "cnpg", "pg");
    let s = summary(&report);
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["authority"]["leader"], "pg-2", "{s}");
    assert_eq!(state_of(&report, "pg-1"), "healthy", "{s}");
    assert_eq!(report["verdict"], "healthy", "{s}");
    // The rewound write is gone: pg-1 now holds pg-2's history.
    assert_eq!(
        p.psql("postgres", "SELECT count(*) FROM t WHERE g = -1"),
        "0"
    );
}

/// The simulator over HTTP, for operator stand-ins running on their own threads.
#[derive(Clone)]
pub(crate) struct SimHttp {
    pub(crate) url: String,
}

impl SimHttp {
    pub(crate) fn curl(&self, args: &[&str], path: &str) -> Option<std::process::Output> {
        std::process::Command::new("curl")
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .ok()
    }

    /// The object at `path`, or `None` when there is none.
    pub(crate) fn get(&self, path: &str) -> Option<Value> {
        let out = self.curl(&["-s", "-f"], path)?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        self.curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}"], path)
            .is_some_and(|o| o.stdout == b"200")
    }

    pub(crate) fn delete(&self, path: &str) {
        self.curl(&["-s", "-o", "/dev/null", "-X", "DELETE"], path);
    }

    /// Creates `pod` again (as its controller would), Ready when `ready`.
    pub(crate) fn recreate_pod(&self, pod: &Value, ready: bool) {
        let mut pod = pod.clone();
        let meta = pod["metadata"].as_object_mut().unwrap();
        meta.remove("uid");
        meta.remove("resourceVersion");
        if ready {
            pod["status"]["containerStatuses"][0]["ready"] = json!(true);
        }
        let body = serde_json::to_string(&pod).unwrap();
        self.curl(
            &[
                "-s",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
            ],
            &format!("/api/v1/namespaces/{NS}/pods"),
        );
    }
}

#[test]
fn repair_restarts_a_replica_under_the_cluster_lease() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let original = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    // A stand-in for the CNPG operator: recreate pg-2 once it is deleted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let operator = {
        let stop = stop.clone();
        let api = SimHttp { url: sim.url() };
        let pod = original.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if !api.exists(&format!("/api/v1/namespaces/{NS}/pods/pg-2")) {
                    api.recreate_pod(&pod, false);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    sim.clear_requests();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "cnpg",
        "-c",
        "pg",
        "-n",
        NS,
        "--instance",
        "pg-2",
        "--force",
        "--heal-timeout",
        "30",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run(&args, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    operator.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    let mutations: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    assert_eq!(
        mutations,
        [
            format!("POST {lease_path}"),
            format!("DELETE /api/v1/namespaces/{NS}/pods/pg-2"),
            format!("POST /api/v1/namespaces/{NS}/pods"),
            format!("DELETE {lease_path}/hasteward-pg"),
        ],
        "{err}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    // Every request hasteward made is allowed by the repair Role (the stand-in operator's
    // pod creation is not hasteward's).
    let requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| !(r.method == "POST" && r.path.ends_with("/pods")))
        .collect();
    crate::kube::assert_role_allows("hasteward-repair", &requests);
    let after = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    assert_ne!(after["metadata"]["uid"], original["metadata"]["uid"]);
    assert_eq!(envelope(&out)["data"]["after"]["verdict"], "healthy");

    // A lease held by another live run refuses the repair (exit 3), and is left alone.
    sim.put(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hasteward-pg", "namespace": NS},
        "spec": {"holderIdentity": "repair@elsewhere:1:1", "leaseDurationSeconds": 60,
                 "renewTime": chrono_now()}
    }));
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 3, "{out}{err}");
    let env = envelope(&out);
    assert_eq!(env["errors"][0]["code"], "cluster.busy");
    assert!(
        env["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("repair@elsewhere"),
        "{out}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_some());
}

fn chrono_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[test]
fn galera_nodes_without_pods_are_recovered_by_helper_pods_on_their_volumes() {
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    for i in 0..3 {
        g.wait_synced(i);
    }
    g.sql(0, None, "INSERT INTO shop.t VALUES (1)");
    g.kill_node(2);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (2)");
    g.stop_node(1);
    g.wait_cluster_size(0, 1);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3), (4)");
    g.kill_node(0);

    // The StatefulSet has no pods (scaled down): only the volumes remain. Each node's recovery
    // helper pod runs locally against that node's data directory, with the node's server
    // options as the image's configuration (its error log to stderr, as in the container).
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({
            "apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB",
            "metadata": {"name": "galera", "namespace": NS, "uid": "0b5c3c1e-0000-4000-8000-000000000001"},
            "spec": {"replicas": 3, "image": "mariadb:10.11", "galera": {"enabled": true},
                "rootPasswordSecretKeyRef": {"name": "galera-root", "key": "password"}}
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "galera-root", "namespace": NS},
            "data": {"password": base64(g.password().as_bytes())}
        }),
    ];
    for i in 0..3 {
        objects.push(pvc(&format!("storage-galera-{i}")));
        let home = g.socket(i).parent().unwrap().join("helper-home");
        std::fs::create_dir_all(&home).unwrap();
        let server_options: String = std::fs::read_to_string(g.config_file(i))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("log-error"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(home.join(".my.cnf"), server_options).unwrap();
        let run = hasteward_kubesim::PodRun {
            namespace: NS.into(),
            name_prefix: Some(format!("galera-{i}-recover")),
            env: [("HOME".to_string(), home.display().to_string())].into(),
            mounts: [("/var/lib/mysql".to_string(), g.data_dir(i))].into(),
            ..hasteward_kubesim::PodRun::default()
        };
        objects.push(run.to_document());
    }
    let (sim, dir) = start_sim(objects, Vec::new());

    // Without --recover-positions nothing is created, and the report says to recover.
    let (report, _) = triage(&sim, dir.path(), "galera", "galera");
    let s = summary(&report);
    assert_eq!(report["verdict"], "undeterminable", "{s}");
    let next = report["nextCommand"].as_str().unwrap_or_default();
    assert!(next.contains("--recover-positions"), "{s}\nnext: {next}");

    // With it: one helper pod per node, created and deleted; the most advanced node named.
    sim.clear_requests();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let args: Vec<String> = [
        "triage",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "galera",
        "-c",
        "galera",
        "-n",
        NS,
        "--recover-positions",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let report = envelope(&out)["data"].clone();
    let s = summary(&report);
    assert_eq!(report["authority"]["outcome"], "provable", "{s}");
    assert_eq!(report["authority"]["leader"], "galera-0", "{s}");
    let mutations: Vec<(String, String)> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let creates = mutations
        .iter()
        .filter(|(m, p)| m == "POST" && p.ends_with("/pods"))
        .count();
    let deletes = mutations
        .iter()
        .filter(|(m, p)| m == "DELETE" && p.contains("-recover-"))
        .count();
    assert_eq!(
        (creates, deletes, mutations.len()),
        (3, 3, 6),
        "{mutations:?}"
    );
    let helpers: Vec<Value> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| serde_json::from_str::<Value>(r.body.as_deref().unwrap_or("{}")).unwrap())
        .collect();
    for pod in &helpers {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(
            sim.get("v1", "pods", Some(NS), name).is_none(),
            "{name} left behind"
        );
        assert_eq!(pod["spec"]["activeDeadlineSeconds"], 150);
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "MariaDB");
        assert_eq!(
            pod["metadata"]["labels"]["hasteward.dev/helper"],
            "wsrep-recover"
        );
    }
    drop(g);
}

/// A stand-in for the CloudNativePG operator and kubelet around a reseed of `pg-2`: when the
/// pod is deleted its server stops (the container is killed); once reconciliation is back on,
/// the reseeded data directory is started as a replica of the primary and the pod recreated.
fn cnpg_operator_stand_in(
    url: String,
    pod: Value,
    mut replica: Postgres,
    primary_port_source: std::sync::Arc<Postgres>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Postgres> {
    std::thread::spawn(move || {
        let api = SimHttp { url };
        let cluster_path = format!("/apis/postgresql.cnpg.io/v1/namespaces/{NS}/clusters/pg");
        let pod_path = format!("/api/v1/namespaces/{NS}/pods/pg-2");
        let mut stopped = false;
        let mut saw_disabled = false;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let cluster = api.get(&cluster_path).unwrap_or(Value::Null);
            let disabled =
                cluster["metadata"]["annotations"]["cnpg.io/reconciliationLoop"] == "disabled";
            saw_disabled |= disabled;
            if !stopped && (disabled || api.get(&pod_path).is_none()) {
                replica.shut_down();
                stopped = true;
            }
            // A fenced instance does not run (CNPG keeps its postgres down).
            let fenced = cluster["metadata"]["annotations"]["cnpg.io/fencedInstances"]
                .as_str()
                .is_some_and(|f| f.contains("pg-2"));
            if stopped && saw_disabled && !disabled && !fenced {
                // Reconciliation is back on: the reseeded instance starts and its pod returns.
                replica.follow(&primary_port_source, "pg-2");
                api.recreate_pod(&pod, false);
                return replica;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    })
}

#[test]
fn repair_reseeds_a_diverged_replica_after_escrow_and_it_streams_again() {
    let p = std::sync::Arc::new(Postgres::start());
    let r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    p.wait_replica_caught_up(&r2);
    // Split brain: pg-2 promoted by mistake and written to, while pg-1 (CNPG's primary) also
    // takes writes.
    r2.promote();
    r2.psql(
        "postgres",
        "INSERT INTO t SELECT -g FROM generate_series(1, 500) g",
    );
    p.psql(
        "postgres",
        "INSERT INTO t SELECT g FROM generate_series(1001, 3000) g",
    );
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let primary_rows = p.psql("postgres", "SELECT count(*) || ':' || sum(g) FROM t");

    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    sim.put(cluster);
    // The reseed helper runs locally: pg_basebackup from the real primary into pg-2's data
    // directory (TLS and the streaming_replica user are replaced by the test server's password).
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some("pg-2-reseed".into()),
        env: [
            ("PGHOST".to_string(), "127.0.0.1".to_string()),
            ("PGPORT".to_string(), p.port().to_string()),
            ("PGUSER".to_string(), "postgres".to_string()),
            ("PGPASSWORD".to_string(), p.password().to_string()),
            ("PGSSLMODE".to_string(), "disable".to_string()),
        ]
        .into(),
        path_prepend: vec![p.bin_dir().to_path_buf()],
        mounts: [(PGDATA.to_string(), r2.data_dir().to_path_buf())].into(),
        ..hasteward_kubesim::PodRun::default()
    });
    let original = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stand_in = cnpg_operator_stand_in(sim.url(), original, r2, p.clone(), stop.clone());

    let repo = Repo::new();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "cnpg",
        "-c",
        "pg",
        "-n",
        NS,
        "--instance",
        "pg-2",
        "--force",
        "--heal-timeout",
        "60",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(repo.args());
    sim.clear_requests();
    let (code, out, err) = run(&args, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let r2 = stand_in.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");

    // Escrow first: pg-1's dump (escrow) and pg-2's diverged side, both real snapshots.
    let snaps = repo.snapshots();
    let kinds: Vec<(String, String)> = snaps
        .iter()
        .map(|s| {
            let tags: Vec<String> = serde_json::from_value(s["tags"].clone()).unwrap();
            let kind = tags
                .iter()
                .find(|t| t.starts_with("type="))
                .cloned()
                .unwrap_or_default();
            (kind, s["paths"][0].as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        kinds.contains(&("type=escrow".into(), "/db/pg/pg_dumpall.sql".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("type=diverged".into(), "/db/pg/pg-2.pg_dumpall.sql".into())),
        "{kinds:?}"
    );
    // Both escrow snapshots carry the same job= tag: this run's.
    let jobs: Vec<String> = snaps
        .iter()
        .map(|s| {
            let tags: Vec<String> = serde_json::from_value(s["tags"].clone()).unwrap();
            tags.into_iter()
                .find(|t| t.starts_with("job=repair-"))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        !jobs[0].is_empty() && jobs.iter().all(|j| *j == jobs[0]),
        "{jobs:?}"
    );
    let diverged_dump = repo.restic(&["dump", "latest", "/db/pg/pg-2.pg_dumpall.sql"]);
    assert!(String::from_utf8_lossy(&diverged_dump.stdout).contains("-500"));

    // The exact fence/reconciliation sequence, and nothing left behind.
    let patches: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/clusters/pg"))
        .map(|r| r.body.clone().unwrap_or_default())
        .collect();
    assert_eq!(patches.len(), 4, "{patches:?}");
    assert!(
        patches[0].contains("fencedInstances") && patches[0].contains("pg-2"),
        "{patches:?}"
    );
    assert!(
        patches[1].contains("\"cnpg.io/reconciliationLoop\":\"disabled\""),
        "{patches:?}"
    );
    assert!(
        patches[2].contains("\"cnpg.io/reconciliationLoop\":null"),
        "{patches:?}"
    );
    assert!(patches[3].contains("fencedInstances"), "{patches:?}");
    let cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    let annotations = &cluster["metadata"]["annotations"];
    assert!(
        annotations.get("cnpg.io/reconciliationLoop").is_none(),
        "{annotations}"
    );
    assert!(
        annotations.get("cnpg.io/fencedInstances").is_none()
            || annotations["cnpg.io/fencedInstances"] == "[]",
        "{annotations}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());

    // pg-2 is a replica of pg-1 again, with pg-1's rows (its diverged rows are only in the
    // escrow), and it streams.
    p.wait_replica_caught_up(&r2);
    assert_eq!(r2.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        r2.psql("postgres", "SELECT count(*) || ':' || sum(g) FROM t"),
        primary_rows
    );
    p.psql("postgres", "INSERT INTO t VALUES (424242)");
    p.wait_replica_caught_up(&r2);
    assert_eq!(
        r2.psql("postgres", "SELECT count(*) FROM t WHERE g = 424242"),
        "1"
    );
    let env = envelope(&out);
    assert_eq!(env["data"]["after"]["verdict"], "healthy", "{out}");
}

#[test]
fn a_failed_reseed_leaves_the_instance_fenced_reconciliation_on_and_no_lease() {
    let p = std::sync::Arc::new(Postgres::start());
    let r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    p.wait_replica_caught_up(&r2);
    // A split brain, so that `--instance pg-2 --force` plans a reseed.
    r2.promote();
    r2.psql("postgres", "INSERT INTO t VALUES (-1)");
    p.psql("postgres", "INSERT INTO t VALUES (101)");
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    // Someone else's fence must survive whatever happens.
    cluster["metadata"]["annotations"] = json!({"cnpg.io/fencedInstances": "[\"pg-9\"]"});
    sim.put(cluster);
    // The helper's pg_basebackup cannot reach the primary: the reseed fails after the data
    // directory was emptied.
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some("pg-2-reseed".into()),
        env: [
            ("PGHOST".to_string(), "127.0.0.1".to_string()),
            (
                "PGPORT".to_string(),
                hasteward_testkit::free_port().to_string(),
            ),
            ("PGSSLMODE".to_string(), "disable".to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), "3".to_string()),
        ]
        .into(),
        path_prepend: vec![p.bin_dir().to_path_buf()],
        mounts: [(PGDATA.to_string(), r2.data_dir().to_path_buf())].into(),
        ..hasteward_kubesim::PodRun::default()
    });
    let original = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stand_in = cnpg_operator_stand_in(sim.url(), original, r2, p.clone(), stop.clone());
    let repo = Repo::new();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "cnpg",
        "-c",
        "pg",
        "-n",
        NS,
        "--instance",
        "pg-2",
        "--force",
        "--heal-timeout",
        "60",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(stand_in.join().unwrap());
    assert_eq!(code, 1, "{out}\n{err}");
    let env = envelope(&out);
    assert_eq!(env["errors"][0]["code"], "repair.failed", "{out}");
    let message = env["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("stays fenced on purpose"), "{message}");
    assert!(
        message.contains("kubectl -n db annotate cluster pg cnpg.io/fencedInstances-"),
        "{message}"
    );
    // Reconciliation back on; pg-2 left fenced next to the pre-existing pg-9 fence; the lease
    // released; the helper pod deleted; the escrow (taken first) kept.
    let cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    let annotations = &cluster["metadata"]["annotations"];
    assert!(
        annotations.get("cnpg.io/reconciliationLoop").is_none(),
        "{annotations}"
    );
    assert_eq!(
        annotations["cnpg.io/fencedInstances"], "[\"pg-9\",\"pg-2\"]",
        "{annotations}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    let pods: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert!(
        sim.get("v1", "pods", Some(NS), &pods[0]).is_none(),
        "helper left behind"
    );
    assert_eq!(
        repo.snapshots().len(),
        2,
        "escrow and diverged capture kept"
    );
}

/// Stand-in for the StatefulSet controller and mariadb-operator during a Galera bootstrap: the
/// pods go when the StatefulSet is scaled to 0; once it is back at 3, resumed, with
/// `forceClusterBootstrapInPod` set, that node is bootstrapped for real, the others join it, and
/// the pods come back Ready. Returns the cluster when done, or when `stop` is set.
pub(crate) fn galera_bootstrap_stand_in(
    sim: &Simulator,
    mut g: Galera,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Galera> {
    let pods: Vec<Value> = (0..3)
        .map(|i| {
            sim.get("v1", "pods", Some(NS), &format!("galera-{i}"))
                .unwrap()
        })
        .collect();
    let url = sim.url();
    std::thread::spawn(move || {
        let api = SimHttp { url };
        let get = |path: &str| api.get(path).unwrap_or(Value::Null);
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut scaled_down = false;
        while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let sts = get(&format!(
                "/apis/apps/v1/namespaces/{NS}/statefulsets/galera"
            ));
            let cr = get(&format!(
                "/apis/k8s.mariadb.com/v1alpha1/namespaces/{NS}/mariadbs/galera"
            ));
            let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(-1);
            if replicas == 0 && !scaled_down {
                for i in 0..3 {
                    api.delete(&format!("/api/v1/namespaces/{NS}/pods/galera-{i}"));
                }
                scaled_down = true;
            }
            let force = cr["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"]
                .as_str()
                .map(String::from);
            if scaled_down && replicas == 3 && cr["spec"]["suspend"] == false {
                if let Some(node) = force {
                    let first: usize = node.trim_start_matches("galera-").parse().unwrap();
                    g.bootstrap_node(first);
                    for i in (0..3).filter(|i| *i != first) {
                        g.start_node(i);
                    }
                    for pod in &pods {
                        api.recreate_pod(pod, true);
                    }
                    return g;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    })
}

#[test]
fn repair_bootstraps_galera_from_the_most_advanced_node_and_no_committed_row_is_lost() {
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    for i in 0..3 {
        g.wait_synced(i);
    }
    // Four committed rows, the last two only on node 0, then a total outage.
    g.sql(0, None, "INSERT INTO shop.t VALUES (1)");
    g.kill_node(2);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (2)");
    g.stop_node(1);
    g.wait_cluster_size(0, 1);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3), (4)");
    g.kill_node(0);

    let (sim, dir) = galera_sim(&g, &[false, false, false]);
    let mut cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    cr["spec"]["image"] = json!("mariadb:10.11");
    sim.put(cr);
    sim.put(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "galera", "namespace": NS},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/instance": "galera"}}},
        "status": {"replicas": 3, "readyReplicas": 0}
    }));
    for i in 0..3 {
        sim.set_pod_run(hasteward_kubesim::PodRun {
            namespace: NS.into(),
            name_prefix: Some(format!("galera-{i}-bootstrap")),
            mounts: [("/var/lib/mysql".to_string(), g.data_dir(i))].into(),
            ..hasteward_kubesim::PodRun::default()
        });
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stand_in = galera_bootstrap_stand_in(&sim, g, stop.clone());

    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "galera",
        "-c",
        "galera",
        "-n",
        NS,
        "--recover-positions",
        "--bootstrap",
        "galera-0",
        "--heal-timeout",
        "180",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run(&args, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let g = stand_in.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    // Every committed row is on every node.
    for i in 0..3 {
        assert_eq!(
            g.sql(i, None, "SELECT COUNT(*) FROM shop.t"),
            "4",
            "node {i}"
        );
    }
    let env = envelope(&out);
    assert_eq!(env["data"]["after"]["verdict"], "healthy", "{out}");
    // The operator's state is back: not suspended, no force field, three replicas, no lease.
    let cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    assert_eq!(cr["spec"]["suspend"], false);
    assert!(
        cr["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_null(),
        "{cr}"
    );
    let sts = sim
        .get("apps/v1", "statefulsets", Some(NS), "galera")
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert!(sim
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-galera"
        )
        .is_none());
    drop(g);
}

#[test]
fn repair_reseeds_a_middle_galera_node_while_the_others_serve() {
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    g.sql(0, None, "INSERT INTO shop.t VALUES (1), (2)");
    for i in 0..3 {
        g.wait_synced(i);
    }
    // Node 1 (not the highest ordinal) crashes and the others move on: it is behind and its
    // container crash-loops.
    g.kill_node(1);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3), (4), (5)");

    let (sim, dir) = galera_sim(&g, &[true, false, true]);
    let mut cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    cr["spec"]["image"] = json!("mariadb:10.11");
    sim.put(cr);
    sim.put(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "galera", "namespace": NS, "labels": {"app.kubernetes.io/instance": "galera"}},
        "spec": {"replicas": 3, "serviceName": "galera",
                 "selector": {"matchLabels": {"app.kubernetes.io/instance": "galera"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/instance": "galera"}},
                              "spec": {"containers": [{"name": "mariadb", "image": "mariadb:10.11"}]}}},
        "status": {"replicas": 3, "readyReplicas": 2}
    }));
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some("galera-1-reset".into()),
        mounts: [("/var/lib/mysql".to_string(), g.data_dir(1))].into(),
        ..hasteward_kubesim::PodRun::default()
    });
    let pod1 = sim.get("v1", "pods", Some(NS), "galera-1").unwrap();

    // Stand-in for the StatefulSet controller: while the StatefulSet exists and galera-1 has no
    // pod, start the node (it joins the running ones) and create its pod.
    let url = sim.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_in = stop.clone();
    let stand_in = std::thread::spawn(move || {
        let api = SimHttp { url };
        let exists = |path: &str| api.exists(path);
        let mut pod_was_deleted = false;
        while !stop_in.load(std::sync::atomic::Ordering::SeqCst) {
            let sts = exists(&format!(
                "/apis/apps/v1/namespaces/{NS}/statefulsets/galera"
            ));
            let pod = exists(&format!("/api/v1/namespaces/{NS}/pods/galera-1"));
            pod_was_deleted |= !pod;
            if sts && !pod && pod_was_deleted {
                g.start_node(1);
                api.recreate_pod(&pod1, true);
                return g;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    });

    // The dry run prints the per-node plan and sends no mutation.
    let (code, env) = repair_no_mutation(
        &sim,
        dir.path(),
        "galera",
        &["--instance", "galera-1", "--dry-run"],
    );
    assert_eq!(code, 0, "{env:#}");
    assert_eq!(
        plan_targets(&env),
        [("galera-1".to_string(), "reseed".to_string())]
    );
    let actions: Vec<&str> = env["data"]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"statefulset.orphan") && actions.contains(&"escrow.backup"),
        "{actions:?}"
    );

    let repo = Repo::new();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "galera",
        "-c",
        "galera",
        "-n",
        NS,
        "--instance",
        "galera-1",
        "--heal-timeout",
        "120",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let g = stand_in.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    let env = envelope(&out);
    assert_eq!(
        plan_targets(&env),
        [("galera-1".to_string(), "reseed".to_string())],
        "{out}"
    );
    // Escrow first (a Synced node's dump), then the reset: galera-1 rejoined with every row.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"][0], "/db/galera/mariadb-dump.sql");
    assert!(g.data_dir(1).join("grastate.dat.pre-heal").is_file());
    g.wait_synced(1);
    assert_eq!(g.sql(1, None, "SELECT COUNT(*) FROM shop.t"), "5");
    // The StatefulSet is back, the CR resumed, no lease; the other nodes never stopped.
    assert!(sim
        .get("apps/v1", "statefulsets", Some(NS), "galera")
        .is_some());
    let cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    assert_eq!(cr["spec"]["suspend"], false);
    assert!(sim
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-galera"
        )
        .is_none());
    assert_eq!(g.wsrep_state(0), "Synced");
    assert_eq!(g.wsrep_state(2), "Synced");
    crate::kube::assert_role_allows("hasteward-repair", &sim.requests());
}

#[test]
fn a_galera_reseed_whose_helper_never_runs_puts_the_statefulset_and_the_cr_back() {
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    for i in 0..3 {
        g.wait_synced(i);
    }
    g.kill_node(1);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (1)");
    let (sim, dir) = galera_sim(&g, &[true, false, true]);
    let mut cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    cr["spec"]["image"] = json!("mariadb:10.11");
    sim.put(cr);
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "galera", "namespace": NS},
        "spec": {"replicas": 3, "serviceName": "galera",
                 "selector": {"matchLabels": {"app.kubernetes.io/instance": "galera"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/instance": "galera"}},
                              "spec": {"containers": [{"name": "mariadb", "image": "mariadb:10.11"}]}}}
    });
    sim.put(sts);
    // No PodRun: the reset helper is created but never runs (unschedulable, say).
    let repo = Repo::new();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "galera",
        "-c",
        "galera",
        "-n",
        NS,
        "--instance",
        "galera-1",
        "--heal-timeout",
        "5",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        envelope(&out)["errors"][0]["code"],
        "repair.failed",
        "{out}"
    );
    // Everything hasteward changed is back: the StatefulSet (same spec), the CR resumed, no
    // helper pod, no lease; the escrow taken first is kept.
    let back = sim
        .get("apps/v1", "statefulsets", Some(NS), "galera")
        .expect("StatefulSet recreated");
    assert_eq!(back["spec"]["replicas"], 3);
    assert_eq!(
        back["spec"]["template"]["spec"]["containers"][0]["image"],
        "mariadb:10.11"
    );
    let cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    assert_eq!(cr["spec"]["suspend"], false);
    assert!(sim
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-galera"
        )
        .is_none());
    let helpers: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    assert!(sim.get("v1", "pods", Some(NS), &helpers[0]).is_none());
    assert_eq!(repo.snapshots().len(), 1);
    // The data was not touched: grastate.dat has no .pre-heal copy.
    assert!(!g.data_dir(1).join("grastate.dat.pre-heal").exists());
    g.start_node(1);
}

#[test]
fn a_failed_escrow_stops_the_repair_before_anything_is_touched() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    p.wait_replica_caught_up(&r2);
    r2.promote();
    r2.psql("postgres", "INSERT INTO t VALUES (-1)");
    p.psql("postgres", "INSERT INTO t VALUES (101)");
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    sim.put(cluster);
    // pg-1's pg_dumpall writes part of a dump, then fails: the escrow must not be committed,
    // and the repair must stop there.
    let scratch = tempfile::tempdir().unwrap();
    let failing = shim(
        scratch.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\" | head -c 2000; exit 1"),
    );
    let mut exec = pg_exec("pg-1", &p);
    exec.path_prepend.insert(0, failing);
    sim.set_exec(exec);
    let repo = Repo::new();
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let mut args: Vec<String> = [
        "repair",
        "--kubeconfig",
        &kubeconfig,
        "-e",
        "cnpg",
        "-c",
        "pg",
        "-n",
        NS,
        "--instance",
        "pg-2",
        "--force",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(repo.args());
    sim.clear_requests();
    let (code, out, err) = run(&args, None);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        repo.snapshots().is_empty(),
        "a failed escrow became a snapshot"
    );
    assert_eq!(repo.locks(), 0);
    // Only the lease was written (and removed): no fence, no annotation, no pod deleted.
    let mutations: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        mutations.iter().all(|m| m.contains("/leases")),
        "{mutations:?}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    assert_eq!(
        r2.psql("postgres", "SELECT count(*) FROM t WHERE g = -1"),
        "1"
    );
}
