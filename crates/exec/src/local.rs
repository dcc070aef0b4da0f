//! Local child processes on tokio.
//!
//! Every child gets its own process group, so signals reach grandchildren (pg_dumpall runs
//! pg_dump) and a Ctrl-C at the terminal reaches only hasteward, which then ends the children in
//! the right order. stdin is `/dev/null` unless the spec asks for a pipe, stderr is drained
//! concurrently into a bounded tail, and a dropped [`Proc`] kills its whole group.

use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal as NixSignal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::runner::BoxFuture;
use crate::{
    CommandSpec, Error, ExitOutcome, Proc, ProcControl, Result, Runner, Signal, StdinMode,
    StdoutMode, Tail,
};

/// Bytes of stderr kept per child.
const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How long to wait for stderr to close after the child exited (a grandchild may hold it open).
const STDERR_LINGER: Duration = Duration::from_secs(2);

/// Runs commands as local child processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalRunner;

impl Runner for LocalRunner {
    async fn spawn(&self, spec: &CommandSpec) -> Result<Proc> {
        spawn_local(spec)
    }
}

fn spawn_local(spec: &CommandSpec) -> Result<Proc> {
    let program = spec.program.to_string_lossy().into_owned();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(match spec.stdin {
            StdinMode::Null => Stdio::null(),
            StdinMode::Piped => Stdio::piped(),
        })
        .stdout(match spec.stdout {
            StdoutMode::Piped => Stdio::piped(),
            StdoutMode::Null => Stdio::null(),
        })
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for key in &spec.env_remove {
        cmd.env_remove(key);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::ProgramNotFound {
                program: program.clone(),
            }
        } else {
            Error::Spawn {
                program: program.clone(),
                source,
            }
        }
    })?;
    // The builder keeps copies of the pipe fds until dropped; drop it now so EOF is ours to give.
    drop(cmd);
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let tail = Arc::new(Mutex::new(Tail::new(STDERR_TAIL_BYTES)));
    let name = spec.name();
    let stderr_task = child.stderr.take().map(|mut err| {
        let tail = Arc::clone(&tail);
        let name = name.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tracing::debug!(target: "hasteward::child", child = %name, "{}", String::from_utf8_lossy(&buf[..n]).trim_end());
                        tail.lock().expect("tail lock").push(&buf[..n]);
                    }
                }
            }
        })
    });
    // Larger pipes: fewer wake-ups and context switches per byte on the streaming path.
    if let Some(out) = child.stdout.as_ref() {
        grow_pipe(out);
    }
    if let Some(inp) = child.stdin.as_ref() {
        grow_pipe(inp);
    }
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    Ok(Proc {
        name,
        stdin,
        stdout,
        control: Box::new(LocalControl {
            program,
            child,
            pgid,
            tail,
            stderr_task,
            lingering: false,
            outcome: None,
        }),
    })
}

/// Pipe size asked for on streaming pipes (Linux caps it at `/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: i32 = 1 << 20;

fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    // Best effort: an unprivileged process over its pipe quota keeps the default size.
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
}

struct LocalControl {
    program: String,
    child: Child,
    pgid: Option<Pid>,
    tail: Arc<Mutex<Tail>>,
    stderr_task: Option<JoinHandle<()>>,
    lingering: bool,
    outcome: Option<ExitOutcome>,
}

impl LocalControl {
    async fn wait_inner(&mut self) -> Result<ExitOutcome> {
        if let Some(done) = &self.outcome {
            return Ok(done.clone());
        }
        let status = self.child.wait().await.map_err(|source| Error::Control {
            program: self.program.clone(),
            source,
        })?;
        if let Some(task) = self.stderr_task.as_mut() {
            if tokio::time::timeout(STDERR_LINGER, task).await.is_err() {
                // A grandchild still holds stderr: stop reading; the group is killed on drop.
                self.lingering = true;
                if let Some(task) = self.stderr_task.take() {
                    task.abort();
                }
            } else {
                self.stderr_task = None;
            }
        }
        use std::os::unix::process::ExitStatusExt;
        let outcome = ExitOutcome {
            code: status.code(),
            signal: status.signal(),
            stderr_tail: self.tail.lock().expect("tail lock").text(),
        };
        self.outcome = Some(outcome.clone());
        Ok(outcome)
    }
}

impl ProcControl for LocalControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitOutcome>> {
        Box::pin(self.wait_inner())
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        let Some(pgid) = self.pgid else {
            return Ok(());
        };
        // Once reaped, the pid may be reused: never signal it again.
        if self.outcome.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone; grandchildren of the group may remain. Kill them only on Kill.
            if signal == Signal::Kill {
                let _ = killpg(pgid, NixSignal::SIGKILL);
            }
            return Ok(());
        }
        let sig = match signal {
            Signal::Interrupt => NixSignal::SIGINT,
            Signal::Terminate => NixSignal::SIGTERM,
            Signal::Kill => NixSignal::SIGKILL,
        };
        match killpg(pgid, sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::Control {
                program: self.program.clone(),
                source: io::Error::from(e),
            }),
        }
    }

    fn stderr_tail(&self) -> String {
        self.tail.lock().expect("tail lock").text()
    }

    fn id(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for LocalControl {
    fn drop(&mut self) {
        // Last line of defence: the whole group goes, not just the leader (kill_on_drop). After
        // the leader was reaped, the group is killed only while its stderr is still held open by
        // a lingering grandchild.
        let reaped = self.outcome.is_some() || matches!(self.child.try_wait(), Ok(Some(_)));
        let lingering =
            self.lingering || self.stderr_task.as_ref().is_some_and(|t| !t.is_finished());
        if let Some(pgid) = self.pgid {
            if !reaped || lingering {
                let _ = killpg(pgid, NixSignal::SIGKILL);
            }
        }
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}
