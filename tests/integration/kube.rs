//! The CLI end to end against the Kubernetes API simulator (`hasteward-kubesim`), whose pods
//! are real local servers: pod exec runs the command as a local process with the "container's"
//! environment pointing at a testkit PostgreSQL (primary + streaming replica), a 3-node Galera
//! cluster, a MariaDB, or the mongo tool stand-in (no real mongod exists here; see
//! `tests/standins/mongo`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hasteward_kubesim::{PodExec, RecordedRequest, SimConfig, Simulator};
use hasteward_testkit::{Galera, MariaDb, Postgres};
use serde_json::{json, Value};

use crate::support::*;

const NS: &str = "db";

/// A pod with one Ready container.
fn pod(name: &str, container: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": container, "image": "test"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": container, "ready": true, "restartCount": 0, "image": "test", "imageID": ""}
        ]}
    })
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {key: base64(value.as_bytes())}
    })
}

fn exec(pod: &str, env: &[(&str, String)], path_prepend: Vec<PathBuf>) -> PodExec {
    PodExec {
        namespace: NS.into(),
        pod: pod.into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        path_prepend,
        ..PodExec::default()
    }
}

/// The exec environment of a pod backed by testkit PostgreSQL `pg` (local socket, trust).
fn pg_pod_exec(pod: &str, pg: &Postgres) -> PodExec {
    let socket_dir = pg.data_dir().parent().unwrap().display().to_string();
    exec(
        pod,
        &[("PGHOST", socket_dir), ("PGPORT", pg.port().to_string())],
        vec![pg.bin_dir().to_path_buf()],
    )
}

/// The exec environment of a pod backed by the MariaDB server listening on `socket`: as in a
/// mariadb container, the tools find the local socket through the container's own option file
/// (`$HOME/.my.cnf`; the machine's `/etc/mysql/my.cnf` names another socket and wins over
/// `MYSQL_UNIX_PORT`).
fn maria_pod_exec(pod: &str, socket: &Path) -> PodExec {
    let home = socket.parent().unwrap().join(format!("home-{pod}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".my.cnf"),
        format!("[client]\nsocket={}\n", socket.display()),
    )
    .unwrap();
    exec(pod, &[("HOME", home.display().to_string())], Vec::new())
}

/// A simulator plus a kubeconfig for it.
struct Cluster {
    sim: Simulator,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start(objects: Vec<Value>, exec: Vec<PodExec>) -> Cluster {
        let mut all =
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})];
        all.extend(objects);
        let sim = Simulator::start(SimConfig { objects: all, exec }).expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, Some(NS)).unwrap();
        Cluster {
            sim,
            _dir: dir,
            kubeconfig,
        }
    }

    /// `hasteward SUBCOMMAND` against this cluster and `repo`, with `target` flags.
    fn args(&self, subcommand: &str, repo: &Repo, target: &[&str]) -> Vec<String> {
        let mut args = self.json_args(subcommand, target);
        args.drain(1..3);
        args.extend(repo.args());
        args
    }

    /// `hasteward SUBCOMMAND -o json` against this cluster, with `target` flags (no repository).
    fn json_args(&self, subcommand: &str, target: &[&str]) -> Vec<String> {
        let mut args = vec![
            subcommand.to_string(),
            "-o".into(),
            "json".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "-n".into(),
            NS.into(),
        ];
        args.extend(target.iter().map(|s| s.to_string()));
        args
    }

    fn exec_requests(&self) -> Vec<RecordedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.exec_command.is_some())
            .collect()
    }

    /// Fails if `secret` appears anywhere in any recorded request.
    fn assert_never_sent(&self, secret: &str) {
        let requests = self.sim.requests();
        assert!(!requests.is_empty());
        for r in &requests {
            let text = format!(
                "{} {} {:?} {:?} {:?}",
                r.method, r.path, r.query, r.body, r.exec_command
            );
            assert!(
                !text.contains(secret),
                "a secret was sent to the API server: {text}"
            );
        }
    }
}

/// The RBAC permission a recorded request needs: (API group, resource[/subresource], verb).
/// `None` for non-resource paths (discovery), which every authenticated user may read.
fn required_permission(r: &RecordedRequest) -> Option<(String, String, String)> {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), None),
        [resource, name] => (resource.to_string(), Some(*name)),
        [resource, name, sub] => (format!("{resource}/{sub}"), Some(*name)),
        _ => return None,
    };
    let verb = if r.exec_command.is_some() {
        "create"
    } else {
        match (r.method.as_str(), name) {
            ("GET", Some(_)) => "get",
            ("GET", None) if r.query.contains("watch=true") => "watch",
            ("GET", None) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            _ => return None,
        }
    };
    Some((group.to_string(), resource, verb.to_string()))
}

/// Fails unless every request is allowed by ClusterRole `role` of `rbac/hasteward-cli.yaml`.
pub(crate) fn assert_role_allows(role: &str, requests: &[RecordedRequest]) {
    assert_rules_allow("rbac/hasteward-cli.yaml", &[role], requests);
}

/// Fails unless every request is allowed by the union of the named Roles/ClusterRoles of `file`
/// (relative to the repository root).
pub(crate) fn assert_rules_allow(file: &str, roles: &[&str], requests: &[RecordedRequest]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    let objects = SimConfig::from_yaml(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .objects;
    let mut rules = Vec::new();
    for role in roles {
        let found = objects
            .iter()
            .find(|o| {
                (o["kind"] == "Role" || o["kind"] == "ClusterRole")
                    && o["metadata"]["name"] == *role
            })
            .unwrap_or_else(|| panic!("no Role or ClusterRole {role} in {}", path.display()));
        rules.extend(found["rules"].as_array().unwrap().iter().cloned());
    }
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
    };
    let mut checked = 0;
    for r in requests {
        let Some((group, resource, verb)) = required_permission(r) else {
            continue;
        };
        checked += 1;
        assert!(
            rules.iter().any(|rule| has(&rule["apiGroups"], &group)
                && has(&rule["resources"], &resource)
                && has(&rule["verbs"], &verb)),
            "{roles:?} in {file} do not allow {verb} {resource} (group {group:?}): {} {}",
            r.method,
            r.path
        );
    }
    assert!(checked > 0, "no resource requests to check");
}

fn run_ok(args: &[String]) -> String {
    let (code, out, err) = run(args, None);
    assert_eq!(code, 0, "hasteward {args:?} failed:\n{out}\n{err}");
    out
}

/// The pods an exec request ran in (`.../pods/NAME/exec`).
fn exec_pods(requests: &[RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| {
            let rest = r.path.split("/pods/").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect()
}

fn maria_checksum(sql: impl Fn(&str) -> String) -> String {
    sql("SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(id, '/', name, '/', price ORDER BY id SEPARATOR ','))) FROM shop.items")
}

const MARIA_SEED: &str = "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2)); \
    INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), seq * 1.5 FROM shop.seq_1_to_3000;";

const PG_SEED: &str = "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric); \
    INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 5000) g";

#[test]
fn cnpg_round_trip_fences_replicas_and_keeps_existing_fences() {
    let primary = Postgres::start();
    let replica = primary.start_replica();
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql("shop", PG_SEED);
    let before = pg_checksum(&primary, "shop", "items");

    let labels = |role: &str| json!({"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": role});
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS,
            // pg-3 was fenced by someone else (an operator investigating it) and must stay so.
            "annotations": {"cnpg.io/fencedInstances": "[\"pg-3\"]"}},
        "spec": {"instances": 3},
        "status": {"currentPrimary": "pg-1", "instanceNames": ["pg-1", "pg-2", "pg-3"]}
    });
    let k = Cluster::start(
        vec![
            cluster,
            pod("pg-1", "postgres", labels("primary")),
            pod("pg-2", "postgres", labels("replica")),
            pod("pg-3", "postgres", labels("replica")),
        ],
        vec![pg_pod_exec("pg-1", &primary), pg_pod_exec("pg-2", &replica)],
    );
    let repo = Repo::new();
    let target = ["-e", "cnpg", "-c", "pg"];

    let out = run_ok(&{
        let mut a = k.args("backup", &repo, &target);
        a.extend(["-o".to_string(), "json".into()]);
        a
    });
    let env = envelope(&out);
    assert_eq!(env["success"], true, "{out}");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"][0], "/db/pg/pg_dumpall.sql");
    let tags: Vec<String> = serde_json::from_value(snaps[0]["tags"].clone()).unwrap();
    assert!(tags.contains(&"engine=cnpg".to_string()), "{tags:?}");
    let pods = exec_pods(&k.exec_requests());
    assert!(
        !pods.is_empty() && pods.iter().all(|p| p == "pg-1"),
        "dumped from the primary: {pods:?}"
    );

    assert_role_allows("hasteward-backup", &k.sim.requests());

    // Damage the data, then restore over it with --force; the replica follows by streaming.
    primary.psql("shop", "DELETE FROM items WHERE id > 100");
    assert_ne!(pg_checksum(&primary, "shop", "items"), before);
    k.sim.clear_requests();
    run_ok(&{
        let mut a = k.args("restore", &repo, &target);
        a.push("--force".into());
        a
    });
    assert_eq!(pg_checksum(&primary, "shop", "items"), before);
    primary.wait_replica_caught_up(&replica);
    assert_eq!(pg_checksum(&replica, "shop", "items"), before);

    // The replicas were fenced for the restore: pg-2 added next to pg-3, then removed again.
    let patches: Vec<String> = k
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/clusters/pg"))
        .map(|r| r.body.unwrap_or_default())
        .collect();
    assert_eq!(patches.len(), 2, "fence and unfence: {patches:?}");
    assert!(
        patches[0].contains(r#"[\"pg-3\",\"pg-2\"]"#) && patches[0].contains("resourceVersion"),
        "fence adds pg-2 next to pg-3 with a resourceVersion: {}",
        patches[0]
    );
    assert!(
        patches[1].contains(r#"[\"pg-3\"]"#),
        "unfence removes only pg-2: {}",
        patches[1]
    );
    let after = k
        .sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    assert_eq!(
        after["metadata"]["annotations"]["cnpg.io/fencedInstances"],
        "[\"pg-3\"]"
    );
    // Every exec of the restore ran in the primary.
    assert!(exec_pods(&k.exec_requests()).iter().all(|p| p == "pg-1"));
    assert_role_allows("hasteward-restore", &k.sim.requests());
    // The backup role cannot fence (the checker does fail).
    let restore_requests = k.sim.requests();
    assert!(std::panic::catch_unwind(|| {
        assert_role_allows("hasteward-backup", &restore_requests)
    })
    .is_err());
}

#[test]
fn cnpg_restore_that_fails_unfences_and_a_fenced_primary_is_refused() {
    let primary = Postgres::start();
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql("shop", PG_SEED);
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS},
        "status": {"currentPrimary": "pg-1", "instanceNames": ["pg-1", "pg-2"]}
    });
    let k = Cluster::start(
        vec![
            cluster,
            pod("pg-1", "postgres", json!({})),
            pod("pg-2", "postgres", json!({})),
        ],
        vec![pg_pod_exec("pg-1", &primary)],
    );
    let repo = Repo::new();
    let target = ["-e", "cnpg", "-c", "pg"];
    run_ok(&k.args("backup", &repo, &target));

    // Without --force the restore is refused over the existing database (exit 3) — after
    // fencing, so the fence must be gone again.
    let (code, out, err) = run(&k.args("restore", &repo, &target), None);
    assert_ne!(code, 0, "{out}{err}");
    let fenced = |k: &Cluster| {
        k.sim
            .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
            .unwrap()["metadata"]["annotations"]
            .get("cnpg.io/fencedInstances")
            .cloned()
    };
    let left = fenced(&k);
    assert!(
        left.is_none() || left == Some(json!("[]")),
        "fence left behind: {left:?}"
    );

    // A fenced primary: refused with exit 3, nothing patched.
    let mut cr = k
        .sim
        .get("postgresql.cnpg.io/v1", "clusters", Some(NS), "pg")
        .unwrap();
    cr["metadata"]["annotations"] = json!({"cnpg.io/fencedInstances": "[\"pg-1\"]"});
    k.sim.put(cr);
    k.sim.clear_requests();
    let mut a = k.args("restore", &repo, &target);
    a.push("--force".into());
    let (code, _out, err) = run(&a, None);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("fenced"), "{err}");
    assert!(k.sim.requests().iter().all(|r| !r.is_mutation()));
    assert!(k.exec_requests().is_empty());
}

#[test]
fn galera_round_trip_from_a_synced_node_with_the_password_never_sent() {
    let galera = Galera::start(3);
    galera.sql(0, None, MARIA_SEED);
    for i in 0..3 {
        galera.wait_synced(i);
    }
    let before = maria_checksum(|q| galera.sql(2, None, q));
    // Node 0 is desynced (as a donor would be): hasteward must pick another node.
    galera.sql(0, None, "SET GLOBAL wsrep_desync = ON");
    wait_for("node 0 desynced", Duration::from_secs(30), || {
        galera.wsrep_state(0) != "Synced"
    });

    let labels = json!({"app.kubernetes.io/instance": "galera"});
    let k = Cluster::start(
        vec![
            json!({
                "apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB",
                "metadata": {"name": "galera", "namespace": NS},
                "spec": {"replicas": 3, "galera": {"enabled": true},
                    "rootPasswordSecretKeyRef": {"name": "galera-root", "key": "password"}}
            }),
            secret("galera-root", "password", galera.password()),
            pod("galera-0", "mariadb", labels.clone()),
            pod("galera-1", "mariadb", labels.clone()),
            pod("galera-2", "mariadb", labels),
        ],
        (0..3)
            .map(|i| maria_pod_exec(&format!("galera-{i}"), &galera.socket(i)))
            .collect(),
    );
    let repo = Repo::new();
    let target = ["-e", "galera", "-c", "galera"];
    run_ok(&k.args("backup", &repo, &target));
    let pods = exec_pods(&k.exec_requests());
    assert_eq!(
        pods.last().map(String::as_str),
        Some("galera-1"),
        "{pods:?}"
    );
    assert_eq!(repo.snapshots().len(), 1);
    // mariadb-operator's own accounts table is not in the dump.
    let dump = repo.restic(&["dump", "latest", "/db/galera/mariadb-dump.sql"]);
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("INSERT INTO `items`"));
    for statement in ["CREATE TABLE `global_priv`", "INSERT INTO `global_priv`"] {
        assert!(
            !dump.contains(statement),
            "mysql.global_priv was dumped: {statement}"
        );
    }

    galera.sql(0, None, "SET GLOBAL wsrep_desync = OFF");
    galera.wait_synced(0);
    galera.sql(1, None, "DROP DATABASE shop");
    run_ok(&k.args("restore", &repo, &target));
    for i in 0..3 {
        assert_eq!(
            maria_checksum(|q| galera.sql(i, None, q)),
            before,
            "node {i}"
        );
    }
    k.assert_never_sent(galera.password());
    assert_role_allows("hasteward-restore", &k.sim.requests());
}

#[test]
fn standalone_postgres_and_mariadb_in_pods_round_trip_with_secrets_from_the_api() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql("shop", PG_SEED);
    pg.psql("postgres", "CREATE DATABASE other");
    pg.psql(
        "other",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('x')",
    );
    let pg_before = pg_checksum(&pg, "shop", "items");
    let maria = MariaDb::start();
    maria.sql(None, MARIA_SEED);
    let maria_before = maria_checksum(|q| maria.sql(None, q));

    // The postgres "container" connects over TCP, so it needs the password.
    let pg_exec = exec(
        "pgsolo-0",
        &[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", pg.port().to_string()),
        ],
        vec![pg.bin_dir().to_path_buf()],
    );
    let k = Cluster::start(
        vec![
            pod("pgsolo-0", "postgres", json!({})),
            secret("pgsolo-auth", "password", pg.password()),
            pod("maria-0", "mariadb", json!({})),
            secret("maria-auth", "root-password", maria.password()),
        ],
        vec![pg_exec, maria_pod_exec("maria-0", &maria.socket())],
    );
    let repo = Repo::new();
    let pg_target = [
        "-e",
        "standalone",
        "--db-type",
        "postgres",
        "-c",
        "pgsolo",
        "--container",
        "pgsolo-0/postgres",
        "--secret-name",
        "pgsolo-auth",
        "--secret-key",
        "password",
        "--db-user",
        "postgres",
    ];
    let maria_target = [
        "-e",
        "standalone",
        "--db-type",
        "mariadb",
        "-c",
        "maria",
        "--container",
        "maria-0",
        "--secret-name",
        "maria-auth",
        "--secret-key",
        "root-password",
        "--db-user",
        maria.user(),
    ];

    // Whole-server and per-database snapshots.
    run_ok(&k.args("backup", &repo, &pg_target));
    let mut per_db = k.args("backup", &repo, &pg_target);
    per_db.extend(["--database".to_string(), "shop".into()]);
    run_ok(&per_db);
    run_ok(&k.args("backup", &repo, &maria_target));
    let paths: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(
        paths.contains(&"/db/maria/mariadb-dump.sql".to_string()),
        "{paths:?}"
    );

    // Restore only `shop` from its own snapshot: `other` is untouched.
    pg.psql("shop", "DELETE FROM items WHERE id % 2 = 0");
    pg.psql("other", "INSERT INTO t VALUES ('added after the backup')");
    let mut r = k.args("restore", &repo, &pg_target);
    r.extend(["--database".to_string(), "shop".into(), "--force".into()]);
    run_ok(&r);
    assert_eq!(pg_checksum(&pg, "shop", "items"), pg_before);
    assert_eq!(pg.psql("other", "SELECT count(*) FROM t"), "2");

    maria.sql(None, "DROP DATABASE shop");
    run_ok(&k.args("restore", &repo, &maria_target));
    assert_eq!(maria_checksum(|q| maria.sql(None, q)), maria_before);

    k.assert_never_sent(pg.password());
    k.assert_never_sent(maria.password());
    assert_role_allows("hasteward-restore", &k.sim.requests());
    // No password file is left behind in the "container" temp dir.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t.contains(pg.password()) || t.contains(maria.password()))
                .unwrap_or(false)
        })
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "credential files left: {leftovers:?}");
}

fn mongo_standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/standins/mongo")
}

/// Mongo through the tool stand-in (not MongoDB: no real mongod can be installed here).
#[test]
fn standalone_mongo_in_a_pod_round_trips_through_the_tool_standin() {
    let data = tempfile::tempdir().unwrap();
    let orders = data.path().join("shop").join("orders");
    std::fs::create_dir_all(orders.parent().unwrap()).unwrap();
    let content: String = (0..20_000).map(|i| format!("{{\"_id\":{i}}}\n")).collect();
    std::fs::write(&orders, &content).unwrap();
    let password = "mongo-Pw-5e1d";
    let k = Cluster::start(
        vec![
            pod("mongo-0", "mongod", json!({})),
            secret("mongo-auth", "password", password),
        ],
        vec![exec(
            "mongo-0",
            &[
                ("MONGO_STANDIN_DATA", data.path().display().to_string()),
                ("MONGO_STANDIN_USER", "backup".into()),
                ("MONGO_STANDIN_PASSWORD", password.into()),
            ],
            vec![mongo_standins()],
        )],
    );
    let repo = Repo::new();
    let target = [
        "-e",
        "standalone",
        "--db-type",
        "mongo",
        "-c",
        "mongo",
        "--container",
        "mongo-0",
        "--secret-name",
        "mongo-auth",
        "--secret-key",
        "password",
        "--db-user",
        "backup",
    ];
    run_ok(&k.args("backup", &repo, &target));
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"][0], "/db/mongo/mongodump.archive");

    std::fs::write(&orders, "damaged\n").unwrap();
    let mut r = k.args("restore", &repo, &target);
    r.push("--force".into());
    run_ok(&r);
    assert_eq!(std::fs::read_to_string(&orders).unwrap(), content);
    k.assert_never_sent(password);
}

/// A pod whose dump fails (`pg_dumpall` complete output, then exit 1), or whose exec connection
/// drops mid-stream: no snapshot, no lock, and the run ends promptly.
#[test]
fn failed_or_dropped_dumps_in_pods_leave_no_snapshot() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql("shop", PG_SEED);
    let scratch = tempfile::tempdir().unwrap();
    let failing = shim(
        scratch.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\"; exit 1"),
    );
    let mut failing_exec = pg_pod_exec("pg-1", &pg);
    failing_exec.path_prepend.insert(0, failing);
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS},
        "status": {"currentPrimary": "pg-1", "instanceNames": ["pg-1"]}
    });
    let k = Cluster::start(
        vec![cluster, pod("pg-1", "postgres", json!({}))],
        vec![failing_exec],
    );
    let repo = Repo::new();
    let target = ["-e", "cnpg", "-c", "pg"];
    let (code, out, err) = run(&k.args("backup", &repo, &target), None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("pg_dumpall"), "{err}");
    assert!(repo.snapshots().is_empty());
    assert_eq!(repo.locks(), 0);

    // The exec connection drops after 64 KiB of a larger dump (no status frame).
    let mut dropping = pg_pod_exec("pg-1", &pg);
    dropping.drop_after_bytes = Some(64 * 1024);
    k.sim.set_exec(dropping);
    let started = Instant::now();
    let (code, out, err) = run(&k.args("backup", &repo, &target), None);
    let took = started.elapsed();
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("without an exit status"), "{err}");
    assert!(repo.snapshots().is_empty());
    assert_eq!(repo.locks(), 0);
    // Liveness, not speed: the dropped stream ends the run, not the 30-minute stall timeout.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The database server a simulated drill pod runs.
pub(crate) enum DrillServer<'a> {
    /// PostgreSQL, with this test server's binaries.
    Postgres(&'a Postgres),
    /// The machine's MariaDB.
    Mariadb,
}

/// Makes the simulator run drill pods named `prefix*` for real: the pod's script starts a local
/// server as the pod's non-root user (`postgres` / `mysql`: shims run the server tools through
/// `runuser` when the tests run as root), in a directory under `work` standing in for the
/// container's `/tmp/hasteward-drill`, and exec into the pod reaches it (PostgreSQL: `PGHOST`;
/// MariaDB: the drill directory's `.my.cnf` through `HOME`, as in the pod).
pub(crate) fn serve_drill_pods(sim: &Simulator, server: DrillServer, prefix: &str, work: &Path) {
    let drill_dir = work.join("drill");
    std::fs::create_dir(&drill_dir).unwrap();
    let (user, tools, env, exec_path) = match server {
        DrillServer::Postgres(pg) => {
            let bin = pg.bin_dir();
            (
                "postgres",
                vec![
                    ("initdb", bin.join("initdb")),
                    ("postgres", bin.join("postgres")),
                ],
                ("PGHOST", drill_dir.display().to_string()),
                vec![bin.to_path_buf()],
            )
        }
        DrillServer::Mariadb => (
            "mysql",
            vec![
                ("mariadbd", PathBuf::from("/usr/sbin/mariadbd")),
                (
                    "mariadb-install-db",
                    PathBuf::from("/usr/bin/mariadb-install-db"),
                ),
            ],
            ("HOME", drill_dir.display().to_string()),
            Vec::new(),
        ),
    };
    if nix::unistd::Uid::effective().is_root() {
        let status = std::process::Command::new("chown")
            .arg(format!("{user}:{user}"))
            .arg(&drill_dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut shims = PathBuf::new();
    for (tool, path) in &tools {
        let path = path.display();
        shims = shim(
            work,
            tool,
            &format!(
                "if [ \"$(id -u)\" = 0 ]; then exec runuser -u {user} -- {path} \"$@\"; fi\nexec {path} \"$@\""
            ),
        );
    }
    let mounts: std::collections::BTreeMap<String, PathBuf> =
        [("/tmp/hasteward-drill".to_string(), drill_dir.clone())].into();
    sim.set_pod_run(hasteward_kubesim::PodRun {
        namespace: NS.into(),
        name_prefix: Some(prefix.into()),
        path_prepend: vec![shims],
        mounts: mounts.clone(),
        ..hasteward_kubesim::PodRun::default()
    });
    sim.set_exec(PodExec {
        namespace: NS.into(),
        pod: format!("{prefix}*"),
        env: [(env.0.to_string(), env.1)].into(),
        path_prepend: exec_path,
        mounts,
        ..PodExec::default()
    });
}

#[test]
fn an_in_cluster_restore_drill_runs_in_a_temporary_pod_with_the_clusters_image() {
    let primary = Postgres::start();
    primary.psql("postgres", "CREATE DATABASE shop");
    primary.psql("shop", PG_SEED);
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {"instances": 1, "imageName": "ghcr.io/cloudnative-pg/postgresql:15.8"},
        "status": {"currentPrimary": "pg-1", "instanceNames": ["pg-1"]}
    });
    let k = Cluster::start(
        vec![
            cluster,
            pod(
                "pg-1",
                "postgres",
                json!({"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": "primary"}),
            ),
        ],
        vec![pg_pod_exec("pg-1", &primary)],
    );
    let repo = Repo::new();
    let target = ["-e", "cnpg", "-c", "pg"];
    run_ok(&k.args("backup", &repo, &target));

    let work = tempfile::tempdir().unwrap();
    serve_drill_pods(
        &k.sim,
        DrillServer::Postgres(&primary),
        "pg-drill-",
        work.path(),
    );
    k.sim.clear_requests();
    let mut args = k.args("verify", &repo, &target);
    args.extend([
        "--restore-test".to_string(),
        "--in-cluster".into(),
        "--assert-database".into(),
        "shop".into(),
        "--assert-sql".into(),
        "SELECT count(*) = 5000 FROM items".into(),
        "-o".into(),
        "json".into(),
    ]);
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let env = envelope(&out);
    let shop = drilled_database(&env, "shop");
    assert_eq!(shop["rows"], 5000, "{env:#}");
    assert_eq!(env["data"]["assertions"][0]["passed"], true, "{env:#}");
    assert!(env["data"]["restoreSeconds"].as_f64().unwrap() > 0.0);

    // The pod: the cluster's image, a deadline, an owner reference, a non-root user; created
    // once and deleted; the source database was never exec'd into.
    let requests = k.sim.requests();
    let created = created_pods(&requests);
    assert_eq!(created.len(), 1, "{created:?}");
    let pod = &created[0];
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("pg-drill-"), "{name}");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "ghcr.io/cloudnative-pg/postgresql:15.8"
    );
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 3600);
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 26);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Cluster");
    assert!(requests
        .iter()
        .any(|r| r.method == "DELETE" && r.path.ends_with(&format!("/pods/{name}"))));
    assert!(k.sim.get("v1", "pods", Some(NS), name).is_none());
    assert!(exec_pods(&requests)
        .iter()
        .all(|p| p.starts_with("pg-drill-")));
    assert_role_allows("hasteward-drill", &requests);
}

#[test]
fn an_in_cluster_mariadb_drill_runs_the_given_image_in_a_temporary_pod() {
    let db = MariaDb::start();
    db.sql(None, "CREATE DATABASE shop");
    db.sql(
        Some("shop"),
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t SELECT seq FROM seq_1_to_77",
    );
    let k = Cluster::start(Vec::new(), Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "db-pw", db.password());
    let repo = Repo::new();
    let mut backup = vec!["backup".to_string(), "-n".into(), NS.into()];
    backup.extend(repo.args());
    backup.extend(maria_args(&db, &pw, "maria"));
    run_ok(&backup);

    serve_drill_pods(&k.sim, DrillServer::Mariadb, "maria-drill-", dir.path());
    k.sim.clear_requests();
    let mut args = vec![
        "verify".to_string(),
        "--kubeconfig".into(),
        k.kubeconfig.display().to_string(),
        "-n".into(),
        NS.into(),
        "-e".into(),
        "standalone".into(),
        "--db-type".into(),
        "mariadb".into(),
        "-c".into(),
        "maria".into(),
        "--restore-test".into(),
        "--in-cluster".into(),
        "--drill-image".into(),
        "mariadb:11.4".into(),
        "--assert-database".into(),
        "shop".into(),
        "--assert-sql".into(),
        "SELECT count(*) = 77 FROM t".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let env = envelope(&out);
    let shop = drilled_database(&env, "shop");
    assert_eq!(shop["rows"], 77, "{env:#}");
    assert_eq!(env["data"]["assertions"][0]["passed"], true, "{env:#}");
    let requests = k.sim.requests();
    let created = created_pods(&requests);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["spec"]["containers"][0]["image"], "mariadb:11.4");
    assert_eq!(created[0]["spec"]["securityContext"]["runAsUser"], 999);
    let name = created[0]["metadata"]["name"].as_str().unwrap();
    assert!(k.sim.get("v1", "pods", Some(NS), name).is_none());
    assert_role_allows("hasteward-drill", &requests);
}

#[test]
fn unreachable_api_missing_resources_and_unready_pods_exit_4_quickly() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = hasteward_testkit::free_port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "-e".into(),
        "cnpg".into(),
        "-c".into(),
        "pg".into(),
    ];
    args.extend(repo.args());
    let started = Instant::now();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 4, "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.contains(&port.to_string()), "names the server: {err}");

    let mut pending = pod("pg-1", "postgres", json!({}));
    pending["status"] = json!({"phase": "Pending"});
    let k = Cluster::start(
        vec![
            json!({
                "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": "pg", "namespace": NS},
                "status": {"currentPrimary": "pg-1", "instanceNames": ["pg-1"]}
            }),
            pending,
        ],
        Vec::new(),
    );
    for (target, expect) in [
        (["-e", "cnpg", "-c", "missing"], "missing"),
        (["-e", "cnpg", "-c", "pg"], "pg-1"),
    ] {
        let started = Instant::now();
        let (code, out, err) = run(&k.args("backup", &repo, &target), None);
        assert_eq!(code, 4, "{target:?}: {out}{err}");
        assert!(err.contains(expect), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Nothing was written: not even the repository was created.
    assert!(!repo.path.exists());
    drop(dir);
}

#[test]
fn vault_in_a_pod_round_trips_with_the_token_from_a_secret_never_in_argv() {
    let bao = hasteward_testkit::OpenBao::start();
    let token = std::fs::read_to_string(bao.token_file())
        .unwrap()
        .trim()
        .to_string();
    bao.kv_put("app", "pw", "one");
    // The "container" has the CLI on PATH and its own address, as the openbao image does.
    let k = Cluster::start(
        vec![
            pod("vault-0", "openbao", json!({"app": "vault"})),
            secret("vault-snapshot-token", "token", &token),
        ],
        vec![exec(
            "vault-0",
            &[("BAO_ADDR", bao.addr()), ("VAULT_ADDR", bao.addr())],
            vec![bao.bao().parent().unwrap().to_path_buf()],
        )],
    );
    let repo = Repo::new();
    let target = [
        "-e",
        "vault",
        "-c",
        "vault",
        "--container",
        "vault-0/openbao",
        "--secret-name",
        "vault-snapshot-token",
        "--secret-key",
        "token",
    ];
    run_ok(&k.args("backup", &repo, &target));
    assert_eq!(repo.snapshots()[0]["paths"][0], "/db/vault/raft.snap");
    let backup_requests = k.sim.requests();
    assert_role_allows("hasteward-backup", &backup_requests);

    bao.kv_put("app", "pw", "two");
    let mut restore = k.args("restore", &repo, &target);
    restore.push("--force".into());
    run_ok(&restore);
    bao.wait_unsealed_leader();
    assert_eq!(bao.kv_get("app", "pw"), "one");

    let out = run_ok(&k.json_args("triage", &target));
    let report = envelope(&out)["data"].clone();
    assert_eq!(report["verdict"], "healthy", "{report}");
    assert_eq!(report["namespace"], NS);

    // The snapshot, the restore and the triage ran in the pod; the token went through stdin.
    let pods = exec_pods(&k.exec_requests());
    assert!(pods.iter().all(|p| p == "vault-0"), "{pods:?}");
    k.assert_never_sent(&token);
    assert_role_allows("hasteward-restore", &k.sim.requests());
}

#[test]
fn victoriametrics_in_a_pod_backs_up_with_retention_and_refuses_an_in_place_restore() {
    let vm = hasteward_testkit::VictoriaMetrics::start();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    vm.import_prometheus(&format!(
        "probe{{job=\"a\"}} 1 {t}\nprobe{{job=\"b\"}} 2 {t}\n",
        t = now_ms - 300_000
    ));
    let root = vm.dir().join("pod-backups");
    for old in ["2020-01-01", "2020-01-02"] {
        std::fs::create_dir_all(root.join("daily").join(old)).unwrap();
        std::fs::write(
            root.join("daily").join(old).join("backup_complete.ignore"),
            "",
        )
        .unwrap();
    }
    let k = Cluster::start(
        vec![pod("vm-0", "victoria-metrics", json!({}))],
        vec![exec("vm-0", &[], Vec::new())],
    );
    let repo = Repo::new();
    let dst = format!("fs://{}", root.display());
    let data = vm.data_path().display().to_string();
    let url = vm.url();
    let target = [
        "-e",
        "vmbackup",
        "-c",
        "vm",
        "--container",
        "vm-0",
        "--vm-url",
        url.as_str(),
        "--storage-data-path",
        data.as_str(),
        "--dst",
        dst.as_str(),
    ];
    let mut backup = k.json_args("backup", &target);
    backup.extend(["--keep-daily".to_string(), "2".into()]);
    let out = run_ok(&backup);
    assert_eq!(
        envelope(&out)["data"]["expired"],
        json!(["daily/2020-01-01"])
    );
    assert!(root.join("latest/backup_complete.ignore").exists());
    assert!(!root.join("daily/2020-01-01").exists());
    assert!(root.join("daily/2020-01-02").exists());
    // vmbackup and the retention listing ran in the pod, not here.
    let pods = exec_pods(&k.exec_requests());
    assert!(
        pods.len() >= 3 && pods.iter().all(|p| p == "vm-0"),
        "{pods:?}"
    );
    assert_role_allows("hasteward-backup", &k.sim.requests());

    let mut restore = k.args("restore", &repo, &target);
    restore.push("--force".into());
    let (code, out, err) = run(&restore, None);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("init container"), "{err}");
}
