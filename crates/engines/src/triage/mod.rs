//! Triage collection: reads a cluster's state through the Kubernetes API and read-only commands
//! in its pods, and hands the raw observations to `hasteward-triage`'s pure analysis.
//!
//! # Read-only
//! Nothing here fences, suspends, scales, deletes or creates anything: only `get`/`list` API
//! calls and exec of read-only commands (`pg_controldata`, `cat`, `df`, `du`, `SELECT`s). What
//! cannot be read that way stays unread, and the analysis refuses to guess.
//!
//! Every instance is collected concurrently, and every exec has a deadline, so one hung pod
//! cannot stall the triage.

pub mod cnpg;
pub mod galera;

use std::time::Duration;

use hasteward_exec::{capture, CommandSpec, Runner};
use hasteward_k8s::{container_ready, container_restarts, pod_phase};
use hasteward_triage::{Observed, PodView, VolumeState};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

/// How long one read-only command may take.
pub const EXEC_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `spec` and keeps its stdout, or why there is none.
pub(crate) async fn observe<R: Runner>(runner: &R, spec: CommandSpec) -> Observed {
    observe_with_deadline(EXEC_DEADLINE, runner, spec).await
}

/// [`observe`] with its own deadline. A command past its deadline has its exec connection
/// closed (in a pod that ends the process when it next writes; nothing can signal it).
pub(crate) async fn observe_with_deadline<R: Runner>(
    deadline: Duration,
    runner: &R,
    spec: CommandSpec,
) -> Observed {
    match tokio::time::timeout(deadline, capture(runner, &spec)).await {
        Err(_) => Observed::Failed(format!(
            "{} did not finish within {deadline:?}",
            spec.name()
        )),
        Ok(Err(e)) => Observed::Failed(e.to_string()),
        Ok(Ok(c)) if c.outcome.success() => Observed::Output(c.stdout_text()),
        Ok(Ok(c)) => Observed::Failed(format!("{}: {}", spec.name(), c.outcome)),
    }
}

/// `sh -c SCRIPT hasteward ARGS...`: a fixed script; values are positional arguments.
pub(crate) fn script<I, S>(script: &str, args: I) -> CommandSpec
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    CommandSpec::new("sh")
        .args(["-c", script, "hasteward"])
        .args(args)
        .labelled(program_of(script))
}

/// The program a one-line script runs, for messages: the first word that is not `exec` or an
/// assignment (`LC_ALL=C exec pg_controldata …` → `pg_controldata`).
fn program_of(script: &str) -> String {
    script
        .split_whitespace()
        .find(|w| *w != "exec" && !w.contains('='))
        .unwrap_or("sh")
        .to_string()
}

/// Whether a pod carrying the cluster's label is one of its instances: named `<cluster>-<N>`,
/// or marked by `role_label` = `instance` (CNPG's `cnpg.io/podRole`).
pub(crate) fn is_instance_pod(pod: &Pod, cluster: &str, role_label: &str) -> bool {
    let labels = pod.metadata.labels.as_ref();
    if !role_label.is_empty() {
        if let Some(role) = labels.and_then(|l| l.get(role_label)) {
            return role == "instance";
        }
    }
    pod.metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix(cluster)?.strip_prefix('-'))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
}

/// What the analysis needs of a pod, from the API object.
pub(crate) fn pod_view(pod: &Pod, container: &str) -> PodView {
    PodView {
        phase: pod_phase(pod).to_string(),
        ready: container_ready(pod, container).unwrap_or(false),
        restarts: container_restarts(pod, container),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

/// A PVC lookup as a volume state: NotFound is `Missing` (provably no data), an API error is
/// `Unknown` (may hold data).
pub(crate) fn volume_state(
    result: Result<Option<PersistentVolumeClaim>, hasteward_k8s::Error>,
) -> VolumeState {
    match result {
        Ok(None) => VolumeState::Missing,
        Ok(Some(pvc)) => match pvc.status.and_then(|s| s.phase).as_deref() {
            Some("Bound") => VolumeState::Bound,
            Some(other) => VolumeState::Other(other.to_string()),
            None => VolumeState::Other("no phase".into()),
        },
        Err(e) => VolumeState::Unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn job_and_recovery_pods_are_not_instances() {
        assert!(is_instance_pod(&pod("pg-4", &[]), "pg", "cnpg.io/podRole"));
        assert!(!is_instance_pod(
            &pod("pg-4-join-x7", &[]),
            "pg",
            "cnpg.io/podRole"
        ));
        assert!(!is_instance_pod(
            &pod("pg-1-initdb-abc", &[("cnpg.io/podRole", "job")]),
            "pg",
            "cnpg.io/podRole"
        ));
        assert!(is_instance_pod(
            &pod("odd", &[("cnpg.io/podRole", "instance")]),
            "pg",
            "cnpg.io/podRole"
        ));
        assert!(is_instance_pod(&pod("galera-2", &[]), "galera", ""));
        assert!(!is_instance_pod(
            &pod("galera-recovery-2", &[]),
            "galera",
            ""
        ));
        assert!(!is_instance_pod(&pod("galera-", &[]), "galera", ""));
    }

    #[test]
    fn programs_are_named_in_messages() {
        assert_eq!(
            program_of("LC_ALL=C exec pg_controldata /x"),
            "pg_controldata"
        );
        assert_eq!(program_of("exec df -kP /x"), "df");
    }
}
