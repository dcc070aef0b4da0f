//! The operator's main loop.
//!
//! Every replica watches (caches stay warm) and serves `/metrics`, `/livez`, `/readyz`; only the
//! holder of the leader Lease plans and runs. Leading is a loop of short, idempotent passes —
//! read the caches, resolve, re-plan the schedule book, write the status that changed, start
//! what is due as tracked tasks — woken by any watch event, the next due time, a finished run,
//! or a heartbeat. All status writes happen here, in order, so a run's result and a schedule
//! change never overwrite each other's conditions.
//!
//! Losing the Lease or a shutdown stops new runs; running ones get `shutdown_grace` to finish,
//! then are cancelled (the gated stream aborts restic before end of stream: no snapshot), and
//! the Lease is released so a standby takes over at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hasteward_api::{
    annotations, BackupPolicy, BackupRepository, Condition, CONDITION_LAST_BACKUP, CONDITION_READY,
};
use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::LeaseGuard;
use hasteward_k8s::Kube;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::cache::{self, Caches, WatchScope};
use crate::clock::Clock;
use crate::config::{self, DatabaseTarget, Desired, TargetEngine};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::notify::{transition, Delivery, Notice, Notifier};
use crate::repair::{self, RepairOutcome, RepairResult};
use crate::runner::{
    self, BackupOutcome, CheckOutcome, DrillOutcome, RunEnv, SyncOutcome, TriageOutcome,
};
use crate::scheduler::{JobKey, JobKind, Scheduler};
use crate::status::{self, condition, condition_differs, rfc3339, with_condition, Writer};

/// How `serve` runs.
#[derive(Clone)]
pub struct ServeOptions {
    /// What to watch.
    pub scope: WatchScope,
    /// Namespace of the leader Lease.
    pub lease_namespace: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Runs at a time, in all.
    pub concurrency: usize,
    /// What runs need.
    pub run_env: RunEnv,
    /// How long running operations may finish after a shutdown or a lost Lease.
    pub shutdown_grace: Duration,
    /// How often a standby tries to take the Lease.
    pub election_retry: Duration,
    /// A Secret in `lease_namespace` with `webhook-url` and/or `slack-url` for notifications.
    pub notify_secret: Option<String>,
}

/// Why `serve` stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The metrics/health listener failed.
    #[error("serving /metrics and health: {0}")]
    Http(#[from] std::io::Error),
    /// The HTTPS client for notifications could not be built (no usable root certificates).
    #[error("setting up webhook notifications: {0}")]
    Notify(std::io::Error),
}

/// What a finished run reports to the loop.
enum Report {
    Backup {
        key: JobKey,
        target: Box<DatabaseTarget>,
        outcome: BackupOutcome,
    },
    Check {
        repository: String,
        outcome: CheckOutcome,
    },
    Triage {
        target: Box<DatabaseTarget>,
        outcome: TriageOutcome,
        /// `mode: repair` and not healthy: the unattended repair that followed.
        repair: Option<RepairOutcome>,
    },
    Sync {
        from: String,
        to: String,
        outcome: SyncOutcome,
    },
    Drill {
        target: Box<DatabaseTarget>,
        outcome: DrillOutcome,
    },
}

/// The shared parts.
struct Ctx {
    opts: ServeOptions,
    notifier: Notifier,
    kube: Kube,
    caches: Caches,
    writer: Writer,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    clock: Arc<dyn Clock>,
    changed: Arc<Notify>,
    synced: tokio::sync::watch::Receiver<bool>,
}

/// Runs the operator until `shutdown`.
pub async fn serve(
    kube: Kube,
    opts: ServeOptions,
    listener: tokio::net::TcpListener,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    health.beat();
    let http_stop = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        http_stop.clone(),
    ));
    let changed = Arc::new(Notify::new());
    let (caches, watch_tasks) = cache::start(
        kube.client.clone(),
        &opts.scope,
        changed.clone(),
        health.clone(),
    );
    // One waiter only: a store's readiness wakes just the last task that polled it
    // (kube-runtime's DelayedInit keeps one waker), so everyone else watches this flag.
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    {
        let caches = caches.clone();
        let health = health.clone();
        tokio::spawn(async move {
            caches.wait_synced().await;
            health.set_synced(true);
            let _ = synced_tx.send(true);
        });
    }
    let notifier = Notifier::new(
        kube.clone(),
        opts.notify_secret
            .clone()
            .map(|name| (opts.lease_namespace.clone(), name)),
    )
    .map_err(ServeError::Notify)?;
    let ctx = Ctx {
        notifier,
        writer: Writer::new(kube.client.clone(), &opts.identity),
        opts,
        kube,
        caches,
        metrics,
        health,
        clock,
        changed,
        synced,
    };
    while !shutdown.is_cancelled() {
        let Some(guard) = elect(&ctx, &shutdown).await else {
            break;
        };
        tracing::info!(identity = %ctx.opts.identity, "leading");
        ctx.health.set_leader(true);
        ctx.metrics.leader.set(1.0);
        lead(&ctx, &guard, &shutdown).await;
        ctx.health.set_leader(false);
        ctx.metrics.leader.set(0.0);
        ctx.metrics.reset_gauges();
        if let Err(e) = guard.release().await {
            tracing::warn!("releasing the leader Lease failed (it expires by itself): {e}");
        }
        tracing::info!(identity = %ctx.opts.identity, "no longer leading");
    }
    for t in watch_tasks {
        t.abort();
    }
    http_stop.cancel();
    match http_task.await {
        Ok(r) => r?,
        Err(e) => tracing::warn!("the HTTP task ended abnormally: {e}"),
    }
    Ok(())
}

/// Waits for the leader Lease (or shutdown).
async fn elect(ctx: &Ctx, shutdown: &CancellationToken) -> Option<LeaseGuard> {
    let mut logged_holder = String::new();
    loop {
        ctx.health.beat();
        match ctx
            .kube
            .acquire_lease(
                &ctx.opts.lease_namespace,
                &ctx.opts.lease_name,
                &ctx.opts.identity,
            )
            .await
        {
            Ok(guard) => return Some(guard),
            Err(hasteward_k8s::Error::Busy { holder, .. }) => {
                ctx.health.api_ok();
                if holder != logged_holder {
                    tracing::info!("standby: {holder} leads");
                    logged_holder = holder;
                }
            }
            Err(e) => tracing::warn!("taking the leader Lease failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.opts.election_retry) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Leads until shutdown or the Lease is lost.
async fn lead(ctx: &Ctx, guard: &LeaseGuard, shutdown: &CancellationToken) {
    let mut book = Scheduler::new(ctx.opts.concurrency);
    let runs_cancel = CancellationToken::new();
    let mut runs: JoinSet<Report> = JoinSet::new();
    let mut ids: HashMap<tokio::task::Id, JobKey> = HashMap::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
    // Plan only from complete lists: a policy not listed yet would read as missing.
    let mut synced = ctx.synced.clone();
    loop {
        // Keep beating: a kind whose list keeps failing must not get the pod restarted in a
        // loop while it holds the Lease (it says why in the log).
        ctx.health.beat();
        tokio::select! {
            _ = synced.wait_for(|s| *s) => break,
            _ = heartbeat.tick() => {
                if guard.lost() {
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
    let mut memory = Memory::default();
    seed_metrics(ctx, &mut memory);
    let mut lease_check = tokio::time::interval(Duration::from_secs(2));
    let mut lost = false;
    loop {
        ctx.health.beat();
        if guard.lost() {
            tracing::warn!("the leader Lease could not be renewed: stepping down at once");
            lost = true;
            break;
        }
        let started = Instant::now();
        let desired = config::resolve(&ctx.caches.inputs());
        let now = ctx.clock.now();
        book.update(desired.jobs(), now);
        let decisions = book.take_due(now);
        ctx.metrics
            .plan_seconds
            .observe(started.elapsed().as_secs_f64());
        write_plan_status(ctx, &desired, &book, &mut memory).await;
        forget_stale_series(ctx, &desired, &mut memory);
        for skipped in &decisions.skipped {
            announce_skip(ctx, &desired, &skipped.key).await;
        }
        for start in decisions.start {
            match spawn_run(
                ctx,
                &desired,
                &memory,
                start.key.clone(),
                &mut runs,
                &runs_cancel,
            ) {
                Some(id) => {
                    ids.insert(id, start.key);
                }
                None => book.finished(&start.key),
            }
        }
        ctx.metrics.running.set(book.running_count() as f64);
        let wake = book.next_wake_after(now);
        let sleep = async {
            match wake {
                Some(t) => ctx.clock.sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctx.changed.notified() => {}
            _ = sleep => {}
            Some(done) = runs.join_next_with_id() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                match done {
                    Ok((_, report)) => record(ctx, report, &mut memory).await,
                    Err(e) => tracing::error!("a run task failed: {e}"),
                }
                // A panicked run frees its slot too.
                if let Some(key) = ids.remove(&id) {
                    book.finished(&key);
                }
            }
            _ = heartbeat.tick() => {
                // Renewals keep succeeding (or `lost` would be set): the API is reachable even
                // when nothing changes for hours.
                if !guard.lost() {
                    ctx.health.api_ok();
                }
            }
            _ = lease_check.tick() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Stop. On shutdown, running operations get the grace period to finish; after a lost Lease
    // none (another replica may already lead, and must not race them). Then they are cancelled
    // (a cancelled stream never commits), and after CANCEL_WAIT aborted: dropping a run kills
    // its child processes. A cancelled run records nothing, so the next leader catches it up.
    if !runs.is_empty() {
        let grace = if lost {
            Duration::ZERO
        } else {
            ctx.opts.shutdown_grace
        };
        tracing::info!(
            "waiting up to {} s for {} running operation(s)",
            grace.as_secs(),
            runs.len()
        );
        drain(ctx, &mut runs, &mut memory, grace, !lost).await;
        if !runs.is_empty() {
            tracing::warn!(
                "cancelling {} operation(s); nothing partial is committed",
                runs.len()
            );
            runs_cancel.cancel();
            drain(ctx, &mut runs, &mut memory, CANCEL_WAIT, !lost).await;
        }
        if !runs.is_empty() {
            tracing::warn!("aborting {} operation(s) that did not stop", runs.len());
            runs.abort_all();
            while runs.join_next().await.is_some() {}
        }
    }
    ctx.metrics.running.set(0.0);
}

fn is_cancelled(e: &hasteward_engines::Error) -> bool {
    e.code() == "cancelled"
}

/// Whether any part of a backup run was cancelled (shutdown, lost Lease).
fn outcome_cancelled(outcome: &BackupOutcome) -> bool {
    outcome.target_error.as_ref().is_some_and(is_cancelled)
        || outcome.repositories.iter().any(|r| {
            r.backup.as_ref().err().is_some_and(is_cancelled)
                || matches!(&r.retention, Some(Err(e)) if is_cancelled(e))
        })
}

/// How long cancelled runs get to wind down before they are aborted.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Collects finished runs for up to `limit`, recording them when `write` (a replica that lost
/// the Lease writes nothing: the new leader owns the status).
async fn drain(
    ctx: &Ctx,
    runs: &mut JoinSet<Report>,
    memory: &mut Memory,
    limit: Duration,
    write: bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !runs.is_empty() {
        ctx.health.beat();
        tokio::select! {
            Some(done) = runs.join_next() => {
                if let (Ok(report), true) = (done, write) {
                    record(ctx, report, memory).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Last-success times from the recorded status, so "backup too old" alerts work from the first
/// scrape after a restart or a leader change, not only after the next success.
fn seed_metrics(ctx: &Ctx, memory: &mut Memory) {
    let desired = config::resolve(&ctx.caches.inputs());
    for t in &desired.databases {
        let Some(settings) = &t.backup else { continue };
        let last_success = recorded(
            ctx,
            t,
            |s| s.last_successful_backup,
            annotations::LAST_SUCCESSFUL_BACKUP,
        );
        let Some(at) = last_success
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            continue;
        };
        for repo in &settings.repositories {
            ctx.metrics
                .backup_last_success
                .with_label_values(&[t.engine.as_str(), &t.name, &t.namespace, repo])
                .set(at.timestamp() as f64);
        }
        memory.backup_series.insert(
            t.key(),
            (
                target_labels(t),
                settings.repositories.iter().cloned().collect(),
            ),
        );
    }
    for r in ctx.caches.repositories.state() {
        let (Some(name), Some(status)) = (&r.metadata.name, &r.status) else {
            continue;
        };
        if let Some(n) = status.snapshot_count {
            ctx.metrics
                .repository_snapshots
                .with_label_values(&[name])
                .set(n as f64);
        }
        if status.last_check_result.as_deref() == Some("healthy") {
            if let Some(at) = status
                .last_check
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            {
                ctx.metrics
                    .check_last_success
                    .with_label_values(&[name])
                    .set(at.timestamp() as f64);
                ctx.metrics
                    .check_healthy
                    .with_label_values(&[name])
                    .set(1.0);
            }
        } else if status.last_check_result.is_some() {
            ctx.metrics
                .check_healthy
                .with_label_values(&[name])
                .set(0.0);
        }
    }
}

/// What the leader wrote, so writes build on its own latest state rather than a cache that
/// may lag by one event, and problems are announced once.
#[derive(Default)]
struct Memory {
    /// Conditions last written per object key.
    conditions: HashMap<String, Vec<Condition>>,
    /// `nextBackup` last written per database key.
    next: HashMap<String, Option<String>>,
    /// Problems announced per object key (their messages joined).
    announced: HashMap<String, String>,
    /// Annotated databases marked `managed`.
    managed: HashMap<String, bool>,
    /// The last result written per object key (`success`/`failure`, `healthy`/...), for
    /// notifications on transitions.
    results: HashMap<String, String>,
    /// Per-target backup gauges set, by target key: labels and the repositories.
    backup_series: HashMap<String, (TargetLabels, std::collections::BTreeSet<String>)>,
    /// Per-target triage gauges set, by target key.
    triage_series: HashMap<String, TargetLabels>,
    /// Per target key, the fingerprint of an unattended repair that ran and did not heal the
    /// cluster: not repeated until a triage finds it healthy.
    unhealed: HashMap<String, String>,
}

/// engine, cluster (name), namespace.
type TargetLabels = [String; 3];

fn target_labels(t: &DatabaseTarget) -> TargetLabels {
    [
        t.engine.as_str().to_string(),
        t.name.clone(),
        t.namespace.clone(),
    ]
}

/// Drops the gauges of targets (or repositories of targets) no longer scheduled: a deleted or
/// suspended database must not keep a frozen "last success" that fires `BackupTooOld`.
fn forget_stale_series(ctx: &Ctx, desired: &Desired, memory: &mut Memory) {
    let m = &ctx.metrics;
    let wanted: HashMap<String, Vec<String>> = desired
        .databases
        .iter()
        .filter_map(|t| Some((t.key(), t.backup.as_ref()?.repositories.clone())))
        .collect();
    memory.backup_series.retain(|key, (labels, repos)| {
        let keep = wanted.get(key).cloned().unwrap_or_default();
        repos.retain(|repo| {
            if keep.contains(repo) {
                return true;
            }
            let l = [
                labels[0].as_str(),
                labels[1].as_str(),
                labels[2].as_str(),
                repo.as_str(),
            ];
            for g in [
                &m.backup_last_success,
                &m.backup_last_duration,
                &m.backup_size,
            ] {
                let _ = g.remove_label_values(&l);
            }
            false
        });
        !repos.is_empty()
    });
    let triaged: std::collections::HashSet<String> = desired
        .databases
        .iter()
        .filter(|t| t.triage.is_some())
        .map(DatabaseTarget::key)
        .collect();
    memory.triage_series.retain(|key, labels| {
        if triaged.contains(key) {
            return true;
        }
        let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        for g in [
            &m.triage_last_run,
            &m.triage_healthy_instances,
            &m.triage_total_instances,
        ] {
            let _ = g.remove_label_values(&l);
        }
        for r in ["healthy", "unhealthy", "undeterminable", "split_brain"] {
            let _ = m.triage_result.remove_label_values(&[l[0], l[1], l[2], r]);
        }
        false
    });
}

/// Sends a notice in the background (a slow webhook must not hold up the loop).
fn notify(ctx: &Ctx, notice: Notice) {
    let notifier = ctx.notifier.clone();
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        for (channel, delivery) in notifier.send(&notice).await {
            let result = match delivery {
                Delivery::Delivered => "delivered",
                Delivery::Failed => "failed",
            };
            let channel = if channel == "slack-url" {
                "slack"
            } else {
                "webhook"
            };
            metrics
                .notifications_total
                .with_label_values(&[notice.kind, channel, result])
                .inc();
        }
    });
}

fn problems_text(problems: &[config::Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn next_text(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(rfc3339)
}

/// The Ready condition of a policy or repository: valid, or the first problem's reason with
/// every problem's message.
fn validity(
    problems: &[config::Problem],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    match problems.first() {
        None => condition(CONDITION_READY, true, "Valid", "", generation, now),
        Some(first) => condition(
            CONDITION_READY,
            false,
            first.reason,
            problems_text(problems),
            generation,
            now,
        ),
    }
}

/// The Ready condition of a database target.
fn database_ready(t: &DatabaseTarget, now: DateTime<Utc>) -> Condition {
    if !t.problems.is_empty() {
        return condition(
            CONDITION_READY,
            false,
            t.problems[0].reason,
            problems_text(&t.problems),
            t.generation,
            now,
        );
    }
    if let Some(reason) = t.idle {
        let message = match reason {
            "Suspended" => "spec.suspend is true: nothing is scheduled",
            _ => "the policy's mode is disabled: nothing is scheduled",
        };
        return condition(CONDITION_READY, false, reason, message, t.generation, now);
    }
    let message = match &t.backup {
        Some(b) => format!(
            "backups at `{}` ({}) into {}",
            b.schedule.expression,
            b.schedule.timezone(),
            b.repositories.join(", ")
        ),
        None => "nothing to schedule".into(),
    };
    condition(
        CONDITION_READY,
        true,
        "Scheduled",
        message,
        t.generation,
        now,
    )
}

async fn write_plan_status(ctx: &Ctx, desired: &Desired, book: &Scheduler, memory: &mut Memory) {
    let now = ctx.clock.now();
    let mut managed: BTreeMap<&str, f64> = BTreeMap::new();
    for engine in [
        TargetEngine::Standalone,
        TargetEngine::Cnpg,
        TargetEngine::Galera,
    ] {
        managed.insert(engine.as_str(), 0.0);
    }
    for t in &desired.databases {
        let key = t.key();
        let outcome = if t.problems.is_empty() {
            "ok"
        } else {
            "invalid"
        };
        ctx.metrics
            .reconcile_total
            .with_label_values(&[t.engine.as_str(), outcome])
            .inc();
        if t.backup.is_some() {
            *managed.entry(t.engine.as_str()).or_default() += 1.0;
        }
        announce_problems(ctx, memory, &key, &t.problems, || {
            status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t))
        })
        .await;
        match t.engine {
            TargetEngine::Standalone => {
                let Some(obj) = ctx.caches.standalone(&t.namespace, &t.name) else {
                    continue;
                };
                let cached = obj.status.clone().unwrap_or_default();
                let base = memory
                    .conditions
                    .get(&key)
                    .cloned()
                    .unwrap_or(cached.conditions.clone());
                let ready = database_ready(t, now);
                let next = next_text(book.next_run(&JobKey {
                    target: key.clone(),
                    kind: JobKind::Backup,
                }));
                let next_known = memory
                    .next
                    .get(&key)
                    .cloned()
                    .unwrap_or(cached.next_backup.clone());
                if !condition_differs(&base, &ready)
                    && next_known == next
                    && cached.observed_generation == t.generation
                {
                    continue;
                }
                let conditions = with_condition(&base, ready);
                let patch = json!({
                    "conditions": conditions,
                    "observedGeneration": t.generation,
                    "nextBackup": next,
                });
                match ctx
                    .writer
                    .standalone_status(&t.namespace, &t.name, patch)
                    .await
                {
                    Ok(()) => {
                        ctx.health.api_ok();
                        memory.conditions.insert(key.clone(), conditions);
                        memory.next.insert(key, next);
                    }
                    Err(e) => tracing::warn!("writing the status of {key} failed: {e}"),
                }
            }
            TargetEngine::Cnpg | TargetEngine::Galera => {
                let want = t.backup.is_some() || t.triage.is_some();
                if memory.managed.get(&key) != Some(&want) && want {
                    let r = ctx
                        .writer
                        .annotate(
                            t.engine,
                            &t.namespace,
                            &t.name,
                            json!({ annotations::MANAGED: "true" }),
                        )
                        .await;
                    match r {
                        Ok(()) => {
                            memory.managed.insert(key, want);
                        }
                        Err(e) => tracing::warn!("annotating {key} failed: {e}"),
                    }
                }
            }
        }
    }
    for (engine, n) in managed {
        ctx.metrics
            .managed_databases
            .with_label_values(&[engine])
            .set(n);
    }
    for (name, verdict) in &desired.policies {
        let Some(obj) = ctx.caches.policy(name) else {
            continue;
        };
        let key = format!("policy/{name}");
        let generation = obj.metadata.generation;
        let ready = validity(&verdict.problems, generation, now);
        announce_problems(ctx, memory, &key, &verdict.problems, || {
            status::cluster_reference::<BackupPolicy>(name, obj.metadata.uid.clone())
        })
        .await;
        let cached = obj.status.clone().unwrap_or_default();
        let base = memory
            .conditions
            .get(&key)
            .cloned()
            .unwrap_or(cached.conditions.clone());
        if !condition_differs(&base, &ready)
            && cached.databases == Some(verdict.databases)
            && cached.observed_generation == generation
        {
            continue;
        }
        let conditions = with_condition(&base, ready);
        let patch = json!({ "conditions": conditions, "observedGeneration": generation, "databases": verdict.databases });
        match ctx.writer.policy_status(name, patch).await {
            Ok(()) => {
                memory.conditions.insert(key, conditions);
            }
            Err(e) => tracing::warn!("writing the status of policy {name} failed: {e}"),
        }
    }
    for repo in &desired.repositories {
        let Some(obj) = ctx.caches.repository(&repo.name) else {
            continue;
        };
        let key = repo.key();
        let generation = obj.metadata.generation;
        let ready = validity(&repo.problems, generation, now);
        announce_problems(ctx, memory, &key, &repo.problems, || {
            status::cluster_reference::<BackupRepository>(&repo.name, obj.metadata.uid.clone())
        })
        .await;
        let cached = obj.status.clone().unwrap_or_default();
        let base = memory
            .conditions
            .get(&key)
            .cloned()
            .unwrap_or(cached.conditions.clone());
        if !condition_differs(&base, &ready) && cached.observed_generation == generation {
            continue;
        }
        let conditions = with_condition(&base, ready);
        let patch = json!({ "conditions": conditions, "observedGeneration": generation });
        match ctx.writer.repository_status(&repo.name, patch).await {
            Ok(()) => {
                memory.conditions.insert(key, conditions);
            }
            Err(e) => tracing::warn!("writing the status of repository {} failed: {e}", repo.name),
        }
    }
}

/// A BackupRepository, for Events.
fn repository_reference(ctx: &Ctx, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let uid = ctx
        .caches
        .repository(name)
        .and_then(|r| r.metadata.uid.clone());
    status::cluster_reference::<BackupRepository>(name, uid)
}

/// Merges `patch` into a BackupRepository's status; a failure is logged (the next run writes
/// again).
async fn patch_repository(ctx: &Ctx, name: &str, patch: Value) {
    if let Err(e) = ctx.writer.repository_status(name, patch).await {
        tracing::warn!("writing the status of repository {name} failed: {e}");
    }
}

/// A value the operator recorded for `t`: a `StandaloneDatabase`'s status field, or the
/// `annotation` on a CNPG/MariaDB resource.
fn recorded(
    ctx: &Ctx,
    t: &DatabaseTarget,
    status_field: impl FnOnce(hasteward_api::StandaloneDatabaseStatus) -> Option<String>,
    annotation: &str,
) -> Option<String> {
    match t.engine {
        TargetEngine::Standalone => ctx
            .caches
            .standalone(&t.namespace, &t.name)
            .and_then(|o| o.status.clone())
            .and_then(status_field),
        engine => ctx
            .caches
            .annotation(engine, &t.namespace, &t.name, annotation),
    }
}

/// Writes what the operator records for `t` (the other side of [`recorded`]): `status` into a
/// `StandaloneDatabase`'s status, or `annotations` onto a CNPG/MariaDB resource. A failure is
/// logged; the next run writes again.
async fn write_recorded(ctx: &Ctx, t: &DatabaseTarget, status: Value, annotations: Value) {
    let written = match t.engine {
        TargetEngine::Standalone => {
            ctx.writer
                .standalone_status(&t.namespace, &t.name, status)
                .await
        }
        engine => {
            ctx.writer
                .annotate(engine, &t.namespace, &t.name, annotations)
                .await
        }
    };
    if let Err(e) = written {
        tracing::warn!("recording on {} failed: {e}", t.key());
    }
}

fn uid_of(ctx: &Ctx, t: &DatabaseTarget) -> Option<String> {
    match t.engine {
        TargetEngine::Standalone => ctx
            .caches
            .standalone(&t.namespace, &t.name)
            .and_then(|o| o.metadata.uid.clone()),
        engine => ctx.caches.annotated_uid(engine, &t.namespace, &t.name),
    }
}

/// A Warning Event when an object's problems change (once, not every pass).
async fn announce_problems(
    ctx: &Ctx,
    memory: &mut Memory,
    key: &str,
    problems: &[config::Problem],
    reference: impl FnOnce() -> k8s_openapi::api::core::v1::ObjectReference,
) {
    let text = problems_text(problems);
    if memory.announced.get(key) == Some(&text) {
        return;
    }
    if let Some(first) = problems.first() {
        ctx.writer
            .event(&reference(), true, first.reason, text.clone())
            .await;
    }
    memory.announced.insert(key.to_string(), text);
}

fn find_target<'a>(desired: &'a Desired, key: &JobKey) -> Option<&'a DatabaseTarget> {
    desired.databases.iter().find(|d| d.key() == key.target)
}

async fn announce_skip(ctx: &Ctx, desired: &Desired, key: &JobKey) {
    tracing::warn!("{key}: skipped, the previous run is still going");
    let reference = match find_target(desired, key) {
        Some(t) => status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t)),
        None => match key.target.strip_prefix("repository/") {
            Some(name) => repository_reference(ctx, name),
            None => return,
        },
    };
    ctx.writer
        .event(
            &reference,
            true,
            "ScheduleSkipped",
            format!("{key}: the previous run is still going; this occurrence is skipped"),
        )
        .await;
}

/// Starts the run of `key` and returns its task id; `None` when there is nothing to run (the
/// target vanished between planning and starting), so the caller frees its slot.
fn spawn_run(
    ctx: &Ctx,
    desired: &Desired,
    memory: &Memory,
    key: JobKey,
    runs: &mut JoinSet<Report>,
    cancel: &CancellationToken,
) -> Option<tokio::task::Id> {
    let env = ctx.opts.run_env.clone();
    let cancel = cancel.clone();
    let repos: BTreeMap<String, hasteward_api::BackupRepositorySpec> = ctx
        .caches
        .repositories
        .state()
        .iter()
        .filter_map(|r| Some((r.metadata.name.clone()?, r.spec.clone())))
        .collect();
    match key.kind {
        JobKind::Backup => {
            let target = find_target(desired, &key).cloned()?;
            let settings = target.backup.clone()?;
            let chosen: Vec<_> = settings
                .repositories
                .iter()
                .filter_map(|n| repos.get(n).map(|s| (n.clone(), s.clone())))
                .collect();
            tracing::info!("{key}: starting");
            let handle = runs.spawn(async move {
                let outcome = runner::backup(&env, &target, &settings, &chosen, &cancel).await;
                Report::Backup {
                    key,
                    target: Box::new(target),
                    outcome,
                }
            });
            Some(handle.id())
        }
        JobKind::Check => {
            let repo = desired
                .repositories
                .iter()
                .find(|r| r.key() == key.target)
                .cloned()?;
            let spec = repos.get(&repo.name).cloned()?;
            let subset = repo.check.as_ref().and_then(|(_, s)| s.clone());
            tracing::info!("{key}: starting");
            let handle = runs.spawn(async move {
                let outcome =
                    runner::check_repository(&env, &repo.name, &spec, subset.as_deref(), &cancel)
                        .await;
                Report::Check {
                    repository: repo.name,
                    outcome,
                }
            });
            Some(handle.id())
        }
        JobKind::Sync => {
            let (repo, sync) = desired.repositories.iter().find_map(|r| {
                r.syncs
                    .iter()
                    .find(|s| r.sync_key(&s.to) == key.target)
                    .map(|s| (r.name.clone(), s.clone()))
            })?;
            let from_spec = repos.get(&repo).cloned()?;
            let to_spec = repos.get(&sync.to).cloned()?;
            tracing::info!("{key}: starting");
            let handle = runs.spawn(async move {
                let outcome = runner::sync(
                    &env,
                    (&repo, &from_spec),
                    (&sync.to, &to_spec),
                    sync.retention.as_ref(),
                    &cancel,
                )
                .await;
                Report::Sync {
                    from: repo,
                    to: sync.to,
                    outcome,
                }
            });
            Some(handle.id())
        }
        JobKind::Drill => {
            let target = find_target(desired, &key).cloned()?;
            let settings = target.drill.clone()?;
            let repository = repos.get(&settings.repository).cloned()?;
            tracing::info!("{key}: starting");
            let handle = runs.spawn(async move {
                let outcome = runner::drill(
                    &env,
                    &target,
                    &settings,
                    (&settings.repository, &repository),
                    &cancel,
                )
                .await;
                Report::Drill {
                    target: Box::new(target),
                    outcome,
                }
            });
            Some(handle.id())
        }
        JobKind::Triage => {
            let target = find_target(desired, &key).cloned()?;
            tracing::info!("{key}: starting");
            // In repair mode the escrow goes to the database's first repository.
            let escrow = target
                .backup
                .as_ref()
                .and_then(|b| b.repositories.first())
                .and_then(|n| repos.get(n).map(|s| (n.clone(), s.clone())));
            let held = memory.unhealed.get(&target.key()).cloned();
            let handle = runs.spawn(async move {
                let outcome = runner::triage(&env, &target).await;
                let repair = match (&outcome.result, &target.triage) {
                    (Ok(report), Some(settings))
                        if settings.mode == hasteward_api::PolicyMode::Repair
                            && report.verdict != hasteward_triage::Verdict::Healthy =>
                    {
                        Some(
                            repair::repair(
                                &env,
                                &target,
                                report,
                                escrow.as_ref().map(|(n, s)| (n.as_str(), s)),
                                held.as_deref(),
                                &cancel,
                            )
                            .await,
                        )
                    }
                    _ => None,
                };
                Report::Triage {
                    target: Box::new(target),
                    outcome,
                    repair,
                }
            });
            Some(handle.id())
        }
    }
}

/// Writes a finished run's outcome: metrics, status or annotations, Events.
async fn record(ctx: &Ctx, report: Report, memory: &mut Memory) {
    match report {
        Report::Backup {
            key,
            target,
            outcome,
        } => record_backup(ctx, &key, &target, &outcome, memory).await,
        Report::Check {
            repository,
            outcome,
            ..
        } => record_check(ctx, &repository, &outcome, memory).await,
        Report::Triage {
            target,
            outcome,
            repair,
        } => {
            record_triage(ctx, &target, &outcome, memory).await;
            if let Some(repair) = repair {
                record_repair(ctx, &target, &repair, memory).await;
            }
        }
        Report::Sync { from, to, outcome } => record_sync(ctx, &from, &to, &outcome, memory).await,
        Report::Drill { target, outcome } => record_drill(ctx, &target, &outcome, memory).await,
    }
}

async fn record_sync(ctx: &Ctx, from: &str, to: &str, outcome: &SyncOutcome, memory: &mut Memory) {
    let failed = outcome
        .result
        .as_ref()
        .err()
        .or(outcome.retention.as_ref().and_then(|r| r.as_ref().err()));
    if failed.is_some_and(is_cancelled) {
        tracing::warn!("sync {from} -> {to}: cancelled; not recorded");
        return;
    }
    let m = &ctx.metrics;
    let ok = failed.is_none();
    let result = if ok { "success" } else { "failure" };
    m.sync_total.with_label_values(&[from, to, result]).inc();
    if let Some(e) = failed {
        m.failures_total
            .with_label_values(&["sync", e.code()])
            .inc();
    }
    let copied = outcome.result.as_ref().ok().map(|r| r.copied.len() as u64);
    if let Ok(r) = &outcome.result {
        m.sync_copied_total
            .with_label_values(&[from, to])
            .inc_by(r.copied.len() as f64);
    }
    if ok {
        m.sync_last_success
            .with_label_values(&[from, to])
            .set(outcome.ended.timestamp() as f64);
    }
    let message = match (failed, &outcome.result) {
        (Some(e), _) => e.to_string(),
        (None, Ok(r)) => format!(
            "copied {} snapshot(s) into {to} ({} already there){}",
            r.copied.len(),
            r.already_there,
            r.bytes_added
                .map(|b| format!(", {b} bytes added"))
                .unwrap_or_default()
        ),
        (None, Err(e)) => e.to_string(),
    };
    let patch = json!({ "syncs": { to: {
        "lastSync": rfc3339(outcome.ended),
        "lastSyncResult": result,
        "copied": copied,
        "lastError": failed.map(ToString::to_string),
    }}});
    patch_repository(ctx, from, patch).await;
    let reference = repository_reference(ctx, from);
    ctx.writer
        .event(
            &reference,
            !ok,
            if ok { "SyncSucceeded" } else { "SyncFailed" },
            message.clone(),
        )
        .await;
    let key = format!("sync/{from}/{to}");
    let previous = memory.results.get(&key).cloned().or_else(|| {
        ctx.caches
            .repository(from)
            .and_then(|r| r.status.clone())
            .and_then(|s| s.syncs.get(to).and_then(|x| x.last_sync_result.clone()))
    });
    memory.results.insert(key.clone(), result.to_string());
    if let Some(recovered) = transition(previous.as_deref(), ok) {
        notify(
            ctx,
            Notice {
                kind: if recovered {
                    "sync.recovered"
                } else {
                    "sync.failed"
                },
                subject: key,
                message,
                time: outcome.ended,
            },
        );
    }
    tracing::info!("sync {from} -> {to}: {result}");
}

/// The metric label of a verdict (the earlier tool's values, plus `undeterminable`).
fn verdict_label(v: hasteward_triage::Verdict) -> &'static str {
    use hasteward_triage::Verdict;
    match v {
        Verdict::Healthy => "healthy",
        Verdict::Unhealthy => "unhealthy",
        Verdict::Undeterminable => "undeterminable",
        Verdict::Diverged => "split_brain",
    }
}

async fn record_triage(
    ctx: &Ctx,
    t: &DatabaseTarget,
    outcome: &TriageOutcome,
    memory: &mut Memory,
) {
    let m = &ctx.metrics;
    let labels = [t.engine.as_str(), t.name.as_str(), t.namespace.as_str()];
    let key = format!("{}/triage", t.key());
    let reference = status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t));
    let report = match &outcome.result {
        Ok(r) => r,
        Err(e) => {
            m.failures_total
                .with_label_values(&["triage", e.code()])
                .inc();
            let text = e.to_string();
            // Announced once per distinct error, not every 15 minutes.
            if memory.announced.get(&key) != Some(&text) {
                ctx.writer
                    .event(&reference, true, "TriageFailed", text.clone())
                    .await;
                memory.announced.insert(key, text);
            }
            return;
        }
    };
    memory.announced.remove(&key);
    if report.verdict == hasteward_triage::Verdict::Healthy {
        // Healthy again: a plan that failed before may be tried again next time.
        memory.unhealed.remove(&t.key());
    }
    memory.triage_series.insert(t.key(), target_labels(t));
    let result = verdict_label(report.verdict);
    m.triage_last_run
        .with_label_values(&labels)
        .set(outcome.ended.timestamp() as f64);
    m.triage_total_instances
        .with_label_values(&labels)
        .set(report.instances.len() as f64);
    let healthy = report
        .instances
        .iter()
        .filter(|i| i.state == hasteward_triage::InstanceState::Healthy)
        .count();
    m.triage_healthy_instances
        .with_label_values(&labels)
        .set(healthy as f64);
    for r in ["healthy", "unhealthy", "undeterminable", "split_brain"] {
        m.triage_result
            .with_label_values(&[labels[0], labels[1], labels[2], r])
            .set(if r == result { 1.0 } else { 0.0 });
    }
    // The annotation keeps the earlier tool's spelling.
    let annotated = result.replace('_', "-");
    let previous = memory.results.get(&key).cloned().or_else(|| {
        recorded(
            ctx,
            t,
            |s| s.last_triage_result,
            annotations::LAST_TRIAGE_RESULT,
        )
    });
    memory.results.insert(key.clone(), annotated.clone());
    let summary = report
        .diagnoses
        .first()
        .map(|d| d.summary.clone())
        .unwrap_or_else(|| "every instance is healthy".into());
    let changed = match &previous {
        Some(p) => *p != annotated,
        None => annotated != "healthy",
    };
    if changed {
        let mut message = format!(
            "verdict {} (was {}): {summary}",
            annotated,
            previous.as_deref().unwrap_or("unknown")
        );
        if let Some(next) = &report.next_command {
            message.push_str(&format!("; next: {next}"));
        }
        ctx.writer
            .event(
                &reference,
                annotated != "healthy",
                "TriageVerdictChanged",
                message.clone(),
            )
            .await;
        notify(
            ctx,
            Notice {
                kind: "triage.changed",
                subject: t.key(),
                message,
                time: outcome.ended,
            },
        );
    }
    // A StandaloneDatabase (Vault) keeps it in its status, not in annotations.
    let ended = rfc3339(outcome.ended);
    write_recorded(
        ctx,
        t,
        json!({"lastTriage": ended, "lastTriageResult": annotated}),
        json!({
            annotations::LAST_TRIAGE: ended,
            annotations::LAST_TRIAGE_RESULT: annotated,
        }),
    )
    .await;
    tracing::info!("triage {}: {annotated}", t.key());
}

/// Writes a restore drill's outcome: metrics (the recovery time), status or annotations, an
/// Event, and a notification on a change between passing and failing. A cancelled drill records
/// nothing.
async fn record_drill(ctx: &Ctx, t: &DatabaseTarget, outcome: &DrillOutcome, memory: &mut Memory) {
    use hasteward_engines::Error as EngineError;
    let key = t.key();
    if let Err(e) = &outcome.result {
        if is_cancelled(e) {
            tracing::warn!("{key}: drill cancelled; not recorded: {e}");
            return;
        }
    }
    let m = &ctx.metrics;
    let labels = [t.engine.as_str(), t.name.as_str(), t.namespace.as_str()];
    let ok = outcome.result.is_ok();
    let status = if ok { "success" } else { "failure" };
    m.drill_total
        .with_label_values(&[labels[0], labels[1], labels[2], status])
        .inc();
    let message = match &outcome.result {
        Ok(r) => {
            m.drill_last_success
                .with_label_values(&labels)
                .set(outcome.ended.timestamp() as f64);
            m.drill_restore_seconds
                .with_label_values(&labels)
                .set(r.restore_seconds);
            let rows: u64 = r.databases.iter().map(|d| d.rows).sum();
            format!(
                "snapshot {} restored in {:.1} s into a drill pod: {} database(s), {rows} rows, {} assertion(s) held",
                &r.snapshot_id[..8.min(r.snapshot_id.len())],
                r.restore_seconds,
                r.databases.len(),
                r.assertions.len()
            )
        }
        Err(e) => {
            m.failures_total
                .with_label_values(&["drill", e.code()])
                .inc();
            match e {
                EngineError::DrillFailed { message, .. } => message.clone(),
                other => other.to_string(),
            }
        }
    };
    tracing::info!("{key}: drill {status}: {message}");
    let reference = status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t));
    ctx.writer
        .event(
            &reference,
            !ok,
            if ok { "DrillSucceeded" } else { "DrillFailed" },
            message.clone(),
        )
        .await;
    let result_key = format!("{key}/drill");
    let previous = memory.results.get(&result_key).cloned();
    memory.results.insert(result_key, status.to_string());
    if let Some(recovered) = transition(previous.as_deref(), ok) {
        notify(
            ctx,
            Notice {
                kind: if recovered {
                    "drill.recovered"
                } else {
                    "drill.failed"
                },
                subject: key.clone(),
                message: message.clone(),
                time: outcome.ended,
            },
        );
    }
    let ended = rfc3339(outcome.ended);
    let mut patch = json!({"lastDrill": ended, "lastDrillResult": status});
    if let Ok(r) = &outcome.result {
        patch["lastDrillRestoreSeconds"] = json!(r.restore_seconds);
    }
    let ann = json!({
        annotations::LAST_DRILL: ended,
        annotations::LAST_DRILL_RESULT: status,
    });
    write_recorded(ctx, t, patch, ann).await;
}

/// Writes an unattended repair's outcome: metrics, annotations, Events, notifications. Nothing
/// to do is silent; a refusal or a held plan is announced once per distinct message.
async fn record_repair(
    ctx: &Ctx,
    t: &DatabaseTarget,
    outcome: &RepairOutcome,
    memory: &mut Memory,
) {
    let key = t.key();
    let announce_key = format!("{key}/repair");
    let reference = status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t));
    let labels = [t.engine.as_str(), t.name.as_str(), t.namespace.as_str()];
    let (reason, message) = match &outcome.result {
        RepairResult::Nothing(why) => {
            tracing::info!("{key}: no unattended repair: {why}");
            return;
        }
        RepairResult::Failed { error, .. } if is_cancelled(error) => {
            tracing::warn!("{key}: repair cancelled; not recorded: {error}");
            return;
        }
        RepairResult::Held { fingerprint } => (
            "RepairHeld",
            format!(
                "the unattended repair ({fingerprint}) already ran and did not leave the cluster healthy: it is not repeated until a triage finds the cluster healthy; see `hasteward triage -e {} -n {} -c {}`",
                t.engine.as_str(),
                t.namespace,
                t.name
            ),
        ),
        RepairResult::Refused { gate, message } => {
            ("RepairRefused", format!("not repaired ({gate}): {message}"))
        }
        RepairResult::Failed { error, .. } => ("RepairFailed", error.to_string()),
        RepairResult::Repaired {
            healed,
            after,
            after_finding,
            warnings,
            ..
        } => {
            let mut text = format!(
                "healed {} in {:.0} s; triage now: {}",
                healed.join(", "),
                outcome.seconds,
                verdict_label(*after)
            );
            if let Some(f) = after_finding {
                text.push_str(&format!(" ({f})"));
            }
            for w in warnings {
                text.push_str(&format!("; note: {w}"));
            }
            let reason = if *after == hasteward_triage::Verdict::Healthy {
                "RepairSucceeded"
            } else {
                "RepairFailed"
            };
            (reason, text)
        }
    };
    if let Some(f) = outcome.result.unhealed() {
        memory.unhealed.insert(key.clone(), f.to_string());
    }
    let Some(status) = outcome.result.status() else {
        // Held: said once, nothing else recorded.
        if memory.announced.get(&announce_key) != Some(&message) {
            ctx.writer
                .event(&reference, true, reason, message.clone())
                .await;
            memory.announced.insert(announce_key, message);
        }
        return;
    };
    tracing::warn!("{key}: repair {status}: {message}");
    ctx.metrics
        .repair_total
        .with_label_values(&[labels[0], labels[1], labels[2], status])
        .inc();
    if status == "refused" {
        // Refused: nothing changed; the same refusal every 15 minutes is said once.
        if memory.announced.get(&announce_key) != Some(&message) {
            ctx.writer
                .event(&reference, true, reason, message.clone())
                .await;
            memory.announced.insert(announce_key, message);
        }
    } else {
        memory.announced.remove(&announce_key);
        if let RepairResult::Failed { error, .. } = &outcome.result {
            ctx.metrics
                .failures_total
                .with_label_values(&["repair", error.code()])
                .inc();
        }
        ctx.metrics
            .repair_last
            .with_label_values(&labels)
            .set(outcome.ended.timestamp() as f64);
        ctx.writer
            .event(&reference, status != "success", reason, message.clone())
            .await;
        notify(
            ctx,
            Notice {
                kind: if status == "success" {
                    "repair.succeeded"
                } else {
                    "repair.failed"
                },
                subject: key.clone(),
                message: message.clone(),
                time: outcome.ended,
            },
        );
    }
    let ann = json!({
        annotations::LAST_REPAIR: rfc3339(outcome.ended),
        annotations::LAST_REPAIR_RESULT: status,
    });
    if let Err(e) = ctx
        .writer
        .annotate(t.engine, &t.namespace, &t.name, ann)
        .await
    {
        tracing::warn!("annotating {key} failed: {e}");
    }
}

async fn record_backup(
    ctx: &Ctx,
    key: &JobKey,
    t: &DatabaseTarget,
    outcome: &BackupOutcome,
    memory: &mut Memory,
) {
    if outcome_cancelled(outcome) {
        // Not a result: nothing is recorded, so the occurrence still counts as missed and the
        // next leader (or this one, restarted) runs it again. Snapshots that did complete are
        // real and kept.
        tracing::warn!("{key}: cancelled; not recorded, it runs again on the next start");
        return;
    }
    let m = &ctx.metrics;
    let engine = t.engine.as_str();
    let ended = rfc3339(outcome.ended);
    if let Some(e) = &outcome.target_error {
        m.failures_total
            .with_label_values(&["backup", e.code()])
            .inc();
    }
    let mut snapshots = Vec::new();
    for r in &outcome.repositories {
        let labels = [
            engine,
            t.name.as_str(),
            t.namespace.as_str(),
            r.repository.as_str(),
        ];
        match &r.backup {
            Ok(b) => {
                m.backup_total
                    .with_label_values(&[labels[0], labels[1], labels[2], labels[3], "success"])
                    .inc();
                m.backup_last_success
                    .with_label_values(&labels)
                    .set(outcome.ended.timestamp() as f64);
                m.backup_last_duration
                    .with_label_values(&labels)
                    .set(r.seconds);
                if let Some(bytes) = b.bytes {
                    m.backup_size.with_label_values(&labels).set(bytes as f64);
                }
                memory
                    .backup_series
                    .entry(t.key())
                    .or_insert_with(|| (target_labels(t), Default::default()))
                    .1
                    .insert(r.repository.clone());
                snapshots.push(format!("{}:{}", r.repository, b.id));
            }
            Err(e) => {
                m.backup_total
                    .with_label_values(&[labels[0], labels[1], labels[2], labels[3], "failure"])
                    .inc();
                m.failures_total
                    .with_label_values(&["backup", e.code()])
                    .inc();
            }
        }
        if let Some(ret) = &r.retention {
            let status = if ret.is_ok() { "success" } else { "failure" };
            m.retention_total
                .with_label_values(&[labels[0], labels[1], labels[2], labels[3], status])
                .inc();
            if let Err(e) = ret {
                m.failures_total
                    .with_label_values(&["retention", e.code()])
                    .inc();
            }
        }
        if let Some(n) = r.snapshot_count {
            m.repository_snapshots
                .with_label_values(&[r.repository.as_str()])
                .set(n as f64);
        }
        if r.destination {
            // A vmbackup destination, not a BackupRepository: nothing to patch.
            continue;
        }
        // The repository's own health: a dump that failed says nothing about it, so only
        // restic's failures (and successes) set `ready` and `lastError` here.
        let mut patch = json!({ "lastBackup": ended });
        match &r.backup {
            Ok(_) => {
                patch["ready"] = json!(true);
                patch["lastError"] = Value::Null;
            }
            Err(e) if e.code().starts_with("restic.") => {
                patch["ready"] = json!(false);
                patch["lastError"] = json!(e.to_string());
            }
            Err(_) => {}
        }
        if let Some(n) = r.snapshot_count {
            patch["snapshotCount"] = json!(n);
        }
        patch_repository(ctx, &r.repository, patch).await;
    }
    let ok = outcome.succeeded();
    let result = if ok { "success" } else { "failure" };
    let reference = status::database_reference(t.engine, &t.namespace, &t.name, uid_of(ctx, t));
    let message = if ok {
        let sizes: Vec<String> = outcome
            .repositories
            .iter()
            .filter_map(|r| {
                r.backup.as_ref().ok().map(|b| match b.bytes {
                    Some(bytes) => format!("{} in {} ({bytes} bytes)", b.id, r.repository),
                    None => format!("{} in {}", b.id, r.repository),
                })
            })
            .collect();
        format!("snapshot {} in {:.1} s", sizes.join(", "), outcome.seconds)
    } else {
        outcome
            .first_error()
            .unwrap_or_else(|| "no repository was reachable".into())
    };
    tracing::info!("{key}: {result}: {message}");
    let dbkey = t.key();
    let previous = memory.results.get(&dbkey).cloned().or_else(|| {
        recorded(
            ctx,
            t,
            |s| s.last_backup_result,
            annotations::LAST_BACKUP_RESULT,
        )
    });
    memory.results.insert(dbkey.clone(), result.to_string());
    if let Some(recovered) = transition(previous.as_deref(), ok) {
        notify(
            ctx,
            Notice {
                kind: if recovered {
                    "backup.recovered"
                } else {
                    "backup.failed"
                },
                subject: dbkey.clone(),
                message: message.clone(),
                time: outcome.ended,
            },
        );
    }
    ctx.writer
        .event(
            &reference,
            !ok,
            if ok {
                "BackupSucceeded"
            } else {
                "BackupFailed"
            },
            message.clone(),
        )
        .await;
    let retention_failed = outcome
        .repositories
        .iter()
        .any(|r| matches!(r.retention, Some(Err(_))));
    for r in &outcome.repositories {
        if let Some(Err(e)) = &r.retention {
            tracing::warn!("{key}: retention in {}: {e}", r.repository);
        }
    }
    if retention_failed {
        ctx.writer
            .event(
                &reference,
                true,
                "RetentionFailed",
                outcome.first_error().unwrap_or_default(),
            )
            .await;
    }
    match t.engine {
        TargetEngine::Standalone => {
            let cached = ctx
                .caches
                .standalone(&t.namespace, &t.name)
                .and_then(|o| o.status.clone())
                .unwrap_or_default();
            let base = memory
                .conditions
                .get(&dbkey)
                .cloned()
                .unwrap_or(cached.conditions);
            let cond = condition(
                CONDITION_LAST_BACKUP,
                ok,
                if ok { "Succeeded" } else { "Failed" },
                message,
                t.generation,
                ctx.clock.now(),
            );
            let conditions = with_condition(&base, cond);
            let mut patch = json!({
                "conditions": conditions,
                "lastBackup": ended,
                "lastBackupResult": result,
                "lastBackupDurationSeconds": (outcome.seconds * 10.0).round() / 10.0,
            });
            if ok {
                patch["lastSnapshots"] = json!(snapshots);
                patch["lastSuccessfulBackup"] = json!(ended);
            }
            match ctx
                .writer
                .standalone_status(&t.namespace, &t.name, patch)
                .await
            {
                Ok(()) => {
                    memory.conditions.insert(dbkey, conditions);
                }
                Err(e) => tracing::warn!("writing the status of {dbkey} failed: {e}"),
            }
        }
        TargetEngine::Cnpg | TargetEngine::Galera => {
            let mut ann: Value = json!({
                annotations::LAST_BACKUP: ended,
                annotations::LAST_BACKUP_DURATION: format!("{:.1}s", outcome.seconds),
                annotations::LAST_BACKUP_RESULT: result,
            });
            if ok {
                ann[annotations::LAST_SUCCESSFUL_BACKUP] = json!(ended);
            }
            if let Err(e) = ctx
                .writer
                .annotate(t.engine, &t.namespace, &t.name, ann)
                .await
            {
                tracing::warn!("annotating {dbkey} failed: {e}");
            }
        }
    }
}

async fn record_check(ctx: &Ctx, repository: &str, outcome: &CheckOutcome, memory: &mut Memory) {
    if outcome.result.as_ref().err().is_some_and(is_cancelled) {
        tracing::warn!("check {repository}: cancelled; not recorded");
        return;
    }
    let m = &ctx.metrics;
    let verdict = outcome.verdict();
    m.check_total
        .with_label_values(&[repository, verdict])
        .inc();
    m.check_last_duration
        .with_label_values(&[repository])
        .set(outcome.seconds);
    m.check_healthy
        .with_label_values(&[repository])
        .set(if verdict == "healthy" { 1.0 } else { 0.0 });
    if verdict == "healthy" {
        m.check_last_success
            .with_label_values(&[repository])
            .set(outcome.ended.timestamp() as f64);
    }
    if let Err(e) = &outcome.result {
        m.failures_total
            .with_label_values(&["check", e.code()])
            .inc();
    }
    if let Some(n) = outcome.snapshot_count {
        m.repository_snapshots
            .with_label_values(&[repository])
            .set(n as f64);
    }
    if let Some(n) = outcome.deduplicated_size {
        m.repository_dedup_size
            .with_label_values(&[repository])
            .set(n as f64);
    }
    let error = outcome.result.as_ref().err().map(ToString::to_string);
    let mut patch = json!({
        "ready": verdict == "healthy",
        "lastCheck": rfc3339(outcome.ended),
        "lastCheckResult": verdict,
        "lastError": error,
    });
    if let Some(n) = outcome.snapshot_count {
        patch["snapshotCount"] = json!(n);
    }
    if let Some(n) = outcome.deduplicated_size {
        patch["deduplicatedSize"] = json!(n);
    }
    patch_repository(ctx, repository, patch).await;
    let reference = repository_reference(ctx, repository);
    let (warning, reason, note) = match &outcome.result {
        Ok(r) => (
            false,
            "CheckSucceeded",
            format!(
                "healthy ({:.1} s{})",
                r.seconds,
                r.read_data_subset
                    .as_deref()
                    .map(|s| format!(", read {s} of the data"))
                    .unwrap_or_default()
            ),
        ),
        Err(e @ hasteward_engines::Error::RepositoryDamaged(_)) => {
            (true, "RepositoryDamaged", e.to_string())
        }
        Err(e) => (true, "CheckFailed", e.to_string()),
    };
    tracing::info!("check {repository}: {verdict}");
    let key = format!("repository/{repository}");
    let previous = memory.results.get(&key).cloned().or_else(|| {
        ctx.caches
            .repository(repository)
            .and_then(|r| r.status.clone())
            .and_then(|s| s.last_check_result)
    });
    memory.results.insert(key.clone(), verdict.to_string());
    if let Some(recovered) = transition(previous.as_deref(), verdict == "healthy") {
        notify(
            ctx,
            Notice {
                kind: if recovered {
                    "check.recovered"
                } else {
                    "check.failed"
                },
                subject: key,
                message: note.clone(),
                time: outcome.ended,
            },
        );
    }
    ctx.writer.event(&reference, warning, reason, note).await;
}
