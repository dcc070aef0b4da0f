//! The machine-readable output of every run: one envelope (`-o json`), or a stream of events
//! ending with the envelope (`-o jsonl`). Printed also for errors found before any work starts.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Version of the envelope schema.
pub const SCHEMA_VERSION: &str = "hasteward/v1";

/// One error in an envelope.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorEntry {
    /// Stable code (`usage`, `restic.wrong_password`, `dump.failed`, …).
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// Whether running again later may succeed.
    pub retryable: bool,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Schema version.
    pub schema_version: &'static str,
    /// The command (`backup`, `restore`, …).
    pub command: String,
    /// Unique id of this run.
    pub run_id: String,
    /// Whether the command succeeded.
    pub success: bool,
    /// The process exit code.
    pub exit_code: i32,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
    /// Errors (empty on success).
    pub errors: Vec<ErrorEntry>,
    /// Command-specific result.
    pub data: serde_json::Value,
}

/// A JSONL event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `run.started`, `step.started`, `step.completed`, `step.failed`, `run.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The command.
    pub command: String,
    /// Run id.
    pub run_id: String,
    /// Event time.
    pub timestamp: DateTime<Utc>,
    /// Step name, for step events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extra data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}
