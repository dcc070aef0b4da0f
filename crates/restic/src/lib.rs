//! A typed wrapper over the `restic` binary.
//!
//! hasteward drives restic as a child process rather than linking a restic implementation, so
//! repositories stay readable by plain restic. This crate owns everything about that binary:
//! which version it is and what it can do ([`Capabilities`]), how commands are spelled, how
//! secrets reach it (environment and password files only, never argv), how its `--json` output
//! is parsed (tolerant types), and how its failures map to [`Error`] variants.

mod backup;
mod error;
mod json;
mod repo;
mod retention;
mod version;

pub use backup::{BackupRequest, BackupRun, BackupSummary};
pub use error::{Error, Result};
pub use json::{ForgetGroup, Snapshot, SnapshotRef, Stats};
pub use repo::{Credentials, Restic, SnapshotFilter};
pub use retention::KeepPolicy;
pub use version::{Capabilities, Version};
