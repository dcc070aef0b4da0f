//! `hasteward repair`: triage, plan (pure, gated), then act on an approved plan only.
//!
//! `--dry-run` stops after printing the plan and sends no mutating request. Execution holds the
//! cluster's Lease for its whole run and releases it on every path. This build executes plans
//! made of restarts (a pod deleted and recreated by its operator, nothing destroyed); reseed and
//! bootstrap plans are computed, gated and printed, but not executed yet.

use std::time::Duration;

use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::{identity, lease_name};
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
    hasteward_model::validate_name("cluster (-c)", &a.cluster).map_err(usage)?;
    hasteward_model::validate_name("namespace (-n)", &a.namespace).map_err(usage)?;
    for (flag, value) in [("--instance", &a.instance), ("--bootstrap", &a.bootstrap)] {
        if let Some(v) = value {
            hasteward_model::validate_name(flag, v).map_err(usage)?;
        }
    }
    if a.instance.is_some() && a.bootstrap.is_some() {
        return Err(usage(
            "--instance and --bootstrap are separate operations: pass one",
        ));
    }
    let kube = crate::targets::kube(cli).await?;
    let report = crate::triage::triage_report(
        &kube,
        rep,
        a.engine,
        &a.namespace,
        &a.cluster,
        a.recover_positions,
    )
    .await?;
    let request = RepairRequest {
        instance: a.instance.clone(),
        bootstrap: a.bootstrap.clone(),
        force: a.force,
        no_escrow: a.no_escrow,
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
    if a.dry_run {
        return Ok(rep.succeed(data, &format!("{text}\n\ndry run: nothing was changed")));
    }
    if !plan.executable() {
        return Ok(rep.succeed(data, &format!("{text}\n\nnothing to repair")));
    }
    for w in &plan.warnings {
        rep.warn(w.clone());
    }
    rep.human(&text);
    execute(&kube, a, &plan, rep, cancel).await?;
    let after =
        crate::triage::triage_report(&kube, rep, a.engine, &a.namespace, &a.cluster, false).await?;
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

/// Executes an approved plan under the cluster's lease.
async fn execute(
    kube: &Kube,
    a: &RepairArgs,
    plan: &RepairPlan,
    rep: &Reporter,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    if let Some(t) = plan
        .targets
        .iter()
        .find(|t| t.remediation != Remediation::Restart)
    {
        return Err(Error::Refused(format!(
            "this build plans but does not yet execute {:?} steps ({}): the plan above is what would run; use --dry-run to review it",
            t.remediation, t.instance
        )));
    }
    let container = match a.engine {
        EngineArg::Cnpg => "postgres",
        _ => "mariadb",
    };
    let guard = rep
        .step(
            "lease.acquire",
            kube.acquire_lease(&a.namespace, &lease_name(&a.cluster), &identity("repair")),
        )
        .await?;
    let result = async {
        for t in &plan.targets {
            if cancel.is_cancelled() {
                return Err(Error::Refused("cancelled before every step ran".into()));
            }
            let old = rep
                .step("pod.delete", kube.delete_pod(&a.namespace, &t.instance))
                .await?;
            let wait = kube.wait_pod_ready(
                &a.namespace,
                &t.instance,
                container,
                old.as_deref(),
                Duration::from_secs(a.heal_timeout),
            );
            tokio::select! {
                r = rep.step("wait.ready", wait) => r?,
                _ = cancel.cancelled() => return Err(Error::Refused(format!("cancelled while waiting for {} to be Ready", t.instance))),
            }
        }
        Ok(())
    }
    .await;
    let released = guard.release().await;
    result?;
    released?;
    Ok(())
}
