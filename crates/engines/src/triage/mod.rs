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
    match tokio::time::timeout(EXEC_DEADLINE, capture(runner, &spec)).await {
        Err(_) => Observed::Failed(format!(
            "{} did not finish within {EXEC_DEADLINE:?}",
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
