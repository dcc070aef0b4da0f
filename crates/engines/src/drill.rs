//! Restore drills: a snapshot restored into a throwaway server (a local one,
//! [`crate::scratch`], or a temporary pod in the cluster, [`crate::drillpod`]) and checked, so a backup is known to restore before the day it must. The restore goes through the
//! same gated stream as a real one (checksum compared before the client sees end of stream); then
//! every database the dump holds must exist with at least one table and one row, and every
//! user assertion must return true. The restore's duration is the drill's recovery time.

use std::future::Future;
use std::time::Instant;

use hasteward_model::{DbType, SnapshotLabels};
use hasteward_restic::Restic;
use serde::Serialize;

use crate::drillpod::{DrillPod, DrillPodSpec};
use crate::flows::{self, RestoreOptions, SnapshotSelector, StreamSettings};
use crate::scratch::ScratchServer;
use crate::target::Target;
use crate::{Error, Result};

/// `psql` flags for a query whose rows come back as tab-separated text, stopping at an error.
pub(crate) const PSQL_QUERY_FLAGS: [&str; 7] =
    ["-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"];

/// A throwaway server a drill restores into and queries.
pub trait DrillServer: Sync {
    /// Runs one query (in `database`, or the default one); its rows as tab-separated text.
    fn query(
        &self,
        database: Option<&str>,
        sql: &str,
    ) -> impl Future<Output = Result<String>> + Send;
}

impl DrillServer for ScratchServer {
    async fn query(&self, database: Option<&str>, sql: &str) -> Result<String> {
        ScratchServer::query(self, database, sql).await
    }
}

/// What a drill checks beyond the built-in sanity checks.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// SQL that must return a true value (`t`, `true`, `1`).
    pub assertions: Vec<String>,
    /// The database the assertions run in (default: the first restored one).
    pub assert_database: Option<String>,
}

/// One restored database.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCheck {
    /// Name.
    pub name: String,
    /// Base tables in it.
    pub tables: u64,
    /// Rows in all of them (exact counts).
    pub rows: u64,
}

/// One assertion and its answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssertionResult {
    /// The SQL.
    pub sql: String,
    /// What it returned.
    pub answer: String,
    /// Whether that is true.
    pub passed: bool,
}

/// A drill's findings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Bytes streamed.
    pub bytes: u64,
    /// The restore's duration (the recovery time), seconds.
    pub restore_seconds: f64,
    /// Per database.
    pub databases: Vec<DatabaseCheck>,
    /// User assertions.
    pub assertions: Vec<AssertionResult>,
    /// What failed (empty when the drill passed).
    pub problems: Vec<String>,
}

/// Restores the snapshot `labels`/`selector` names into a throwaway server and checks it.
/// A restore or check that fails is [`Error::DrillFailed`] with the findings.
pub async fn restore_drill(
    restic: &Restic,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    settings: &StreamSettings,
    options: &DrillOptions,
) -> Result<DrillResult> {
    let db_type = labels.db_type.ok_or_else(|| {
        Error::Usage("a restore drill needs the snapshot's database type (--db-type)".into())
    })?;
    let server = ScratchServer::start(db_type).await?;
    let outcome = match server
        .target()
        .and_then(|t| crate::standalone::HostEndpoint::prepare(&t))
    {
        Ok(target) => {
            drill(
                &server, &target, restic, labels, selector, settings, options,
            )
            .await
        }
        Err(e) => Err(e),
    };
    server.stop().await;
    verdict(outcome?)
}

/// [`restore_drill`] into a temporary pod running the database's image (`spec`), deleted on
/// every path.
pub async fn restore_drill_in_pod(
    kube: &hasteward_k8s::Kube,
    spec: &DrillPodSpec,
    restic: &Restic,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    settings: &StreamSettings,
    options: &DrillOptions,
) -> Result<DrillResult> {
    if labels.db_type != Some(spec.db_type) {
        return Err(Error::Usage(format!(
            "the drill pod runs {} but the snapshot's database type is {}",
            spec.db_type,
            labels
                .db_type
                .map(|d| d.to_string())
                .unwrap_or_else(|| "unknown".into())
        )));
    }
    let pod = DrillPod::start(kube, spec).await?;
    let target = pod.target();
    let outcome = drill(&pod, &target, restic, labels, selector, settings, options).await;
    pod.stop().await;
    verdict(outcome?)
}

/// A drill with problems is [`Error::DrillFailed`], carrying its findings.
fn verdict(result: DrillResult) -> Result<DrillResult> {
    if result.problems.is_empty() {
        Ok(result)
    } else {
        Err(Error::DrillFailed {
            message: format!(
                "restore drill of snapshot {} failed: {}",
                &result.snapshot_id[..8.min(result.snapshot_id.len())],
                result.problems.join("; ")
            ),
            result: Box::new(result),
        })
    }
}

async fn drill<S: DrillServer, T: Target>(
    server: &S,
    target: &T,
    restic: &Restic,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    settings: &StreamSettings,
    options: &DrillOptions,
) -> Result<DrillResult> {
    let started = Instant::now();
    let restored = flows::restore(
        restic,
        target,
        labels,
        selector,
        &RestoreOptions::default(),
        settings,
    )
    .await?;
    let restore_seconds = started.elapsed().as_secs_f64();
    let mut problems = Vec::new();
    let mut databases = Vec::new();
    if restored.databases.is_empty() {
        problems.push("the dump holds no user database".into());
    }
    for name in &restored.databases {
        match count(server, db_type_of(labels), name).await {
            Ok((tables, rows)) => {
                if tables == 0 {
                    problems.push(format!("database {name} has no tables"));
                } else if rows == 0 {
                    problems.push(format!("database {name} has {tables} tables but no rows"));
                }
                databases.push(DatabaseCheck {
                    name: name.clone(),
                    tables,
                    rows,
                });
            }
            Err(e) => problems.push(format!("database {name} cannot be read: {e}")),
        }
    }
    let assert_db = options
        .assert_database
        .clone()
        .or_else(|| restored.databases.first().cloned());
    let mut assertions = Vec::new();
    for sql in &options.assertions {
        let answer = server.query(assert_db.as_deref(), sql).await;
        let (answer, passed) = match answer {
            Ok(a) => {
                let a = a.trim().to_string();
                let passed = matches!(a.to_ascii_lowercase().as_str(), "t" | "true" | "1");
                (a, passed)
            }
            Err(e) => (format!("error: {e}"), false),
        };
        if !passed {
            problems.push(format!("assertion `{sql}` returned `{answer}`"));
        }
        assertions.push(AssertionResult {
            sql: sql.clone(),
            answer,
            passed,
        });
    }
    Ok(DrillResult {
        snapshot_id: restored.snapshot_id,
        bytes: restored.bytes,
        restore_seconds,
        databases,
        assertions,
        problems,
    })
}

fn db_type_of(labels: &SnapshotLabels) -> DbType {
    labels.db_type.unwrap_or(DbType::Postgres)
}

/// Base tables and their exact total row count in `database`.
async fn count<S: DrillServer>(server: &S, db: DbType, database: &str) -> Result<(u64, u64)> {
    let tables = match db {
        DbType::Postgres => {
            server
                .query(
                    Some(database),
                    "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
                )
                .await?
        }
        _ => {
            server
                .query(
                    Some(database),
                    "SELECT CONCAT('`', REPLACE(TABLE_NAME, '`', '``'), '`') FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
                )
                .await?
        }
    };
    let names: Vec<&str> = tables
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut rows = 0u64;
    for quoted in &names {
        // Identifiers come from the catalog, quoted by the server itself.
        let n = server
            .query(Some(database), &format!("SELECT count(*) FROM {quoted}"))
            .await?;
        rows += n.trim().parse::<u64>().unwrap_or(0);
    }
    Ok((names.len() as u64, rows))
}
