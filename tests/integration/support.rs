//! Helpers: the binary, a throwaway repository, credential files, process lookups.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hasteward_testkit::{MariaDb, Postgres};
use serde_json::Value;

/// The real `pg_dumpall`, for shims that wrap it.
pub const REAL_PG_DUMPALL: &str = "/usr/lib/postgresql/15/bin/pg_dumpall";

/// The binary under test, with a clean environment (no HASTEWARD_* or RESTIC_* leaking in).
pub fn hasteward() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hasteward"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HASTEWARD_")
            || k.starts_with("RESTIC_")
            || k == "PGPASSWORD"
            || k == "MYSQL_PWD"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A temp dir with a repository path and its password file.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub password_file: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let password_file = secret_file(dir.path(), "repo.pw", "repo-Secret-8b1f");
        Repo {
            dir,
            path,
            password_file,
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--repo".into(),
            self.path.display().to_string(),
            "--password-file".into(),
            self.password_file.display().to_string(),
        ]
    }

    /// Plain restic against this repository.
    pub fn restic(&self, args: &[&str]) -> Output {
        Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", &self.path)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env_remove("RESTIC_PASSWORD")
            .output()
            .expect("restic is installed (scripts/install-deps.sh)")
    }

    pub fn snapshots(&self) -> Vec<Value> {
        if !self.path.join("config").exists() {
            return Vec::new();
        }
        let out = self.restic(&["snapshots", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn locks(&self) -> usize {
        let locks = self.path.join("locks");
        std::fs::read_dir(locks).map(|d| d.count()).unwrap_or(0)
    }
}

pub fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{content}\n").as_bytes()))
        .unwrap();
    p
}

/// Target flags for a PostgreSQL test server.
pub fn pg_args(pg: &Postgres, pw_file: &Path, cluster: &str) -> Vec<String> {
    vec![
        "-e".into(),
        "standalone".into(),
        "--db-type".into(),
        "postgres".into(),
        "-c".into(),
        cluster.into(),
        "--host".into(),
        pg.host().into(),
        "--port".into(),
        pg.port().to_string(),
        "--db-user".into(),
        pg.user().into(),
        "--db-password-file".into(),
        pw_file.display().to_string(),
    ]
}

/// Target flags for a MariaDB test server.
pub fn maria_args(db: &MariaDb, pw_file: &Path, cluster: &str) -> Vec<String> {
    vec![
        "-e".into(),
        "standalone".into(),
        "--db-type".into(),
        "mariadb".into(),
        "-c".into(),
        cluster.into(),
        "--host".into(),
        db.host().into(),
        "--port".into(),
        db.port().to_string(),
        "--db-user".into(),
        db.user().into(),
        "--db-password-file".into(),
        pw_file.display().to_string(),
    ]
}

/// Runs the binary to completion; returns (exit code, stdout, stderr).
pub fn run(args: &[String], path_prefix: Option<&Path>) -> (i32, String, String) {
    let mut cmd = hasteward();
    cmd.args(args);
    if let Some(p) = path_prefix {
        cmd.env("PATH", with_path_prefix(p));
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn with_path_prefix(p: &Path) -> String {
    format!(
        "{}:{}",
        p.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Starts the binary in the background with `path_prefix` first on PATH.
pub fn spawn(args: &[String], path_prefix: &Path) -> std::process::Child {
    hasteward()
        .args(args)
        .env("PATH", with_path_prefix(path_prefix))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Parses a `-o json` envelope.
pub fn envelope(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not an envelope ({e}): {stdout}"))
}

/// A directory holding one executable shell script `name`.
pub fn shim(dir: &Path, name: &str, script: &str) -> PathBuf {
    let bin = dir.join("shim-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Pids whose argv contains `needle`.
pub fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Waits until `cond` holds, or panics after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A content checksum of one PostgreSQL table.
pub fn pg_checksum(pg: &Postgres, db: &str, table: &str) -> String {
    pg.psql(db, &format!("SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"))
}

/// Starts a backup whose producer runs the real `pg_dumpall` and then lingers as `sleep SECS`
/// (a unique number per test, so the process can be found), and waits until it lingers. The
/// stream is complete but the producer has not exited: only its exit status decides.
pub fn lingering_backup(
    pg: &Postgres,
    repo: &Repo,
    pw: &Path,
    cluster: &str,
    secs: u32,
) -> std::process::Child {
    let bin = shim(
        repo.dir.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\"; exec sleep {secs}"),
    );
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(pg, pw, cluster));
    args.extend(repo.args());
    let child = spawn(&args, &bin);
    let needle = format!("sleep {secs}");
    wait_for("the lingering producer", Duration::from_secs(30), || {
        !pids_with(&needle).is_empty()
    });
    child
}

/// Standard base64 (for Secret `data` in simulator fixtures).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A tool that `scripts/install-deps.sh` installs from PyPI into the tools venv
/// (`$HASTEWARD_TOOLS`, default `/opt/hasteward-tools`). Missing is a failure, not a skip.
pub fn pypi_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("HASTEWARD_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/hasteward-tools"));
    let path = dir.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// The database `name` in a restore drill's envelope (`data.databases`); panics with the
/// envelope when it is missing.
pub fn drilled_database(env: &Value, name: &str) -> Value {
    env["data"]["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no database {name} in {env:#}"))
}

/// The pods created through the simulator's API, as sent.
pub fn created_pods(requests: &[hasteward_kubesim::RecordedRequest]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .filter_map(|r| serde_json::from_str(r.body.as_deref()?).ok())
        .collect()
}
