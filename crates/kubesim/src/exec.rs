//! Pod exec over the Kubernetes websocket channel protocol (v5/v4), backed by
//! a local process. This is the part of the simulator that lets hasteward's
//! real streaming code (dumps, restores, tool invocations) run against local
//! database nodes instead of containers.
//!
//! Frames are binary messages whose first byte is the channel: 0 stdin,
//! 1 stdout, 2 stderr, 3 status (JSON `metav1.Status`), 4 resize; v5 adds
//! `[255, channel]` to close a channel (the client closes stdin this way).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

use crate::rest::{error_response, Query, ResourcePath};
use crate::status::ApiError;
use crate::store::{ObjectKey, ResourceKey};
use crate::{lock, Shared};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;
/// Read size for stdout/stderr relaying (one websocket frame per read).
const BUF: usize = 64 * 1024;

type Tx = SplitSink<WebSocket, Message>;
type Rx = SplitStream<WebSocket>;

/// Maps container paths onto local directories by rewriting every argv element that mentions
/// one (`/var/lib/mysql/grastate.dat` → `<dir>/grastate.dat`): a textual stand-in for a volume
/// mount, so in-pod scripts can use the container's fixed paths. Longest prefix first.
pub(crate) fn rewrite_mounts(argv: Vec<String>, mounts: &BTreeMap<String, PathBuf>) -> Vec<String> {
    if mounts.is_empty() {
        return argv;
    }
    let mut ordered: Vec<(&String, &PathBuf)> = mounts.iter().collect();
    ordered.sort_by_key(|(container, _)| std::cmp::Reverse(container.len()));
    argv.into_iter()
        .map(|arg| {
            let mut out = arg;
            for (container, local) in &ordered {
                out = out.replace(container.as_str(), &local.display().to_string());
            }
            out
        })
        .collect()
}

/// Send SIGKILL to a whole process group (ignoring "no such process").
pub(crate) fn kill_group(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Everything needed to run one exec session.
struct ExecSpec {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    path: Option<std::ffi::OsString>,
    cwd: Option<PathBuf>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    /// Channel stderr is relayed on (stdout when a tty was requested).
    stderr_channel: u8,
    drop_after: Option<u64>,
}

/// `PATH` with `prepend` in front of the configured (`env`) or inherited `PATH`; `None` when
/// nothing is prepended.
pub(crate) fn prepended_path(
    env: &BTreeMap<String, String>,
    prepend: &[PathBuf],
) -> Result<Option<std::ffi::OsString>, String> {
    if prepend.is_empty() {
        return Ok(None);
    }
    let base = env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let mut dirs: Vec<PathBuf> = prepend.to_vec();
    dirs.extend(std::env::split_paths(&base));
    std::env::join_paths(dirs)
        .map(Some)
        .map_err(|e| format!("PATH: {e}"))
}

/// A command for `argv` (non-empty) in its own process group, killed when dropped, with `env`
/// added to the simulator's environment, `PATH` replaced by `path` and run in `cwd`.
pub(crate) fn local_command(
    argv: &[String],
    env: &BTreeMap<String, String>,
    path: Option<&std::ffi::OsString>,
    cwd: Option<&PathBuf>,
) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env)
        .kill_on_drop(true)
        .process_group(0);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

/// Validate an exec request and, if it is acceptable, upgrade it to a
/// websocket whose session runs the command locally.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    parts: Parts,
    rp: &ResourcePath,
    query: &Query,
) -> Response {
    match prepare(&shared, parts, rp, query).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

async fn prepare(
    shared: &Arc<Shared>,
    mut parts: Parts,
    rp: &ResourcePath,
    query: &Query,
) -> Result<Response, ApiError> {
    let namespace = rp.namespace.clone().unwrap_or_default();
    let pod_name = rp.name.clone().unwrap_or_default();
    if rp.sub.as_deref() == Some("attach") {
        return Err(ApiError::bad_request(
            "kubesim does not simulate pods/attach",
        ));
    }
    let key = ObjectKey {
        resource: ResourceKey::new("v1", "pods"),
        namespace: Some(namespace.clone()),
        name: pod_name.clone(),
    };
    let pod = lock(&shared.store)
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found("pods", &pod_name))?;
    let container = resolve_container(&pod, &pod_name, query.get("container"))?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    match phase {
        "Running" => {}
        "Succeeded" | "Failed" => {
            return Err(ApiError::bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )))
        }
        _ => {
            return Err(ApiError::bad_request(match &container {
                Some(c) => format!("unable to upgrade connection: container not found (\"{c}\")"),
                None => format!("unable to upgrade connection: pod {pod_name} is not running"),
            }))
        }
    }
    let config = {
        let configs = lock(&shared.exec);
        let exact = configs.iter().rev().find(|c| {
            c.container.is_some() && c.matches(&namespace, &pod_name, container.as_deref())
        });
        exact
            .or_else(|| {
                configs
                    .iter()
                    .rev()
                    .find(|c| c.container.is_none() && c.matches(&namespace, &pod_name, None))
            })
            .cloned()
    };
    let Some(config) = config else {
        return Err(ApiError::internal(format!(
            "kubesim: no exec configuration for pod {namespace}/{pod_name}{}",
            container
                .as_deref()
                .map(|c| format!(" container {c}"))
                .unwrap_or_default()
        )));
    };
    if config.unreachable {
        return Err(ApiError::internal(format!(
            "error dialing backend: kubesim: pod {namespace}/{pod_name} is configured unreachable (container not running)"
        )));
    }
    let argv = query.all("command");
    if argv.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least 1 command (kubesim)",
        ));
    }
    let mut env = config.env.clone();
    let path = shared
        .volume_tools
        .process_path(
            &config.mounts,
            config.volume_size_kib,
            &config.path_prepend,
            &mut env,
        )
        .map_err(ApiError::internal)?;
    let argv = rewrite_mounts(argv, &config.mounts);
    let spec = ExecSpec {
        argv,
        env,
        path,
        cwd: config.cwd.clone(),
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout"),
        // No pty is allocated; with tty=true stderr is merged into stdout
        // (as a terminal would show it).
        stderr: query.flag("stderr") || (query.flag("tty") && query.flag("stdout")),
        stderr_channel: if query.flag("tty") { STDOUT } else { STDERR },
        drop_after: config.drop_after_bytes,
    };

    // The real API accepts POST as well; websockets need GET semantics.
    if parts.method == Method::POST {
        parts.method = Method::GET;
    }
    let mut upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("Upgrade request required: {e}")))?;
    let offered: Vec<String> = upgrade
        .requested_protocols()
        .filter_map(|p| p.to_str().ok().map(str::to_string))
        .collect();
    let protocol = [V5, V4]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "kubesim supports only the {V5} and {V4} subprotocols (offered: {offered:?})"
            ))
        })?;
    upgrade.set_selected_protocol(HeaderValue::from_static(protocol));
    let shared = shared.clone();
    Ok(upgrade
        .max_message_size(64 << 20)
        .max_frame_size(16 << 20)
        .on_upgrade(move |socket| session(socket, spec, shared)))
}

/// The container an exec targets: the requested one (validated against the
/// pod spec), the default-container annotation, or the only container.
fn resolve_container(
    pod: &Value,
    pod_name: &str,
    requested: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if let Some(c) = requested {
        if !names.is_empty() && !names.contains(&c) {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {pod_name}"
            )));
        }
        return Ok(Some(c.to_string()));
    }
    let annotated = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str);
    match (annotated, names.as_slice()) {
        (Some(c), _) => Ok(Some(c.to_string())),
        (None, []) => Ok(None),
        (None, [only]) => Ok(Some(only.to_string())),
        (None, many) => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            many.join(" ")
        ))),
    }
}

/// Kills a process group unless disarmed (also on task cancellation), and keeps it registered
/// in `Shared::groups` (killed when the simulator is dropped) while it lives.
pub(crate) struct GroupGuard {
    pgid: i32,
    armed: bool,
    shared: Arc<Shared>,
}

impl GroupGuard {
    pub(crate) fn new(pgid: i32, shared: Arc<Shared>) -> Self {
        lock(&shared.groups).insert(pgid);
        GroupGuard {
            pgid,
            armed: true,
            shared,
        }
    }

    pub(crate) fn kill(&mut self) {
        if self.armed {
            kill_group(self.pgid);
            self.armed = false;
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        lock(&self.shared.groups).remove(&self.pgid);
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

fn exit_status_json(status: ExitStatus) -> Value {
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// How a container runtime reports a program that could not be started.
pub(crate) fn spawn_failure_message(program: &str, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        format!("exec: \"{program}\": executable file not found in $PATH")
    } else {
        format!("exec: \"{program}\": {err}")
    }
}

fn spawn_failure_json(program: &str, err: &io::Error) -> Value {
    let message = spawn_failure_message(program, err);
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

async fn send_status(tx: &mut Tx, status: &Value) {
    let _ = tx.send(frame(STATUS, status.to_string().as_bytes())).await;
    let _ = tx.close().await;
}

enum Outcome {
    /// The process exited and all its output was relayed.
    Exited(ExitStatus),
    /// `drop_after_bytes` was reached.
    Dropped,
    /// The client went away (close frame, error, or a failed send).
    ClientGone,
}

async fn session(socket: WebSocket, spec: ExecSpec, shared: Arc<Shared>) {
    let (mut tx, mut rx) = socket.split();
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut cmd = local_command(&spec.argv, &spec.env, spec.path.as_ref(), spec.cwd.as_ref());
    cmd.stdin(pipe(spec.stdin))
        .stdout(pipe(spec.stdout))
        .stderr(pipe(spec.stderr));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            send_status(&mut tx, &spawn_failure_json(&spec.argv[0], &e)).await;
            return;
        }
    };
    let mut guard = child
        .id()
        .map(|pid| GroupGuard::new(pid as i32, shared.clone()));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let outcome = {
        let output = pump_output(
            &mut tx,
            stdout,
            (stderr, spec.stderr_channel),
            &mut child,
            spec.drop_after,
        );
        let input = pump_input(&mut rx, stdin);
        tokio::pin!(output, input);
        tokio::select! {
            outcome = &mut output => outcome,
            () = &mut input => Outcome::ClientGone,
        }
    };
    match outcome {
        Outcome::Exited(status) => {
            // Normal end: whatever the command left running in the
            // background stays (as it would in a container).
            if let Some(g) = guard.as_mut() {
                g.armed = false;
            }
            send_status(&mut tx, &exit_status_json(status)).await;
        }
        Outcome::Dropped | Outcome::ClientGone => {
            if let Some(g) = guard.as_mut() {
                g.kill();
            }
            // Reap promptly so the pid disappears (no zombie lingering).
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            // Dropping tx/rx closes the TCP connection without a close frame.
        }
    }
    drop(guard);
}

async fn read_opt<R: AsyncRead + Unpin>(r: &mut Option<R>, buf: &mut [u8]) -> io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Relay stdout (channel 1) and stderr (channel 2) until both reach EOF, then
/// wait for the process. Each websocket send is awaited before reading more,
/// so a slow client slows the process down instead of growing buffers.
async fn pump_output<O, E>(
    tx: &mut Tx,
    mut stdout: Option<O>,
    (mut stderr, stderr_channel): (Option<E>, u8),
    child: &mut Child,
    drop_after: Option<u64>,
) -> Outcome
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let mut out_buf = vec![0u8; BUF];
    let mut err_buf = vec![0u8; BUF];
    let mut relayed: u64 = 0;
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            // stdout first: keeps write order when a tty merges both streams.
            biased;
            res = read_opt(&mut stdout, &mut out_buf) => match res {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => {
                    let (n, drop_now) = match drop_after {
                        Some(limit) => {
                            let remaining = limit.saturating_sub(relayed);
                            if n as u64 >= remaining { (remaining as usize, true) } else { (n, false) }
                        }
                        None => (n, false),
                    };
                    if n > 0 && tx.send(frame(STDOUT, &out_buf[..n])).await.is_err() {
                        return Outcome::ClientGone;
                    }
                    relayed += n as u64;
                    if drop_now {
                        return Outcome::Dropped;
                    }
                }
            },
            res = read_opt(&mut stderr, &mut err_buf) => match res {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => {
                    if tx.send(frame(stderr_channel, &err_buf[..n])).await.is_err() {
                        return Outcome::ClientGone;
                    }
                }
            },
        }
    }
    match child.wait().await {
        Ok(status) => Outcome::Exited(status),
        Err(_) => Outcome::Exited(ExitStatus::from_raw(255 << 8)),
    }
}

/// Forward stdin frames to the process until the client goes away. A v5
/// CLOSE for channel 0 closes the process's stdin.
async fn pump_input(rx: &mut Rx, mut stdin: Option<ChildStdin>) {
    while let Some(message) = rx.next().await {
        match message {
            Ok(Message::Binary(data)) => match data.first() {
                Some(&STDIN) if data.len() > 1 => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data[1..]).await.is_err() {
                            // The process closed its stdin; discard the rest.
                            stdin = None;
                        }
                    }
                }
                Some(&CLOSE) if data.get(1) == Some(&STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            },
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn container_paths_are_rewritten_longest_first() {
        let mounts = BTreeMap::from([
            ("/var/lib/mysql".to_string(), PathBuf::from("/tmp/n1")),
            (
                "/var/lib/mysql/sub".to_string(),
                PathBuf::from("/tmp/other"),
            ),
        ]);
        let argv = vec![
            "sh".to_string(),
            "-c".into(),
            "cat /var/lib/mysql/grastate.dat /var/lib/mysql/sub/x".into(),
        ];
        assert_eq!(
            rewrite_mounts(argv, &mounts)[2],
            "cat /tmp/n1/grastate.dat /tmp/other/x"
        );
    }
}
