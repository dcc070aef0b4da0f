//! Credential files for database clients: the only way a database password reaches a child.
//!
//! Each run gets a private directory (mode 0700) holding files of mode 0600: a `.pgpass` for
//! PostgreSQL clients (`PGPASSFILE`) and an option file for MySQL/MariaDB clients
//! (`--defaults-extra-file`). The directory and everything in it is removed when the value is
//! dropped, on success and on failure.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A private directory of credential files, removed on drop.
#[derive(Debug)]
pub struct SecretFiles {
    dir: tempfile::TempDir,
}

impl SecretFiles {
    /// Creates the private directory.
    pub fn new() -> Result<Self> {
        let base = hasteward_exec::scratch::writable_temp_dir().ok_or_else(|| {
            Error::io(
                "finding a writable directory for credentials (set TMPDIR)",
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("hasteward-secrets-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)
            .map_err(|e| Error::io("creating a private directory for credentials", e))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new file `name` (mode 0600) holding `content`, e.g. a restic password file.
    pub fn file(&self, name: &str, content: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("writing a credentials file", e))?;
        f.write_all(content.as_bytes())
            .map_err(|e| Error::io("writing a credentials file", e))?;
        Ok(path)
    }

    /// A `.pgpass` line for exactly this host, port and user.
    pub fn pgpass(&self, host: &str, port: u16, user: &str, password: &str) -> Result<PathBuf> {
        let line = format!(
            "{}:{}:*:{}:{}\n",
            pgpass_escape(host),
            port,
            pgpass_escape(user),
            pgpass_escape(password)
        );
        self.file("pgpass", &line)
    }

    /// A MySQL option file with a `[client]` section.
    pub fn mysql_defaults(&self, user: &str, password: Option<&str>) -> Result<PathBuf> {
        let mut text = format!("[client]\nuser=\"{}\"\n", option_escape(user));
        if let Some(pw) = password {
            text.push_str(&format!("password=\"{}\"\n", option_escape(pw)));
        }
        self.file("my.cnf", &text)
    }
}

/// `.pgpass` fields escape `:` and `\` with a backslash.
fn pgpass_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Option-file values in double quotes escape `\` and `"`.
fn option_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Reads a password file: the first line, without its line ending. Empty is an error.
pub fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read the database password file {}: {e}",
            path.display()
        ))
    })?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(Error::Usage(format!(
            "the database password file {} is empty",
            path.display()
        )));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_removed() {
        let s = SecretFiles::new().unwrap();
        let dir = s.dir().to_path_buf();
        let p = s.pgpass("127.0.0.1", 5432, "u:x", "p\\w:d").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "127.0.0.1:5432:*:u\\:x:p\\\\w\\:d\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let m = s.mysql_defaults("root", Some("a\"b")).unwrap();
        assert!(std::fs::read_to_string(m)
            .unwrap()
            .contains("password=\"a\\\"b\""));
        drop(s);
        assert!(!dir.exists());
    }
}
