//! A description of a command to run, independent of where it runs.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

/// What the child's stdin is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdinMode {
    /// `/dev/null`: the child can never block waiting for input (or a password prompt).
    #[default]
    Null,
    /// A pipe the caller writes to.
    Piped,
}

/// What the child's stdout is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdoutMode {
    /// A pipe the caller reads.
    #[default]
    Piped,
    /// Discarded.
    Null,
}

/// A program, its argv and environment. Arguments must never carry secrets: argv is visible to
/// every local user through `ps` and lands in API audit logs for pod exec. Secrets travel in
/// [`CommandSpec::env`] or in files.
#[derive(Clone, Default)]
pub struct CommandSpec {
    /// The program to run (a name looked up on PATH, or a path).
    pub program: OsString,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Environment variables set for the child, on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Inherited environment variables removed for the child.
    pub env_remove: Vec<OsString>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Stdin wiring.
    pub stdin: StdinMode,
    /// Stdout wiring.
    pub stdout: StdoutMode,
    /// What to call the command in messages when the program itself says little (a wrapper
    /// script run by `sh` is reported by the tool it runs).
    pub label: Option<String>,
}

impl CommandSpec {
    /// A spec for `program` with no arguments, stdin null, stdout piped.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes an inherited environment variable for the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Connects stdin to a pipe.
    pub fn stdin_piped(mut self) -> Self {
        self.stdin = StdinMode::Piped;
        self
    }

    /// Discards stdout.
    pub fn stdout_null(mut self) -> Self {
        self.stdout = StdoutMode::Null;
        self
    }

    /// Names the command in messages (see [`CommandSpec::label`]).
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The label, or else the program's file name, for messages.
    pub fn name(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        std::path::Path::new(&self.program)
            .file_name()
            .unwrap_or(OsStr::new("?"))
            .to_string_lossy()
            .into_owned()
    }
}

/// Shows the program and argv; never the environment, which may hold secrets.
impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_keys: Vec<_> = self.env.iter().map(|(k, _)| k).collect();
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env_keys", &env_keys)
            .field("stdin", &self.stdin)
            .finish()
    }
}

impl fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.to_string_lossy())?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_env_values() {
        let spec = CommandSpec::new("restic")
            .arg("snapshots")
            .env("RESTIC_PASSWORD", "hunter2");
        let shown = format!("{spec:?} {spec}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("RESTIC_PASSWORD"));
        assert_eq!(spec.to_string(), "restic snapshots");
    }
}
