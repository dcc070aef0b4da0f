//! [`Target`]: one database server as the flows see it: which commands dump it, restore into
//! it and list its databases, and the [`Runner`] that runs them (a local process for servers
//! reached over TCP, a pod exec for servers in a cluster).

use hasteward_exec::{CommandSpec, Proc, Runner, Signal, StreamFilter};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// Bytes written to a command's stdin before anything else, e.g. a credential line for the
/// in-pod wrapper. Never printed.
#[derive(Clone, Default)]
pub struct Preamble(pub Vec<u8>);

impl std::fmt::Debug for Preamble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Preamble(<{} bytes redacted>)", self.0.len())
    }
}

/// A command plus what its stdin starts with.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The command.
    pub spec: CommandSpec,
    /// Written to stdin first (the spec must pipe stdin).
    pub preamble: Option<Preamble>,
}

impl From<CommandSpec> for Invocation {
    fn from(spec: CommandSpec) -> Self {
        Self {
            spec,
            preamble: None,
        }
    }
}

/// A database server the flows can back up and restore.
pub trait Target: Send + Sync {
    /// Where the commands run.
    type Runner: Runner;
    /// The runner.
    fn runner(&self) -> &Self::Runner;
    /// Where the server is, for messages (`127.0.0.1:5432`, `pod ns/x container postgres`).
    fn location(&self) -> String;
    /// Lists user databases, one per line; `None` when the flavour has no way to (mongo).
    fn list_databases(&self) -> Option<Invocation>;
    /// The dump of the whole server, or of one database.
    fn dump(&self, database: Option<&str>) -> Invocation;
    /// The restore client reading the dump on stdin; `replace` is `--force`.
    fn restore_client(&self, replace: bool) -> Invocation;
    /// What the dump's last bytes must contain (whole server or one database).
    fn completion_marker(&self, one_database: bool) -> Option<&'static [u8]>;
    /// How to stop the restore client without letting it see the end of its input.
    fn client_abort(&self) -> Signal;
    /// Restore-time rewriting of the stream.
    fn restore_filter(&self, replace: bool, include_system: bool) -> Option<Box<dyn StreamFilter>>;
}

/// Starts an invocation and writes its preamble. With `close_stdin`, stdin is closed after the
/// preamble (a dump reads nothing else); otherwise the caller streams into it.
pub async fn start<R: Runner>(runner: &R, inv: &Invocation, close_stdin: bool) -> Result<Proc> {
    let mut proc = runner.spawn(&inv.spec).await?;
    if let Some(pre) = &inv.preamble {
        let name = proc.name.clone();
        let stdin = proc.stdin.as_mut().ok_or_else(|| {
            Error::Usage(format!(
                "internal: `{name}` has a stdin preamble but no stdin pipe"
            ))
        })?;
        if let Err(e) = stdin.write_all(&pre.0).await {
            let _ = proc.signal(Signal::Kill);
            let outcome = proc.wait().await?;
            return Err(Error::Database {
                detail: format!("`{name}` stopped before reading its credentials ({e}): {outcome}"),
            });
        }
        let _ = stdin.flush().await;
    }
    if close_stdin {
        if let Some(mut stdin) = proc.stdin.take() {
            let _ = stdin.shutdown().await;
        }
    }
    Ok(proc)
}

/// Runs a short invocation to completion and returns its stdout; a non-zero exit is a database
/// error naming `location`.
pub async fn capture<R: Runner>(runner: &R, inv: &Invocation, location: &str) -> Result<String> {
    let mut proc = start(runner, inv, true).await?;
    let mut stdout = Vec::new();
    if let Some(mut out) = proc.stdout.take() {
        use tokio::io::AsyncReadExt;
        let _ = out.read_to_end(&mut stdout).await;
    }
    let outcome = proc.wait().await?;
    if !outcome.success() {
        return Err(Error::Database {
            detail: format!("{location}: {outcome}"),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Runs the target's database listing; `None` when the flavour cannot list.
pub async fn list_databases<T: Target>(target: &T) -> Result<Option<Vec<String>>> {
    let Some(inv) = target.list_databases() else {
        return Ok(None);
    };
    let text = capture(target.runner(), &inv, &target.location()).await?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}
