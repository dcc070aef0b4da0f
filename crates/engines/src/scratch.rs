//! Throwaway local database servers for restore drills: a fresh PostgreSQL or MariaDB/MySQL in
//! a private temporary directory, listening on 127.0.0.1 only (a free port), with a random
//! password for its admin account, stopped (its whole process group) and removed when dropped.
//!
//! Run as root, the server runs as the `postgres` / `mysql` OS user (`runuser`), as the
//! packages' own servers do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hasteward_exec::{capture, CommandSpec, LocalRunner, Proc, Runner};
use hasteward_model::DbType;

use crate::standalone::HostTarget;
use crate::{Error, Result};

/// How long a scratch server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running throwaway server.
pub struct ScratchServer {
    db_type: DbType,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    client: PathBuf,
    /// The server process (in a mutex only so the handle is `Sync`: queries run concurrently
    /// with nothing that touches it).
    server: std::sync::Mutex<Option<Proc>>,
}

impl std::fmt::Debug for ScratchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchServer")
            .field("db_type", &self.db_type)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn missing(tool: &str) -> Error {
    Error::ToolMissing {
        tool: tool.into(),
        hint: "a restore drill starts a local server of the snapshot's database type: install its server package (scripts/install-deps.sh)",
    }
}

/// A program on PATH, or in the first of `dirs` that has it.
fn find(program: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    which::which(program)
        .ok()
        .or_else(|| dirs.iter().map(|d| d.join(program)).find(|p| p.is_file()))
        .ok_or_else(|| missing(program))
}

/// PostgreSQL's versioned binary directories, newest first.
fn postgres_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// uid and gid of an OS user, from `/etc/passwd`.
fn os_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `program args…`, as `user` when set (via `runuser`).
fn as_user(user: Option<&str>, program: &Path) -> CommandSpec {
    match user {
        Some(u) => CommandSpec::new("runuser")
            .args(["-u", u, "--"])
            .arg(program.as_os_str()),
        None => CommandSpec::new(program.as_os_str()),
    }
}

async fn run_ok(spec: CommandSpec, what: &str) -> Result<String> {
    let out = capture(&LocalRunner, &spec).await?;
    if !out.outcome.success() {
        return Err(Error::Database {
            detail: format!("{what} failed: {}", out.outcome),
        });
    }
    Ok(out.stdout_text())
}

impl ScratchServer {
    /// Starts a throwaway server for `db_type` (PostgreSQL, MariaDB or MySQL).
    pub async fn start(db_type: DbType) -> Result<Self> {
        match db_type {
            DbType::Postgres => Self::start_postgres().await,
            DbType::Mariadb | DbType::Mysql => Self::start_mariadb(db_type).await,
            DbType::Mongo => Err(Error::Usage(
                "restore drills are available for PostgreSQL and MariaDB/MySQL snapshots".into(),
            )),
        }
    }

    fn private_dir(owner: Option<(u32, u32)>) -> Result<tempfile::TempDir> {
        let base = hasteward_exec::scratch::writable_temp_dir().ok_or_else(|| {
            Error::io(
                "finding a writable temp dir",
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("hasteward-drill-")
            .tempdir_in(base)
            .map_err(|e| Error::io("creating the drill directory", e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| Error::io("handing the drill directory to the server's user", e))?;
        }
        Ok(dir)
    }

    async fn start_postgres() -> Result<Self> {
        let dirs = postgres_dirs();
        let initdb = find("initdb", &dirs)?;
        let postgres = initdb.with_file_name("postgres");
        let client = find("psql", &dirs)?;
        let user = if is_root() { Some("postgres") } else { None };
        let owner = match user {
            Some(u) => Some(os_user(u).ok_or_else(|| missing("the `postgres` OS user"))?),
            None => None,
        };
        let dir = Self::private_dir(owner)?;
        let password = random_password();
        let pwfile = dir.path().join("pw");
        write_private(&pwfile, &format!("{password}\n"), owner)?;
        let data = dir.path().join("data");
        run_ok(
            as_user(user, &initdb)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["--encoding=UTF8", "--locale=C", "--no-sync"]),
            "initdb",
        )
        .await?;
        let _ = std::fs::remove_file(&pwfile);
        let port = free_port()?;
        let server = LocalRunner
            .spawn(
                &as_user(user, &postgres)
                    .arg("-D")
                    .arg(&data)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c"])
                    .arg(format!("port={port}"))
                    .args(["-c"])
                    .arg(format!("unix_socket_directories={}", dir.path().display()))
                    .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
                    .stdout_null(),
            )
            .await?;
        let mut s = Self {
            db_type: DbType::Postgres,
            dir,
            port,
            password,
            client,
            server: std::sync::Mutex::new(Some(server)),
        };
        s.wait_ready().await?;
        Ok(s)
    }

    async fn start_mariadb(db_type: DbType) -> Result<Self> {
        let server_bin = find("mariadbd", &[PathBuf::from("/usr/sbin")])
            .or_else(|_| find("mysqld", &[PathBuf::from("/usr/sbin")]))?;
        let install = find("mariadb-install-db", &[]).or_else(|_| find("mysql_install_db", &[]))?;
        let client = find("mariadb", &[]).or_else(|_| find("mysql", &[]))?;
        let user = if is_root() { Some("mysql") } else { None };
        let owner = match user {
            Some(u) => Some(os_user(u).ok_or_else(|| missing("the `mysql` OS user"))?),
            None => None,
        };
        let dir = Self::private_dir(owner)?;
        let root = dir.path().to_path_buf();
        for sub in ["data", "tmp"] {
            std::fs::create_dir(root.join(sub))
                .map_err(|e| Error::io("creating the drill directory", e))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(root.join(sub), Some(uid), Some(gid)).map_err(|e| {
                    Error::io("handing the drill directory to the server's user", e)
                })?;
            }
        }
        let port = free_port()?;
        let password = random_password();
        // The admin account for TCP is created by the server itself at startup (`init-file`),
        // before it accepts connections.
        let init = root.join("init.sql");
        write_private(
            &init,
            &format!(
                "CREATE USER 'hasteward'@'127.0.0.1' IDENTIFIED BY '{password}';\nGRANT ALL PRIVILEGES ON *.* TO 'hasteward'@'127.0.0.1' WITH GRANT OPTION;\n"
            ),
            owner,
        )?;
        let cnf = root.join("my.cnf");
        let r = root.display();
        let user_line = user.map(|u| format!("user={u}\n")).unwrap_or_default();
        write_private(
            &cnf,
            &format!(
                "[mariadbd]\n{user_line}datadir={r}/data\nsocket={r}/mysqld.sock\npid-file={r}/mysqld.pid\nlog-error={r}/error.log\ntmpdir={r}/tmp\nbind-address=127.0.0.1\nport={port}\nskip-name-resolve\nskip-log-bin\nwsrep_on=OFF\ninnodb_buffer_pool_size=64M\ninnodb_flush_log_at_trx_commit=2\ninit-file={r}/init.sql\n"
            ),
            owner,
        )?;
        let mut install_spec = CommandSpec::new(install.as_os_str())
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"]);
        if let Some(u) = user {
            install_spec = install_spec.arg(format!("--user={u}"));
        }
        run_ok(install_spec, "mariadb-install-db").await?;
        let server = LocalRunner
            .spawn(
                &CommandSpec::new(server_bin.as_os_str())
                    .arg(format!("--defaults-file={}", cnf.display()))
                    .stdout_null(),
            )
            .await?;
        let mut s = Self {
            db_type,
            dir,
            port,
            password,
            client,
            server: std::sync::Mutex::new(Some(server)),
        };
        s.wait_ready().await?;
        let _ = std::fs::remove_file(init);
        Ok(s)
    }

    /// Waits until the server answers a query.
    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if self.query(None, "SELECT 1").await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(Error::Database {
                    detail: format!(
                        "the drill's {} server did not accept connections within {READY_TIMEOUT:?}{}",
                        self.db_type,
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
                        }
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The restore target: this server over TCP with its admin account.
    pub fn target(&self) -> Result<HostTarget> {
        let file = self.dir.path().join("client.pw");
        write_private(&file, &format!("{}\n", self.password), None)?;
        Ok(HostTarget {
            db_type: self.db_type,
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.admin().into(),
            password_file: Some(file),
        })
    }

    fn admin(&self) -> &'static str {
        match self.db_type {
            DbType::Postgres => "postgres",
            _ => "hasteward",
        }
    }

    /// Runs one query (in `database`, or the default one) and returns its rows as text
    /// (tab-separated). The throwaway password goes in the client's environment.
    pub async fn query(&self, database: Option<&str>, sql: &str) -> Result<String> {
        let spec = match self.db_type {
            DbType::Postgres => CommandSpec::new(self.client.as_os_str())
                .args(crate::drill::PSQL_QUERY_FLAGS)
                .args(["-h", "127.0.0.1"])
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    database.unwrap_or("postgres"),
                    "-c",
                    sql,
                ])
                .env("PGPASSWORD", &self.password),
            _ => {
                let mut s = CommandSpec::new(self.client.as_os_str())
                    .args([
                        "--no-defaults",
                        "--protocol=TCP",
                        "-h",
                        "127.0.0.1",
                        "-N",
                        "-B",
                    ])
                    .arg(format!("--port={}", self.port))
                    .arg("--user=hasteward")
                    .env("MYSQL_PWD", &self.password);
                if let Some(db) = database {
                    s = s.arg(format!("--database={db}"));
                }
                s.args(["-e", sql])
            }
        };
        run_ok(spec, "a drill query").await
    }

    /// Stops the server and removes its directory.
    pub async fn stop(mut self) {
        let server = self
            .server
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut server) = server {
            let _ = server.signal(hasteward_exec::Signal::Terminate);
            let _ = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
        }
    }
}

fn write_private(path: &Path, text: &str, owner: Option<(u32, u32)>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("writing a drill file", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing a drill file", e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io("handing a drill file to the server's user", e))?;
    }
    Ok(())
}
