//! `restic backup --stdin`, started before the producer.
//!
//! restic opens the repository and loads its index before it reads stdin (restic#3916); on a
//! big repository that takes a while. [`BackupRun::ready`] waits for restic's first progress
//! line, which it prints only once it is about to read, so the dump is started afterwards and a
//! slow restic start never leaves a database session idle. A wrong password or a lock also
//! shows up there, before any database is touched.

use chrono::{DateTime, Utc};
use hasteward_exec::{ExitOutcome, Proc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::json::BackupMessage;
use crate::{Error, Result};

/// What to back up from stdin, and how to label it.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The stdin filename (`<namespace>/<cluster>/<file>`).
    pub filename: String,
    /// Tags as key/value pairs, one `--tag k=v` each.
    pub tags: Vec<(String, String)>,
    /// The recorded host.
    pub host: String,
    /// The recorded time (UTC); restic's own clock when `None`.
    pub time: Option<DateTime<Utc>>,
}

/// The `summary` line of `restic backup --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupSummary {
    /// The new snapshot's (short) id.
    pub snapshot_id: String,
    /// New files (1 for a stdin backup of new content).
    pub files_new: u64,
    /// Bytes added to the repository after deduplication and compression.
    pub data_added: u64,
    /// Bytes read from stdin.
    pub total_bytes_processed: u64,
    /// Seconds restic spent.
    pub total_duration: f64,
}

#[derive(Debug, Default)]
struct Output {
    summary: Option<BackupSummary>,
    errors: Vec<String>,
}

/// A running `restic backup --stdin`. Its stdin is [`BackupRun::proc`]`.stdin`, for the pump.
pub struct BackupRun {
    /// The restic process; its stdin is still in place for the pump.
    pub proc: Proc,
    repo: String,
    ready: Option<oneshot::Receiver<()>>,
    output: JoinHandle<Output>,
}

impl BackupRun {
    pub(crate) fn start(mut proc: Proc, repo: String) -> Self {
        let (tx, rx) = oneshot::channel();
        let stdout = proc.stdout.take();
        let output = tokio::spawn(async move {
            let mut out = Output::default();
            let Some(stdout) = stdout else { return out };
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
                match serde_json::from_str::<BackupMessage>(&line) {
                    Ok(BackupMessage::Summary(s)) => out.summary = Some(s),
                    Ok(BackupMessage::Error { error, item }) => {
                        out.errors.push(format!("{item}: {error}"));
                    }
                    Ok(_) => {}
                    Err(_) => tracing::debug!(line, "unrecognised restic output"),
                }
            }
            out
        });
        Self {
            proc,
            repo,
            ready: Some(rx),
            output,
        }
    }

    /// Waits until restic is about to read stdin. Fails with restic's own error when it exits
    /// first (wrong password, missing repository, lock).
    pub async fn ready(&mut self) -> Result<()> {
        let Some(rx) = self.ready.take() else {
            return Ok(());
        };
        tokio::select! {
            got = rx => {
                if got.is_ok() {
                    return Ok(());
                }
                // stdout closed without a line: restic is exiting.
                let outcome = self.proc.wait().await.map_err(Error::Exec)?;
                Err(self.exit_error(outcome))
            }
            out = self.proc.wait() => {
                let outcome = out.map_err(Error::Exec)?;
                Err(self.exit_error(outcome))
            }
        }
    }

    fn exit_error(&self, outcome: ExitOutcome) -> Error {
        if outcome.success() {
            return Error::Parse {
                command: "backup".into(),
                detail: "restic exited before reading stdin".into(),
            };
        }
        Error::from_exit("backup", &self.repo, outcome)
    }

    /// After restic exited 0: the summary with the snapshot id.
    pub async fn finish(self) -> Result<BackupSummary> {
        let out = self.output.await.unwrap_or_default();
        match out.summary {
            Some(s) if !s.snapshot_id.is_empty() => Ok(s),
            _ => Err(Error::Parse {
                command: "backup".into(),
                detail: if out.errors.is_empty() {
                    "no summary with a snapshot id".into()
                } else {
                    out.errors.join("; ")
                },
            }),
        }
    }

    /// Classifies how restic ended when the stream failed on its side.
    pub fn failure(&self, outcome: ExitOutcome) -> Error {
        Error::from_exit("backup", &self.repo, outcome)
    }
}
