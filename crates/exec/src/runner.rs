//! The seam between "what to run" and "where it runs".

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::{CommandSpec, Result};

/// Signals the process layer sends. For pod exec, only [`Signal::Kill`] (closing the stream) may
/// be available; implementations map what they cannot send to the closest stronger action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: restic's clean abort (no snapshot, lock removed).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOutcome {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Terminating signal number, when killed by a signal.
    pub signal: Option<i32>,
    /// The last part of its stderr.
    pub stderr_tail: String,
}

impl ExitOutcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// One line describing the status, without the stderr tail.
    pub fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown exit status".to_string(),
        }
    }
}

impl fmt::Display for ExitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_text())?;
        if !self.stderr_tail.is_empty() {
            write!(f, ": {}", self.stderr_tail)?;
        }
        Ok(())
    }
}

/// A boxed future, as returned by [`ProcControl::wait`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Controls one running child, wherever it runs.
pub trait ProcControl: Send {
    /// Waits for the child to end. Cancel-safe and idempotent: after the first completion, returns
    /// the same outcome again.
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitOutcome>>;
    /// Sends a signal to the child (and its process group where there is one). A no-op once the
    /// child has been reaped.
    fn signal(&mut self, signal: Signal) -> Result<()>;
    /// The stderr tail captured so far.
    fn stderr_tail(&self) -> String;
    /// The child's process id, where that means something.
    fn id(&self) -> Option<u32>;
}

/// A started child: its pipes (taken by whoever streams them) and its control handle.
pub struct Proc {
    /// Program name, for messages.
    pub name: String,
    /// Stdin, when the spec asked for a pipe.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Stdout, when the spec asked for a pipe.
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Wait and signal.
    pub control: Box<dyn ProcControl>,
}

impl Proc {
    /// See [`ProcControl::wait`].
    pub async fn wait(&mut self) -> Result<ExitOutcome> {
        self.control.wait().await
    }

    /// See [`ProcControl::signal`].
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        self.control.signal(signal)
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("id", &self.control.id())
            .finish()
    }
}

/// Starts commands somewhere: locally ([`crate::LocalRunner`]) or in a pod.
pub trait Runner: Send + Sync {
    /// Starts the command. Every child is ended when its [`Proc`] is dropped.
    fn spawn(&self, spec: &CommandSpec) -> impl Future<Output = Result<Proc>> + Send;
}

/// Output of a short command run to completion.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit status and stderr tail.
    pub outcome: ExitOutcome,
    /// All of stdout.
    pub stdout: Vec<u8>,
}

impl Captured {
    /// Stdout as lossy UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a short command to completion, collecting all of stdout (stderr is drained into the
/// tail by the runner). For streams of unbounded size use [`crate::gated`] instead.
pub async fn capture<R: Runner>(runner: &R, spec: &CommandSpec) -> Result<Captured> {
    let mut proc = runner.spawn(spec).await?;
    let mut stdout = Vec::new();
    if let Some(mut out) = proc.stdout.take() {
        // A read error here only shortens the output; the exit status tells the rest.
        let _ = out.read_to_end(&mut stdout).await;
    }
    let outcome = proc.wait().await?;
    Ok(Captured { outcome, stdout })
}
