//! `hasteward repair`: triage, plan (pure, gated), then act on an approved plan only.
//!
//! `--dry-run` stops after printing the plan and sends no mutating request. Execution holds the
//! cluster's Lease for its whole run and releases it on every path, takes the escrow backups
//! first (a failed one stops everything), then heals each target (`hasteward_engines::heal`, the
//! same executor the operator runs unattended). This build executes restarts
//! (both engines), reseeds (both engines) and Galera bootstraps, each through the fenced-operation
//! primitive (`hasteward_engines::fenced`), which puts back what it changed on every path,
//! Ctrl-C included.

use std::time::Duration;

use hasteward_engines::heal::{ClusterEngine, PlanContext, Progress};
use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::{identity, lease_name, LeaseGuard};
use hasteward_k8s::Kube;
use hasteward_model::ExitCode;
use hasteward_triage::plan::{plan, render_plan_text, RepairPlan, RepairRequest};
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

/// Shows an executing plan through the command's reporter: steps as `jsonl` events, lines and
/// warnings for people.
struct ReporterProgress<'a>(&'a mut Reporter);

impl Progress for ReporterProgress<'_> {
    fn started(&mut self, step: &str) {
        self.0.step_started(step);
    }

    fn ended(&mut self, step: &str, error: Option<&str>) {
        match error {
            None => self.0.step_completed(step, None),
            Some(e) => self.0.step_failed(step, e),
        }
    }

    fn said(&mut self, text: &str) {
        self.0.human(text);
    }

    fn warned(&mut self, text: String) {
        self.0.warn(text);
    }
}

/// Executes an approved plan under the cluster's lease, with the escrow repository opened when
/// the plan takes escrow backups.
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
    let stream = crate::commands::settings(&a.stream, rep, cancel);
    let cx = PlanContext {
        kube,
        engine: match a.target.engine {
            EngineArg::Galera => ClusterEngine::Galera,
            _ => ClusterEngine::Cnpg,
        },
        namespace: &a.target.namespace,
        cluster: &a.target.cluster,
        heal_timeout: Duration::from_secs(a.heal_timeout),
        force: a.force,
        restic: restic.as_ref(),
        stream: &stream,
        lease,
    };
    hasteward_engines::heal::execute(&cx, plan, report, &mut ReporterProgress(rep), cancel).await
}
