//! A throwaway PostgreSQL 15 cluster for tests.
//!
//! The cluster lives in a private temp dir, listens on `127.0.0.1` on a free
//! port and requires scram-sha-256 password auth over TCP (local socket
//! connections are trusted). As root, `initdb` and `pg_ctl` run as the
//! `postgres` OS user through `runuser`, because PostgreSQL refuses root.
//!
//! A running cluster can seed streaming replicas
//! ([`Postgres::start_replica`]), each a [`Postgres`] of its own.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, command_as, log_tail, run_checked, run_with_stdin, stdout_trimmed};
use crate::watchdog::Watchdog;

/// Where Debian's PostgreSQL 15 binaries live.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// How many times to retry with a new port when the chosen one got taken.
const START_ATTEMPTS: usize = 3;
/// How long a replica may take to enter recovery and to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls of a replica.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

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
    /// The cluster is ready to be the primary of streaming replicas (see
    /// [`Postgres::start_replica`]): `wal_level = replica`, WAL senders, hot
    /// standby, `wal_log_hints` (for `pg_rewind`) and scram-authenticated
    /// replication connections from `127.0.0.1` for the superuser.
    ///
    /// Panics with a clear message (and the server log tail) if PostgreSQL 15
    /// is missing or the cluster does not come up.
    pub fn start() -> Postgres {
        let mut pg = Postgres::new_in_temp_dir();
        pg.init();
        pg.start_server();
        pg
    }

    /// Takes a base backup of this (running) cluster with `pg_basebackup -R`
    /// and starts it as a streaming replica in its own temp dir on its own
    /// free port.
    ///
    /// Returns once the replica is in recovery (`pg_is_in_recovery()`),
    /// streams from this cluster and has replayed this cluster's current WAL
    /// position. The replica has the same superuser and password; it is read
    /// only, and is stopped and removed on drop like any [`Postgres`].
    ///
    /// Panics with a clear message (and the replica's log tail) on failure.
    pub fn start_replica(&self) -> Postgres {
        self.start_replica_as(None)
    }

    /// [`Postgres::start_replica`], with `cluster_name` set to `name`: the replica's WAL receiver
    /// then reports `name` as its `application_name` in the primary's `pg_stat_replication`, as
    /// CloudNativePG instances do.
    pub fn start_replica_named(&self, name: &str) -> Postgres {
        self.start_replica_as(Some(name))
    }

    fn start_replica_as(&self, name: Option<&str>) -> Postgres {
        if !self.running {
            panic!("testkit: start_replica: the primary PostgreSQL is not running");
        }
        let mut replica = Postgres::new_in_temp_dir();
        // The base backup copies the roles, so the superuser's password too.
        replica.password = self.password.clone();
        let root = replica.root();
        let mut backup = replica.tool("pg_basebackup");
        backup
            .args([
                "-h",
                self.host(),
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .arg("-D")
            .arg(&replica.data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(&root);
        run_checked(&mut backup, "pg_basebackup of the primary", None);
        // The copied postgresql.conf still names the primary's port and socket
        // dir; later lines win (start_server appends the port).
        replica.append_conf(&format!(
            "\n# hasteward-testkit replica\nunix_socket_directories = '{}'\n",
            root.display()
        ));
        if let Some(name) = name {
            replica.append_conf(&format!("cluster_name = '{name}'\n"));
        }
        replica.start_server();
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        while replica.psql("postgres", "SELECT pg_is_in_recovery()") != "t" {
            if Instant::now() > deadline {
                panic!(
                    "testkit: the replica on port {} is not in recovery after {CATCH_UP_TIMEOUT:?}\n\
                     --- tail of {} ---\n{}",
                    replica.port,
                    replica.log.display(),
                    log_tail(&replica.log, 40)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.wait_replica_caught_up(&replica);
        replica
    }

    /// Waits until `replica` has replayed this cluster's current WAL position
    /// (`pg_last_wal_replay_lsn()` on the replica ≥ `pg_current_wal_lsn()`
    /// here, read once at the call).
    ///
    /// Panics with both positions and the replica's log tail if that takes
    /// longer than 60 s.
    pub fn wait_replica_caught_up(&self, replica: &Postgres) {
        let target = self.psql("postgres", "SELECT pg_current_wal_lsn()");
        let check =
            format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false)");
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        while replica.psql("postgres", &check) != "t" {
            if Instant::now() > deadline {
                let replayed = replica.psql(
                    "postgres",
                    "SELECT coalesce(pg_last_wal_replay_lsn()::text, 'none') || ' (receiver: ' || \
                     coalesce((SELECT status FROM pg_stat_wal_receiver), 'not running') || ')'",
                );
                panic!(
                    "testkit: the replica on port {} did not replay the primary's WAL position \
                     {target} within {CATCH_UP_TIMEOUT:?}: replayed {replayed}\n\
                     --- tail of {} ---\n{}",
                    replica.port,
                    replica.log.display(),
                    log_tail(&replica.log, 40)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// A stopped cluster handle in a new private temp dir (owned by the
    /// `postgres` OS user as root), with its watchdog armed.
    fn new_in_temp_dir() -> Postgres {
        let bin = PathBuf::from(BIN_DIR);
        for tool in ["initdb", "pg_ctl", "psql", "pg_basebackup"] {
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
        let watchdog = Watchdog::spawn(
            WATCHDOG_CLEANUP,
            &[
                bin.join("pg_ctl").into_os_string(),
                data.clone().into_os_string(),
                root.clone().into_os_string(),
                run_as.clone().unwrap_or_default().into(),
            ],
        );
        Postgres {
            dir: Some(dir),
            data,
            log,
            bin,
            port: 0,
            password: util::password(),
            run_as,
            running: false,
            watchdog,
        }
    }

    /// The private temp dir (parent of the data dir).
    fn root(&self) -> PathBuf {
        self.data.parent().unwrap_or(Path::new("/")).to_path_buf()
    }

    /// Runs `initdb` and writes the test settings into `postgresql.conf`.
    fn init(&self) {
        let root = self.root();
        let owner = self.run_as.as_deref().map(util::lookup_user);
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
            .current_dir(&root);
        run_checked(&mut initdb, "initdb", None);
        let conf = format!(
            "\n# hasteward-testkit\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 50\n\
             shared_buffers = 32MB\n\
             wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n\
             wal_log_hints = on\nwal_keep_size = 128MB\n",
            root.display()
        );
        self.append_conf(&conf);
        // initdb's pg_hba.conf already has this line; keep it explicit, since
        // start_replica depends on it.
        let hba = self.data.join("pg_hba.conf");
        OpenOptions::new()
            .append(true)
            .open(&hba)
            .and_then(|mut f| {
                f.write_all(b"host replication postgres 127.0.0.1/32 scram-sha-256\n")
            })
            .unwrap_or_else(|e| panic!("testkit: cannot append to {}: {e}", hba.display()));
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

    /// Promotes this (replica) server to a primary on a new timeline (`pg_ctl promote -w`).
    pub fn promote(&self) {
        let mut promote = self.tool("pg_ctl");
        promote
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"])
            .current_dir(self.root());
        run_checked(&mut promote, "pg_ctl promote", None);
    }

    /// Shuts the server down cleanly (`pg_ctl stop -m fast`) and keeps its data directory, so it
    /// can be rewound and started again; [`Postgres::stop`] removes everything.
    pub fn shut_down(&mut self) {
        if self.running && self.pg_ctl_stop("fast") {
            self.running = false;
        }
        assert!(!self.running, "testkit: PostgreSQL did not shut down");
    }

    /// Starts this shut-down server again on its data directory, as it is now.
    pub fn start_again(&mut self) {
        assert!(
            !self.running,
            "testkit: start_again needs a shut-down server"
        );
        self.start_server();
    }

    /// Rewinds this shut-down server onto `source`'s timeline with `pg_rewind`, makes it a
    /// streaming replica of `source` (reporting `name` as its `application_name`) and starts it:
    /// what a CNPG operator does with a former primary after a failover.
    pub fn rewind_onto(&mut self, source: &Postgres, name: &str) {
        assert!(
            !self.running,
            "testkit: rewind_onto needs a shut-down server"
        );
        let mut rewind = self.tool("pg_rewind");
        rewind
            .arg("-D")
            .arg(&self.data)
            .arg(format!(
                "--source-server=host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
                source.port
            ))
            .env("PGPASSWORD", &source.password)
            .current_dir(self.root());
        run_checked(&mut rewind, "pg_rewind", None);
        self.follow(source, name);
    }

    /// Makes this shut-down server's data directory (rewound, or written by someone else, e.g. a
    /// `pg_basebackup` run as root) a streaming replica of `source`, reporting `name` as its
    /// `application_name`, and starts it: the directory is given back to the server's OS user,
    /// the socket pointed at this server's directory, and `primary_conninfo` written.
    pub fn follow(&mut self, source: &Postgres, name: &str) {
        assert!(!self.running, "testkit: follow needs a shut-down server");
        if let Some(user) = self.run_as.as_deref() {
            let mut chown = Command::new("chown");
            chown
                .arg("-R")
                .arg(format!("{user}:{user}"))
                .arg(&self.data);
            run_checked(&mut chown, "chown of the data directory", None);
            let mut chmod = Command::new("chmod");
            chmod.arg("0700").arg(&self.data);
            run_checked(&mut chmod, "chmod of the data directory", None);
        }
        // A copied configuration names the source's socket directory: point it back here
        // (later lines win).
        self.append_conf(&format!(
            "\n# hasteward-testkit follower\nunix_socket_directories = '{}'\ncluster_name = '{name}'\n",
            self.root().display()
        ));
        let auto = self.data.join("postgresql.auto.conf");
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&auto)
            .and_then(|mut f| {
                f.write_all(
                    format!(
                        "primary_conninfo = 'host=127.0.0.1 port={} user={SUPERUSER} password={} application_name={name}'\n",
                        source.port, source.password
                    )
                    .as_bytes(),
                )
            })
            .unwrap_or_else(|e| panic!("testkit: cannot append to {}: {e}", auto.display()));
        fs::write(self.data.join("standby.signal"), "")
            .unwrap_or_else(|e| panic!("testkit: cannot write standby.signal: {e}"));
        if let Some((uid, gid)) = self.run_as.as_deref().map(util::lookup_user) {
            util::chown_to(&auto, uid, gid);
            util::chown_to(&self.data.join("standby.signal"), uid, gid);
        }
        self.start_server();
        source.wait_replica_caught_up(self);
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
