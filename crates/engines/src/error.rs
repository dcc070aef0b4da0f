//! Engine failures, each mapped to one documented exit code.

use hasteward_exec::PumpError;
use hasteward_model::ExitCode;

/// A failed backup, restore or verification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input (flags, files, names).
    #[error("{0}")]
    Usage(String),
    /// A safety gate refused the operation.
    #[error("{0}")]
    Refused(String),
    /// A repair step failed (after any escrow; what was left in place is in the message).
    #[error("{0}")]
    RepairFailed(String),
    /// A repair was interrupted (Ctrl-C, SIGTERM) between steps.
    #[error("{0}")]
    RepairCancelled(String),
    /// An operation was interrupted (Ctrl-C, SIGTERM) before it changed anything.
    #[error("{0}")]
    Cancelled(String),
    /// A restore drill found problems.
    #[error("{message}")]
    DrillFailed {
        /// What failed.
        message: String,
        /// The findings.
        result: Box<crate::drill::DrillResult>,
    },
    /// A sync finished without every snapshot in the destination.
    #[error("{0}")]
    SyncIncomplete(String),
    /// `restic check` found the repository damaged.
    #[error("{0}")]
    RepositoryDamaged(String),
    /// A tool hasteward runs is not installed.
    #[error("`{tool}` not found on PATH: {hint}")]
    ToolMissing {
        /// The tool (or alternatives).
        tool: String,
        /// How to get it.
        hint: &'static str,
    },
    /// A tool hasteward orchestrates (vmbackup, vmrestore) failed; `detail` is its message.
    #[error("`{tool}` failed: {detail}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// Its message.
        detail: String,
    },
    /// The database could not be reached or queried.
    #[error("cannot reach the database ({detail})")]
    Database {
        /// The client's message.
        detail: String,
    },
    /// A restic operation failed.
    #[error(transparent)]
    Restic(#[from] hasteward_restic::Error),
    /// The stream failed; nothing was committed.
    #[error(transparent)]
    Stream(#[from] PumpError),
    /// The snapshot was saved but recording its checksum failed.
    #[error("snapshot {snapshot} was saved but recording its checksum failed: {source}")]
    Tagging {
        /// The saved snapshot.
        snapshot: String,
        /// Why tagging failed.
        #[source]
        source: hasteward_restic::Error,
    },
    /// A stored stream does not match its recorded checksum.
    #[error("snapshot {snapshot} is damaged: SHA-256 {actual}, recorded {expected}")]
    ChecksumMismatch {
        /// The snapshot.
        snapshot: String,
        /// Recorded checksum.
        expected: String,
        /// Actual checksum.
        actual: String,
    },
    /// A process could not be started.
    #[error(transparent)]
    Exec(#[from] hasteward_exec::Error),
    /// Kubernetes access failed.
    #[error(transparent)]
    Kube(#[from] hasteward_k8s::Error),
    /// Local I/O failed.
    #[error("{what} failed: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O failure while doing `what`.
    pub fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }

    /// The exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        use hasteward_restic::Error as R;
        match self {
            Self::Usage(_) => ExitCode::Usage,
            Self::Refused(_) => ExitCode::Refused,
            Self::RepairFailed(_) | Self::RepairCancelled(_) | Self::Cancelled(_) => {
                ExitCode::Failed
            }
            Self::RepositoryDamaged(_) | Self::SyncIncomplete(_) | Self::DrillFailed { .. } => {
                ExitCode::Failed
            }
            Self::ToolMissing { .. } | Self::Database { .. } => ExitCode::Dependency,
            Self::Restic(R::NotInstalled { .. } | R::UnknownVersion { .. }) => ExitCode::Dependency,
            Self::Restic(R::NoPassword | R::NoRepository | R::Setup { .. }) => ExitCode::Usage,
            Self::Restic(R::SnapshotNotFound { .. }) => ExitCode::Usage,
            Self::Exec(hasteward_exec::Error::ProgramNotFound { .. }) => ExitCode::Dependency,
            Self::Exec(hasteward_exec::Error::Remote { .. }) => ExitCode::Dependency,
            Self::Kube(e) if e.is_dependency() => ExitCode::Dependency,
            Self::Kube(hasteward_k8s::Error::Busy { .. }) => ExitCode::Refused,
            Self::Tagging { .. } => ExitCode::Partial,
            _ => ExitCode::Failed,
        }
    }

    /// A stable code for JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Refused(_) => "refused",
            Self::RepairFailed(_) => "repair.failed",
            Self::RepairCancelled(_) | Self::Cancelled(_) => "cancelled",
            Self::RepositoryDamaged(_) => "repository.damaged",
            Self::SyncIncomplete(_) => "sync.incomplete",
            Self::DrillFailed { .. } => "drill.failed",
            Self::ToolMissing { .. } => "dependency.missing",
            Self::Database { .. } => "database.unreachable",
            Self::ToolFailed { .. } => "tool.failed",
            Self::Restic(e) => e.category(),
            Self::Stream(PumpError::Cancelled { .. }) => "cancelled",
            Self::Stream(_) => "stream.failed",
            Self::Tagging { .. } => "snapshot.tagging_failed",
            Self::ChecksumMismatch { .. } => "snapshot.checksum_mismatch",
            Self::Exec(_) => "exec.failed",
            Self::Kube(
                hasteward_k8s::Error::Unreachable { .. } | hasteward_k8s::Error::Config { .. },
            ) => "cluster.unreachable",
            Self::Kube(hasteward_k8s::Error::NotFound { .. }) => "cluster.not_found",
            Self::Kube(hasteward_k8s::Error::PodNotReady { .. }) => "cluster.pod_not_ready",
            Self::Kube(hasteward_k8s::Error::Busy { .. }) => "cluster.busy",
            Self::Kube(_) => "cluster.api",
            Self::Io { .. } => "io",
        }
    }

    /// Whether running again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Restic(e) => e.is_transient(),
            Self::Database { .. } => true,
            Self::Kube(e) => matches!(
                e,
                hasteward_k8s::Error::Unreachable { .. }
                    | hasteward_k8s::Error::Conflict { .. }
                    | hasteward_k8s::Error::Busy { .. }
                    | hasteward_k8s::Error::PodNotReady { .. }
            ),
            _ => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
