//! Finding a writable place for short-lived files.
//!
//! In a scratch container neither `$TMPDIR` nor `$HOME` may be writable. hasteward and the
//! tools it runs (restic's cache and pack temp files, credential files) need somewhere to write,
//! so every caller asks here instead of assuming `/tmp`.

use std::path::{Path, PathBuf};

/// True when a file can be created in `dir` (created first if missing).
pub fn writable(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).is_ok() && tempfile::tempfile_in(dir).is_ok()
}

/// The first writable directory among `$TMPDIR` (or the platform default), `/tmp`, `/var/tmp`,
/// `/dev/shm` and the current directory.
pub fn writable_temp_dir() -> Option<PathBuf> {
    [
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev/shm"),
    ]
    .into_iter()
    .chain(std::env::current_dir().ok())
    .find(|d| writable(d))
}
