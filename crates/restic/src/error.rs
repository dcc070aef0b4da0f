//! restic failures, classified.

use hasteward_exec::ExitOutcome;

/// A failed restic operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The restic binary is not installed or not executable.
    #[error("restic not found (`{bin}`): install restic (e.g. `apt-get install restic`) or pass --restic-bin")]
    NotInstalled {
        /// The binary that was looked up.
        bin: String,
    },
    /// `restic version` printed something unexpected.
    #[error("could not read the restic version from `{output}`")]
    UnknownVersion {
        /// What it printed.
        output: String,
    },
    /// No repository was given.
    #[error("no repository: pass --repo or set RESTIC_REPOSITORY")]
    NoRepository,
    /// No password source is available.
    #[error("no repository password: pass --password-file or set RESTIC_PASSWORD_FILE, RESTIC_PASSWORD or RESTIC_PASSWORD_COMMAND")]
    NoPassword,
    /// The password does not open the repository.
    #[error("wrong password for repository {repo}: {stderr}")]
    WrongPassword {
        /// The repository.
        repo: String,
        /// restic's stderr tail.
        stderr: String,
    },
    /// There is no repository at the location.
    #[error("no restic repository at {repo} (run `restic init`, or check --repo): {stderr}")]
    RepositoryMissing {
        /// The repository.
        repo: String,
        /// restic's stderr tail.
        stderr: String,
    },
    /// Another process holds a conflicting lock.
    #[error("repository {repo} is locked by another process (retry later; `restic unlock` only if its holder is gone): {stderr}")]
    Locked {
        /// The repository.
        repo: String,
        /// restic's stderr tail.
        stderr: String,
    },
    /// restic was interrupted (SIGINT) and saved nothing.
    #[error("restic {command} was interrupted; nothing was saved")]
    Interrupted {
        /// The subcommand.
        command: String,
    },
    /// Any other non-zero exit.
    #[error("restic {command} failed ({})", outcome)]
    Failed {
        /// The subcommand.
        command: String,
        /// Exit status and stderr tail.
        outcome: ExitOutcome,
    },
    /// restic exited 0 but its output could not be understood.
    #[error("could not parse the output of restic {command}: {detail}")]
    Parse {
        /// The subcommand.
        command: String,
        /// What went wrong.
        detail: String,
    },
    /// No snapshot matched.
    #[error("no snapshot matches {what}")]
    SnapshotNotFound {
        /// The selection that matched nothing.
        what: String,
    },
    /// Starting or controlling the process failed.
    #[error("running restic failed")]
    Exec(#[source] hasteward_exec::Error),
    /// Preparing restic's environment (cache or temp dir) failed.
    #[error("preparing restic's {what} failed")]
    Setup {
        /// What was being prepared.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Classifies a non-zero exit of `restic <command>` against `repo`.
    pub fn from_exit(command: &str, repo: &str, outcome: ExitOutcome) -> Self {
        let stderr = outcome.stderr_tail.clone();
        let repo = repo.to_string();
        let text = stderr.to_ascii_lowercase();
        match outcome.code {
            Some(10) => return Self::RepositoryMissing { repo, stderr },
            Some(11) => return Self::Locked { repo, stderr },
            Some(12) => return Self::WrongPassword { repo, stderr },
            Some(130) => {
                return Self::Interrupted {
                    command: command.to_string(),
                }
            }
            _ => {}
        }
        if outcome.signal == Some(2) {
            return Self::Interrupted {
                command: command.to_string(),
            };
        }
        // restic < 0.17 exits 1 for all of these: read its words.
        if text.contains("wrong password") || text.contains("no key found") {
            Self::WrongPassword { repo, stderr }
        } else if text.contains("unable to open config file")
            || text.contains("is there a repository at the following location")
            || text.contains("repository does not exist")
        {
            Self::RepositoryMissing { repo, stderr }
        } else if text.contains("repository is already locked")
            || text.contains("unable to create lock")
        {
            Self::Locked { repo, stderr }
        } else {
            Self::Failed {
                command: command.to_string(),
                outcome,
            }
        }
    }

    /// True when retrying later may succeed (a lock held by someone else).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Locked { .. })
    }

    /// A short stable label for metrics and JSON error codes.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotInstalled { .. } | Self::UnknownVersion { .. } => "restic.missing",
            Self::NoRepository | Self::NoPassword => "restic.config",
            Self::WrongPassword { .. } => "restic.wrong_password",
            Self::RepositoryMissing { .. } => "restic.repository_missing",
            Self::Locked { .. } => "restic.locked",
            Self::Interrupted { .. } => "restic.interrupted",
            Self::Failed { .. } | Self::Exec(_) | Self::Setup { .. } => "restic.failed",
            Self::Parse { .. } => "restic.parse",
            Self::SnapshotNotFound { .. } => "restic.snapshot_not_found",
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32, stderr: &str) -> ExitOutcome {
        ExitOutcome {
            code: Some(code),
            signal: None,
            stderr_tail: stderr.into(),
        }
    }

    #[test]
    fn classifies_0_14_texts_and_0_17_codes() {
        let e = Error::from_exit(
            "snapshots",
            "r",
            exit(1, "Fatal: wrong password or no key found"),
        );
        assert!(matches!(e, Error::WrongPassword { .. }));
        let e = Error::from_exit(
            "snapshots",
            "r",
            exit(1, "Fatal: unable to open config file: stat nope/config: no such file or directory\nIs there a repository at the following location?"),
        );
        assert!(matches!(e, Error::RepositoryMissing { .. }));
        assert!(matches!(
            Error::from_exit("x", "r", exit(11, "")),
            Error::Locked { .. }
        ));
        assert!(matches!(
            Error::from_exit("x", "r", exit(12, "")),
            Error::WrongPassword { .. }
        ));
        assert!(matches!(
            Error::from_exit("x", "r", exit(130, "")),
            Error::Interrupted { .. }
        ));
        let e = Error::from_exit(
            "x",
            "r",
            exit(
                1,
                "Fatal: unable to create lock in backend: repository is already locked by PID 1",
            ),
        );
        assert!(e.is_transient());
        assert!(matches!(
            Error::from_exit("x", "r", exit(3, "boom")),
            Error::Failed { .. }
        ));
    }
}
