//! The operator (`hasteward serve`) against the API simulator, with real PostgreSQL and real
//! restic. In-process runs use a hand-moved clock, so "fires at 02:00" is checked without
//! waiting for 02:00; the binary itself is run once with the wall clock.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hasteward_exec::CancellationToken;
use hasteward_kubesim::{SimConfig, Simulator};
use hasteward_operator::cache::WatchScope;
use hasteward_operator::clock::{Clock, ManualClock};
use hasteward_operator::http::{bind, Health};
use hasteward_operator::metrics::Metrics;
use hasteward_operator::runner::RunEnv;
use hasteward_operator::serve::{serve, ServeOptions};
use hasteward_testkit::Postgres;
use serde_json::{json, Value};

use crate::support::*;

const NS: &str = "db";
const API: &str = "clinic.hasteward.prplanit.com/v1alpha1";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {key: base64(value.as_bytes())}
    })
}

fn repository(name: &str, repo: &Repo) -> Value {
    json!({
        "apiVersion": API, "kind": "BackupRepository",
        "metadata": {"name": name},
        "spec": {"restic": {
            "repository": repo.path.display().to_string(),
            "passwordSecretRef": {"name": "repo-password", "namespace": NS, "key": "password"}
        }}
    })
}

fn repo_password_secret(repo: &Repo) -> Value {
    let password = std::fs::read_to_string(&repo.password_file).unwrap();
    secret("repo-password", "password", password.trim_end())
}

/// A StandaloneDatabase for testkit PostgreSQL `pg` over TCP, logging in with `password`.
fn host_database(name: &str, pg: &Postgres, password_secret: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "dbType": "postgres",
        "target": {"host": {"address": pg.host(), "port": pg.port()}},
        "credentials": {"user": pg.user(), "secretName": password_secret}
    });
    merge(&mut spec, spec_extra);
    json!({
        "apiVersion": API, "kind": "StandaloneDatabase",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec
    })
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        for (k, v) in e {
            t.insert(k, v);
        }
    }
}

fn simulator(objects: Vec<Value>) -> (Simulator, tempfile::TempDir, std::path::PathBuf) {
    simulator_with_exec(objects, Vec::new())
}

/// The simulator with the namespace, `objects`, and pods whose exec runs locally.
/// One of hasteward's annotations (`managed`, `last-triage`, ...) on CNPG cluster `pg`.
fn cnpg_annotation(sim: &Simulator, key: &str) -> Option<String> {
    sim.get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")?["metadata"]["annotations"]
        [format!("clinic.hasteward.prplanit.com/{key}")]
    .as_str()
    .map(String::from)
}

fn simulator_with_exec(
    objects: Vec<Value>,
    exec: Vec<hasteward_kubesim::PodExec>,
) -> (Simulator, tempfile::TempDir, std::path::PathBuf) {
    let mut all = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})];
    all.extend(objects);
    let sim = Simulator::start(SimConfig { objects: all, exec }).expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, Some(NS)).unwrap();
    (sim, dir, kubeconfig)
}

/// A simulator holding a CNPG `Cluster` `pg` opted in to `policy` (also stored), with a Ready pod,
/// a PVC and pod exec for each of `instances` (name, server), `primary` its current primary, and
/// the local repository `repo`.
fn opted_in_cnpg(
    repo: &Repo,
    policy: Value,
    primary: &str,
    instances: &[(&str, &Postgres)],
) -> (Simulator, tempfile::TempDir, std::path::PathBuf) {
    use crate::triage::{pg_exec, pod, pvc};
    let names: Vec<&str> = instances.iter().map(|(n, _)| *n).collect();
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS,
            "annotations": {"clinic.hasteward.prplanit.com/policy": policy["metadata"]["name"]}},
        "spec": {"instances": names.len()},
        "status": {"phase": "Cluster in healthy state", "currentPrimary": primary,
            "targetPrimary": primary, "instanceNames": names, "readyInstances": names.len()}
    });
    let mut objects = vec![
        repo_password_secret(repo),
        repository("local", repo),
        policy,
        cluster,
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
    simulator_with_exec(objects, exec)
}

/// One in-process operator replica.
struct Replica {
    addr: SocketAddr,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

fn start_replica(
    rt: &tokio::runtime::Runtime,
    kubeconfig: &Path,
    identity: &str,
    clock: Arc<dyn Clock>,
) -> Replica {
    start_replica_notifying(rt, kubeconfig, identity, clock, None)
}

fn start_replica_notifying(
    rt: &tokio::runtime::Runtime,
    kubeconfig: &Path,
    identity: &str,
    clock: Arc<dyn Clock>,
    notify_secret: Option<&str>,
) -> Replica {
    let notify_secret = notify_secret.map(String::from);
    let kubeconfig = kubeconfig.to_path_buf();
    let identity = identity.to_string();
    rt.block_on(async move {
        let kube = hasteward_k8s::connect(&hasteward_k8s::ClientOptions {
            kubeconfig: Some(kubeconfig),
            ..Default::default()
        })
        .await
        .unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = ServeOptions {
            scope: WatchScope {
                namespace: None,
                cnpg: true,
                mariadb: true,
            },
            lease_namespace: NS.into(),
            lease_name: "hasteward-operator".into(),
            identity,
            concurrency: 2,
            run_env: RunEnv {
                kube: kube.clone(),
                restic_bin: "restic".into(),
                lock_wait: Duration::from_secs(60),
                stall_timeout: Some(Duration::from_secs(60)),
                queue: Default::default(),
            },
            shutdown_grace: Duration::from_secs(10),
            election_retry: Duration::from_millis(200),
            notify_secret,
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let done = tokio::spawn(async move {
            serve(
                kube,
                opts,
                listener,
                clock,
                Arc::new(Metrics::new()),
                Arc::new(Health::default()),
                token,
            )
            .await
            .expect("serve ends cleanly");
        });
        Replica { addr, stop, done }
    })
}

impl Replica {
    fn stop(self, rt: &tokio::runtime::Runtime) {
        self.stop.cancel();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), self.done)
                .await
                .expect("the operator stops within 30 s")
                .unwrap()
        });
    }
}

/// A plain HTTP GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample line of `/metrics` (`name{labels}` exactly as exposed, labels sorted).
fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn status_of(sim: &Simulator, plural: &str, ns: Option<&str>, name: &str) -> Value {
    sim.get(API, plural, ns, name)
        .and_then(|o| o.get("status").cloned())
        .unwrap_or(Value::Null)
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Events recorded for `name` with `reason` (events.k8s.io POSTs seen by the simulator).
fn events(sim: &Simulator, name: &str, reason: &str) -> Vec<Value> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/events") && r.status < 300)
        .filter_map(|r| serde_json::from_str::<Value>(r.body.as_deref()?).ok())
        .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
        .collect()
}

#[test]
fn scheduled_backups_fire_at_their_minute_and_report_success_and_failure() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop; ");
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int primary key, note text); INSERT INTO orders SELECT g, 'order-' || g FROM generate_series(1, 42) g; INSERT INTO orders VALUES (1000, 'scheduled-marker-7d1e');",
    );
    let repo = Repo::new();
    let (sim, _dir, kubeconfig) = simulator(vec![
        repo_password_secret(&repo),
        secret("pg-credentials", "password", pg.password()),
        secret("wrong-credentials", "password", "not-the-password"),
        repository("local", &repo),
        host_database(
            "pg",
            &pg,
            "pg-credentials",
            json!({"schedule": {"backup": "0 2 * * *"}, "repositories": ["local"],
                   "retention": {"keepLast": 3}}),
        ),
        host_database(
            "pg-bad",
            &pg,
            "wrong-credentials",
            json!({"schedule": {"backup": "0 2 * * *"}, "repositories": ["local"]}),
        ),
    ]);
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());

    wait_for(
        "both databases scheduled for 02:00",
        Duration::from_secs(30),
        || {
            ["pg", "pg-bad"].iter().all(|n| {
                let s = status_of(&sim, "standalonedatabases", Some(NS), n);
                s["nextBackup"] == "2026-11-23T02:00:00Z"
                    && condition(&s, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    );
    let s = status_of(&sim, "standalonedatabases", Some(NS), "pg");
    assert_eq!(s["observedGeneration"], 1, "{s}");
    assert_eq!(
        condition(&s, "Ready").unwrap()["reason"],
        "Scheduled",
        "{s}"
    );
    // Nothing runs before its time.
    clock.set(at("2026-11-23T01:59:59Z"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(repo.snapshots().is_empty());
    assert!(s.get("lastBackup").is_none(), "{s}");

    clock.set(at("2026-11-23T02:00:00Z"));
    wait_for("both backups to end", Duration::from_secs(120), || {
        ["pg", "pg-bad"].iter().all(|n| {
            status_of(&sim, "standalonedatabases", Some(NS), n)["lastBackupResult"].is_string()
        })
    });

    // The good one: exactly one snapshot, of this database, holding the data.
    let s = status_of(&sim, "standalonedatabases", Some(NS), "pg");
    assert_eq!(s["lastBackupResult"], "success", "{s}");
    assert_eq!(
        condition(&s, "LastBackupSucceeded").unwrap()["status"],
        "True",
        "{s}"
    );
    assert_eq!(s["nextBackup"], "2026-11-24T02:00:00Z", "{s}");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "engine=standalone",
        "cluster=pg",
        "namespace=db",
        "type=backup",
        "db-type=postgres",
    ] {
        assert!(tags.contains(&t), "{t} missing from {tags:?}");
    }
    let id = snaps[0]["short_id"].as_str().unwrap();
    assert_eq!(s["lastSnapshots"], json!([format!("local:{id}")]), "{s}");
    let path = snaps[0]["paths"][0].as_str().unwrap().to_string();
    let dump = repo.restic(&["dump", id, &path]);
    assert!(dump.status.success());
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("scheduled-marker-7d1e"),
        "the dump holds the data"
    );
    assert_eq!(text.lines().filter(|l| l.contains("\torder-")).count(), 42);

    // The bad one: no snapshot, a failed condition, a Warning Event, failure metrics.
    let bad = status_of(&sim, "standalonedatabases", Some(NS), "pg-bad");
    assert_eq!(bad["lastBackupResult"], "failure", "{bad}");
    let cond = condition(&bad, "LastBackupSucceeded").unwrap();
    assert_eq!(cond["status"], "False", "{bad}");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{cond}"
    );
    assert!(!snaps
        .iter()
        .any(|s| s["tags"].to_string().contains("cluster=pg-bad")));
    assert_eq!(events(&sim, "pg-bad", "BackupFailed").len(), 1);
    assert_eq!(events(&sim, "pg", "BackupSucceeded").len(), 1);

    let labels = |db: &str, status: &str| {
        format!("hasteward_backup_total{{cluster=\"{db}\",engine=\"standalone\",namespace=\"db\",repository=\"local\",status=\"{status}\"}}")
    };
    assert_eq!(metric(op.addr, &labels("pg", "success")), Some(1.0));
    assert_eq!(metric(op.addr, &labels("pg-bad", "failure")), Some(1.0));
    assert_eq!(metric(op.addr, "hasteward_leader"), Some(1.0));
    assert_eq!(
        metric(
            op.addr,
            "hasteward_managed_databases{engine=\"standalone\"}"
        ),
        Some(2.0)
    );
    assert_eq!(http_get(op.addr, "/readyz"), (200, "leader\n".into()));
    assert_eq!(http_get(op.addr, "/livez").0, 200);
    let r = status_of(&sim, "backuprepositories", None, "local");
    assert_eq!(r["snapshotCount"], 1, "{r}");
    assert!(r["lastBackup"].is_string(), "{r}");

    // Ten more minutes: nothing else fires.
    clock.set(at("2026-11-23T02:10:00Z"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(repo.snapshots().len(), 1);
    op.stop(&rt);
    assert_operator_rbac(&sim);
    // The Lease is released on the way out.
    assert!(lease_released(&sim));
}

#[test]
fn policy_edits_replan_at_once_and_invalid_input_becomes_a_condition_and_an_event() {
    let repo = Repo::new();
    let pod_db = |name: &str, spec: Value| {
        let mut s = json!({"dbType": "postgres", "target": {"pod": {"name": format!("{name}-0")}}});
        merge(&mut s, spec);
        json!({"apiVersion": API, "kind": "StandaloneDatabase",
               "metadata": {"name": name, "namespace": NS}, "spec": s})
    };
    let policy = |schedule: &str| {
        json!({"apiVersion": API, "kind": "BackupPolicy", "metadata": {"name": "nightly"},
               "spec": {"backupSchedule": schedule, "repositories": ["local"],
                        "retention": {"keepDaily": 7}}})
    };
    let (sim, _dir, kubeconfig) = simulator(vec![
        repo_password_secret(&repo),
        repository("local", &repo),
        policy("0 3 * * *"),
        pod_db("a", json!({"policy": "nightly"})),
        pod_db(
            "b",
            json!({"schedule": {"backup": "0 25 * * *"}, "repositories": ["local"]}),
        ),
        pod_db("c", json!({"policy": "missing"})),
        pod_db(
            "d",
            json!({"schedule": {"backup": "0 2 * * *", "timezone": "Mars/Olympus"}, "repositories": ["local"]}),
        ),
    ]);
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:00:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());

    let ready = |name: &str| -> Option<Value> {
        condition(
            &status_of(&sim, "standalonedatabases", Some(NS), name),
            "Ready",
        )
        .cloned()
    };
    // The policy's status is written in the same pass, after the databases'.
    wait_for(
        "every database and the policy have a Ready condition",
        Duration::from_secs(30),
        || {
            ["a", "b", "c", "d"].iter().all(|n| ready(n).is_some())
                && condition(&status_of(&sim, "backuppolicies", None, "nightly"), "Ready").is_some()
        },
    );
    assert_eq!(
        status_of(&sim, "standalonedatabases", Some(NS), "a")["nextBackup"],
        "2026-11-23T03:00:00Z"
    );
    for (name, reason, says) in [
        ("b", "InvalidSchedule", "e.g. `0 2 * * *`"),
        (
            "c",
            "PolicyNotFound",
            "BackupPolicy `missing` does not exist",
        ),
        ("d", "InvalidSchedule", "unknown timezone `Mars/Olympus`"),
    ] {
        let c = ready(name).unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some(reason)),
            "{name}: {c}"
        );
        assert!(c["message"].as_str().unwrap().contains(says), "{name}: {c}");
        let ev = events(&sim, name, reason);
        assert_eq!(ev.len(), 1, "{name}: one Warning Event, not one per pass");
        assert_eq!(ev[0]["type"], "Warning");
    }
    let p = status_of(&sim, "backuppolicies", None, "nightly");
    assert_eq!(p["databases"], 1, "{p}");
    assert_eq!(condition(&p, "Ready").unwrap()["status"], "True", "{p}");

    // Editing the policy re-plans at once: no restart, no edit of the database.
    let mut edited = sim.get(API, "backuppolicies", None, "nightly").unwrap();
    edited["spec"]["backupSchedule"] = json!("30 2 * * *");
    sim.put(edited);
    wait_for(
        "the policy edit to re-plan",
        Duration::from_secs(30),
        || {
            status_of(&sim, "standalonedatabases", Some(NS), "a")["nextBackup"]
                == "2026-11-23T02:30:00Z"
        },
    );
    // A broken policy edit turns the policy's own condition False and unschedules its databases.
    let mut broken = sim.get(API, "backuppolicies", None, "nightly").unwrap();
    broken["spec"]["backupSchedule"] = json!("every night");
    sim.put(broken);
    wait_for(
        "the broken policy to be reported",
        Duration::from_secs(30),
        || {
            let p = status_of(&sim, "backuppolicies", None, "nightly");
            condition(&p, "Ready").is_some_and(|c| c["reason"] == "InvalidSchedule")
                && ready("a").is_some_and(|c| c["status"] == "False")
        },
    );
    assert_eq!(
        metric(
            op.addr,
            "hasteward_managed_databases{engine=\"standalone\"}"
        ),
        Some(0.0)
    );
    op.stop(&rt);
    assert_operator_rbac(&sim);
    assert!(repo.snapshots().is_empty());
}

#[test]
fn two_replicas_elect_one_leader_and_hand_over_on_shutdown() {
    let repo = Repo::new();
    // A database whose last success is on record: every new leader exports it at once, so a
    // "backup too old" alert does not wait for the next success after a restart.
    let db = json!({"apiVersion": API, "kind": "StandaloneDatabase",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"dbType": "postgres", "target": {"pod": {"name": "pg-0"}},
                 "schedule": {"backup": "0 2 * * *"}, "repositories": ["local"]},
        "status": {"lastSuccessfulBackup": "2026-11-22T02:00:07Z"}});
    let (sim, _dir, kubeconfig) = simulator(vec![repository("local", &repo), db]);
    let seeded = "hasteward_backup_last_success_timestamp{cluster=\"pg\",engine=\"standalone\",namespace=\"db\",repository=\"local\"}";
    let recorded = at("2026-11-22T02:00:07Z").timestamp() as f64;
    let rt = runtime();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at("2026-11-23T01:00:00Z")));
    let a = start_replica(&rt, &kubeconfig, "replica-a", clock.clone());
    let b = start_replica(&rt, &kubeconfig, "replica-b", clock.clone());
    let role = |r: &Replica| http_get(r.addr, "/readyz");
    let start = std::time::Instant::now();
    loop {
        let mut roles = [role(&a).1, role(&b).1];
        roles.sort();
        if roles == ["leader\n", "standby\n"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no single leader after 30 s: {roles:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = || {
        sim.get(
            "coordination.k8s.io/v1",
            "leases",
            Some(NS),
            "hasteward-operator",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    let (leader, standby) = if role(&a).1 == "leader\n" {
        (a, b)
    } else {
        (b, a)
    };
    let leader_id = holder().unwrap();
    assert_eq!(metric(leader.addr, "hasteward_leader"), Some(1.0));
    assert_eq!(metric(standby.addr, "hasteward_leader"), Some(0.0));
    wait_for(
        "the leader to export the recorded success",
        Duration::from_secs(10),
        || metric(leader.addr, seeded) == Some(recorded),
    );
    assert_eq!(
        metric(standby.addr, seeded),
        None,
        "only the leader exports target gauges"
    );
    // Some time passes; still exactly one leader.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(role(&standby).1, "standby\n");
    assert_eq!(holder().as_deref(), Some(leader_id.as_str()));

    leader.stop(&rt);
    wait_for("the standby to take over", Duration::from_secs(30), || {
        role(&standby).1 == "leader\n"
    });
    assert_ne!(holder().unwrap(), leader_id);
    wait_for(
        "the new leader to export the recorded success",
        Duration::from_secs(10),
        || metric(standby.addr, seeded) == Some(recorded),
    );
    // Suspended: its gauges go, so a database no longer backed up cannot fire "too old".
    let mut db = sim.get(API, "standalonedatabases", Some(NS), "pg").unwrap();
    db["spec"]["suspend"] = json!(true);
    sim.put(db);
    wait_for(
        "the suspended database's gauges to go",
        Duration::from_secs(10),
        || metric(standby.addr, seeded).is_none(),
    );
    standby.stop(&rt);
    assert_operator_rbac(&sim);
}

/// Whether the leader Lease is gone (released on the way out).
fn lease_released(sim: &Simulator) -> bool {
    sim.get(
        "coordination.k8s.io/v1",
        "leases",
        Some(NS),
        "hasteward-operator",
    )
    .is_none()
}

/// Every request the operator made is allowed by its least-privilege roles.
fn assert_operator_rbac(sim: &Simulator) {
    crate::kube::assert_rules_allow(
        "rbac/hasteward-operator.yaml",
        &["hasteward-operator", "hasteward-operator-leader"],
        &sim.requests(),
    );
}

/// `hasteward serve` as a subprocess; its stderr goes to a file for the failure message.
struct ServeProcess {
    child: std::process::Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

fn spawn_serve(
    kubeconfig: &Path,
    dir: &Path,
    path_prefix: Option<&Path>,
    extra: &[&str],
) -> ServeProcess {
    let port = hasteward_testkit::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.join("serve.log");
    let mut cmd = hasteward();
    cmd.args([
        "serve",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--listen",
        &addr.to_string(),
        "--lease-namespace",
        NS,
        "-v",
    ])
    .args(extra)
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    if let Some(p) = path_prefix {
        cmd.env("PATH", with_path_prefix(p));
    }
    ServeProcess {
        child: cmd.spawn().unwrap(),
        addr,
        log,
    }
}

impl ServeProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (panics after `limit`).
    fn terminate(mut self, limit: Duration) -> (i32, String) {
        kill(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("serve did not stop within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_binary_catches_up_missed_runs_serves_lintable_metrics_and_stops_on_sigterm() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE ledger (id int); INSERT INTO ledger SELECT generate_series(1, 10);",
    );
    let repo = Repo::new();
    let mut db = host_database(
        "pg",
        &pg,
        "pg-credentials",
        json!({"schedule": {"backup": "0 2 * * *", "timezone": "Europe/Berlin"}, "repositories": ["local"]}),
    );
    // It last ran long ago: the most recent 02:00 was missed, so it runs at once.
    db["status"] = json!({"lastBackup": "2026-01-01T00:00:00Z"});
    let mut repository = repository("local", &repo);
    repository["spec"]["check"] = json!({"schedule": "0 5 * * 0", "readDataSubset": "rotate/7"});
    repository["status"] = json!({"lastCheck": "2026-01-01T00:00:00Z"});
    let (sim, dir, kubeconfig) = simulator(vec![
        repo_password_secret(&repo),
        secret("pg-credentials", "password", pg.password()),
        repository,
        db,
    ]);
    // A first snapshot taken by the CLI: the repository exists before the operator checks it.
    let mut args = vec!["backup".to_string()];
    let pw = secret_file(dir.path(), "pg.pw", pg.password());
    args.extend(pg_args(&pg, &pw, "pg"));
    args.extend(repo.args());
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let serve = spawn_serve(
        &kubeconfig,
        dir.path(),
        None,
        &["--no-cnpg", "--no-mariadb"],
    );
    wait_for(
        "the missed backup and check to run",
        Duration::from_secs(120),
        || {
            let s = status_of(&sim, "standalonedatabases", Some(NS), "pg");
            let r = status_of(&sim, "backuprepositories", None, "local");
            s["lastBackupResult"].is_string() && r["lastCheckResult"].is_string()
        },
    );
    let s = status_of(&sim, "standalonedatabases", Some(NS), "pg");
    assert_eq!(s["lastBackupResult"], "success", "{s}\n{}", serve.log());
    assert_eq!(repo.snapshots().len(), 2);
    let r = status_of(&sim, "backuprepositories", None, "local");
    assert_eq!(r["lastCheckResult"], "healthy", "{r}\n{}", serve.log());
    assert_eq!(r["ready"], true, "{r}");
    assert!(r["deduplicatedSize"].as_u64().unwrap() > 0, "{r}");
    // The next run is tomorrow 02:00 Berlin time (01:00 UTC in winter).
    let next = s["nextBackup"].as_str().unwrap();
    assert!(next.ends_with("T01:00:00Z"), "{next}");

    // /metrics passes promtool's lint.
    let (code, body) = http_get(serve.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("hasteward_repository_check_result{repository=\"local\"} 1"),
        "{body}"
    );
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/install-deps.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, log) = serve.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    assert!(lease_released(&sim));
}

#[test]
fn shutdown_during_a_backup_cancels_it_without_a_snapshot_or_a_stale_lock() {
    let pg = Postgres::start();
    let repo = Repo::new();
    // A dump that streams its real output, then hangs: a backup still running at shutdown.
    let bin = shim(
        repo.dir.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\"; exec sleep 4711"),
    );
    let mut db = host_database(
        "pg",
        &pg,
        "pg-credentials",
        json!({"schedule": {"backup": "0 2 * * *"}, "repositories": ["local"]}),
    );
    db["status"] = json!({"lastBackup": "2026-01-01T00:00:00Z"});
    let (sim, dir, kubeconfig) = simulator(vec![
        repo_password_secret(&repo),
        secret("pg-credentials", "password", pg.password()),
        repository("local", &repo),
        db,
    ]);
    let serve = spawn_serve(
        &kubeconfig,
        dir.path(),
        Some(&bin),
        &["--no-cnpg", "--no-mariadb", "--shutdown-grace", "1"],
    );
    wait_for("the dump to hang", Duration::from_secs(60), || {
        !pids_with("sleep 4711").is_empty()
    });
    let (code, log) = serve.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("cancelling 1 operation"), "{log}");
    assert!(
        repo.snapshots().is_empty(),
        "an aborted stream never becomes a snapshot"
    );
    assert_eq!(repo.locks(), 0, "no stale restic lock");
    wait_for("the dump to be gone", Duration::from_secs(10), || {
        pids_with("sleep 4711").is_empty()
    });
    // A cancelled run is not a result: nothing is recorded, so the occurrence still counts as
    // missed and the next start runs it again.
    let s = status_of(&sim, "standalonedatabases", Some(NS), "pg");
    assert!(s.get("lastBackupResult").is_none(), "{s}");
    assert_eq!(s["lastBackup"], "2026-01-01T00:00:00Z", "{s}");
    assert!(events(&sim, "pg", "BackupFailed").is_empty());
}

/// A webhook receiver on loopback: records (path, JSON body) of every POST, answers 200.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

fn receiver() -> Receiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0usize);
                    break (Some(end + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + length {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
            out.lock().unwrap().push((path, body));
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    Receiver { addr, seen }
}

impl Receiver {
    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn webhooks_announce_a_failure_once_and_then_the_recovery() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let hooks = receiver();
    let mut notify = secret(
        "hasteward-notify",
        "webhook-url",
        &format!("http://{}/hook", hooks.addr),
    );
    notify["data"]["slack-url"] = json!(base64(format!("http://{}/slack", hooks.addr).as_bytes()));
    let (sim, _dir, kubeconfig) = simulator(vec![
        repo_password_secret(&repo),
        secret("pg-credentials", "password", "not-the-password"),
        notify,
        repository("local", &repo),
        host_database(
            "pg",
            &pg,
            "pg-credentials",
            json!({"schedule": {"backup": "0 2 * * *"}, "repositories": ["local"]}),
        ),
    ]);
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica_notifying(
        &rt,
        &kubeconfig,
        "op-a",
        clock.clone(),
        Some("hasteward-notify"),
    );
    // Runs so far (status times are wall-clock and can repeat within a second).
    let runs = || {
        ["success", "failure"]
            .iter()
            .filter_map(|st| {
                metric(
                    op.addr,
                    &format!("hasteward_backup_total{{cluster=\"pg\",engine=\"standalone\",namespace=\"db\",repository=\"local\",status=\"{st}\"}}"),
                )
            })
            .sum::<f64>()
    };
    let run_at = |t: &str| {
        wait_for(
            "the next run to be planned",
            Duration::from_secs(30),
            || status_of(&sim, "standalonedatabases", Some(NS), "pg")["nextBackup"] == t,
        );
        let before = runs();
        clock.set(at(t));
        wait_for("the run to end", Duration::from_secs(120), || {
            runs() > before
        });
    };

    run_at("2026-11-23T02:00:00Z");
    wait_for("two notices", Duration::from_secs(30), || {
        hooks.seen().len() == 2
    });
    let seen = hooks.seen();
    let hook = seen
        .iter()
        .find(|(p, _)| p == "/hook")
        .expect("the generic webhook was called");
    assert_eq!(hook.1["kind"], "backup.failed", "{}", hook.1);
    assert_eq!(hook.1["subject"], "standalone/db/pg");
    assert_eq!(hook.1["source"], "hasteward");
    let slack = seen
        .iter()
        .find(|(p, _)| p == "/slack")
        .expect("the Slack webhook was called");
    assert!(slack.1["text"]
        .as_str()
        .unwrap()
        .starts_with("hasteward: backup FAILED: standalone/db/pg"));

    // Still failing the next night: no second notice.
    run_at("2026-11-24T02:00:00Z");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        hooks.seen().len(),
        2,
        "a failure that persists is announced once"
    );

    // Credentials fixed: the next success is announced as a recovery.
    sim.put(secret("pg-credentials", "password", pg.password()));
    run_at("2026-11-25T02:00:00Z");
    // The counter moves before the status is written.
    wait_for("the success in the status", Duration::from_secs(30), || {
        status_of(&sim, "standalonedatabases", Some(NS), "pg")["lastBackupResult"] == "success"
    });
    wait_for("the recovery notices", Duration::from_secs(30), || {
        hooks.seen().len() == 4
    });
    let kinds: Vec<Value> = hooks
        .seen()
        .iter()
        .filter(|(p, _)| p == "/hook")
        .map(|(_, b)| b["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("backup.failed"), json!("backup.recovered")]);
    assert_eq!(
        metric(op.addr, "hasteward_notifications_total{channel=\"webhook\",kind=\"backup.recovered\",result=\"delivered\"}"),
        Some(1.0)
    );
    op.stop(&rt);
}

#[test]
fn an_opted_in_cnpg_cluster_is_backed_up_and_triaged_on_its_policys_schedules() {
    let p = Postgres::start();
    let mut r2 = p.start_replica_named("pg-2");
    p.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g",
    );
    p.wait_replica_caught_up(&r2);
    let repo = Repo::new();
    let policy = json!({"apiVersion": API, "kind": "BackupPolicy", "metadata": {"name": "watch"},
        "spec": {"backupSchedule": "0 2 * * *", "triageSchedule": "*/15 * * * *",
                 "repositories": ["local"], "retention": {"keepLast": 5}}});
    let (sim, _dir, kubeconfig) =
        opted_in_cnpg(&repo, policy, "pg-1", &[("pg-1", &p), ("pg-2", &r2)]);

    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica_notifying(&rt, &kubeconfig, "op-a", clock.clone(), None);
    let annotation = |key: &str| cnpg_annotation(&sim, key);
    wait_for(
        "the cluster to be marked managed",
        Duration::from_secs(30),
        || annotation("managed").as_deref() == Some("true"),
    );
    // 02:00: the backup and the triage (its own group: it does not wait for the backup).
    clock.set(at("2026-11-23T02:00:00Z"));
    wait_for(
        "the backup and the triage",
        Duration::from_secs(120),
        || annotation("last-backup-result").is_some() && annotation("last-triage-result").is_some(),
    );
    assert_eq!(annotation("last-backup-result").as_deref(), Some("success"));
    assert_eq!(annotation("last-triage-result").as_deref(), Some("healthy"));
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    let tags = snaps[0]["tags"].to_string();
    assert!(
        tags.contains("engine=cnpg") && tags.contains("cluster=pg"),
        "{tags}"
    );
    let labels = "{cluster=\"pg\",engine=\"cnpg\",namespace=\"db\"";
    assert_eq!(
        metric(
            op.addr,
            &format!("hasteward_triage_result{labels},result=\"healthy\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            op.addr,
            &format!("hasteward_triage_total_instances{labels}}}")
        ),
        Some(2.0)
    );
    assert!(
        events(&sim, "pg", "TriageVerdictChanged").is_empty(),
        "healthy from the start"
    );

    // The replica's server goes down: the 02:15 triage sees it and says so, once.
    r2.stop();
    let mut pod2 = sim.get("v1", "pods", Some(NS), "pg-2").unwrap();
    pod2["status"]["containerStatuses"][0]["ready"] = json!(false);
    pod2["status"]["containerStatuses"][0]["restartCount"] = json!(9);
    sim.put(pod2);
    let first = annotation("last-triage");
    clock.set(at("2026-11-23T02:15:00Z"));
    wait_for("the 02:15 triage", Duration::from_secs(60), || {
        annotation("last-triage") != first
    });
    assert_ne!(
        annotation("last-triage-result").as_deref(),
        Some("healthy"),
        "{:?}",
        sim.get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
    );
    let changed = events(&sim, "pg", "TriageVerdictChanged");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["type"], "Warning");
    assert!(
        changed[0]["note"]
            .as_str()
            .unwrap()
            .contains("(was healthy)"),
        "{}",
        changed[0]["note"]
    );
    assert_eq!(
        metric(
            op.addr,
            &format!("hasteward_triage_result{labels},result=\"healthy\"}}")
        ),
        Some(0.0)
    );
    // Triage changed nothing in the cluster: no pod created or deleted, no fence, no
    // reconciliation switch; its only writes are annotations, Events, status and the Lease.
    for r in sim.requests().iter().filter(|r| r.is_mutation()) {
        let body = r.body.as_deref().unwrap_or("");
        assert!(
            !r.path.contains("/pods")
                && !body.contains("fencedInstances")
                && !body.contains("reconciliationLoop")
                && (r.method != "DELETE" || r.path.contains("/leases/")),
            "unexpected write: {} {} {body}",
            r.method,
            r.path
        );
    }
    op.stop(&rt);
    assert_operator_rbac(&sim);
}

#[test]
fn repair_mode_heals_a_replica_left_behind_and_refuses_a_split_brain_once() {
    use crate::triage::{pg_exec, SimHttp};
    // A failover left pg-3 on the old timeline: the triage says `needs-restart`.
    let (_p, r2, mut r3) = crate::triage::failover_leaving_a_replica_behind();
    let repo = Repo::new();
    let policy = json!({"apiVersion": API, "kind": "BackupPolicy", "metadata": {"name": "heal"},
        "spec": {"backupSchedule": "0 3 * * *", "triageSchedule": "*/15 * * * *", "mode": "repair",
                 "healTimeout": 60, "repositories": ["local"]}});
    let (sim, _dir, kubeconfig) =
        opted_in_cnpg(&repo, policy, "pg-2", &[("pg-2", &r2), ("pg-3", &r3)]);
    let sim = Arc::new(sim);
    // A stand-in for CNPG: a deleted pg-3 comes back following the new primary (on a new port,
    // which its pod's exec environment is told).
    let original = sim.get("v1", "pods", Some(NS), "pg-3").unwrap();
    let r2 = Arc::new(r2);
    let stand_in = {
        let api = SimHttp { url: sim.url() };
        let sim = sim.clone();
        let primary = r2.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                if !api.exists(&format!("/api/v1/namespaces/{NS}/pods/pg-3")) {
                    r3.shut_down();
                    r3.follow(&primary, "pg-3");
                    sim.set_exec(pg_exec("pg-3", &r3));
                    api.recreate_pod(&original, true);
                    return Some(r3);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
    };

    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T02:14:00Z")));
    let op = start_replica_notifying(&rt, &kubeconfig, "op-a", clock.clone(), None);
    let annotation = |key: &str| cnpg_annotation(&sim, key);
    wait_for(
        "the cluster to be marked managed",
        Duration::from_secs(30),
        || annotation("managed").as_deref() == Some("true"),
    );
    sim.clear_requests();
    // 02:15: the triage finds pg-3 behind; the operator restarts it under the cluster's Lease.
    clock.set(at("2026-11-23T02:15:00Z"));
    wait_for("the unattended repair", Duration::from_secs(150), || {
        annotation("last-repair-result").is_some()
    });
    let r3 = stand_in
        .join()
        .unwrap()
        .expect("pg-3 was deleted and came back");
    assert_eq!(
        annotation("last-triage-result").as_deref(),
        Some("unhealthy"),
        "the triage that led to the repair"
    );
    assert_eq!(
        annotation("last-repair-result").as_deref(),
        Some("success"),
        "{:?}",
        events(&sim, "pg", "RepairFailed")
    );
    let done = events(&sim, "pg", "RepairSucceeded");
    assert_eq!(done.len(), 1, "{done:?}");
    let note = done[0]["note"].as_str().unwrap();
    assert!(
        note.contains("pg-3: restart") && note.contains("triage now: healthy"),
        "{note}"
    );
    let labels = "cluster=\"pg\",engine=\"cnpg\",namespace=\"db\"";
    assert_eq!(
        metric(
            op.addr,
            &format!("hasteward_repair_total{{{labels},status=\"success\"}}")
        ),
        Some(1.0)
    );
    assert!(metric(
        op.addr,
        &format!("hasteward_repair_last_timestamp{{{labels}}}")
    )
    .is_some());
    // Exactly: the cluster's Lease taken, pg-3 deleted, the Lease released. The primary is not
    // touched, nothing is fenced, and a restart destroys nothing, so no escrow snapshot.
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let mutations: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.is_mutation() && r.path.contains(&format!("/namespaces/{NS}/")))
        .filter(|r| !r.path.contains("/events") && !r.path.contains("hasteward-operator-leader"))
        .filter(|r| {
            // The cluster itself gets only the annotations (no fence, no reconciliation switch).
            let body = r.body.as_deref().unwrap_or("");
            !(r.path.ends_with("/clusters/pg")
                && !body.contains("fencedInstances")
                && !body.contains("reconciliationLoop"))
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        mutations,
        [
            format!("POST {lease_path}"),
            format!("DELETE /api/v1/namespaces/{NS}/pods/pg-3"),
            // The stand-in's: CNPG recreating the pod.
            format!("POST /api/v1/namespaces/{NS}/pods"),
            format!("DELETE {lease_path}/hasteward-pg"),
        ],
        "{mutations:?}"
    );
    assert!(sim
        .get("coordination.k8s.io/v1", "leases", Some(NS), "hasteward-pg")
        .is_none());
    assert!(repo.snapshots().is_empty());
    // pg-3 really follows the new primary again, with its rows.
    r2.wait_replica_caught_up(&r3);
    assert_eq!(r3.psql("postgres", "SELECT count(*) FROM t"), "2000");

    // A split brain: pg-3 promoted by mistake and written to. It is never repaired unattended:
    // the refusal is said once (an Event and a notice-free counter), nothing in the cluster moves.
    r3.promote();
    r3.psql("postgres", "INSERT INTO t VALUES (-1)");
    r3.psql("postgres", "CHECKPOINT");
    r2.psql("postgres", "INSERT INTO t VALUES (-2)");
    r2.psql("postgres", "CHECKPOINT");
    sim.clear_requests();
    // Annotation times are wall-clock seconds (two triages may share one): the counter tells
    // each triage's refusal apart.
    let refusals = || {
        metric(
            op.addr,
            &format!("hasteward_repair_total{{{labels},status=\"refused\"}}"),
        )
    };
    for (i, minute) in ["02:30", "02:45"].iter().enumerate() {
        clock.set(at(&format!("2026-11-23T{minute}:00Z")));
        wait_for("the triage's refusal", Duration::from_secs(60), || {
            refusals() == Some((i + 1) as f64)
        });
    }
    assert_eq!(
        annotation("last-triage-result").as_deref(),
        Some("split-brain")
    );
    wait_for("the refusal annotation", Duration::from_secs(10), || {
        annotation("last-repair-result").as_deref() == Some("refused")
    });
    let refused = events(&sim, "pg", "RepairRefused");
    assert_eq!(refused.len(), 1, "said once: {refused:?}");
    assert!(
        refused[0]["note"]
            .as_str()
            .unwrap()
            .contains("a split brain is never repaired unattended"),
        "{}",
        refused[0]["note"]
    );
    for r in sim.requests().iter().filter(|r| r.is_mutation()) {
        assert!(
            !r.path.contains("/pods") && !r.path.contains("hasteward-pg"),
            "a refused repair changed something: {} {}",
            r.method,
            r.path
        );
    }
    op.stop(&rt);
    crate::kube::assert_rules_allow(
        "rbac/hasteward-operator.yaml",
        &[
            "hasteward-operator",
            "hasteward-operator-leader",
            "hasteward-operator-repair",
        ],
        &sim.requests(),
    );
    drop(r3);
}

#[test]
fn an_immutable_repository_gets_retention_only_with_its_maintenance_credential() {
    use hasteward_testkit::{SeaweedS3, S3_MAINTENANCE, S3_WRITER};
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let s3 = SeaweedS3::start();
    s3.create_locked_bucket("vault", 1);
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE TABLE t AS SELECT 1 AS x");
    let env_secret = |name: &str, (key, secret): (&str, &str)| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": NS},
               "data": {"AWS_ACCESS_KEY_ID": base64(key.as_bytes()),
                        "AWS_SECRET_ACCESS_KEY": base64(secret.as_bytes()),
                        "AWS_DEFAULT_REGION": base64(b"us-east-1")}})
    };
    let repository = json!({
        "apiVersion": API, "kind": "BackupRepository", "metadata": {"name": "vault"},
        "spec": {"immutable": true, "restic": {
            "repository": s3.repository("vault", "pg"),
            "passwordSecretRef": {"name": "repo-password", "namespace": NS, "key": "password"},
            "envSecretRef": {"name": "s3-writer", "namespace": NS}}}
    });
    let (sim, _dir, kubeconfig) = simulator(vec![
        secret("repo-password", "password", "immutable-repo-pass-7"),
        env_secret("s3-writer", S3_WRITER),
        env_secret("s3-maintenance", S3_MAINTENANCE),
        secret("pg-credentials", "password", pg.password()),
        repository,
        host_database(
            "pg",
            &pg,
            "pg-credentials",
            json!({"schedule": {"backup": "0 2 * * *"}, "repositories": ["vault"],
                   "retention": {"keepLast": 1}}),
        ),
    ]);
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());
    let backups = || {
        metric(
            op.addr,
            "hasteward_backup_total{cluster=\"pg\",engine=\"standalone\",namespace=\"db\",repository=\"vault\",status=\"success\"}",
        )
    };
    let retention = |status: &str| {
        metric(
            op.addr,
            &format!("hasteward_retention_total{{cluster=\"pg\",engine=\"standalone\",namespace=\"db\",repository=\"vault\",status=\"{status}\"}}"),
        )
    };
    let snapshots = |expected: usize| {
        status_of(&sim, "backuprepositories", None, "vault")["snapshotCount"] == expected
    };
    wait_for("the first night planned", Duration::from_secs(30), || {
        status_of(&sim, "standalonedatabases", Some(NS), "pg")["nextBackup"]
            == "2026-11-23T02:00:00Z"
    });
    // Two nights with the writer's credential only: the backups land, retention is refused
    // (never run with the writer's credential) and says why.
    for (night, day) in ["2026-11-23", "2026-11-24"].iter().enumerate() {
        clock.set(at(&format!("{day}T02:00:00Z")));
        let start = std::time::Instant::now();
        while !(backups() == Some((night + 1) as f64)
            && retention("failure") == Some((night + 1) as f64)
            && snapshots(night + 1))
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "night {night}: backups {:?}, retention failures {:?}, repository {}, database {}",
                backups(),
                retention("failure"),
                status_of(&sim, "backuprepositories", None, "vault"),
                status_of(&sim, "standalonedatabases", Some(NS), "pg")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let failed = events(&sim, "pg", "RetentionFailed");
    assert!(!failed.is_empty());
    let note = failed[0]["note"].as_str().unwrap();
    assert!(
        note.contains("immutable") && note.contains("maintenanceCredentialsSecretRef"),
        "{note}"
    );

    // With the maintenance credential named, the next night's retention runs with it.
    // A spec edit through the API (a merge patch bumps the generation, which the operator's
    // status then acknowledges: it has seen the edit).
    let api = crate::triage::SimHttp { url: sim.url() };
    let patched = api
        .curl(
            &[
                "-s",
                "-f",
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/merge-patch+json",
                "-d",
                &json!({"spec": {"maintenanceCredentialsSecretRef":
                    {"name": "s3-maintenance", "namespace": NS}}})
                .to_string(),
            ],
            &format!("/apis/{API}/backuprepositories/vault"),
        )
        .unwrap();
    assert!(patched.status.success(), "{patched:?}");
    wait_for("the edit to be seen", Duration::from_secs(30), || {
        status_of(&sim, "backuprepositories", None, "vault")["observedGeneration"] == 2
    });
    clock.set(at("2026-11-25T02:00:00Z"));
    let start = std::time::Instant::now();
    while !(backups() == Some(3.0) && retention("success") == Some(1.0) && snapshots(1)) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "backups {:?}, retention {:?}/{:?}, repository {}, events {:?}",
            backups(),
            retention("success"),
            retention("failure"),
            status_of(&sim, "backuprepositories", None, "vault"),
            events(&sim, "pg", "RetentionFailed")
                .iter()
                .map(|e| e["note"].clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The forgotten snapshots' objects are still stored, as locked versions.
    let (versions, markers) = s3.versions("vault", "pg/snapshots/");
    assert!(versions >= 3 && markers >= 2, "{versions} {markers}");
    op.stop(&rt);
    // Every request but the test's own spec edit.
    let requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| !(r.method == "PATCH" && r.path.ends_with("/backuprepositories/vault")))
        .collect();
    crate::kube::assert_rules_allow(
        "rbac/hasteward-operator.yaml",
        &["hasteward-operator", "hasteward-operator-leader"],
        &requests,
    );
}

#[test]
fn a_scheduled_restore_drill_restores_the_latest_backup_in_a_pod_and_reports_the_recovery_time() {
    use crate::triage::{pg_exec, pod};
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 321) g",
    );
    let repo = Repo::new();
    let db = json!({"apiVersion": API, "kind": "StandaloneDatabase",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"dbType": "postgres", "target": {"pod": {"name": "pg-0"}},
                 "schedule": {"backup": "0 2 * * *"}, "repositories": ["local"],
                 "drill": {"schedule": "0 3 * * *", "assertDatabase": "shop",
                           "assertSql": ["SELECT count(*) = 321 FROM orders"]}}});
    let (sim, _dir, kubeconfig) = simulator_with_exec(
        vec![
            repo_password_secret(&repo),
            repository("local", &repo),
            pod("pg-0", "postgres", json!({"app": "pg"}), true),
            db,
        ],
        vec![pg_exec("pg-0", &pg)],
    );
    let work = tempfile::tempdir().unwrap();
    crate::kube::serve_drill_pods(
        &sim,
        crate::kube::DrillServer::Postgres(&pg),
        "pg-drill-",
        work.path(),
    );
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());
    let status = || status_of(&sim, "standalonedatabases", Some(NS), "pg");
    wait_for("the backup planned", Duration::from_secs(30), || {
        status()["nextBackup"] == "2026-11-23T02:00:00Z"
    });
    clock.set(at("2026-11-23T02:00:00Z"));
    wait_for("the backup", Duration::from_secs(120), || {
        status()["lastBackupResult"] == "success"
    });
    // 03:00: the drill restores that backup into a temporary pod and checks it.
    clock.set(at("2026-11-23T03:00:00Z"));
    wait_for("the drill", Duration::from_secs(180), || {
        status()["lastDrillResult"].is_string()
    });
    let s = status();
    assert_eq!(
        s["lastDrillResult"],
        "success",
        "{s}\n{:?}",
        events(&sim, "pg", "DrillFailed")
    );
    assert!(s["lastDrillRestoreSeconds"].as_f64().unwrap() > 0.0, "{s}");
    let done = events(&sim, "pg", "DrillSucceeded");
    assert_eq!(done.len(), 1);
    assert!(
        done[0]["note"]
            .as_str()
            .unwrap()
            .contains("1 assertion(s) held"),
        "{}",
        done[0]["note"]
    );
    let labels = "cluster=\"pg\",engine=\"standalone\",namespace=\"db\"";
    assert_eq!(
        metric(
            op.addr,
            &format!("hasteward_drill_total{{{labels},status=\"success\"}}")
        ),
        Some(1.0)
    );
    assert!(metric(
        op.addr,
        &format!("hasteward_drill_restore_seconds{{{labels}}}")
    )
    .is_some_and(|s| s > 0.0));
    // The drill pod: the database pod's image, created once and gone.
    let created = created_pods(&sim.requests());
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["spec"]["containers"][0]["image"], "test");
    let name = created[0]["metadata"]["name"].as_str().unwrap();
    assert!(sim.get("v1", "pods", Some(NS), name).is_none());
    op.stop(&rt);
    crate::kube::assert_rules_allow(
        "rbac/hasteward-operator.yaml",
        &[
            "hasteward-operator",
            "hasteward-operator-leader",
            "hasteward-operator-drill",
        ],
        &sim.requests(),
    );
}

#[test]
fn a_scheduled_sync_copies_into_a_repository_with_its_own_password_once() {
    let pg = Postgres::start();
    let local = Repo::new();
    let offsite = tempfile::tempdir().unwrap();
    let offsite_path = offsite.path().join("offsite");
    // A first snapshot in the source, by the CLI.
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pg.pw", pg.password());
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "pg"));
    args.extend(local.args());
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");

    let mut source = repository("local", &local);
    source["spec"]["sync"] = json!([{"to": "offsite", "schedule": "0 4 * * *",
                                     "retention": {"keepLast": 3}}]);
    let destination = json!({
        "apiVersion": API, "kind": "BackupRepository", "metadata": {"name": "offsite"},
        "spec": {"restic": {"repository": offsite_path.display().to_string(),
            "passwordSecretRef": {"name": "offsite-password", "namespace": NS, "key": "password"}}}
    });
    let (sim, _simdir, kubeconfig) = simulator(vec![
        repo_password_secret(&local),
        secret(
            "offsite-password",
            "password",
            "an-offsite-Secret-of-its-own",
        ),
        source,
        destination,
    ]);
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T03:59:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());
    let sync_status =
        || status_of(&sim, "backuprepositories", None, "local")["syncs"]["offsite"].clone();
    let runs = || {
        metric(
            op.addr,
            "hasteward_repository_sync_total{destination=\"offsite\",result=\"success\",source=\"local\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for("the operator to plan", Duration::from_secs(30), || {
        condition(
            &status_of(&sim, "backuprepositories", None, "local"),
            "Ready",
        )
        .is_some()
    });
    clock.set(at("2026-11-23T04:00:00Z"));
    wait_for("the first sync", Duration::from_secs(120), || runs() == 1.0);
    // The counter moves before the status is written: wait for the status itself.
    wait_for("the first sync's status", Duration::from_secs(30), || {
        !sync_status()["lastSyncResult"].is_null()
    });
    let s = sync_status();
    assert_eq!(s["lastSyncResult"], "success", "{s}");
    assert_eq!(s["copied"], 1, "{s}");
    // The destination opens with its own password and holds the snapshot.
    let out = std::process::Command::new("restic")
        .args(["snapshots", "--json"])
        .env("RESTIC_REPOSITORY", &offsite_path)
        .env("RESTIC_PASSWORD", "an-offsite-Secret-of-its-own")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(copied.len(), 1);
    // The next night: nothing new to copy.
    clock.set(at("2026-11-24T04:00:00Z"));
    wait_for("the second sync", Duration::from_secs(120), || {
        runs() == 2.0
    });
    // The counter moves before the status is written: wait for the status itself.
    wait_for("the second sync's status", Duration::from_secs(30), || {
        sync_status()["copied"] == 0
    });
    // (The second Event of the same kind is a series update, not a new object.)
    assert!(!events(&sim, "local", "SyncSucceeded").is_empty());
    op.stop(&rt);
    assert_operator_rbac(&sim);
}

#[test]
fn vault_and_victoriametrics_standalone_databases_are_backed_up_on_their_schedules() {
    use crate::triage::pod;
    let bao = hasteward_testkit::OpenBao::start();
    bao.kv_put("app", "pw", "scheduled-vault-value");
    let token = std::fs::read_to_string(bao.token_file())
        .unwrap()
        .trim()
        .to_string();
    let vm = hasteward_testkit::VictoriaMetrics::start();
    let now_ms = Utc::now().timestamp_millis();
    vm.import_prometheus(&format!(
        "probe{{job=\"a\"}} 1 {t}\nprobe{{job=\"b\"}} 2 {t}\n",
        t = now_ms - 300_000
    ));
    let root = vm.dir().join("vmbackups");
    std::fs::create_dir_all(root.join("daily/2020-01-01")).unwrap();
    std::fs::write(root.join("daily/2020-01-01/backup_complete.ignore"), "").unwrap();
    let dst = format!("fs://{}", root.display());
    let repo = Repo::new();
    let sdb = |name: &str, spec: Value| {
        json!({"apiVersion": API, "kind": "StandaloneDatabase",
               "metadata": {"name": name, "namespace": NS}, "spec": spec})
    };
    let vm_spec = |retention: Value| {
        json!({
            "dbType": "victoriametrics",
            "target": {"pod": {"name": "vm-0"}},
            "vmbackup": {"storageDataPath": vm.data_path().display().to_string(),
                         "dst": dst, "url": vm.url()},
            "schedule": {"backup": "0 2 * * *"},
            "retention": retention
        })
    };
    let (sim, _dir, kubeconfig) = simulator_with_exec(
        vec![
            repo_password_secret(&repo),
            repository("local", &repo),
            secret("vault-token", "token", &token),
            pod("vault-0", "openbao", json!({}), true),
            pod("vm-0", "victoria-metrics", json!({}), true),
            sdb(
                "vault",
                json!({"dbType": "vault", "target": {"pod": {"name": "vault-0"}},
                       "credentials": {"secretName": "vault-token"},
                       "schedule": {"backup": "0 2 * * *", "triage": "*/30 * * * *"},
                       "repositories": ["local"]}),
            ),
            sdb("vm", vm_spec(json!({"keepDaily": 1}))),
            sdb("vm-bad", vm_spec(json!({"keepLast": 3}))),
        ],
        vec![
            hasteward_kubesim::PodExec {
                namespace: NS.into(),
                pod: "vault-0".into(),
                env: [("BAO_ADDR".to_string(), bao.addr())].into(),
                path_prepend: vec![bao.bao().parent().unwrap().to_path_buf()],
                ..Default::default()
            },
            hasteward_kubesim::PodExec {
                namespace: NS.into(),
                pod: "vm-0".into(),
                ..Default::default()
            },
        ],
    );
    let rt = runtime();
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:59:00Z")));
    let op = start_replica(&rt, &kubeconfig, "op-a", clock.clone());
    wait_for(
        "both scheduled, the bad one refused",
        Duration::from_secs(30),
        || {
            ["vault", "vm"].iter().all(|n| {
                status_of(&sim, "standalonedatabases", Some(NS), n)["nextBackup"]
                    == "2026-11-23T02:00:00Z"
            }) && condition(
                &status_of(&sim, "standalonedatabases", Some(NS), "vm-bad"),
                "Ready",
            )
            .is_some_and(|c| c["status"] == "False")
        },
    );
    let bad = status_of(&sim, "standalonedatabases", Some(NS), "vm-bad");
    let ready = condition(&bad, "Ready").unwrap();
    assert_eq!(ready["reason"], "InvalidRetention", "{bad}");
    let s = status_of(&sim, "standalonedatabases", Some(NS), "vm");
    assert!(
        condition(&s, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains(&dst),
        "{s}"
    );

    clock.set(at("2026-11-23T02:00:00Z"));
    wait_for("both backups to end", Duration::from_secs(120), || {
        ["vault", "vm"].iter().all(|n| {
            status_of(&sim, "standalonedatabases", Some(NS), n)["lastBackupResult"].is_string()
        })
    });

    // Vault: one raft snapshot in the repository, from the pod, with the token from the Secret.
    let s = status_of(&sim, "standalonedatabases", Some(NS), "vault");
    assert_eq!(s["lastBackupResult"], "success", "{s}");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["paths"][0], "/db/vault/raft.snap");
    assert!(snaps[0]["tags"].to_string().contains("engine=vault"));
    let id = snaps[0]["short_id"].as_str().unwrap();
    assert_eq!(s["lastSnapshots"], json!([format!("local:{id}")]), "{s}");

    // VictoriaMetrics: latest and today's daily generation, the old daily one let go.
    let s = status_of(&sim, "standalonedatabases", Some(NS), "vm");
    assert_eq!(s["lastBackupResult"], "success", "{s}");
    let today = Utc::now().format("daily/%Y-%m-%d").to_string();
    assert_eq!(
        s["lastSnapshots"],
        json!([format!("{dst}:latest+{today}")]),
        "{s}"
    );
    assert!(root.join("latest/backup_complete.ignore").exists());
    assert!(root.join(&today).join("backup_complete.ignore").exists());
    assert!(!root.join("daily/2020-01-01").exists());
    assert_eq!(events(&sim, "vm", "BackupSucceeded").len(), 1);
    let series = format!(
        "hasteward_backup_total{{cluster=\"vm\",engine=\"standalone\",namespace=\"db\",repository=\"{dst}\",status=\"success\"}}"
    );
    assert_eq!(metric(op.addr, &series), Some(1.0));
    let retention = series.replace("backup_total", "retention_total");
    assert_eq!(metric(op.addr, &retention), Some(1.0));
    // The destination is not a BackupRepository: nothing was patched under its name.
    assert!(!sim
        .requests()
        .iter()
        .any(|r| r.path.contains("backuprepositories") && r.path.contains("vmbackups")));

    // Vault is also triaged on its own schedule: healthy at 02:00 (no Event), then sealed.
    wait_for("the 02:00 triage", Duration::from_secs(60), || {
        status_of(&sim, "standalonedatabases", Some(NS), "vault")["lastTriageResult"] == "healthy"
    });
    assert!(events(&sim, "vault", "TriageVerdictChanged").is_empty());
    bao.seal();
    clock.set(at("2026-11-23T02:30:00Z"));
    wait_for("the 02:30 triage", Duration::from_secs(60), || {
        status_of(&sim, "standalonedatabases", Some(NS), "vault")["lastTriageResult"] == "unhealthy"
    });
    let changed = events(&sim, "vault", "TriageVerdictChanged");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let note = changed[0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("sealed") && note.contains("unseal"), "{note}");
    assert_eq!(
        metric(
            op.addr,
            "hasteward_triage_result{cluster=\"vault\",engine=\"standalone\",namespace=\"db\",result=\"unhealthy\"}"
        ),
        Some(1.0)
    );
    bao.unseal();
    op.stop(&rt);
    assert_operator_rbac(&sim);
}
