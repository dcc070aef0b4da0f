//! A throwaway single MariaDB server (wsrep off) for tests.
//!
//! The server lives in a private temp dir with its own config file, listens on
//! `127.0.0.1` on a free port, and has an admin account (`hwadmin`, all
//! privileges with grant option) that logs in over TCP with a password. As
//! root the server runs as the `mysql` OS user, which owns the temp dir.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, log_tail, run_checked, run_with_stdin, stdout_trimmed};
use crate::watchdog::{Watchdog, SERVER_PID_CLEANUP};

/// Name of the TCP admin account.
const ADMIN: &str = "hwadmin";
/// How many times to retry with a new port when the chosen one got taken.
const START_ATTEMPTS: usize = 3;
/// How long to wait for the server to answer on its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running throwaway MariaDB server; stopped and removed on drop.
pub struct MariaDb {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    password: String,
    client: PathBuf,
    child: Option<Child>,
    watchdog: Watchdog,
}

impl MariaDb {
    /// Initializes (`mariadb-install-db`) and starts a new server in a private
    /// temp dir, then creates the TCP admin account.
    ///
    /// Panics with a clear message (and the error log tail) if MariaDB is
    /// missing or the server does not come up.
    pub fn start() -> MariaDb {
        let server = util::find_program("mariadbd", "MariaDB");
        let install_db = util::find_program("mariadb-install-db", "MariaDB");
        let client = util::find_program("mariadb", "MariaDB");
        let run_as = util::is_root().then_some("mysql");
        let owner = run_as.map(util::lookup_user);
        let dir = util::private_dir("mariadb-", owner);
        let root = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(SERVER_PID_CLEANUP, &[root.as_os_str()]);
        let mut db = MariaDb {
            dir: Some(dir),
            root: root.clone(),
            port: crate::free_port(),
            password: util::password(),
            client,
            child: None,
            watchdog,
        };
        // A private tmpdir too: a starting server deletes every `#sql*` file in
        // its tmpdir, which broke a parallel bootstrap sharing /tmp
        // ("Unknown table 'mysql.tmp_user_sys'").
        for sub in ["data", "tmp"] {
            let path = root.join(sub);
            fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", path.display()));
            if let Some((uid, gid)) = owner {
                util::chown_to(&path, uid, gid);
            }
        }
        db.write_config(run_as);
        let mut install = Command::new(install_db);
        install
            .arg(format!("--defaults-file={}", db.cnf().display()))
            .args(run_as.map(|u| format!("--user={u}")))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .arg(format!(
                "--auth-root-socket-user={}",
                util::current_user_name()
            ))
            .current_dir(&root);
        run_checked(&mut install, "mariadb-install-db", Some(&db.error_log()));
        db.start_server(&server, run_as);
        db.create_admin();
        db
    }

    fn cnf(&self) -> PathBuf {
        self.root.join("my.cnf")
    }

    /// The server's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("mysqld.sock")
    }

    fn error_log(&self) -> PathBuf {
        self.root.join("error.log")
    }

    /// Writes `my.cnf` for the current port.
    fn write_config(&self, run_as: Option<&str>) {
        let r = self.root.display();
        let user = run_as.map(|u| format!("user={u}\n")).unwrap_or_default();
        let text = format!(
            "[mariadbd]\n{user}datadir={r}/data\nsocket={r}/mysqld.sock\n\
             pid-file={r}/mysqld.pid\nlog-error={r}/error.log\ntmpdir={r}/tmp\n\
             bind-address=127.0.0.1\n\
             port={port}\nskip-networking=0\nskip-name-resolve\nskip-log-bin\nwsrep_on=OFF\n\
             innodb_buffer_pool_size=32M\ninnodb_log_file_size=16M\n\
             innodb_flush_log_at_trx_commit=2\n",
            port = self.port
        );
        let cnf = self.cnf();
        fs::write(&cnf, text)
            .unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", cnf.display()));
    }

    /// Spawns `mariadbd` and waits until it answers on its socket, retrying
    /// with a new port when the chosen one got taken in the meantime.
    fn start_server(&mut self, server: &Path, run_as: Option<&str>) {
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                self.port = crate::free_port();
                self.write_config(run_as);
            }
            let out_path = self.root.join("mariadbd.out");
            let out = File::create(&out_path)
                .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", out_path.display()));
            let err = out
                .try_clone()
                .unwrap_or_else(|e| panic!("testkit: cannot dup a file handle: {e}"));
            let child = Command::new(server)
                .arg(format!("--defaults-file={}", self.cnf().display()))
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", server.display()));
            let pid_file = self.root.join("server.pid");
            let _ = fs::write(&pid_file, child.id().to_string());
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(why) => {
                    self.stop_server();
                    let tail = log_tail(&self.error_log(), 40);
                    let port_taken = tail.contains("Address already in use")
                        || tail.contains("Bind on TCP/IP port");
                    if attempt < START_ATTEMPTS && port_taken {
                        continue;
                    }
                    panic!(
                        "testkit: MariaDB failed to start on port {}: {why}\n--- tail of {} ---\n{tail}",
                        self.port,
                        self.error_log().display()
                    );
                }
            }
        }
    }

    /// Polls `select 1` over the socket (as the OS user, unix_socket auth).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("mariadbd exited early ({status})"));
                }
            }
            let ok = self
                .socket_client()
                .args(["-e", "select 1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on the socket within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client over the unix socket as the OS user (root via unix_socket).
    fn socket_client(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--user={}", util::current_user_name()))
            .args(["-N", "-B"]);
        c
    }

    fn create_admin(&self) {
        let pw = &self.password;
        let sql: String = ["127.0.0.1", "localhost"]
            .iter()
            .map(|h| {
                format!(
                    "CREATE USER '{ADMIN}'@'{h}' IDENTIFIED BY '{pw}';\n\
                     GRANT ALL PRIVILEGES ON *.* TO '{ADMIN}'@'{h}' WITH GRANT OPTION;\n"
                )
            })
            .collect();
        run_with_stdin(
            &mut self.socket_client(),
            &sql,
            "creating the MariaDB admin user",
        );
    }

    /// Host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin account (`hwadmin`, for hosts `127.0.0.1` and `localhost`).
    pub fn user(&self) -> &str {
        ADMIN
    }

    /// The admin account's password (alphanumeric, different per instance).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Runs `sql` with the `mariadb` client (`-N -B`) over TCP as the admin,
    /// optionally in database `db`, and returns the trimmed stdout.
    ///
    /// The script is fed on stdin. Panics with the client's stderr on failure.
    pub fn sql(&self, db: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new(&self.client);
        cmd.args([
            "--no-defaults",
            "--default-character-set=utf8mb4",
            "--protocol=TCP",
        ])
        .args(["-h", self.host(), "-P", &self.port.to_string(), "-u", ADMIN])
        .args(["-N", "-B", "--connect-timeout=10"])
        .args(db.map(|d| format!("--database={d}")))
        .env("MYSQL_PWD", &self.password);
        let what = format!("mariadb client on database {db:?}");
        stdout_trimmed(&run_with_stdin(&mut cmd, sql, &what))
    }

    /// SIGTERM to mariadbd, up to 30 s for it to exit, then SIGKILL.
    fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        util::stop_gracefully(&mut child, "mariadbd", STOP_TIMEOUT);
        let _ = fs::remove_file(self.root.join("server.pid"));
    }

    /// Stops the server gracefully and removes the temp dir.
    ///
    /// Idempotent, never panics; also called on drop.
    pub fn stop(&mut self) {
        self.stop_server();
        self.watchdog.disarm();
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                eprintln!("testkit: cannot remove {}: {e}", self.root.display());
            }
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
