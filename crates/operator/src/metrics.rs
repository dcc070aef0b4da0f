//! Prometheus metrics. The earlier tool's names and labels are kept (dashboards and alerts keep
//! working); repository, check, failure-category, leader and scheduler metrics are new.

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry, TextEncoder,
};

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Unix time of the last successful backup.
    pub backup_last_success: GaugeVec,
    /// Seconds the last backup took.
    pub backup_last_duration: GaugeVec,
    /// Backups by outcome.
    pub backup_total: CounterVec,
    /// Bytes of the last backup's stream.
    pub backup_size: GaugeVec,
    /// Failed runs by category (the error code: `restic.locked`, `dump.failed`, ...).
    pub failures_total: CounterVec,
    /// Retention runs by outcome.
    pub retention_total: CounterVec,
    /// Unix time of the last triage.
    pub triage_last_run: GaugeVec,
    /// Ready instances at the last triage.
    pub triage_healthy_instances: GaugeVec,
    /// Instances at the last triage.
    pub triage_total_instances: GaugeVec,
    /// One-hot triage result.
    pub triage_result: GaugeVec,
    /// Repairs by outcome.
    pub repair_total: CounterVec,
    /// Unix time of the last repair.
    pub repair_last: GaugeVec,
    /// Restore drills by outcome.
    pub drill_total: CounterVec,
    /// Unix time of the last successful restore drill.
    pub drill_last_success: GaugeVec,
    /// The last successful drill's restore time (the recovery time), seconds.
    pub drill_restore_seconds: GaugeVec,
    /// Snapshots in a repository.
    pub repository_snapshots: GaugeVec,
    /// Restored size of all snapshots.
    pub repository_total_size: GaugeVec,
    /// Stored bytes after deduplication.
    pub repository_dedup_size: GaugeVec,
    /// Unix time of the last successful check.
    pub check_last_success: GaugeVec,
    /// Seconds the last check took.
    pub check_last_duration: GaugeVec,
    /// 1 when the last check found the repository healthy, 0 when damaged or failed.
    pub check_healthy: GaugeVec,
    /// Checks by outcome (`healthy`, `damaged`, `failed`).
    pub check_total: CounterVec,
    /// Databases scheduled, by engine.
    pub managed_databases: GaugeVec,
    /// Planning passes over each target, by engine and outcome (`ok`, `invalid`).
    pub reconcile_total: CounterVec,
    /// Copies between repositories by outcome.
    pub sync_total: CounterVec,
    /// Snapshots copied between repositories.
    pub sync_copied_total: CounterVec,
    /// Unix time of the last successful copy.
    pub sync_last_success: GaugeVec,
    /// Webhook deliveries by kind, channel and result.
    pub notifications_total: CounterVec,
    /// 1 on the replica that holds the leader Lease.
    pub leader: Gauge,
    /// Runs in progress.
    pub running: Gauge,
    /// Seconds one planning pass takes (resolve + schedule + decide).
    pub plan_seconds: Histogram,
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

const DB: &[&str] = &["engine", "cluster", "namespace"];
const DB_REPO: &[&str] = &["engine", "cluster", "namespace", "repository"];
const DB_REPO_STATUS: &[&str] = &["engine", "cluster", "namespace", "repository", "status"];
const REPO: &[&str] = &["repository"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let leader = Gauge::new(
            "hasteward_leader",
            "1 on the replica holding the leader Lease, else 0",
        )
        .expect("valid metric");
        r.register(Box::new(leader.clone())).expect("unique metric");
        let running = Gauge::new("hasteward_runs_in_progress", "Operations running now")
            .expect("valid metric");
        r.register(Box::new(running.clone()))
            .expect("unique metric");
        let plan_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hasteward_plan_duration_seconds",
                "Seconds one planning pass over every target takes",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(plan_seconds.clone()))
            .expect("unique metric");
        Self {
            backup_last_success: gauge(
                &r,
                "hasteward_backup_last_success_timestamp",
                "Unix time of the last successful backup",
                DB_REPO,
            ),
            backup_last_duration: gauge(
                &r,
                "hasteward_backup_last_duration_seconds",
                "Seconds the last backup took",
                DB_REPO,
            ),
            backup_total: counter(
                &r,
                "hasteward_backup_total",
                "Backups by outcome",
                DB_REPO_STATUS,
            ),
            backup_size: gauge(
                &r,
                "hasteward_backup_size_bytes",
                "Bytes of the last backup's dump stream",
                DB_REPO,
            ),
            failures_total: counter(
                &r,
                "hasteward_failures_total",
                "Failed operations by operation and category",
                &["operation", "category"],
            ),
            retention_total: counter(
                &r,
                "hasteward_retention_total",
                "Retention runs after backups by outcome",
                DB_REPO_STATUS,
            ),
            triage_last_run: gauge(
                &r,
                "hasteward_triage_last_run_timestamp",
                "Unix time of the last triage",
                DB,
            ),
            triage_healthy_instances: gauge(
                &r,
                "hasteward_triage_healthy_instances",
                "Ready instances at the last triage",
                DB,
            ),
            triage_total_instances: gauge(
                &r,
                "hasteward_triage_total_instances",
                "Instances at the last triage",
                DB,
            ),
            triage_result: gauge(
                &r,
                "hasteward_triage_result",
                "Last triage result, one-hot",
                &["engine", "cluster", "namespace", "result"],
            ),
            repair_total: counter(
                &r,
                "hasteward_repair_total",
                "Repairs by outcome",
                &["engine", "cluster", "namespace", "status"],
            ),
            repair_last: gauge(
                &r,
                "hasteward_repair_last_timestamp",
                "Unix time of the last repair",
                DB,
            ),
            drill_total: counter(
                &r,
                "hasteward_drill_total",
                "Restore drills by outcome",
                &["engine", "cluster", "namespace", "status"],
            ),
            drill_last_success: gauge(
                &r,
                "hasteward_drill_last_success_timestamp",
                "Unix time of the last successful restore drill",
                DB,
            ),
            drill_restore_seconds: gauge(
                &r,
                "hasteward_drill_restore_seconds",
                "Restore time of the last successful drill (the recovery time)",
                DB,
            ),
            repository_snapshots: gauge(
                &r,
                "hasteward_repository_snapshots",
                "Snapshots in the repository (renamed from the earlier tool's never-set hasteward_repository_snapshot_count: promtool rejects _count on a gauge)",
                REPO,
            ),
            repository_total_size: gauge(
                &r,
                "hasteward_repository_total_size_bytes",
                "Restored size of every snapshot",
                REPO,
            ),
            repository_dedup_size: gauge(
                &r,
                "hasteward_repository_deduplicated_size_bytes",
                "Bytes stored after deduplication",
                REPO,
            ),
            check_last_success: gauge(
                &r,
                "hasteward_repository_check_last_success_timestamp",
                "Unix time of the last check that found the repository healthy",
                REPO,
            ),
            check_last_duration: gauge(
                &r,
                "hasteward_repository_check_last_duration_seconds",
                "Seconds the last check took",
                REPO,
            ),
            check_healthy: gauge(
                &r,
                "hasteward_repository_check_result",
                "1 when the last check found the repository healthy, 0 when damaged or failed",
                REPO,
            ),
            check_total: counter(
                &r,
                "hasteward_repository_check_total",
                "Checks by outcome (healthy, damaged, failed)",
                &["repository", "result"],
            ),
            managed_databases: gauge(
                &r,
                "hasteward_managed_databases",
                "Databases with a valid schedule",
                &["engine"],
            ),
            reconcile_total: counter(
                &r,
                "hasteward_controller_reconcile_total",
                "Planning passes over each target by outcome",
                &["engine", "status"],
            ),
            sync_total: counter(
                &r,
                "hasteward_repository_sync_total",
                "Copies between repositories by outcome",
                &["source", "destination", "result"],
            ),
            sync_copied_total: counter(
                &r,
                "hasteward_repository_sync_copied_snapshots_total",
                "Snapshots copied between repositories",
                &["source", "destination"],
            ),
            sync_last_success: gauge(
                &r,
                "hasteward_repository_sync_last_success_timestamp",
                "Unix time of the last successful copy between repositories",
                &["source", "destination"],
            ),
            notifications_total: counter(
                &r,
                "hasteward_notifications_total",
                "Webhook notifications by kind, channel (webhook, slack) and result",
                &["kind", "channel", "result"],
            ),
            leader,
            running,
            plan_seconds,
            registry: r,
        }
    }

    /// Forgets every per-target gauge: a replica that stops leading must not keep exporting
    /// its last values next to the new leader's (counters stay: they are this process's own).
    pub fn reset_gauges(&self) {
        for g in [
            &self.backup_last_success,
            &self.backup_last_duration,
            &self.backup_size,
            &self.triage_last_run,
            &self.triage_healthy_instances,
            &self.triage_total_instances,
            &self.triage_result,
            &self.repair_last,
            &self.drill_last_success,
            &self.drill_restore_seconds,
            &self.repository_snapshots,
            &self.repository_total_size,
            &self.repository_dedup_size,
            &self.check_last_success,
            &self.check_last_duration,
            &self.check_healthy,
            &self.managed_databases,
            &self.sync_last_success,
        ] {
            g.reset();
        }
        self.running.set(0.0);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
