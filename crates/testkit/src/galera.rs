//! A throwaway MariaDB Galera cluster of N nodes on `127.0.0.1` for tests.
//!
//! All nodes live in one private temp dir (`n0/`, `n1/`, ... with a data dir,
//! a tmpdir, a socket, an error log and a `my.cnf` each). Node 0 is
//! initialized with `mariadb-install-db` and bootstraps the cluster
//! (`--wsrep-new-cluster`); the other nodes start with an empty data dir and
//! join one at a time by rsync SST, each only once the previous node is
//! `Synced`. Every node has four free ports of its own: mysqld, gcomm
//! (`gmcast.listen_addr`), IST (`ist.recv_addr`) and SST
//! (`wsrep_sst_receive_address`).
//!
//! `root` has a random password and can log in over TCP (`root@127.0.0.1`,
//! `root@%`, `root@localhost` with the password). As root the nodes run as
//! the `mysql` OS user, which owns the temp dir.
//!
//! Measured on an idle 2-core machine: a 3-node cluster is up (all `Synced`)
//! in 8.5-10.5 s: `mariadb-install-db` ~0.7 s, bootstrap ~0.3 s, then 3.5-5 s
//! per joiner, nearly all of it in the rsync SST script (which polls with
//! one-second sleeps). A restarted node rejoins by IST in ~3 s, and the
//! cluster stops in ~0.3 s. Under load (parallel builds) expect 15 s.
//!
//! A port taken between choosing it and binding it (another test's server,
//! an outgoing connection) makes that node start again on new ports: a node
//! that already joined the group is first dropped by the others (which get
//! `pc.bootstrap` if they lost quorum) and restarts from an empty data dir.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use tempfile::TempDir;

use crate::util::{self, log_tail, run_checked, run_with_stdin, stdout_trimmed};
use crate::watchdog::Watchdog;

/// The account tests log in with over TCP.
const ROOT: &str = "root";
/// Where Debian's galera-4 package puts the wsrep provider.
const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
/// How many times a node start is retried with new ports when one was taken.
const START_ATTEMPTS: usize = 3;
/// How long a node may take to become `Synced` (a joiner includes its SST).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful shutdown of a node may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two polls of a starting node.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Kills every node if the test process dies without `Drop`: `$1` temp dir
/// (each `n*/server.pid` is written right after the spawn). The data is
/// thrown away, so there is no graceful shutdown (which can hang for long
/// when all nodes stop at once, or a node is in a state transfer): each
/// mariadbd leads its own process group, and the whole group (with leftover
/// SST scripts and rsync daemons) gets SIGKILL. (dash's `kill` takes no
/// `--`: `kill -KILL -PGID`.)
const WATCHDOG_CLEANUP: &str = r#"
pids=
for f in "$1"/n*/server.pid; do
  [ -f "$f" ] && pids="$pids $(cat "$f")"
done
for p in $pids; do kill -KILL "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
i=0
while [ $i -lt 50 ]; do
  alive=
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && break
  sleep 0.2; i=$((i+1))
done
rm -rf "$1"
"#;

/// The four ports of one node.
#[derive(Clone, Copy, Debug)]
struct Ports {
    mysqld: u16,
    gcomm: u16,
    ist: u16,
    sst: u16,
}

/// One node of the cluster.
struct Node {
    dir: PathBuf,
    /// Chosen right before the node's first start (a short window for
    /// someone else to take them), and again when a start hit a taken port.
    ports: Option<Ports>,
    child: Option<Child>,
}

/// A running throwaway MariaDB Galera cluster; every node is stopped and the
/// temp dir removed on drop.
///
/// Nodes are numbered from 0; node 0 bootstrapped the cluster.
pub struct Galera {
    dir: Option<TempDir>,
    root: PathBuf,
    nodes: Vec<Node>,
    password: String,
    server: PathBuf,
    client: PathBuf,
    provider: PathBuf,
    run_as: Option<&'static str>,
    owner: Option<(Uid, Gid)>,
    watchdog: Watchdog,
}

impl Galera {
    /// Starts a cluster of `nodes` nodes (at least 1; tests use 3) and waits
    /// until every node is `Synced`.
    ///
    /// Panics with a clear message (and the failing node's error log tail) if
    /// MariaDB, galera-4 or rsync is missing or a node does not come up.
    pub fn start(nodes: usize) -> Galera {
        assert!(
            nodes >= 1,
            "testkit: a Galera cluster needs at least 1 node"
        );
        let server = util::find_program("mariadbd", "MariaDB");
        let install_db = util::find_program("mariadb-install-db", "MariaDB");
        let client = util::find_program("mariadb", "MariaDB");
        util::find_program("rsync", "rsync (for Galera SST)");
        util::find_program("wsrep_sst_rsync", "MariaDB Galera SST scripts");
        let provider = find_provider();
        let run_as = util::is_root().then_some("mysql");
        let owner = run_as.map(util::lookup_user);
        let dir = util::private_dir("galera-", owner);
        let root = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(WATCHDOG_CLEANUP, &[root.as_os_str()]);
        let nodes = (0..nodes)
            .map(|i| Node {
                dir: root.join(format!("n{i}")),
                ports: None,
                child: None,
            })
            .collect();
        let mut cluster = Galera {
            dir: Some(dir),
            root: root.clone(),
            nodes,
            password: util::password(),
            server,
            client,
            provider,
            run_as,
            owner,
            watchdog,
        };
        for i in 0..cluster.nodes.len() {
            for sub in ["", "data", "tmp"] {
                cluster.make_dir(&cluster.nodes[i].dir.join(sub));
            }
        }
        cluster.nodes[0].ports = Some(cluster.fresh_ports());
        cluster.write_configs();
        let mut install = Command::new(install_db);
        install
            .arg(format!("--defaults-file={}", cluster.cnf(0).display()))
            .args(run_as.map(|u| format!("--user={u}")))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .arg(format!(
                "--auth-root-socket-user={}",
                util::current_user_name()
            ))
            .current_dir(&root);
        run_checked(
            &mut install,
            "mariadb-install-db (Galera node 0)",
            Some(&cluster.error_log(0)),
        );
        cluster.start_node_inner(0, true);
        cluster.create_root_logins();
        for i in 1..cluster.nodes.len() {
            cluster.start_node_inner(i, false);
        }
        cluster
    }

    /// Number of nodes (running or stopped).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// TCP (mysqld) port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports(i).mysqld
    }

    /// The account to log in with: `root` (hosts `127.0.0.1`, `%` and
    /// `localhost`, all privileges with grant option).
    pub fn user(&self) -> &str {
        ROOT
    }

    /// `root`'s password (alphanumeric, different for each cluster).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Unix socket of node `i` (`root` logs in there with the password too).
    pub fn socket(&self, i: usize) -> PathBuf {
        self.node(i).dir.join("mysqld.sock")
    }

    /// Data dir of node `i` (holds `grastate.dat`; owned by `mysql` as root).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node(i).dir.join("data")
    }

    /// Error log of node `i`.
    pub fn error_log(&self, i: usize) -> PathBuf {
        self.node(i).dir.join("error.log")
    }

    /// Runs `sql` with the `mariadb` client (`-N -B`) over TCP as `root` on
    /// node `i`, optionally in database `db`, and returns the trimmed stdout.
    ///
    /// The script is fed on stdin; the password goes in `MYSQL_PWD`, never on
    /// the command line. Panics with the client's stderr on failure.
    pub fn sql(&self, i: usize, db: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new(&self.client);
        cmd.args([
            "--no-defaults",
            "--default-character-set=utf8mb4",
            "--protocol=TCP",
        ])
        .args([
            "-h",
            self.host(),
            "-P",
            &self.port(i).to_string(),
            "-u",
            ROOT,
        ])
        .args(["-N", "-B", "--connect-timeout=10"])
        .args(db.map(|d| format!("--database={d}")))
        .env("MYSQL_PWD", &self.password);
        let what = format!("mariadb client on Galera node {i}, database {db:?}");
        stdout_trimmed(&run_with_stdin(&mut cmd, sql, &what))
    }

    /// `wsrep_local_state_comment` of node `i` (`Synced`, `Donor/Desynced`,
    /// `Joining`, ...), read over TCP. Panics if the node does not answer.
    pub fn wsrep_state(&self, i: usize) -> String {
        self.status(i, "wsrep_local_state_comment")
    }

    /// The value of one `SHOW GLOBAL STATUS` variable on node `i` (e.g.
    /// `wsrep_cluster_size`), read over TCP; empty if there is no such
    /// variable. Panics if the node does not answer.
    pub fn status(&self, i: usize, name: &str) -> String {
        let out = self.sql(i, None, &format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        out.split_once('\t')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    }

    /// Waits until node `i` reports `wsrep_local_state_comment = Synced`.
    ///
    /// Panics (with the node's error log tail) if it exits or is not `Synced`
    /// within 120 s.
    pub fn wait_synced(&self, i: usize) {
        if let Err(why) = self.poll_synced(i) {
            panic!(
                "testkit: Galera node {i} is not Synced: {why}\n--- tail of {} ---\n{}",
                self.error_log(i).display(),
                log_tail(&self.error_log(i), 40)
            );
        }
    }

    /// Waits until node `i` reports `wsrep_cluster_size = size` (e.g. after
    /// [`Galera::stop_node`], the others drop the node asynchronously).
    ///
    /// Panics with the last value seen and the node's error log tail if that
    /// takes longer than 120 s.
    pub fn wait_cluster_size(&self, i: usize, size: usize) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let want = size.to_string();
        loop {
            let seen = self
                .socket_query(i, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")
                .and_then(|out| out.split_once('\t').map(|(_, v)| v.to_string()));
            if seen.as_deref() == Some(want.as_str()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "testkit: Galera node {i} did not reach wsrep_cluster_size {size} within \
                     {SYNC_TIMEOUT:?} (last seen: {})\n--- tail of {} ---\n{}",
                    seen.as_deref().unwrap_or("no answer"),
                    self.error_log(i).display(),
                    log_tail(&self.error_log(i), 40)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops node `i` gracefully (SIGTERM, up to 20 s, then SIGKILL); it
    /// leaves the cluster. Does nothing if the node is not running.
    ///
    /// The other nodes see the smaller cluster shortly after; use
    /// [`Galera::wait_cluster_size`] before relying on it.
    pub fn stop_node(&mut self, i: usize) {
        self.node(i);
        self.signal_node(i, Signal::SIGTERM);
        self.reap_node(i);
    }

    /// Bootstraps a new Primary component from the stopped node `i` (`--wsrep-new-cluster`;
    /// Galera refuses unless its `grastate.dat` says `safe_to_bootstrap: 1`) and waits until it
    /// is `Synced`. No node may be running.
    pub fn bootstrap_node(&mut self, i: usize) {
        if self.nodes.iter().any(|n| n.child.is_some()) {
            panic!("testkit: cannot bootstrap Galera node {i}: a node is still running");
        }
        self.start_node_inner(i, true);
    }

    /// Kills node `i` (SIGKILL, a crash): its `grastate.dat` keeps `seqno: -1`, and when it was
    /// one of two survivors, the other loses quorum (non-Primary).
    pub fn kill_node(&mut self, i: usize) {
        self.node(i);
        self.signal_node(i, Signal::SIGKILL);
        self.reap_node(i);
    }

    /// Starts the stopped node `i` again and waits until it is `Synced`; it
    /// rejoins the running nodes (by IST when their gcache still has the
    /// missing writes, else by SST). Its ports stay the same unless one was
    /// taken in the meantime.
    ///
    /// At least one other node must be running. Panics if node `i` is
    /// running or does not come up.
    pub fn start_node(&mut self, i: usize) {
        if self.node(i).child.is_some() {
            panic!("testkit: Galera node {i} is already running");
        }
        if !self.nodes.iter().any(|n| n.child.is_some()) {
            panic!(
                "testkit: cannot restart Galera node {i}: no node is running \
                 (re-bootstrapping a stopped cluster is not supported)"
            );
        }
        self.start_node_inner(i, false);
    }

    /// Stops every node gracefully (one at a time, highest number first) and
    /// removes the temp dir.
    ///
    /// Idempotent, never panics; also called on drop.
    pub fn stop(&mut self) {
        // One at a time: nodes that leave while their peers are stopping too
        // wait for group timeouts (1-5 s in all instead of ~0.1 s per node).
        for i in (0..self.nodes.len()).rev() {
            self.signal_node(i, Signal::SIGTERM);
            self.reap_node(i);
        }
        self.watchdog.disarm();
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                eprintln!("testkit: cannot remove {}: {e}", self.root.display());
            }
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes.get(i).unwrap_or_else(|| {
            panic!(
                "testkit: no Galera node {i} (the cluster has {} nodes)",
                self.nodes.len()
            )
        })
    }

    /// Ports of node `i`; every node has them once `start` returned.
    fn ports(&self, i: usize) -> Ports {
        self.node(i)
            .ports
            .unwrap_or_else(|| panic!("testkit: Galera node {i} was never started"))
    }

    /// The option file node `i` runs with (`[mariadbd]`: data dir, socket, wsrep settings).
    pub fn config_file(&self, i: usize) -> PathBuf {
        self.cnf(i)
    }

    fn cnf(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("my.cnf")
    }

    /// Creates a directory owned by the service user (as root).
    fn make_dir(&self, path: &Path) {
        fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", path.display()));
        if let Some((uid, gid)) = self.owner {
            util::chown_to(path, uid, gid);
        }
    }

    /// (Re)writes the `my.cnf` of every node that has ports, listing all of
    /// them in `wsrep_cluster_address` (which matters for restarts).
    fn write_configs(&self) {
        let members: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.ports.map(|p| format!("127.0.0.1:{}", p.gcomm)))
            .collect();
        let members = members.join(",");
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(p) = node.ports else {
                continue;
            };
            let d = node.dir.display();
            let user = self
                .run_as
                .map(|u| format!("user={u}\n"))
                .unwrap_or_default();
            // Group communication: a keepalive every 0.5 s and join messages
            // every 0.2 s (a third node forms its view ~0.5 s sooner), and a
            // killed node is suspected after 3 s (default 5 s) and evicted
            // after 6 s (default 15 s). 3 s is still six keepalives, so a
            // busy CI machine does not evict live nodes.
            let text = format!(
                "[mariadbd]\n{user}datadir={d}/data\nsocket={d}/mysqld.sock\n\
                 pid-file={d}/mysqld.pid\nlog-error={d}/error.log\ntmpdir={d}/tmp\n\
                 bind-address=127.0.0.1\nport={port}\nskip-networking=0\nskip-name-resolve\n\
                 skip-log-bin\nbinlog_format=ROW\ndefault_storage_engine=InnoDB\n\
                 innodb_autoinc_lock_mode=2\ninnodb_buffer_pool_size=32M\n\
                 innodb_log_file_size=16M\ninnodb_flush_log_at_trx_commit=2\n\
                 innodb_temp_data_file_path=ibtmp1:4M:autoextend\n\
                 wsrep_on=ON\nwsrep_provider={provider}\n\
                 wsrep_cluster_name=hasteward-testkit\n\
                 wsrep_cluster_address=gcomm://{members}\n\
                 wsrep_node_name=n{i}\nwsrep_node_address=127.0.0.1:{gcomm}\n\
                 wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};\
                 ist.recv_addr=127.0.0.1:{ist};gcache.size=16M;\
                 evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.25S;\
                 evs.join_retrans_period=PT0.2S;evs.suspect_timeout=PT3S;\
                 evs.inactive_timeout=PT6S;evs.install_timeout=PT6S\"\n\
                wsrep_sst_receive_address=127.0.0.1:{sst}\nwsrep_sst_method=rsync\n",
                port = p.mysqld,
                provider = self.provider.display(),
                gcomm = p.gcomm,
                ist = p.ist,
                sst = p.sst,
            );
            let cnf = self.cnf(i);
            fs::write(&cnf, text)
                .unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", cnf.display()));
        }
    }

    /// Spawns node `i` and waits until it is `Synced`, retrying with new
    /// ports when one of its ports got taken in the meantime.
    fn start_node_inner(&mut self, i: usize, bootstrap: bool) {
        if self.nodes[i].ports.is_none() {
            self.nodes[i].ports = Some(self.fresh_ports());
            self.write_configs();
        }
        for attempt in 1..=START_ATTEMPTS {
            let log_start = file_len(&self.error_log(i));
            self.spawn_node(i, bootstrap);
            let Err(why) = self.poll_synced(i) else {
                return;
            };
            self.signal_node(i, Signal::SIGKILL);
            self.reap_node(i);
            let new_log = log_since(&self.error_log(i), log_start);
            if attempt < START_ATTEMPTS && port_was_taken(&new_log) {
                eprintln!(
                    "testkit: Galera node {i}: a port was taken (ports {:?}); \
                     retrying with new ports",
                    self.ports(i)
                );
                // A node that got into the group (its IST, SST or mysqld port
                // was taken) may have been half-way through a state transfer:
                // the others must drop it (and may need to regain a primary
                // view), and it starts over from an empty data dir. A node
                // whose gcomm port was taken never joined: it keeps its data
                // (a restarted node can still catch up by IST).
                let joined = new_log.contains("gcomm: connected");
                if joined {
                    if let Err(heal) = self.heal() {
                        panic!(
                            "testkit: Galera node {i} failed to join, and the running nodes \
                             did not recover: {heal}\n--- tail of {} ---\n{}{}",
                            self.error_log(i).display(),
                            log_tail(&self.error_log(i), 40),
                            self.other_logs(i),
                        );
                    }
                }
                self.nodes[i].ports = Some(self.fresh_ports());
                self.write_configs();
                if joined {
                    self.reset_data_dir(i, bootstrap);
                }
                continue;
            }
            panic!(
                "testkit: Galera node {i} failed to {} (ports {:?}): {why}\n\
                 --- tail of {} ---\n{}{}",
                if bootstrap {
                    "bootstrap the cluster"
                } else {
                    "join the cluster"
                },
                self.ports(i),
                self.error_log(i).display(),
                log_tail(&self.error_log(i), 40),
                self.other_logs(i),
            );
        }
    }

    /// The error log tails of the running nodes other than `i` (a joiner's
    /// failure is often explained by its donor's log).
    fn other_logs(&self, i: usize) -> String {
        (0..self.nodes.len())
            .filter(|&n| n != i && self.nodes[n].child.is_some())
            .map(|n| {
                format!(
                    "\n--- tail of {} (node {n}) ---\n{}",
                    self.error_log(n).display(),
                    log_tail(&self.error_log(n), 20)
                )
            })
            .collect()
    }

    /// Waits until every running node is `Synced` in a `Primary` view that
    /// holds exactly the running nodes. When a joiner died uncleanly the
    /// others may have lost quorum (1 of 2): then a `non-Primary` node is
    /// told to form a primary component again (`pc.bootstrap=YES`), which is
    /// safe here because all running nodes still see each other.
    fn heal(&self) -> Result<(), String> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut last_bootstrap: Option<Instant> = None;
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&n| self.nodes[n].child.is_some())
                .collect();
            let mut healthy = true;
            let mut seen = Vec::new();
            for &n in &running {
                let out = self
                    .socket_query(
                        n,
                        "SHOW GLOBAL STATUS WHERE Variable_name IN \
                         ('wsrep_cluster_status', 'wsrep_cluster_size', \
                          'wsrep_local_state_comment')",
                    )
                    .unwrap_or_default();
                let value = |name: &str| {
                    out.lines()
                        .filter_map(|l| l.split_once('\t'))
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default()
                };
                let (status, size, state) = (
                    value("wsrep_cluster_status"),
                    value("wsrep_cluster_size"),
                    value("wsrep_local_state_comment"),
                );
                if status != "Primary" || size != running.len().to_string() || state != "Synced" {
                    healthy = false;
                }
                if status == "non-Primary"
                    && last_bootstrap.is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                {
                    let _ = self
                        .socket_query(n, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'");
                    last_bootstrap = Some(Instant::now());
                }
                seen.push(format!("node {n}: {status} size {size} {state}"));
            }
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not healthy within {SYNC_TIMEOUT:?}: {}",
                    seen.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// After a failed start: a joiner gets everything by SST, so its data dir
    /// (and tmpdir) is emptied; the bootstrap node keeps its data but forgets
    /// its Galera state, so that it may bootstrap again.
    fn reset_data_dir(&self, i: usize, bootstrap: bool) {
        let data = self.data_dir(i);
        if bootstrap {
            let _ = fs::remove_file(data.join("grastate.dat"));
            let _ = fs::remove_file(data.join("gvwstate.dat"));
            return;
        }
        for dir in [data, self.node(i).dir.join("tmp")] {
            let _ = fs::remove_dir_all(&dir);
            self.make_dir(&dir);
        }
    }

    /// Four ports that are free now and used by no node of this cluster.
    fn fresh_ports(&self) -> Ports {
        let used: HashSet<u16> = self
            .nodes
            .iter()
            .filter_map(|n| n.ports)
            .flat_map(|p| [p.mysqld, p.gcomm, p.ist, p.sst])
            .collect();
        loop {
            let p = distinct_free_ports(4);
            if p.iter().all(|x| !used.contains(x)) {
                return Ports {
                    mysqld: p[0],
                    gcomm: p[1],
                    ist: p[2],
                    sst: p[3],
                };
            }
        }
    }

    fn spawn_node(&mut self, i: usize, bootstrap: bool) {
        let dir = self.nodes[i].dir.clone();
        let out_path = dir.join("mariadbd.out");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .unwrap_or_else(|e| panic!("testkit: cannot open {}: {e}", out_path.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("testkit: cannot dup a file handle: {e}"));
        let child = Command::new(&self.server)
            .arg(format!("--defaults-file={}", self.cnf(i).display()))
            .args(bootstrap.then_some("--wsrep-new-cluster"))
            // Its own process group, as under systemd: the SST scripts (and
            // their rsync daemon) join it, so that reap_node can kill them,
            // and the scripts' own `kill -- -<mariadbd pid>` cleanup works.
            .process_group(0)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", self.server.display()));
        let _ = fs::write(dir.join("server.pid"), format!("{}\n", child.id()));
        self.nodes[i].child = Some(child);
    }

    /// Polls `wsrep_local_state_comment` over node `i`'s socket (as the OS
    /// user, unix_socket auth) until it is `Synced`.
    fn poll_synced(&self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut last = String::from("(no answer)");
        loop {
            match self.nodes[i].child.as_ref() {
                None => return Err("the node is not running".to_string()),
                Some(child) => {
                    if let Some(status) = exit_status(child) {
                        return Err(format!("mariadbd exited ({status})"));
                    }
                }
            }
            if let Some(state) =
                self.socket_query(i, "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'")
            {
                let state = state.split_once('\t').map(|(_, v)| v).unwrap_or("");
                if state == "Synced" {
                    return Ok(());
                }
                last = format!("state {state:?}");
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not Synced within {SYNC_TIMEOUT:?}; last seen: {last}"
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Runs one query over node `i`'s socket as the OS user (unix_socket
    /// auth); `None` if the node does not answer (yet).
    fn socket_query(&self, i: usize, sql: &str) -> Option<String> {
        let out = self
            .socket_client(i)
            .args(["-e", sql])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| stdout_trimmed(&out))
    }

    /// A client over node `i`'s socket as the OS user.
    fn socket_client(&self, i: usize) -> Command {
        let mut c = Command::new(&self.client);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket(i).display()))
            .arg(format!("--user={}", util::current_user_name()))
            .args(["-N", "-B", "--connect-timeout=5"]);
        c
    }

    /// Gives `root` the cluster password (keeping unix_socket auth for the
    /// OS user) and adds `root@127.0.0.1` and `root@%`. Runs on node 0 right
    /// after the bootstrap; the statements replicate to every node (TOI).
    fn create_root_logins(&self) {
        let pw = &self.password;
        let mut sql = format!(
            "ALTER USER '{ROOT}'@'localhost' IDENTIFIED VIA mysql_native_password \
             USING PASSWORD('{pw}') OR unix_socket;\n"
        );
        for host in ["127.0.0.1", "%"] {
            sql.push_str(&format!(
                "CREATE USER '{ROOT}'@'{host}' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{ROOT}'@'{host}' WITH GRANT OPTION;\n"
            ));
        }
        run_with_stdin(
            &mut self.socket_client(0),
            &sql,
            "creating the Galera root logins",
        );
    }

    /// Sends `signal` to node `i`'s mariadbd, if it runs.
    fn signal_node(&self, i: usize, signal: Signal) {
        if let Some(child) = self.nodes[i].child.as_ref() {
            let _ = kill(child_pid(child), signal);
        }
    }

    /// Waits up to 20 s for node `i`'s mariadbd to exit (then SIGKILLs it),
    /// kills what is left of its process group (SST scripts, an rsync
    /// daemon) and reaps it.
    ///
    /// The group is killed while the exited mariadbd is still a zombie, so
    /// its pid (the group id) cannot have been reused.
    fn reap_node(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let pid = child_pid(&child);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut killed = false;
        while exit_status(&child).is_none() {
            if Instant::now() > deadline {
                if killed {
                    break;
                }
                eprintln!("testkit: Galera node {i} did not stop in {STOP_TIMEOUT:?}; killing it");
                let _ = kill(pid, Signal::SIGKILL);
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.wait();
        let _ = fs::remove_file(self.nodes[i].dir.join("server.pid"));
    }
}

impl Drop for Galera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The galera-4 wsrep provider library, or a panic that says how to get it.
fn find_provider() -> PathBuf {
    let default = PathBuf::from(PROVIDER);
    if default.is_file() {
        return default;
    }
    let mut found = Vec::new();
    for base in ["/usr/lib", "/usr/lib64"] {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            for sub in ["galera", "galera4", "galera-4"] {
                let candidate = dir.join(sub).join("libgalera_smm.so");
                if candidate.is_file() {
                    found.push(candidate);
                }
            }
            let direct = dir.join("libgalera_smm.so");
            if direct.is_file() {
                found.push(direct);
            }
        }
    }
    found.sort();
    found.into_iter().next().unwrap_or_else(|| {
        panic!(
            "MariaDB Galera not found (no {PROVIDER}; package galera-4): \
             run scripts/install-deps.sh"
        )
    })
}

/// `n` distinct ports on `127.0.0.1` that were free a moment ago (all bound
/// at once, so the kernel cannot hand out one twice).
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| {
                panic!("testkit: cannot bind 127.0.0.1:0 to find a free port: {e}")
            })
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .unwrap_or_else(|e| panic!("testkit: cannot read the bound address: {e}"))
                .port()
        })
        .collect()
}

/// The pid of a spawned child.
fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// How the child exited, if it did, without reaping it (`waitid` with
/// `WNOWAIT`), so that its pid stays reserved until [`Child::wait`].
fn exit_status(child: &Child) -> Option<String> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(child_pid(child)), flags) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status {code}")),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("killed by {signal}")),
        Ok(other) => Some(format!("{other:?}")),
        Err(e) => Some(format!("cannot wait for it: {e}")),
    }
}

/// Whether a failed start's error log says that one of the node's ports was
/// taken: gcomm's listen (or, racing with it, setting the priority of the
/// gcomm thread that already died), the IST receiver, the rsync SST daemon
/// or mysqld's own port.
fn port_was_taken(log: &str) -> bool {
    [
        "Address already in use",
        "Failed to set thread schedparams",
        "Bind on TCP/IP port",
        "has been taken by another program",
        "rsync or stunnel daemon",
    ]
    .iter()
    .any(|needle| log.contains(needle))
}

/// Current length of a file (0 if it does not exist).
fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What was appended to a file after byte `offset`.
fn log_since(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = std::io::Read::read_to_end(&mut f, &mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}
