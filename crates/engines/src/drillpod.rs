//! Restore drills in the cluster: the throwaway server is a temporary pod running the database's
//! own image (so the restore uses the same server version and tools as production), with an
//! owner reference when there is an owner, an `activeDeadlineSeconds` (the kubelet ends it even if
//! hasteward is gone), no Service and no network listener (the server listens on a socket in the
//! pod only; everything reaches it by exec), and it is deleted on every path.
//!
//! The pod runs a fixed script (nothing user-supplied is spliced into it): PostgreSQL: `initdb`
//! with local trust into a directory in the container, then `postgres` on a socket there;
//! MariaDB/MySQL: `mariadb-install-db` (or `mysqld --initialize-insecure`) with a password-less
//! root, then the server with `--skip-networking` on a socket there, named in the container's
//! own `~/.my.cnf` (`HOME` is the drill directory). hasteward waits until the pod runs and the
//! server answers (`pg_isready`, `mariadb-admin ping`), restores through the gated stream with
//! the image's own client, and runs the drill's checks with it.

use std::time::{Duration, Instant};

use hasteward_exec::{capture, CommandSpec};
use hasteward_k8s::helper::{helper_pod, HelperSpec};
use hasteward_k8s::{Kube, PodRunner};
use hasteward_model::DbType;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::drill::{DrillServer, PSQL_QUERY_FLAGS};
use crate::pod::{PodAuth, PodDatabase};
use crate::{Error, Result};

/// Where the server keeps its data and socket inside the pod.
pub const DRILL_DIR: &str = "/tmp/hasteward-drill";

/// The PostgreSQL drill server: a fresh cluster with local trust, on a socket only.
const POSTGRES_SCRIPT: &str = r#"set -eu
d=/tmp/hasteward-drill
mkdir -p "$d"
if ! initdb -D "$d/data" -U postgres --auth=trust >"$d/initdb.log" 2>&1; then
  cat "$d/initdb.log"; exit 1
fi
exec postgres -D "$d/data" -c listen_addresses= -c unix_socket_directories="$d" -c fsync=off
"#;

/// The MariaDB/MySQL drill server: a fresh data directory with a password-less root, reachable
/// only through its socket (no TCP), which the client finds in `$HOME/.my.cnf`.
const MARIADB_SCRIPT: &str = r#"set -eu
d=/tmp/hasteward-drill
mkdir -p "$d"
printf '[client]\nsocket=%s/mysqld.sock\nuser=root\n' "$d" >"$d/.my.cnf"
if command -v mariadbd >/dev/null 2>&1; then server=mariadbd; else server=mysqld; fi
if command -v mariadb-install-db >/dev/null 2>&1; then
  mariadb-install-db --no-defaults --datadir="$d/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$d/init.log" 2>&1 || { cat "$d/init.log"; exit 1; }
else
  "$server" --no-defaults --initialize-insecure --datadir="$d/data" >"$d/init.log" 2>&1 \
    || { cat "$d/init.log"; exit 1; }
fi
exec "$server" --no-defaults --datadir="$d/data" --socket="$d/mysqld.sock" \
  --pid-file="$d/server.pid" --skip-networking --innodb-flush-log-at-trx-commit=0
"#;

/// The MariaDB/MySQL client (whichever the image has), with the caller's arguments.
const MARIADB_CLIENT: &str = r#"if command -v mariadb >/dev/null 2>&1; then exec mariadb "$@"; fi
exec mysql "$@""#;

/// The MariaDB/MySQL readiness probe.
const MARIADB_PING: &str = r#"if command -v mariadb-admin >/dev/null 2>&1; then exec mariadb-admin ping; fi
exec mysqladmin ping"#;

/// What the drill pod is made of.
#[derive(Debug, Clone)]
pub struct DrillPodSpec {
    /// Namespace to run it in.
    pub namespace: String,
    /// Name prefix (`<cluster>-drill`); a unique suffix is added.
    pub name_prefix: String,
    /// The database's image.
    pub image: String,
    /// The server flavour: PostgreSQL, MariaDB or MySQL.
    pub db_type: DbType,
    /// `runAsUser`/`runAsGroup` (the image's database user: 26 in CloudNativePG's images, 999
    /// in the official `postgres`, `mariadb` and `mysql` images).
    pub run_as: (i64, i64),
    /// Owner (the database's resource), so its deletion collects a leftover.
    pub owner: Option<OwnerReference>,
    /// The kubelet ends the pod after this long.
    pub deadline: Duration,
    /// How long the server may take to start.
    pub start_timeout: Duration,
}

/// A running drill pod; [`DrillPod::stop`] deletes it.
pub struct DrillPod {
    kube: Kube,
    namespace: String,
    name: String,
    db_type: DbType,
}

impl DrillPod {
    /// Creates the pod, waits until it runs and its server answers. A pod that does not start is
    /// deleted before the error returns.
    pub async fn start(kube: &Kube, spec: &DrillPodSpec) -> Result<DrillPod> {
        let (script, env) = match spec.db_type {
            // Every exec'd client finds the server's socket.
            DbType::Postgres => (POSTGRES_SCRIPT, ("PGHOST", DRILL_DIR)),
            DbType::Mariadb | DbType::Mysql => (MARIADB_SCRIPT, ("HOME", DRILL_DIR)),
            DbType::Mongo => {
                return Err(Error::Usage(
                    "an in-cluster restore drill runs PostgreSQL, MariaDB or MySQL, not mongo"
                        .into(),
                ))
            }
        };
        let mut helper = HelperSpec {
            namespace: spec.namespace.clone(),
            name_prefix: spec.name_prefix.clone(),
            purpose: "restore-drill".into(),
            image: spec.image.clone(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            volume: None,
            node_name: None,
            owner: spec.owner.clone(),
            run_as: Some(spec.run_as),
            deadline: spec.deadline,
            labels: Default::default(),
            env: vec![(env.0.into(), env.1.into())],
            secrets: Vec::new(),
        };
        helper.labels.insert(
            "hasteward.dev/drill-of".into(),
            spec.name_prefix.trim_end_matches("-drill").to_string(),
        );
        let pod = helper_pod(&helper);
        let name = pod.metadata.name.clone().unwrap_or_default();
        kube.start_helper_pod(&pod, spec.start_timeout).await?;
        let drill = DrillPod {
            kube: kube.clone(),
            namespace: spec.namespace.clone(),
            name,
            db_type: spec.db_type,
        };
        if let Err(e) = drill.wait_accepting(spec.start_timeout).await {
            drill.stop().await;
            return Err(e);
        }
        Ok(drill)
    }

    fn runner(&self) -> PodRunner {
        PodRunner::new(&self.kube, &self.namespace, &self.name, "helper")
    }

    /// `pg_isready` until it answers, or `timeout`; the error carries the last answer and the
    /// server's log.
    async fn wait_accepting(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let probe = match self.db_type {
            DbType::Postgres => CommandSpec::new("pg_isready").args(["-U", "postgres"]),
            _ => CommandSpec::new("sh").args(["-c", MARIADB_PING]),
        };
        loop {
            let last = match capture(&self.runner(), &probe).await {
                Ok(c) if c.outcome.success() => return Ok(()),
                Ok(c) => format!("{}: {}", c.stdout_text().trim(), c.outcome),
                Err(e) => e.to_string(),
            };
            // A server that exited (its pod ended) will not answer: say so at once.
            let ended = match self.kube.pod(&self.namespace, &self.name).await {
                Ok(p) => p
                    .status
                    .and_then(|s| s.phase)
                    .is_some_and(|phase| phase == "Succeeded" || phase == "Failed"),
                Err(_) => true,
            };
            if ended || Instant::now() >= deadline {
                let log = self
                    .kube
                    .pod_log_tail(&self.namespace, &self.name, "helper", 20)
                    .await
                    .unwrap_or_default();
                return Err(Error::Database {
                    detail: format!(
                        "the drill server in pod {}/{} {} (readiness probe: {last}); its log ends:\n{}",
                        self.namespace,
                        self.name,
                        if ended {
                            "stopped before it accepted connections".to_string()
                        } else {
                            format!("did not accept connections within {timeout:?}")
                        },
                        log.trim_end()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The restore target: the server in the pod, reached with the pod's own tools.
    pub fn target(&self) -> PodDatabase<PodRunner> {
        let runner = self.runner();
        let location = runner.location();
        let user = match self.db_type {
            DbType::Postgres => "postgres",
            _ => "root",
        };
        PodDatabase::new(runner, location, self.db_type, user, PodAuth::Container)
    }

    /// Deletes the pod (a failure is logged: the deadline and the owner still collect it).
    pub async fn stop(self) {
        if let Err(e) = self
            .kube
            .delete_helper_pod(&self.namespace, &self.name)
            .await
        {
            tracing::warn!(pod = %self.name, "could not delete the drill pod: {e}");
        }
    }
}

impl DrillServer for DrillPod {
    async fn query(&self, database: Option<&str>, sql: &str) -> Result<String> {
        let spec = match self.db_type {
            DbType::Postgres => CommandSpec::new("psql").args(PSQL_QUERY_FLAGS).args([
                "-U",
                "postgres",
                "-d",
                database.unwrap_or("postgres"),
                "-c",
                sql,
            ]),
            _ => {
                let mut spec = CommandSpec::new("sh").args([
                    "-c",
                    MARIADB_CLIENT,
                    "sh",
                    "--batch",
                    "--skip-column-names",
                ]);
                if let Some(db) = database {
                    spec = spec.arg(format!("--database={db}"));
                }
                spec.args(["-e", sql])
            }
        };
        let out = capture(&self.runner(), &spec).await?;
        if !out.outcome.success() {
            return Err(Error::Database {
                detail: format!("pod {}/{}: {}", self.namespace, self.name, out.outcome),
            });
        }
        Ok(out.stdout_text())
    }
}
