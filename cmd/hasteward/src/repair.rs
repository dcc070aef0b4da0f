//! `hasteward repair`: triage, plan (pure, gated), then act on an approved plan only.
//!
//! `--dry-run` stops after printing the plan and sends no mutating request. Execution holds the
//! cluster's Lease for its whole run and releases it on every path, takes the escrow backups
//! first (a failed one stops everything), then heals each target. This build executes restarts
//! (both engines), reseeds (both engines) and Galera bootstraps, each through the fenced-operation
//! primitive (`hasteward_engines::fenced`), which puts back what it changed on every path,
//! Ctrl-C included.

use std::time::Duration;

use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::{identity, lease_name, LeaseGuard};
use hasteward_k8s::Kube;
use hasteward_model::ExitCode;
use hasteward_triage::plan::{plan, render_plan_text, Remediation, RepairPlan, RepairRequest};
use serde_json::json;

use crate::cli::{Cli, EngineArg, RepairArgs};
use crate::commands::usage;
use crate::output::Reporter;

/// Runs a repair (or prints its plan).
pub async fn run(
    cli: &Cli,
    a: &RepairArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    hasteward_model::validate_name("cluster (-c)", &a.target.cluster).map_err(usage)?;
    hasteward_model::validate_name("namespace (-n)", &a.target.namespace).map_err(usage)?;
    for (flag, value) in [
        ("--instance", &a.instance),
        ("--bootstrap", &a.bootstrap),
        ("--prune-wal", &a.prune_wal),
    ] {
        if let Some(v) = value {
            hasteward_model::validate_name(flag, v).map_err(usage)?;
        }
    }
    let modes = [&a.instance, &a.bootstrap, &a.prune_wal]
        .iter()
        .filter(|m| m.is_some())
        .count();
    if modes > 1 {
        return Err(usage(
            "--instance, --bootstrap and --prune-wal are separate operations: pass one",
        ));
    }
    let kube = crate::targets::kube(cli).await?;
    // The lease is taken before the triage, so the plan is made and executed under it: two runs
    // cannot act on the same stale picture. A dry run takes no lease (it writes nothing).
    let guard = if a.dry_run {
        None
    } else {
        Some(
            rep.step(
                "lease.acquire",
                kube.acquire_lease(
                    &a.target.namespace,
                    &lease_name(&a.target.cluster),
                    &identity("repair"),
                ),
            )
            .await?,
        )
    };
    let outcome = plan_and_run(cli, &kube, a, rep, cancel, guard.as_ref()).await;
    let released = match guard {
        Some(g) => g.release().await,
        None => Ok(()),
    };
    let code = outcome?;
    released?;
    Ok(code)
}

async fn plan_and_run(
    cli: &Cli,
    kube: &Kube,
    a: &RepairArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
    lease: Option<&LeaseGuard>,
) -> Result<ExitCode, Error> {
    let report = crate::triage::triage_report(
        kube,
        rep,
        a.target.engine,
        &a.target.namespace,
        &a.target.cluster,
        a.recover_positions,
        // A dry run never creates helper pods: positions are recovered only inside running
        // containers.
        !a.dry_run,
    )
    .await?;
    let request = RepairRequest {
        instance: a.instance.clone(),
        bootstrap: a.bootstrap.clone(),
        prune_wal: a.prune_wal.clone(),
        force: a.force,
        no_escrow: a.no_escrow,
        job: format!("repair-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
    };
    let plan = plan(&report, &request);
    let text = render_plan_text(&plan);
    let data = json!({ "dryRun": a.dry_run, "plan": plan, "triage": report });
    if let Some(first) = plan.refusals.first() {
        rep.human(&text);
        return Ok(rep.fail(
            ExitCode::Refused,
            &format!("repair.refused.{}", first.gate),
            &first.message,
            false,
            data,
        ));
    }
    let Some(lease) = lease.filter(|_| !a.dry_run) else {
        return Ok(rep.succeed(data, &format!("{text}\n\ndry run: nothing was changed")));
    };
    if !plan.executable() {
        return Ok(rep.succeed(data, &format!("{text}\n\nnothing to repair")));
    }
    for w in &plan.warnings {
        rep.warn(w.clone());
    }
    rep.human(&text);
    execute(cli, kube, a, &plan, &report, rep, cancel, lease).await?;
    let after = crate::triage::triage_report(
        kube,
        rep,
        a.target.engine,
        &a.target.namespace,
        &a.target.cluster,
        false,
        false,
    )
    .await?;
    let summary = format!(
        "repaired {}; triage now: {}",
        plan.targets
            .iter()
            .map(|t| t.instance.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        after.verdict.as_str()
    );
    Ok(rep.succeed(
        json!({ "dryRun": false, "plan": plan, "after": after }),
        &format!("\n{}\n\n{summary}", hasteward_triage::render_text(&after)),
    ))
}

/// Stops when the lease was lost (a renewal failed: another run may have taken over).
fn still_ours(lease: &LeaseGuard) -> Result<(), Error> {
    if lease.lost() {
        return Err(Error::RepairFailed(
            "the cluster lease could not be renewed (another run may have taken it over): stopping before the next step".into(),
        ));
    }
    Ok(())
}

/// Executes an approved plan under the cluster's lease: escrow backups first (a failed one stops
/// everything), then each target.
#[allow(clippy::too_many_arguments)]
async fn execute(
    cli: &Cli,
    kube: &Kube,
    a: &RepairArgs,
    plan: &RepairPlan,
    report: &hasteward_triage::Report,
    rep: &mut Reporter,
    cancel: &CancellationToken,
    lease: &LeaseGuard,
) -> Result<(), Error> {
    let restic = if plan.escrow.is_empty() {
        None
    } else {
        Some(crate::commands::open_repo(cli, &a.repo).await?)
    };
    let container = match a.target.engine {
        EngineArg::Cnpg => "postgres",
        _ => "mariadb",
    };
    let result = async {
        if let Some(restic) = &restic {
            // Data-directory captures run inside the bootstrap, once every pod is gone.
            for e in plan.escrow.iter().filter(|e| e.method == "dump") {
                still_ours(lease)?;
                escrow(kube, restic, a, e, rep, cancel).await?;
            }
        }
        for t in &plan.targets {
            still_ours(lease)?;
            if cancel.is_cancelled() {
                return Err(Error::RepairCancelled(
                    "cancelled before every step ran; the steps done so far are complete".into(),
                ));
            }
            match t.remediation {
                Remediation::Restart => {
                    let old = rep
                        .step("pod.delete", kube.delete_pod(&a.target.namespace, &t.instance))
                        .await?;
                    let wait = kube.wait_pod_ready(
                        &a.target.namespace,
                        &t.instance,
                        container,
                        old.as_deref(),
                        Duration::from_secs(a.heal_timeout),
                    );
                    tokio::select! {
                        r = rep.step("wait.ready", wait) => r?,
                        _ = cancel.cancelled() => return Err(Error::RepairCancelled(format!("cancelled while waiting for {} to be Ready", t.instance))),
                    }
                }
                Remediation::Reseed if a.target.engine == EngineArg::Galera => {
                    let reseed = hasteward_engines::repair::GaleraReseed {
                        namespace: a.target.namespace.clone(),
                        cluster: a.target.cluster.clone(),
                        node: t.instance.clone(),
                        timeout: Duration::from_secs(a.heal_timeout),
                    };
                    let (log, note) = rep
                        .step(
                            "reseed",
                            hasteward_engines::repair::galera_reseed(kube, &reseed, cancel),
                        )
                        .await?;
                    report_done(rep, &t.instance, &log, &note);
                }
                Remediation::Reseed => {
                    let reseed = hasteward_engines::repair::CnpgReseed {
                        namespace: a.target.namespace.clone(),
                        cluster: a.target.cluster.clone(),
                        instance: t.instance.clone(),
                        timeout: Duration::from_secs(a.heal_timeout),
                    };
                    let (log, note) = rep
                        .step(
                            "reseed",
                            hasteward_engines::repair::cnpg_reseed(kube, &reseed, cancel),
                        )
                        .await?;
                    report_done(rep, &t.instance, &log, &note);
                }
                Remediation::PruneWal => {
                    let relief = hasteward_engines::repair::CnpgPruneWal {
                        namespace: a.target.namespace.clone(),
                        cluster: a.target.cluster.clone(),
                        instance: t.instance.clone(),
                        keep_fenced: t.keep_fenced,
                        force: a.force,
                        timeout: Duration::from_secs(a.heal_timeout),
                    };
                    let (log, note) = rep
                        .step(
                            "prune-wal",
                            hasteward_engines::repair::cnpg_prune_wal(kube, &relief, cancel),
                        )
                        .await?;
                    report_done(rep, &t.instance, &log, &note);
                }
                Remediation::Bootstrap => {
                    let bootstrap = hasteward_engines::repair::GaleraBootstrap {
                        namespace: a.target.namespace.clone(),
                        cluster: a.target.cluster.clone(),
                        node: t.instance.clone(),
                        nodes: report.instances.iter().map(|i| i.name.clone()).collect(),
                        captures: plan
                            .escrow
                            .iter()
                            .filter(|e| e.method == "datadir")
                            .map(|e| e.instance.clone())
                            .collect(),
                        timeout: Duration::from_secs(a.heal_timeout),
                    };
                    let settings = crate::commands::settings(&a.stream, rep, cancel);
                    let escrow = restic.as_ref().map(|restic| hasteward_engines::repair::Escrow {
                        restic,
                        settings: &settings,
                        job: plan.escrow.first().map(|e| e.job.clone()).unwrap_or_default(),
                    });
                    let (log, note) = rep
                        .step(
                            "bootstrap",
                            hasteward_engines::repair::galera_bootstrap(
                                kube,
                                &bootstrap,
                                escrow.as_ref(),
                                cancel,
                            ),
                        )
                        .await?;
                    report_done(rep, &t.instance, &log, &note);
                }
            }
        }
        Ok(())
    }
    .await;
    result
}

/// Prints a finished step's helper log, and warns about anything it left in place on purpose.
fn report_done(rep: &mut Reporter, instance: &str, log: &str, note: &str) {
    rep.human(&format!("{instance}: {}", log.trim()));
    if !note.is_empty() {
        rep.warn(note.to_string());
    }
}

/// One escrow backup: the instance's `pg_dumpall` (in its `postgres` container) streamed into
/// restic through the commit gate, as a `escrow` (the authority) or `diverged` snapshot named by
/// the instance.
async fn escrow(
    kube: &Kube,
    restic: &hasteward_restic::Restic,
    a: &RepairArgs,
    e: &hasteward_triage::plan::EscrowStep,
    rep: &Reporter,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    use hasteward_engines::pod::{PodAuth, PodDatabase};
    use hasteward_engines::target::Target;
    use hasteward_model::{DbType, Engine, SnapshotKind, SnapshotLabels};
    let kind = match e.kind.as_str() {
        "diverged" => SnapshotKind::Diverged,
        _ => SnapshotKind::Escrow,
    };
    let (engine, db_type, db) = if a.target.engine == EngineArg::Galera {
        // Any Synced node holds the authoritative data; the dump skips what the operator manages.
        let db =
            hasteward_engines::pod::galera::resolve(kube, &a.target.namespace, &a.target.cluster)
                .await?;
        (Engine::Galera, DbType::Mariadb, db)
    } else {
        let runner =
            hasteward_k8s::PodRunner::new(kube, &a.target.namespace, &e.instance, "postgres");
        let location = runner.location();
        let db = PodDatabase::new(
            runner,
            location,
            DbType::Postgres,
            "postgres",
            PodAuth::Container,
        );
        (Engine::Cnpg, DbType::Postgres, db)
    };
    // A diverged side is named by its instance; the authority's escrow is the backup set's file.
    let file = match kind {
        SnapshotKind::Diverged => format!("{}.{}", e.instance, db_type.dump_file()),
        _ => db_type.dump_file().to_string(),
    };
    let labels = SnapshotLabels {
        engine,
        cluster: a.target.cluster.clone(),
        namespace: a.target.namespace.clone(),
        kind,
        db_type: Some(db_type),
        file,
        database: None,
        job: Some(e.job.clone()),
    };
    let settings = crate::commands::settings(&a.stream, rep, cancel);
    let result = rep
        .step(
            "escrow.backup",
            hasteward_engines::flows::backup(restic, &db, &labels, &settings),
        )
        .await?;
    rep.human(&format!(
        "escrow: {} of {} saved as snapshot {} ({} bytes, sha256 {})",
        e.kind,
        db.location(),
        result.short_id,
        result.bytes,
        &result.sha256[..16]
    ));
    Ok(())
}
