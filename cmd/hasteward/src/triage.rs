//! `hasteward triage`: collect (read-only), analyze (pure), report.

use hasteward_engines::triage::{cnpg, galera};
use hasteward_engines::Error;
use hasteward_model::ExitCode;
use hasteward_triage::{Report, Verdict};

use crate::cli::{Cli, EngineArg, FailOn, TriageArgs};
use crate::commands::usage;
use crate::output::Reporter;

/// Runs a triage and prints the report.
pub async fn run(cli: &Cli, a: &TriageArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    hasteward_model::validate_name("cluster (-c)", &a.target.cluster).map_err(usage)?;
    hasteward_model::validate_name("namespace (-n)", &a.target.namespace).map_err(usage)?;
    let report = if a.target.engine == EngineArg::Vault {
        vault_report(cli, a, rep).await?
    } else {
        if a.pod.container.is_some() || a.vault.vault_addr.is_some() {
            return Err(usage(
                "--container/--vault-addr select a Vault target (-e vault); -e cnpg and -e galera triage the cluster named by -c",
            ));
        }
        let kube = crate::targets::kube(cli).await?;
        triage_report(
            &kube,
            rep,
            a.target.engine,
            &a.target.namespace,
            &a.target.cluster,
            a.recover_positions,
            true,
        )
        .await?
    };
    let text = hasteward_triage::render_text(&report);
    let data = serde_json::to_value(&report).unwrap_or_default();
    match a.fail_on {
        Some(threshold) if fails(report.verdict, threshold) => {
            rep.human(&text);
            Ok(rep.fail(
                ExitCode::Failed,
                &format!("triage.{}", report.verdict.as_str()),
                &format!(
                    "verdict {} (--fail-on {})",
                    report.verdict.as_str(),
                    threshold_name(threshold)
                ),
                false,
                data,
            ))
        }
        _ => Ok(rep.succeed(data, &text)),
    }
}

/// Triage of a Vault/OpenBao server (read-only: status, raft peers, autopilot).
async fn vault_report(cli: &Cli, a: &TriageArgs, rep: &Reporter) -> Result<Report, Error> {
    if a.recover_positions {
        return Err(usage("--recover-positions is for -e galera"));
    }
    let ns = &a.target.namespace;
    let name = &a.target.cluster;
    let no_host = crate::cli::HostArgs {
        host: None,
        port: None,
        db_user: None,
        db_password_file: None,
    };
    let target = crate::targets::resolve_vault(cli, ns, &no_host, &a.pod, &a.vault).await?;
    let input = match &target {
        crate::targets::Resolved::VaultHost(v) => rep.step("collect", v.collect(ns, name)).await?,
        crate::targets::Resolved::VaultPod(v) => rep.step("collect", v.collect(ns, name)).await?,
        _ => unreachable!("resolve_vault returns Vault targets"),
    };
    Ok(hasteward_triage::vault::analyze(&input))
}

fn threshold_name(t: FailOn) -> &'static str {
    match t {
        FailOn::Unhealthy => "unhealthy",
        FailOn::Undeterminable => "undeterminable",
        FailOn::Diverged => "diverged",
    }
}

/// Whether `verdict` is at least as bad as `threshold`.
fn fails(verdict: Verdict, threshold: FailOn) -> bool {
    let floor = match threshold {
        FailOn::Unhealthy => Verdict::Unhealthy,
        FailOn::Undeterminable => Verdict::Undeterminable,
        FailOn::Diverged => Verdict::Diverged,
    };
    verdict >= floor
}

/// Collects (read-only) and analyzes one cluster.
pub async fn triage_report(
    kube: &hasteward_k8s::Kube,
    rep: &Reporter,
    engine: EngineArg,
    namespace: &str,
    cluster: &str,
    recover_positions: bool,
    helper_pods: bool,
) -> Result<Report, Error> {
    Ok(match engine {
        EngineArg::Cnpg if recover_positions => {
            return Err(usage(
                "--recover-positions is for -e galera (mariadbd --wsrep-recover); CNPG positions are read from pg_controldata",
            ))
        }
        EngineArg::Cnpg => {
            let input = rep
                .step("collect", cnpg::collect(kube, namespace, cluster))
                .await?;
            hasteward_triage::cnpg::analyze(&input)
        }
        EngineArg::Galera => {
            let input = rep
                .step(
                    "collect",
                    galera::collect(
                        kube,
                        namespace,
                        cluster,
                        &galera::CollectOptions {
                            recover_positions,
                            helper_pods,
                        },
                    ),
                )
                .await?;
            hasteward_triage::galera::analyze(&input)
        }
        other => {
            return Err(usage(format!(
                "-e cnpg and -e galera have replicas to triage and repair (-e vault: triage only), not {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_thresholds() {
        assert!(!fails(Verdict::Healthy, FailOn::Unhealthy));
        assert!(fails(Verdict::Unhealthy, FailOn::Unhealthy));
        assert!(fails(Verdict::Diverged, FailOn::Unhealthy));
        assert!(!fails(Verdict::Unhealthy, FailOn::Undeterminable));
        assert!(fails(Verdict::Undeterminable, FailOn::Undeterminable));
        assert!(!fails(Verdict::Undeterminable, FailOn::Diverged));
        assert!(fails(Verdict::Diverged, FailOn::Diverged));
    }
}
