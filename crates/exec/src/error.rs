//! Errors of the process layer.

use std::io;

/// Failures to start or control a child process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program does not exist or is not executable.
    #[error("program `{program}` not found")]
    ProgramNotFound {
        /// The program as given in the spec.
        program: String,
    },
    /// Spawning failed for another reason.
    #[error("failed to start `{program}`")]
    Spawn {
        /// The program as given in the spec.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A remote runner (pod exec) could not start the command.
    #[error("failed to start `{program}` in {location}: {message}")]
    Remote {
        /// The program as given in the spec.
        program: String,
        /// Where it was to run (e.g. `pod ns/name container c`).
        location: String,
        /// What went wrong.
        message: String,
    },
    /// Waiting for or signalling a child failed.
    #[error("failed to control `{program}`")]
    Control {
        /// The program being controlled.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
