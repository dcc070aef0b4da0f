//! Unattended repair (`mode: repair`): after a scheduled triage that is not healthy, the plan
//! `hasteward repair` makes without flags, executed by the same code.
//!
//! What runs unattended is deliberately narrow, and decided by the pure planner's gates, not
//! here: only an untargeted heal (restarts and reseeds of instances the triage proves need it,
//! never the authority), never `--force`, never a split brain (which side to keep is a person's
//! call), never a destructive step without an escrow backup into the database's first
//! repository, never a Galera bootstrap or a WAL relief (those need a person to name the node). A refused plan changes nothing and says why. The cluster's Lease (the one the CLI
//! takes) is held from the re-triage to the end, so a person's `hasteward repair` and the
//! operator never act at once. A plan that was already tried and did not heal the cluster is not
//! repeated until the cluster was healthy in between ([`fingerprint`]).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hasteward_api::BackupRepositorySpec;
use hasteward_engines::flows::StreamSettings;
use hasteward_engines::heal::{self, ClusterEngine, PlanContext, Progress};
use hasteward_engines::secrets::SecretFiles;
use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_k8s::lease::{identity, lease_name};
use hasteward_triage::plan::{plan, RepairPlan, RepairRequest};
use hasteward_triage::{Report, Verdict};

use crate::config::{DatabaseTarget, TargetEngine};
use crate::runner::{open_repository, triage_report, RunEnv};

/// How long a healed instance may take when the policy does not say (`healTimeout`).
const DEFAULT_HEAL_TIMEOUT: Duration = Duration::from_secs(600);

/// The outcome of an unattended repair.
#[derive(Debug)]
pub struct RepairOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// Seconds it took.
    pub seconds: f64,
    /// What happened.
    pub result: RepairResult,
}

/// What an unattended repair did.
#[derive(Debug)]
pub enum RepairResult {
    /// Nothing can be healed unattended (why).
    Nothing(String),
    /// A gate refused the plan: a person must decide. Nothing was changed.
    Refused {
        /// The gate.
        gate: String,
        /// Why, and what to do.
        message: String,
    },
    /// The same plan was tried before and the cluster is still not healthy: not repeated.
    Held {
        /// The plan's fingerprint.
        fingerprint: String,
    },
    /// Executed.
    Repaired {
        /// The plan's fingerprint.
        fingerprint: String,
        /// What was healed (`pg-2: reseed`).
        healed: Vec<String>,
        /// The triage verdict afterwards.
        after: Verdict,
        /// Its first finding, when not healthy.
        after_finding: Option<String>,
        /// Notes on what was left in place on purpose.
        warnings: Vec<String>,
    },
    /// Failed (the primitives put back what they changed; the message says what is left).
    Failed {
        /// The plan's fingerprint (`None`: it failed before a plan was made).
        fingerprint: Option<String>,
        /// Why.
        error: Error,
    },
}

impl RepairResult {
    /// `success`, `failure`, `refused`, or `None` when nothing was attempted.
    pub fn status(&self) -> Option<&'static str> {
        match self {
            Self::Repaired { after, .. } if *after == Verdict::Healthy => Some("success"),
            Self::Repaired { .. } | Self::Failed { .. } => Some("failure"),
            Self::Refused { .. } => Some("refused"),
            Self::Nothing(_) | Self::Held { .. } => None,
        }
    }

    /// The fingerprint of a plan that ran and did not leave the cluster healthy.
    pub fn unhealed(&self) -> Option<&str> {
        match self {
            Self::Repaired {
                fingerprint, after, ..
            } if *after != Verdict::Healthy => Some(fingerprint),
            Self::Failed {
                fingerprint: Some(f),
                ..
            } => Some(f),
            _ => None,
        }
    }
}

/// What a plan does, as one comparable line: `pg-2:reseed,pg-3:restart`.
pub fn fingerprint(plan: &RepairPlan) -> String {
    plan.targets
        .iter()
        .map(|t| format!("{}:{}", t.instance, remediation_name(t.remediation)))
        .collect::<Vec<_>>()
        .join(",")
}

fn remediation_name(r: hasteward_triage::plan::Remediation) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The untargeted, unforced request a scheduled repair makes.
fn unattended_request(now: DateTime<Utc>) -> RepairRequest {
    RepairRequest {
        job: format!("repair-{}", now.format("%Y%m%dT%H%M%SZ")),
        ..RepairRequest::default()
    }
}

/// Pure: what to do with a triage, before anything is touched. `Err` is the final result (no
/// repair), `Ok` the plan to execute.
pub fn decide(
    report: &Report,
    request: &RepairRequest,
    has_repository: bool,
    held: Option<&str>,
) -> Result<RepairPlan, Box<RepairResult>> {
    if report.verdict == Verdict::Diverged {
        // Healing a split brain discards one side's writes (escrowed, but discarded): which side
        // to keep is a person's decision, whatever the planner would allow.
        return Err(Box::new(RepairResult::Refused {
            gate: "unattended-split-brain".into(),
            message: format!(
                "a split brain is never repaired unattended: decide which side to keep{}",
                report
                    .next_command
                    .as_ref()
                    .map(|c| format!(", then run `{c}`"))
                    .unwrap_or_default()
            ),
        }));
    }
    let p = plan(report, request);
    if let Some(r) = p.refusals.first() {
        return Err(Box::new(RepairResult::Refused {
            gate: r.gate.clone(),
            message: r.message.clone(),
        }));
    }
    if !p.executable() {
        return Err(Box::new(RepairResult::Nothing(if p.skipped.is_empty() {
            "nothing needs healing".into()
        } else {
            p.skipped.join("; ")
        })));
    }
    let fingerprint = fingerprint(&p);
    if held == Some(fingerprint.as_str()) {
        return Err(Box::new(RepairResult::Held { fingerprint }));
    }
    if !p.escrow.is_empty() && !has_repository {
        return Err(Box::new(RepairResult::Refused {
            gate: "no-repository".into(),
            message: "an unattended repair takes an escrow backup first, and this cluster names no repository: add `repositories` to its policy".into(),
        }));
    }
    Ok(p)
}

/// Logs an unattended run's steps and keeps its notes.
struct LoggedProgress {
    key: String,
    healed: Vec<String>,
    warnings: Vec<String>,
}

impl Progress for LoggedProgress {
    fn started(&mut self, step: &str) {
        tracing::info!("{}: repair: {step}…", self.key);
    }

    fn ended(&mut self, step: &str, error: Option<&str>) {
        match error {
            None => tracing::info!("{}: repair: {step} done", self.key),
            Some(e) => tracing::warn!("{}: repair: {step} failed: {e}", self.key),
        }
    }

    fn said(&mut self, text: &str) {
        tracing::info!("{}: repair: {text}", self.key);
    }

    fn warned(&mut self, text: String) {
        tracing::warn!("{}: repair: {text}", self.key);
        self.warnings.push(text);
    }
}

/// Repairs `target` after `triage` said it is not healthy (see the module docs). `repository`
/// is the escrow repository (the database's first); `held` a plan not to repeat.
pub async fn repair(
    env: &RunEnv,
    target: &DatabaseTarget,
    triage: &Report,
    repository: Option<(&str, &BackupRepositorySpec)>,
    held: Option<&str>,
    cancel: &CancellationToken,
) -> RepairOutcome {
    let started = Instant::now();
    let result = run(env, target, triage, repository, held, cancel).await;
    RepairOutcome {
        ended: Utc::now(),
        seconds: started.elapsed().as_secs_f64(),
        result,
    }
}

async fn run(
    env: &RunEnv,
    target: &DatabaseTarget,
    triage: &Report,
    repository: Option<(&str, &BackupRepositorySpec)>,
    held: Option<&str>,
    cancel: &CancellationToken,
) -> RepairResult {
    let engine = match target.engine {
        TargetEngine::Cnpg => ClusterEngine::Cnpg,
        TargetEngine::Galera => ClusterEngine::Galera,
        TargetEngine::Standalone => {
            return RepairResult::Nothing("a standalone database has no replicas".into())
        }
    };
    let request = unattended_request(Utc::now());
    // A cheap first look from the read-only triage: most refusals need no lease.
    if let Err(done) = decide(triage, &request, repository.is_some(), held) {
        return *done;
    }
    let failed =
        |fingerprint: Option<String>, error: Error| RepairResult::Failed { fingerprint, error };
    let lease = match env
        .kube
        .acquire_lease(
            &target.namespace,
            &lease_name(&target.name),
            &identity("operator-repair"),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return failed(None, e.into()),
    };
    let key = target.key();
    let result = async {
        // The plan is made again under the Lease: a person's repair may have changed things.
        let report = match triage_report(env, target, true).await {
            Ok(r) => r,
            Err(e) => return failed(None, e),
        };
        let plan = match decide(&report, &request, repository.is_some(), held) {
            Ok(p) => p,
            Err(done) => return *done,
        };
        let fingerprint = fingerprint(&plan);
        tracing::warn!(
            "{key}: unattended repair: {fingerprint} (escrow into {})",
            repository.map(|r| r.0).unwrap_or("none")
        );
        let files = match SecretFiles::new() {
            Ok(f) => f,
            Err(e) => return failed(Some(fingerprint), e),
        };
        let (restic, _shared) = match repository {
            Some((name, spec)) if !plan.escrow.is_empty() => {
                let restic = match open_repository(env, name, spec, &files).await {
                    Ok(r) => r,
                    Err(e) => return failed(Some(fingerprint), e),
                };
                // An escrow is a backup: it shares the repository with other backups.
                let Some(guard) = env.queue.shared(name, cancel).await else {
                    return failed(
                        Some(fingerprint),
                        Error::Cancelled("cancelled before the escrow backup".into()),
                    );
                };
                (Some(restic), Some(guard))
            }
            _ => (None, None),
        };
        let stream = StreamSettings {
            stall_timeout: env.stall_timeout,
            progress: None,
            cancel: cancel.clone(),
        };
        let cx = PlanContext {
            kube: &env.kube,
            engine,
            namespace: &target.namespace,
            cluster: &target.name,
            heal_timeout: target
                .triage
                .as_ref()
                .and_then(|t| t.heal_timeout)
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(DEFAULT_HEAL_TIMEOUT),
            force: false,
            restic: restic.as_ref(),
            stream: &stream,
            lease: &lease,
        };
        let mut progress = LoggedProgress {
            key: key.clone(),
            healed: Vec::new(),
            warnings: Vec::new(),
        };
        if let Err(e) = heal::execute(&cx, &plan, &report, &mut progress, cancel).await {
            return failed(Some(fingerprint), e);
        }
        progress.healed = plan
            .targets
            .iter()
            .map(|t| format!("{}: {}", t.instance, remediation_name(t.remediation)))
            .collect();
        let (after, after_finding) = match triage_report(env, target, false).await {
            Ok(r) => (
                r.verdict,
                (r.verdict != Verdict::Healthy)
                    .then(|| r.diagnoses.first().map(|d| d.summary.clone()))
                    .flatten(),
            ),
            Err(e) => return failed(Some(fingerprint), e),
        };
        RepairResult::Repaired {
            fingerprint,
            healed: progress.healed,
            after,
            after_finding,
            warnings: progress.warnings,
        }
    }
    .await;
    if let Err(e) = lease.release().await {
        tracing::warn!("{key}: releasing the cluster lease after the repair: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use hasteward_triage::{Authority, InstanceAssessment, InstanceState, Role};

    fn report(states: &[(&str, InstanceState)], authority: Authority) -> Report {
        Report {
            engine: "cnpg".into(),
            namespace: "db".into(),
            cluster: "pg".into(),
            verdict: if states.iter().all(|(_, s)| *s == InstanceState::Healthy) {
                Verdict::Healthy
            } else {
                Verdict::Unhealthy
            },
            safe_to_heal: matches!(authority, Authority::Provable { .. }),
            authority,
            operator_primary: Some("pg-1".into()),
            instances: states
                .iter()
                .map(|(n, s)| InstanceAssessment {
                    name: n.to_string(),
                    ordinal: hasteward_triage::ordinal_of(n),
                    role: if *n == "pg-1" {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                    position: "TL 1 0/3000060".into(),
                    lag: None,
                    disk_percent: None,
                    state: *s,
                    advice: String::new(),
                    remedy: None,
                    lineage: None,
                    seqno: None,
                })
                .collect(),
            diagnoses: Vec::new(),
            next_command: None,
            facts: serde_json::Value::Null,
        }
    }

    fn provable() -> Authority {
        Authority::Provable {
            leader: "pg-1".into(),
        }
    }

    #[test]
    fn an_unattended_plan_heals_what_needs_it_after_an_escrow() {
        let r = report(
            &[
                ("pg-1", InstanceState::Healthy),
                ("pg-2", InstanceState::NeedsReseed),
                ("pg-3", InstanceState::NeedsRestart),
            ],
            provable(),
        );
        let p = decide(&r, &unattended_request(Utc::now()), true, None).unwrap();
        assert_eq!(fingerprint(&p), "pg-2:reseed,pg-3:restart");
        assert_eq!(p.escrow.len(), 1);
        assert_eq!(p.escrow[0].instance, "pg-1");
        assert!(p.escrow[0].job.starts_with("repair-"));
    }

    #[test]
    fn nothing_healthy_held_and_missing_repository_are_not_executed() {
        let healthy = report(&[("pg-1", InstanceState::Healthy)], provable());
        let req = unattended_request(Utc::now());
        assert!(matches!(
            decide(&healthy, &req, true, None),
            Err(r) if matches!(*r, RepairResult::Nothing(_))
        ));
        let sick = report(
            &[
                ("pg-1", InstanceState::Healthy),
                ("pg-2", InstanceState::NeedsRestart),
            ],
            provable(),
        );
        let held = decide(&sick, &req, true, Some("pg-2:restart")).unwrap_err();
        assert!(matches!(*held, RepairResult::Held { .. }), "{held:?}");
        assert_eq!(held.status(), None);
        // A different plan is not held by an older one.
        assert!(decide(&sick, &req, true, Some("pg-3:reseed")).is_ok());
        // A restart destroys nothing and needs no escrow; a reseed does.
        assert!(decide(&sick, &req, false, None).is_ok());
        let reseed = report(
            &[
                ("pg-1", InstanceState::Healthy),
                ("pg-2", InstanceState::NeedsReseed),
            ],
            provable(),
        );
        let no_repo = decide(&reseed, &req, false, None).unwrap_err();
        assert!(
            matches!(&*no_repo, RepairResult::Refused { gate, .. } if gate == "no-repository"),
            "{no_repo:?}"
        );
    }

    #[test]
    fn unprovable_authority_and_a_split_brain_are_refused() {
        let req = unattended_request(Utc::now());
        let blocked = report(
            &[
                ("pg-1", InstanceState::Unknown),
                ("pg-2", InstanceState::NeedsReseed),
            ],
            Authority::Undeterminable {
                blockers: vec!["pg-1 could not be read".into()],
            },
        );
        let refused = decide(&blocked, &req, true, None).unwrap_err();
        assert_eq!(refused.status(), Some("refused"));
        let mut diverged = report(
            &[
                ("pg-1", InstanceState::Healthy),
                ("pg-2", InstanceState::Diverged),
            ],
            provable(),
        );
        diverged.verdict = Verdict::Diverged;
        let refused = decide(&diverged, &req, true, None).unwrap_err();
        assert!(
            matches!(&*refused, RepairResult::Refused { gate, .. } if gate == "unattended-split-brain"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_repair_that_left_the_cluster_unhealthy_is_a_failure_and_held() {
        let r = RepairResult::Repaired {
            fingerprint: "pg-2:restart".into(),
            healed: vec!["pg-2: restart".into()],
            after: Verdict::Unhealthy,
            after_finding: Some("pg-2 is still behind".into()),
            warnings: Vec::new(),
        };
        assert_eq!(r.status(), Some("failure"));
        assert_eq!(r.unhealed(), Some("pg-2:restart"));
        let ok = RepairResult::Repaired {
            fingerprint: "pg-2:restart".into(),
            healed: Vec::new(),
            after: Verdict::Healthy,
            after_finding: None,
            warnings: Vec::new(),
        };
        assert_eq!(ok.status(), Some("success"));
        assert_eq!(ok.unhealed(), None);
    }
}
