//! Repair scenarios beyond the triage module's: WAL relief of a real primary whose volume is
//! "full" (its old WAL really removed, the server really started again), and Ctrl-C in the
//! middle of a reseed (everything put back, the helper gone, the instance left fenced).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hasteward_kubesim::Simulator;
use hasteward_testkit::Postgres;
use serde_json::{json, Value};

use crate::support::*;
use crate::triage::{cnpg_sim, repair_no_mutation, SimHttp, NS, PGDATA};

fn segments(data: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data.join("pg_wal"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    out.sort();
    out
}

fn repair_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let kubeconfig = dir.join("kubeconfig").display().to_string();
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
        "--heal-timeout",
        "180",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn annotations(sim: &Simulator) -> Value {
    sim.get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap()["metadata"]["annotations"]
        .clone()
}

/// A CloudNativePG stand-in for the full primary: once its pod is gone, reconciliation is on and
/// it is not fenced, the pod comes back — crash-looping while its WAL still fills the volume
/// (the segment count is what it was), started for real once the WAL is gone.
fn full_primary_stand_in(
    url: String,
    pod: Value,
    mut primary: Postgres,
    full: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Postgres> {
    std::thread::spawn(move || {
        let api = SimHttp { url };
        let cluster_path = format!("/apis/postgresql.cnpg.io/v1/namespaces/{NS}/clusters/pg");
        let pod_path = format!("/api/v1/namespaces/{NS}/pods/pg-1");
        while !stop.load(Ordering::SeqCst) {
            // The pod first, then the cluster: a repair quiesces before it deletes the pod, so a
            // pod seen missing is followed by a read that sees the quiescing (read the other way
            // round, the stand-in could recreate a crash-looping pod inside the repair).
            if api.exists(&pod_path) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let cluster = api.get(&cluster_path).unwrap_or(Value::Null);
            let a = &cluster["metadata"]["annotations"];
            let quiesced = a["cnpg.io/reconciliationLoop"] == "disabled"
                || a["cnpg.io/fencedInstances"]
                    .as_str()
                    .is_some_and(|f| f.contains("pg-1"));
            if !quiesced {
                if segments(primary.data_dir()).len() >= full {
                    api.recreate_pod(&pod, false);
                } else {
                    primary.start_again();
                    api.recreate_pod(&pod, true);
                    return primary;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        primary
    })
}

#[test]
fn wal_relief_frees_a_full_primarys_volume_gated_on_archiving_and_it_starts_again() {
    let mut p = Postgres::start();
    let mut r2 = p.start_replica_named("pg-2");
    p.psql("postgres", "ALTER SYSTEM SET wal_keep_size = '1GB'");
    p.psql("postgres", "SELECT pg_reload_conf()");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    for i in 0..8 {
        p.psql("postgres", &format!("INSERT INTO t VALUES ({})", 5000 + i));
        p.psql("postgres", "SELECT pg_switch_wal()");
    }
    p.psql("postgres", "CHECKPOINT");
    p.wait_replica_caught_up(&r2);
    let rows = p.psql("postgres", "SELECT count(*) || ':' || sum(g) FROM t");
    // The primary's volume is full: its server is down and crash-loops.
    p.shut_down();
    let before = segments(p.data_dir());
    assert!(before.len() >= 8, "{before:?}");
    // The oldest segment is not archived yet.
    let status = p.data_dir().join("pg_wal/archive_status");
    std::fs::create_dir_all(&status).unwrap();
    std::fs::write(status.join(format!("{}.ready", before[0])), "").unwrap();

    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    cluster["status"]["phase"] = json!("Not enough disk space");
    sim.put(cluster.clone());
    let mut pod = sim.get("v1", "pods", Some(NS), "pg-1").unwrap();
    pod["status"]["containerStatuses"][0]["ready"] = json!(false);
    pod["status"]["containerStatuses"][0]["restartCount"] = json!(9);
    pod["metadata"]["annotations"] = json!({"kubesim.hasteward.dev/log":
        "2026-11-23 20:00:00 UTC [21] PANIC:  could not write to file \"pg_wal/xlogtemp.21\": No space left on device\n"});
    sim.put(pod.clone());
    // Both helpers (listing and removal) run locally on pg-1's data directory.
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some("pg-1-wal".into()),
        path_prepend: vec![p.bin_dir().to_path_buf()],
        mounts: [(PGDATA.to_string(), p.data_dir().to_path_buf())].into(),
        ..hasteward_kubesim::PodRun::default()
    });

    // The triage names the remedy; the dry run prints the plan and sends no mutation.
    let (code, env) = repair_no_mutation(
        &sim,
        dir.path(),
        "cnpg",
        &["--prune-wal", "pg-1", "--dry-run"],
    );
    assert_eq!(code, 0, "{env}");
    let actions: Vec<&str> = env["data"]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"replicas.read"), "{actions:?}");
    assert_eq!(
        env["data"]["plan"]["targets"][0]["remediation"],
        "prune-wal"
    );
    let full = env["data"]["triage"]["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "cnpg-disk-full")
        .cloned()
        .unwrap_or_else(|| panic!("no disk-full diagnosis: {env}"));
    assert_eq!(
        full["remedy"],
        "hasteward repair -e cnpg -c pg -n db --prune-wal pg-1 --dry-run"
    );
    // A replica (its primary down, so not healthy either) is not relieved but rebuilt.
    let (code, env) = repair_no_mutation(&sim, dir.path(), "cnpg", &["--prune-wal", "pg-2"]);
    assert_eq!(code, 3, "{env}");
    assert_eq!(
        env["errors"][0]["code"],
        "repair.refused.wal-relief-not-authority"
    );
    // Reconciliation turned off by someone else: refused before anything changes.
    let mut off = cluster.clone();
    off["metadata"]["annotations"] = json!({"cnpg.io/reconciliationLoop": "disabled"});
    sim.put(off);
    let (code, env) = repair_no_mutation(&sim, dir.path(), "cnpg", &["--prune-wal", "pg-1"]);
    assert_eq!(code, 3, "{env}");
    assert!(
        env["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("set by someone else"),
        "{env}"
    );
    assert_eq!(annotations(&sim)["cnpg.io/reconciliationLoop"], "disabled");
    sim.put(cluster);

    let stop = Arc::new(AtomicBool::new(false));
    let stand_in = full_primary_stand_in(sim.url(), pod, p, before.len(), stop.clone());

    // Without --force the unarchived segment stops it after the listing: nothing removed,
    // everything put back, exit 3.
    let (code, out, err) = run(&repair_args(dir.path(), &["--prune-wal", "pg-1"]), None);
    assert_eq!(code, 3, "{out}\n{err}");
    let env = envelope(&out);
    let message = env["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("wal-relief-not-archived"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    let a = annotations(&sim);
    assert!(a.get("cnpg.io/reconciliationLoop").is_none(), "{a}");
    assert!(
        a.get("cnpg.io/fencedInstances").is_none() || a["cnpg.io/fencedInstances"] == "[]",
        "{a}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    // The pod came back, still crash-looping; wait for it before the next run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.get("v1", "pods", Some(NS), "pg-1").is_none() {
        assert!(Instant::now() < deadline, "pg-1's pod did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }

    // With --force: the WAL before the REDO point goes and the primary starts again.
    let (code, out, err) = run(
        &repair_args(dir.path(), &["--prune-wal", "pg-1", "--force"]),
        None,
    );
    stop.store(true, Ordering::SeqCst);
    let p = stand_in.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    let after = segments(p.data_dir());
    assert!(
        after.len() < before.len() && !after.contains(&before[0]),
        "before {before:?}, after {after:?}"
    );
    assert!(!status.join(format!("{}.ready", before[0])).exists());
    eprintln!(
        "WAL relief: {} segments before, {} after",
        before.len(),
        after.len()
    );
    assert_eq!(
        p.psql("postgres", "SELECT count(*) || ':' || sum(g) FROM t"),
        rows
    );
    // The replica streams from it again (pointed at the restarted server's new test port, which
    // the service name hides in a real cluster).
    r2.shut_down();
    r2.follow(&p, "pg-2");
    p.psql("postgres", "INSERT INTO t VALUES (777777)");
    p.wait_replica_caught_up(&r2);
    assert_eq!(
        r2.psql("postgres", "SELECT count(*) FROM t WHERE g = 777777"),
        "1"
    );
    let a = annotations(&sim);
    assert!(a.get("cnpg.io/reconciliationLoop").is_none(), "{a}");
    assert!(
        a.get("cnpg.io/fencedInstances").is_none() || a["cnpg.io/fencedInstances"] == "[]",
        "{a}"
    );
    // Both helpers were created and are gone.
    let helpers: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("pg-1-wal"))
        .collect();
    assert!(helpers.len() >= 3, "{helpers:?}");
    for h in &helpers {
        assert!(
            sim.get("v1", "pods", Some(NS), h).is_none(),
            "{h} left behind"
        );
    }
    // Everything it did is allowed by the least-privilege repair Role.
    crate::kube::assert_role_allows("hasteward-repair", &sim.requests());
}

#[test]
fn ctrl_c_during_a_reseed_puts_everything_back_and_leaves_the_instance_fenced() {
    let p = Arc::new(Postgres::start());
    let mut r2 = p.start_replica_named("pg-2");
    p.psql("postgres", "CREATE TABLE t AS SELECT 1 AS g");
    p.wait_replica_caught_up(&r2);
    r2.promote();
    r2.psql("postgres", "INSERT INTO t VALUES (-1)");
    p.psql("postgres", "INSERT INTO t VALUES (2)");
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    sim.put(cluster);
    // pg_basebackup connects to a listener that never answers: the helper hangs until Ctrl-C.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some("pg-2-reseed".into()),
        env: [
            ("PGHOST".to_string(), "127.0.0.1".to_string()),
            (
                "PGPORT".to_string(),
                silent.local_addr().unwrap().port().to_string(),
            ),
            ("PGSSLMODE".to_string(), "disable".to_string()),
        ]
        .into(),
        path_prepend: vec![p.bin_dir().to_path_buf()],
        mounts: [(PGDATA.to_string(), r2.data_dir().to_path_buf())].into(),
        ..hasteward_kubesim::PodRun::default()
    });
    // The stand-in operator stops pg-2's server once reconciliation is off.
    let api = SimHttp { url: sim.url() };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let path = format!("/apis/postgresql.cnpg.io/v1/namespaces/{NS}/clusters/pg");
            while !stop.load(Ordering::SeqCst) {
                let c = api.get(&path).unwrap_or(Value::Null);
                if c["metadata"]["annotations"]["cnpg.io/reconciliationLoop"] == "disabled" {
                    r2.shut_down();
                    return r2;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            r2
        })
    };
    let repo = Repo::new();
    let mut args = repair_args(dir.path(), &["--instance", "pg-2", "--force"]);
    args.extend(repo.args());
    let bin = tempfile::tempdir().unwrap();
    let child = spawn(&args, bin.path());
    // Wait until the reseed helper exists, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    let helper = loop {
        let created = sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
            .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
            .find_map(|p| p["metadata"]["name"].as_str().map(String::from));
        if let Some(name) = created {
            break name;
        }
        assert!(Instant::now() < deadline, "no helper was created");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    let interrupted = Instant::now();
    kill(child.id(), nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    let took = interrupted.elapsed();
    stop.store(true, Ordering::SeqCst);
    drop(stopper.join().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(20), "took {took:?} after Ctrl-C");
    let env = envelope(&stdout);
    assert_eq!(env["errors"][0]["code"], "cancelled", "{stdout}");
    let message = env["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("stays fenced on purpose"), "{message}");
    // The helper pod is gone, reconciliation is back on, pg-2 stays fenced (its data directory
    // was being replaced), the lease is released; the escrow taken first is kept.
    assert!(
        sim.get("v1", "pods", Some(NS), &helper).is_none(),
        "helper {helper} left behind"
    );
    let a = annotations(&sim);
    assert!(a.get("cnpg.io/reconciliationLoop").is_none(), "{a}");
    assert_eq!(a["cnpg.io/fencedInstances"], "[\"pg-2\"]", "{a}");
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    assert_eq!(
        repo.snapshots().len(),
        2,
        "escrow and diverged capture kept"
    );
    crate::kube::assert_role_allows("hasteward-repair", &sim.requests());
}

#[test]
fn a_bootstrap_that_fails_on_the_third_node_rolls_back_every_marker() {
    use hasteward_testkit::Galera;
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
    g.stop_node(1);
    g.wait_cluster_size(0, 1);
    g.sql(0, None, "INSERT INTO shop.t VALUES (2)");
    g.kill_node(0);
    let grastate = |i: usize| std::fs::read(g.data_dir(i).join("grastate.dat")).unwrap();
    let originals: Vec<Vec<u8>> = (0..3).map(grastate).collect();

    let (sim, dir) = crate::triage::galera_sim(&g, &[false, false, false]);
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
    // Nodes 0 and 1: their helpers (flag and rollback) work on their real volumes. Node 2's
    // volume is empty: setting its flag fails, after the other two were changed.
    let empty = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let volume = if i == 2 {
            empty.path().to_path_buf()
        } else {
            g.data_dir(i)
        };
        sim.set_pod_run(hasteward_kubesim::PodRun {
            namespace: NS.into(),
            name_prefix: Some(format!("galera-{i}-")),
            mounts: [("/var/lib/mysql".to_string(), volume)].into(),
            ..hasteward_kubesim::PodRun::default()
        });
    }
    // Stand-in for the StatefulSet controller: the pods go when it is scaled to 0.
    let api = SimHttp { url: sim.url() };
    let stop = Arc::new(AtomicBool::new(false));
    let controller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let sts = api
                    .get(&format!(
                        "/apis/apps/v1/namespaces/{NS}/statefulsets/galera"
                    ))
                    .unwrap_or(Value::Null);
                if sts["spec"]["replicas"] == 0 {
                    for i in 0..3 {
                        api.delete(&format!("/api/v1/namespaces/{NS}/pods/galera-{i}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
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
        "60",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run(&args, None);
    stop.store(true, Ordering::SeqCst);
    controller.join().unwrap();
    assert_eq!(code, 1, "{out}\n{err}");
    let env = envelope(&out);
    assert_eq!(env["errors"][0]["code"], "repair.failed", "{out}");
    assert!(
        env["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("setting safe_to_bootstrap on galera-2"),
        "{out}"
    );
    // Every grastate.dat is byte for byte what it was; the scale, the suspension and the force
    // field are put back; every helper is gone; the lease is released.
    for i in 0..2 {
        let copies = std::fs::read_dir(g.data_dir(i))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("grastate.dat.pre-bootstrap."))
            .count();
        assert_eq!(copies, 1, "galera-{i}'s flag was set (and copied) first");
    }
    for (i, original) in originals.iter().enumerate() {
        assert_eq!(
            &grastate(i),
            original,
            "galera-{i}'s grastate.dat was not restored"
        );
    }
    let cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    assert_eq!(cr["spec"]["suspend"], false, "{cr}");
    assert!(
        cr["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_null(),
        "{cr}"
    );
    let sts = sim
        .get("apps/v1", "statefulsets", Some(NS), "galera")
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    let helpers: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    let rollbacks = helpers.iter().filter(|h| h.contains("unbootstrap")).count();
    assert!(rollbacks >= 2, "{helpers:?}");
    for h in &helpers {
        assert!(
            sim.get("v1", "pods", Some(NS), h).is_none(),
            "{h} left behind"
        );
    }
    assert!(sim
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-galera"
        )
        .is_none());
}

/// Stand-in for CloudNativePG's pod handling: recreates pg-2's pod (Ready; its real server keeps
/// running) whenever it is missing while reconciliation is on and it is not fenced.
fn pod_recreator(url: String, pod: Value, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let api = SimHttp { url };
        let cluster_path = format!("/apis/postgresql.cnpg.io/v1/namespaces/{NS}/clusters/pg");
        let pod_path = format!("/api/v1/namespaces/{NS}/pods/pg-2");
        while !stop.load(Ordering::SeqCst) {
            let cluster = api.get(&cluster_path).unwrap_or(Value::Null);
            let a = &cluster["metadata"]["annotations"];
            let quiesced = a["cnpg.io/reconciliationLoop"] == "disabled"
                || a["cnpg.io/fencedInstances"]
                    .as_str()
                    .is_some_and(|f| f.contains("pg-2"));
            if !quiesced && !api.exists(&pod_path) {
                api.recreate_pod(&pod, true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn a_cnpg_reseed_failing_at_any_mutating_request_puts_everything_back() {
    let p = Postgres::start();
    let r2 = p.start_replica_named("pg-2");
    p.psql("postgres", "CREATE TABLE t AS SELECT 1 AS g");
    p.wait_replica_caught_up(&r2);
    r2.promote();
    r2.psql("postgres", "INSERT INTO t VALUES (-1)");
    p.psql("postgres", "INSERT INTO t VALUES (2)");
    r2.psql("postgres", "CHECKPOINT");
    p.psql("postgres", "CHECKPOINT");
    let (sim, dir) = cnpg_sim("pg-1", &[("pg-1", &p), ("pg-2", &r2)]);
    let mut cluster = sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cluster["spec"]["imageName"] = json!("ghcr.io/cloudnative-pg/postgresql:15");
    sim.put(cluster.clone());
    // The helper's pg_basebackup really runs against the primary, into a scratch directory (pg-2
    // keeps its diverged data, so every run plans the same reseed).
    let scratch = tempfile::tempdir().unwrap();
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
        mounts: [(PGDATA.to_string(), scratch.path().join("pgdata"))].into(),
        ..hasteward_kubesim::PodRun::default()
    });
    let original_pod = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let recreator = pod_recreator(sim.url(), original_pod, stop.clone());
    let args = repair_args(
        dir.path(),
        &["--instance", "pg-2", "--force", "--no-escrow"],
    );
    let reset = |sim: &Simulator| {
        sim.put(cluster.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while sim.get("v1", "pods", Some(NS), "pg-2").is_none() {
            assert!(Instant::now() < deadline, "pg-2's pod did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // The undisturbed run: its mutating requests are the steps to break.
    sim.clear_requests();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let steps: Vec<(String, String)> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let patches = steps
        .iter()
        .filter(|(m, p)| m == "PATCH" && p.ends_with("/clusters/pg"))
        .count();
    assert_eq!(patches, 4, "{steps:?}");

    for (i, (method, path)) in steps.iter().enumerate() {
        reset(&sim);
        let nth = steps[..i]
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count();
        // A helper's name is unique per run: its deletion is matched by prefix.
        let path = match path.find("/pods/pg-2-reseed-") {
            Some(at) => format!("{}*", &path[..at + "/pods/pg-2-reseed-".len()]),
            None => path.clone(),
        };
        sim.clear_requests();
        sim.fail_request(hasteward_kubesim::RequestFault {
            method: method.clone(),
            path: path.clone(),
            nth,
            status: 500,
        });
        let (code, out, err) = run(&args, None);
        sim.clear_faults();
        let what = format!("fault on {method} {path} (#{nth}): exit {code}\n{out}\n{err}");
        let a = annotations(&sim);
        assert!(a.get("cnpg.io/reconciliationLoop").is_none(), "{what}\n{a}");
        let fenced = a
            .get("cnpg.io/fencedInstances")
            .and_then(Value::as_str)
            .filter(|f| *f != "[]");
        let helper_created = sim.requests().iter().any(|r| {
            r.method == "POST"
                && r.path.ends_with("/pods")
                && r.status < 300
                && r.body
                    .as_deref()
                    .is_some_and(|b| b.contains("pg-2-reseed-"))
        });
        if let Some(f) = fenced {
            // Only a deliberate fence, after the helper existed, and said so.
            assert!(helper_created, "{what}");
            assert_eq!(f, "[\"pg-2\"]", "{what}");
            assert_ne!(code, 0, "{what}");
            assert!(out.contains("stays fenced on purpose"), "{what}");
        }
        assert!(
            sim.get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
                .is_none(),
            "{what}"
        );
        let helpers_left: Vec<String> = sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/pods") && r.status < 300)
            .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .filter(|n| n.starts_with("pg-2-reseed-"))
            .filter(|n| sim.get("v1", "pods", Some(NS), n).is_some())
            .collect();
        assert!(helpers_left.is_empty(), "{what}\n{helpers_left:?}");
        if code != 0 {
            let env = envelope(&out);
            assert!(env["errors"][0]["message"].as_str().is_some(), "{what}");
        }
        eprintln!("fault {i}: {method} {path} #{nth} -> exit {code}");
    }
    stop.store(true, Ordering::SeqCst);
    recreator.join().unwrap();
}

#[test]
fn a_forced_bootstrap_across_two_lineages_archives_the_other_one_first() {
    use hasteward_testkit::Galera;
    let mut g = Galera::start(3);
    g.sql(
        0,
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY)",
    );
    for i in 0..3 {
        g.wait_synced(i);
    }
    // Lineage A: rows 1..3, the last only on node 0; then every node down.
    g.sql(0, None, "INSERT INTO shop.t VALUES (1)");
    g.kill_node(2);
    g.wait_cluster_size(0, 2);
    g.sql(0, None, "INSERT INTO shop.t VALUES (2)");
    g.stop_node(1);
    g.wait_cluster_size(0, 1);
    g.sql(0, None, "INSERT INTO shop.t VALUES (3)");
    g.kill_node(0);
    // Lineage B: node 2 started on its own as a new cluster (its state forgotten) and written
    // to: a second history.
    std::fs::remove_file(g.data_dir(2).join("grastate.dat")).unwrap();
    g.bootstrap_node(2);
    g.sql(2, None, "INSERT INTO shop.t VALUES (-99)");
    g.stop_node(2);
    let lineage_b = std::fs::read_to_string(g.data_dir(2).join("grastate.dat")).unwrap();
    let uuid_b = lineage_b
        .lines()
        .find_map(|l| l.strip_prefix("uuid:"))
        .unwrap()
        .trim()
        .to_string();

    let (sim, dir) = crate::triage::galera_sim(&g, &[false, false, false]);
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
            name_prefix: Some(format!("galera-{i}-")),
            mounts: [("/var/lib/mysql".to_string(), g.data_dir(i))].into(),
            ..hasteward_kubesim::PodRun::default()
        });
    }
    // The capture helper is exec'd into: tar runs on galera-2's real data directory.
    sim.set_exec(hasteward_kubesim::PodExec {
        namespace: NS.into(),
        pod: "galera-2-capture-*".into(),
        mounts: [("/var/lib/mysql".to_string(), g.data_dir(2))].into(),
        ..hasteward_kubesim::PodExec::default()
    });
    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let repo = Repo::new();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
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
            "--heal-timeout",
            "180",
            "-o",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(repo.args());
        a
    };
    // Unforced: refused, nothing changed.
    let (code, out, err) = run(&args(&["--bootstrap", "galera-0"]), None);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(
        envelope(&out)["errors"][0]["code"],
        "repair.refused.bootstrap-ambiguous",
        "{out}"
    );
    // Not the most advanced of its lineage: refused even forced.
    let (code, out, _) = run(&args(&["--bootstrap", "galera-1", "--force"]), None);
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        envelope(&out)["errors"][0]["code"],
        "repair.refused.bootstrap-not-most-advanced",
        "{out}"
    );
    assert!(repo.snapshots().is_empty());

    let stop = Arc::new(AtomicBool::new(false));
    let stand_in = crate::triage::galera_bootstrap_stand_in(&sim, g, stop.clone());
    let (code, out, err) = run(&args(&["--bootstrap", "galera-0", "--force"]), None);
    stop.store(true, Ordering::SeqCst);
    let g = stand_in.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    // Lineage A won everywhere: rows 1..3, not B's -99 ...
    for i in 0..3 {
        assert_eq!(
            g.sql(i, None, "SELECT GROUP_CONCAT(id ORDER BY id) FROM shop.t"),
            "1,2,3",
            "node {i}"
        );
    }
    // ... which survives in the archive of galera-2's data directory, taken first.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let tags: Vec<String> = serde_json::from_value(snaps[0]["tags"].clone()).unwrap();
    assert!(tags.contains(&"type=diverged".to_string()), "{tags:?}");
    assert!(
        tags.iter().any(|t| t.starts_with("job=repair-")),
        "{tags:?}"
    );
    assert_eq!(snaps[0]["paths"][0], "/db/galera/galera-2.datadir.tar");
    let archive = repo.restic(&["dump", "latest", "/db/galera/galera-2.datadir.tar"]);
    assert!(archive.status.success());
    let unpacked = tempfile::tempdir().unwrap();
    let mut tar = std::process::Command::new("tar")
        .args(["-x", "-C"])
        .arg(unpacked.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    let saved = std::fs::read_to_string(unpacked.path().join("grastate.dat")).unwrap();
    assert!(saved.contains(&uuid_b), "{saved}");
    assert!(unpacked.path().join("shop").is_dir());
    // Nothing left: no helper, no force field, not suspended, no lease.
    let cr = sim
        .get("k8s.mariadb.com/v1alpha1", "mariadbs", Some(NS), "galera")
        .unwrap();
    assert_eq!(cr["spec"]["suspend"], false);
    assert!(cr["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_null());
    let helpers: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods") && r.status < 300)
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .filter(|n| n.contains("-capture-") || n.contains("-bootstrap-"))
        .collect();
    assert!(
        helpers.iter().any(|h| h.starts_with("galera-2-capture-")),
        "{helpers:?}"
    );
    for h in &helpers {
        assert!(
            sim.get("v1", "pods", Some(NS), h).is_none(),
            "{h} left behind"
        );
    }
    assert!(sim
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-galera"
        )
        .is_none());
    crate::kube::assert_role_allows("hasteward-repair", &sim.requests());
}
