//! [`PodRunner`]: the [`Runner`] seam over the pod exec API.
//!
//! What differs from a local process, and how it is handled:
//! - kube relays stdout and stderr through one message loop into in-memory pipes (1 KiB by
//!   default). stdout gets a 1 MiB pipe for throughput, and stderr is drained concurrently into a
//!   bounded tail; an unread stderr would otherwise stall stdout.
//! - The exit status arrives as a `Status` on the error channel after the output. It is the
//!   commit gate for pod-sourced dumps: success only on `status: Success`. A connection that
//!   ends without a status (dropped exec, API server restart) is a failure.
//! - Closing stdin sends the v5 protocol's stdin CLOSE frame, so a restore client in the pod sees
//!   the end of its input and its remaining output is not lost.
//! - When the connection fails, kube stops relaying without closing its pipes; the stdout reader
//!   and stdin writer are wrapped so they end when the exec has finished (see `ended`), and
//!   a pump never waits on a dead connection.
//! - No signal reaches a process in a pod. Stopping a pod child closes the exec connection;
//!   the container runtime then closes the process's pipes.
//! - Exec cannot pass environment variables: only argv, which API audit logs record. Specs with
//!   environment variables are refused, so a secret cannot leak that way by accident.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hasteward_exec::{
    BoxFuture, CommandSpec, ExitOutcome, Proc, ProcControl, Runner, Signal, StdinMode, Tail,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess};
use tokio::io::AsyncReadExt;

use crate::client::error_chain;
use crate::ended::{Ended, UntilEnded};
use crate::Kube;

/// stdout pipe size between kube's message loop and the reader.
const STDOUT_BUFFER: usize = 1 << 20;
/// stdin pipe size between the writer and kube's message loop. kube sends one websocket frame
/// per read of this pipe, so its 1 KiB default caps a restore at about 140 MB/s; 256 KiB frames
/// reach about 480 MB/s through the simulator.
const STDIN_BUFFER: usize = 256 * 1024;
/// stderr pipe size and the tail kept of it.
const STDERR_TAIL: usize = 64 * 1024;
/// How long starting an exec may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs commands in one container of one pod.
#[derive(Debug, Clone)]
pub struct PodRunner {
    kube: Kube,
    namespace: String,
    pod: String,
    container: String,
}

impl PodRunner {
    /// A runner for `container` in pod `namespace/pod`.
    pub fn new(kube: &Kube, namespace: &str, pod: &str, container: &str) -> Self {
        Self {
            kube: kube.clone(),
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }

    /// The pod name.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// The container name.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// `pod ns/name container c`, for messages.
    pub fn location(&self) -> String {
        format!(
            "pod {}/{} container {}",
            self.namespace, self.pod, self.container
        )
    }

    fn refuse(&self, spec: &CommandSpec, message: String) -> hasteward_exec::Error {
        hasteward_exec::Error::Remote {
            program: spec.name(),
            location: self.location(),
            message,
        }
    }

    async fn start(&self, spec: &CommandSpec) -> hasteward_exec::Result<Proc> {
        if !spec.env.is_empty() || !spec.env_remove.is_empty() || spec.cwd.is_some() {
            return Err(self.refuse(
                spec,
                "pod exec passes only argv (no environment or working directory); pass secrets through stdin or files".into(),
            ));
        }
        let mut command = Vec::with_capacity(spec.args.len() + 1);
        for part in std::iter::once(&spec.program).chain(spec.args.iter()) {
            command.push(
                part.to_str()
                    .ok_or_else(|| self.refuse(spec, "argv is not UTF-8".into()))?
                    .to_string(),
            );
        }
        let params = AttachParams::default()
            .container(self.container.clone())
            .stdin(spec.stdin == StdinMode::Piped)
            .stdout(true)
            .stderr(true)
            .max_stdin_buf_size(STDIN_BUFFER)
            .max_stdout_buf_size(STDOUT_BUFFER)
            .max_stderr_buf_size(STDERR_TAIL);
        let api: Api<Pod> = Api::namespaced(self.kube.client.clone(), &self.namespace);
        let mut attached = match tokio::time::timeout(
            START_TIMEOUT,
            api.exec(&self.pod, command, &params),
        )
        .await
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(self.refuse(spec, error_chain(&e))),
            Err(_) => {
                return Err(self.refuse(
                    spec,
                    format!(
                        "no answer from {} within {START_TIMEOUT:?}",
                        self.kube.server
                    ),
                ))
            }
        };
        // The status resolves when the exec finishes: with the process's exit status, or with
        // nothing when the connection is gone. Either way the streams end there (see `ended`).
        let ended = Ended::default();
        let status = attached.take_status().map(|status| {
            let ended = ended.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let status = status.await;
                ended.set();
                let _ = tx.send(status);
            });
            Box::pin(async move { rx.await.ok().flatten() }) as StatusFuture
        });
        let tail = Arc::new(Mutex::new(Tail::new(STDERR_TAIL)));
        let stderr_task = attached.stderr().map(|err| {
            let mut err = UntilEnded::new(err, ended.clone());
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match err.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => tail.lock().expect("tail lock").push(&buf[..n]),
                    }
                }
            })
        });
        let stdout = attached.stdout();
        let stdout: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> = match spec.stdout {
            hasteward_exec::StdoutMode::Piped => {
                stdout.map(|s| Box::new(UntilEnded::new(s, ended.clone())) as _)
            }
            hasteward_exec::StdoutMode::Null => {
                if let Some(mut s) = stdout {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
                    });
                }
                None
            }
        };
        let stdin = attached.stdin().map(|w| {
            Box::new(UntilEnded::new(w, ended.clone()))
                as Box<dyn tokio::io::AsyncWrite + Send + Unpin>
        });
        Ok(Proc {
            name: spec.name(),
            stdin,
            stdout,
            control: Box::new(PodProc {
                attached: Some(attached),
                status,
                stderr_task,
                tail,
                outcome: None,
                stopped: false,
            }),
        })
    }
}

impl Runner for PodRunner {
    fn spawn(
        &self,
        spec: &CommandSpec,
    ) -> impl std::future::Future<Output = hasteward_exec::Result<Proc>> + Send {
        self.start(spec)
    }
}

type StatusFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Status>> + Send>>;

struct PodProc {
    attached: Option<AttachedProcess>,
    status: Option<StatusFuture>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    tail: Arc<Mutex<Tail>>,
    outcome: Option<ExitOutcome>,
    stopped: bool,
}

/// Maps the exec status to an exit outcome. `None` (the connection ended without a status) is a
/// failure with no exit code.
pub(crate) fn outcome_of(status: Option<&Status>, stopped: bool, stderr: String) -> ExitOutcome {
    let failure = |detail: String| ExitOutcome {
        code: None,
        signal: None,
        stderr_tail: if stderr.is_empty() {
            detail
        } else {
            format!("{detail}; stderr: {stderr}")
        },
    };
    let Some(status) = status else {
        return failure(if stopped {
            "stopped by hasteward (exec connection closed)".into()
        } else {
            "the exec connection ended without an exit status (dropped by the API server or the network)".into()
        });
    };
    if status.status.as_deref() == Some("Success") {
        return ExitOutcome {
            code: Some(0),
            signal: None,
            stderr_tail: stderr,
        };
    }
    let exit_code = (status.reason.as_deref() == Some("NonZeroExitCode"))
        .then(|| {
            status
                .details
                .as_ref()?
                .causes
                .as_ref()?
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))?
                .message
                .as_deref()?
                .parse::<i32>()
                .ok()
        })
        .flatten();
    match exit_code {
        Some(code) => ExitOutcome {
            code: Some(code),
            signal: None,
            stderr_tail: stderr,
        },
        None => failure(format!(
            "exec failed: {}",
            status.message.as_deref().unwrap_or("no message")
        )),
    }
}

impl ProcControl for PodProc {
    fn wait(&mut self) -> BoxFuture<'_, hasteward_exec::Result<ExitOutcome>> {
        Box::pin(async move {
            if let Some(o) = &self.outcome {
                return Ok(o.clone());
            }
            let status = match self.status.as_mut() {
                Some(f) => f.await,
                None => None,
            };
            self.status = None;
            if let Some(task) = self.stderr_task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
            let stderr = self.stderr_tail();
            let outcome = outcome_of(status.as_ref(), self.stopped, stderr);
            self.attached = None;
            self.outcome = Some(outcome.clone());
            Ok(outcome)
        })
    }

    fn signal(&mut self, _signal: Signal) -> hasteward_exec::Result<()> {
        // No signal reaches a process in a pod: every stop closes the exec connection.
        if self.outcome.is_none() {
            if let Some(a) = &self.attached {
                a.abort();
                self.stopped = true;
            }
        }
        Ok(())
    }

    fn stderr_tail(&self) -> String {
        self.tail.lock().expect("tail lock").text()
    }

    fn id(&self) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn success_status_is_exit_zero() {
        let s = status(serde_json::json!({"metadata": {}, "status": "Success"}));
        assert!(outcome_of(Some(&s), false, String::new()).success());
    }

    #[test]
    fn non_zero_exit_code_is_read_from_the_cause() {
        let s = status(serde_json::json!({
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: exit status 2",
            "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}
        }));
        let o = outcome_of(Some(&s), false, "boom".into());
        assert_eq!(o.code, Some(2));
        assert_eq!(o.stderr_tail, "boom");
    }

    #[test]
    fn a_missing_status_is_a_failure_never_success() {
        let o = outcome_of(None, false, String::new());
        assert!(!o.success());
        assert!(o.stderr_tail.contains("without an exit status"));
        let s = status(serde_json::json!({"metadata": {}, "status": "Failure",
            "message": "exec: \"pg_dumpall\": executable file not found in $PATH"}));
        let o = outcome_of(Some(&s), false, String::new());
        assert!(!o.success());
        assert!(o.stderr_tail.contains("executable file not found"));
    }
}
