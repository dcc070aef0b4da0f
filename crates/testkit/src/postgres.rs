//! A throwaway PostgreSQL 15 cluster for tests.
//!
//! The cluster lives in a private temp dir, listens on `127.0.0.1` on a free
//! port and requires scram-sha-256 password auth over TCP (local socket
//! connections are trusted). As root, `initdb` and `pg_ctl` run as the
//! `postgres` OS user through `runuser`, because PostgreSQL refuses root.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::util::{self, command_as, log_tail, run_checked, run_with_stdin, stdout_trimmed};
use crate::watchdog::Watchdog;

/// Where Debian's PostgreSQL 15 binaries live.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// How many times to retry with a new port when the chosen one got taken.
const START_ATTEMPTS: usize = 3;

/// Removes the cluster if the test process dies without `Drop`:
/// `$1` pg_ctl, `$2` data dir, `$3` temp dir, `$4` OS user to run as or "".
const WATCHDOG_CLEANUP: &str = r#"
if [ -n "$4" ]; then runuser -u "$4" -- "$1" -D "$2" -m immediate -w -t 30 stop
else "$1" -D "$2" -m immediate -w -t 30 stop; fi >/dev/null 2>&1
rm -rf "$3"
"#;

/// A running throwaway PostgreSQL 15 cluster; stopped and removed on drop.
pub struct Postgres {
    dir: Option<TempDir>,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
    running: bool,
    watchdog: Watchdog,
}

impl Postgres {
    /// Initializes and starts a new cluster in a private temp dir.
    ///
    /// Panics with a clear message (and the server log tail) if PostgreSQL 15
    /// is missing or the cluster does not come up.
    pub fn start() -> Postgres {
        let bin = PathBuf::from(BIN_DIR);
        for tool in ["initdb", "pg_ctl", "psql"] {
            if !bin.join(tool).is_file() {
                panic!(
                    "PostgreSQL 15 not found at {BIN_DIR} (no {tool}): run scripts/install-deps.sh"
                );
            }
        }
        let run_as = util::is_root().then(|| "postgres".to_string());
        let owner = run_as.as_deref().map(util::lookup_user);
        let dir = util::private_dir("pg-", owner);
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let log = root.join("postgres.log");
        let password = util::password();
        let watchdog = Watchdog::spawn(
            WATCHDOG_CLEANUP,
            &[
                bin.join("pg_ctl").into_os_string(),
                data.clone().into_os_string(),
                root.clone().into_os_string(),
                run_as.clone().unwrap_or_default().into(),
            ],
        );
        let mut pg = Postgres {
            dir: Some(dir),
            data,
            log,
            bin,
            port: 0,
            password,
            run_as,
            running: false,
            watchdog,
        };
        pg.init(&root, owner);
        pg.start_server();
        pg
    }

    /// Runs `initdb` and writes the test settings into `postgresql.conf`.
    fn init(&self, root: &Path, owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>) {
        let pwfile = root.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))
            .unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", pwfile.display()));
        if let Some((uid, gid)) = owner {
            util::chown_to(&pwfile, uid, gid);
        }
        let mut initdb = self.tool("initdb");
        initdb
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .current_dir(root);
        run_checked(&mut initdb, "initdb", None);
        let conf = format!(
            "\n# hasteward-testkit\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 50\n\
             shared_buffers = 32MB\n",
            root.display()
        );
        self.append_conf(&conf);
    }

    /// Picks a free port and runs `pg_ctl start`, retrying when the port was
    /// taken in the meantime.
    fn start_server(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            self.port = crate::free_port();
            self.append_conf(&format!("port = {}\n", self.port));
            let mut pg_ctl = self.tool("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "60", "start"])
                .current_dir(self.data.parent().unwrap_or(Path::new("/")))
                .stdin(Stdio::null());
            let out = pg_ctl
                .output()
                .unwrap_or_else(|e| panic!("testkit: cannot run {pg_ctl:?}: {e}"));
            if out.status.success() {
                self.running = true;
                return;
            }
            let tail = log_tail(&self.log, 40);
            if attempt < START_ATTEMPTS && tail.contains("Address already in use") {
                continue;
            }
            panic!(
                "testkit: PostgreSQL failed to start on port {} ({}):\n{}\n{}\n--- tail of {} ---\n{tail}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end(),
                self.log.display(),
            );
        }
    }

    fn append_conf(&self, text: &str) {
        let path = self.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("testkit: cannot append to {}: {e}", path.display()));
    }

    /// A command for a server-side tool, run as the `postgres` OS user when
    /// this process is root.
    fn tool(&self, name: &str) -> Command {
        command_as(self.run_as.as_deref(), &self.bin.join(name))
    }

    /// Host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Superuser name: `postgres`.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password (alphanumeric, different for each instance).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Directory with the PostgreSQL 15 binaries (`psql`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's data directory (owned by `postgres` when run as root).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Runs `sql` with `psql -X -At -v ON_ERROR_STOP=1` over TCP as the
    /// superuser on database `db` and returns the trimmed stdout.
    ///
    /// The script is fed on stdin, so each statement runs on its own (e.g.
    /// `CREATE DATABASE` may be one of several statements).
    ///
    /// Panics with psql's stderr if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host()])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db])
            .args(["-f", "-"])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        let out = run_with_stdin(&mut cmd, sql, &format!("psql on database {db:?}"));
        stdout_trimmed(&out)
    }

    /// Stops the server (`pg_ctl stop -m fast`) and removes the temp dir.
    ///
    /// Idempotent, never panics; also called on drop.
    pub fn stop(&mut self) {
        if self.running {
            self.running = false;
            if !self.pg_ctl_stop("fast") && !self.pg_ctl_stop("immediate") {
                eprintln!(
                    "testkit: could not stop PostgreSQL in {}; log tail:\n{}",
                    self.data.display(),
                    log_tail(&self.log, 20)
                );
            }
        }
        self.watchdog.disarm();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("testkit: cannot remove {}: {e}", path.display());
            }
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> bool {
        self.tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
