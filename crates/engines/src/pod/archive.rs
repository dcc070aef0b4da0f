//! A data directory as a `tar` stream: the escrow of a node whose server cannot run (a Galera
//! node on the losing side of a forced bootstrap). `tar` runs in a helper pod that mounts the
//! node's volume read-only, and its output goes through the same gated stream as a dump: a
//! `tar` that fails, or a stream without tar's end-of-archive blocks, never becomes a snapshot.

use hasteward_exec::{CommandSpec, Runner, Signal, StreamFilter};

use crate::target::{Invocation, Target};

/// tar's end of archive: two 512-byte zero blocks (the stream's last bytes contain them).
pub const END_OF_ARCHIVE: &[u8] = &[0; 1024];

/// A directory in a pod, archived with `tar`.
#[derive(Debug)]
pub struct DataDirArchive<R> {
    runner: R,
    location: String,
    dir: String,
}

impl<R: Runner> DataDirArchive<R> {
    /// Archives `dir` through `runner`; `location` names it in messages.
    pub fn new(runner: R, location: String, dir: &str) -> Self {
        Self {
            runner,
            location,
            dir: dir.to_string(),
        }
    }
}

impl<R: Runner> Target for DataDirArchive<R> {
    type Runner = R;

    fn runner(&self) -> &R {
        &self.runner
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_databases(&self) -> Option<Invocation> {
        None
    }

    fn dump(&self, _database: Option<&str>) -> Invocation {
        CommandSpec::new("tar")
            .args(["-C", &self.dir, "-cf", "-", "."])
            .into()
    }

    fn restore_client(&self, _replace: bool) -> Invocation {
        // Restoring an archive means unpacking it onto a stopped node's volume by hand (see
        // docs/safety.md); this is only the reading side.
        CommandSpec::new("tar")
            .args(["-C", &self.dir, "-xf", "-"])
            .stdin_piped()
            .into()
    }

    fn completion_marker(&self, _one_database: bool) -> Option<&'static [u8]> {
        Some(END_OF_ARCHIVE)
    }

    fn client_abort(&self) -> Signal {
        Signal::Kill
    }

    fn restore_filter(
        &self,
        _replace: bool,
        _include_system: bool,
    ) -> Option<Box<dyn StreamFilter>> {
        None
    }
}
