//! The exit-code table, one place for the CLI, the docs and the tests.

use serde::Serialize;

/// Process exit codes. Documented in the README; scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "i32")]
pub enum ExitCode {
    /// The operation succeeded.
    Success,
    /// The operation failed.
    Failed,
    /// Bad usage or invalid input.
    Usage,
    /// Refused by a safety gate (pass `--force` where the gate allows it).
    Refused,
    /// A dependency is missing or unreachable (restic, a dump tool, a database, the cluster).
    Dependency,
    /// Partial success: the main work was done but a later step failed.
    Partial,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::Dependency => 4,
            Self::Partial => 5,
        }
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}
