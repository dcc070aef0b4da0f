//! A real single-node VictoriaMetrics (`victoria-metrics`, Debian's `victoria-metrics`
//! package, which also ships `vmbackup` and `vmrestore`) on 127.0.0.1 with a free port, its
//! data in a private temp dir, and a 100-year retention so that old test timestamps stay.
//!
//! HTTP goes through a minimal HTTP/1.0 client over `std::net::TcpStream` (`Connection:
//! close`, body to EOF), so the crate needs no HTTP dependency.
//!
//! Mind VictoriaMetrics' `-search.latencyOffset` (30 s): instant queries hide samples newer
//! than that, so tests import samples a few minutes old. `/api/v1/export` returns everything.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{self, log_tail};
use crate::watchdog::{Watchdog, SERVER_PID_CLEANUP};

/// How many times to retry with a new port when the chosen one got taken.
const START_ATTEMPTS: usize = 3;
/// How long to wait for `/health` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect, read and write timeout of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A throwaway single-node VictoriaMetrics; stopped and removed on drop.
pub struct VictoriaMetrics {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
    watchdog: Watchdog,
}

/// A response: status code and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// One HTTP/1.0 request to `127.0.0.1:port` (`Connection: close`); the body is read to EOF
/// and cut at `Content-Length` when the response has one.
fn http(port: u16, method: &str, target: &str, body: &[u8]) -> Result<Response, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("cannot send {method} {target}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read the answer to {method} {target}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete header in the answer to {method} {target}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in the answer to {method} {target}: {head}"))?;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                let len: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length in {method} {target}: {line}"))?;
                if body.len() < len {
                    return Err(format!(
                        "{method} {target}: body truncated ({} of {len} bytes)",
                        body.len()
                    ));
                }
                body.truncate(len);
            }
        }
    }
    Ok(Response { status, body })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl VictoriaMetrics {
    /// Starts a server on a fresh data dir and waits until `/health` answers.
    ///
    /// Panics with a clear message (and the log tail) if VictoriaMetrics is missing or does
    /// not come up.
    pub fn start() -> VictoriaMetrics {
        let binary = util::find_program("victoria-metrics", "VictoriaMetrics (victoria-metrics)");
        let dir = util::private_dir("hw-vm-", None);
        let root = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(SERVER_PID_CLEANUP, &[root.as_os_str()]);
        let mut server = VictoriaMetrics {
            dir: Some(dir),
            root,
            port: 0,
            binary,
            child: None,
            watchdog,
        };
        server.start_server();
        server
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Spawns the server on a new free port and waits for `/health`, retrying with another
    /// port when the chosen one got taken in the meantime.
    fn start_server(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            self.port = crate::free_port();
            // Appended to: the log keeps every start of the same data dir.
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log())
                .unwrap_or_else(|e| panic!("testkit: cannot open the server log: {e}"));
            let err = log
                .try_clone()
                .unwrap_or_else(|e| panic!("testkit: cannot dup a file handle: {e}"));
            let child = Command::new(&self.binary)
                .arg(format!("-storageDataPath={}", self.data_path().display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
                .arg("-retentionPeriod=100y")
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", self.binary.display()));
            let _ = fs::write(self.root.join("server.pid"), child.id().to_string());
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(why) => {
                    self.stop();
                    let tail = log_tail(&self.log(), 40);
                    if attempt < START_ATTEMPTS && tail.contains("address already in use") {
                        continue;
                    }
                    panic!(
                        "testkit: VictoriaMetrics failed to start on port {}: {why}\n\
                         --- tail of {} ---\n{tail}",
                        self.port,
                        self.log().display()
                    );
                }
            }
        }
    }

    /// Polls `GET /health` until it answers 200.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("victoria-metrics exited early ({status})"));
            }
            if http(self.port, "GET", "/health", b"").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/health did not answer within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request to the running server; panics unless the answer is 2xx.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> Vec<u8> {
        assert!(
            self.child.is_some(),
            "testkit: VictoriaMetrics is stopped: cannot {method} {target}"
        );
        match http(self.port, method, target, body) {
            Ok(r) if (200..300).contains(&r.status) => r.body,
            Ok(r) => panic!(
                "testkit: VictoriaMetrics answered {} to {method} {target}:\n{}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Err(e) => panic!(
                "testkit: VictoriaMetrics: {e}\n--- tail of {} ---\n{}",
                self.log().display(),
                log_tail(&self.log(), 40)
            ),
        }
    }

    /// `http://127.0.0.1:PORT` (the port may change with [`VictoriaMetrics::start_again`]).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `-storageDataPath` directory (`<dir>/data`).
    pub fn data_path(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server's temp dir; tests put `fs://` backup destinations under it.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Imports samples in the Prometheus text format (`POST /api/v1/import/prometheus`;
    /// timestamps in milliseconds), then flushes them (`GET /internal/force_flush`) so that
    /// they are searchable and in the data dir.
    pub fn import_prometheus(&self, text: &str) {
        self.request("POST", "/api/v1/import/prometheus", text.as_bytes());
        self.request("GET", "/internal/force_flush", b"");
    }

    /// `GET /api/v1/export?match[]=MATCHER`: the series as JSON lines, one a line.
    pub fn export(&self, matcher: &str) -> String {
        let target = format!("/api/v1/export?match%5B%5D={}", url_encode(matcher));
        let body = self.request("GET", &target, b"");
        String::from_utf8(body)
            .unwrap_or_else(|e| panic!("testkit: export of {matcher} is not UTF-8: {e}"))
    }

    /// How many series [`VictoriaMetrics::export`] returns for `matcher` (non-empty lines).
    pub fn series_count(&self, matcher: &str) -> usize {
        self.export(matcher)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// Whether the server process is alive (started and neither stopped nor exited).
    pub fn is_running(&self) -> bool {
        let Some(child) = self.child.as_ref() else {
            return false;
        };
        // A zombie (exited, not yet reaped) is not running: read its state from /proc.
        fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    }

    /// Stops the server (SIGTERM, then waits until it exited; SIGKILL after 30 s), leaving
    /// the data dir. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        util::stop_gracefully(&mut child, "victoria-metrics", STOP_TIMEOUT);
        let _ = fs::remove_file(self.root.join("server.pid"));
    }

    /// Starts the server again on the same data path (on a new free port: see
    /// [`VictoriaMetrics::url`]) and waits for `/health`. Panics if it is running.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "testkit: VictoriaMetrics is already running at {}",
            self.url()
        );
        self.start_server();
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.stop();
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
    fn url_encode_matchers() {
        assert_eq!(
            url_encode(r#"probe_metric{job="a b"}"#),
            "probe_metric%7Bjob%3D%22a%20b%22%7D"
        );
    }

    #[test]
    fn victoria_import_export_restart() {
        let t0 = Instant::now();
        let mut vm = VictoriaMetrics::start();
        eprintln!(
            "victoria-metrics started in {:?} at {}",
            t0.elapsed(),
            vm.url()
        );
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 120;
        vm.import_prometheus(&format!(
            "probe_metric{{job=\"a\"}} 1 {ts}000\nprobe_metric{{job=\"b\"}} 2 {ts}000\n"
        ));
        assert_eq!(
            vm.series_count("probe_metric"),
            2,
            "{}",
            vm.export("probe_metric")
        );
        assert_eq!(vm.series_count(r#"probe_metric{job="a"}"#), 1);
        assert_eq!(vm.series_count("no_such_metric"), 0);
        assert!(vm.is_running());

        vm.stop();
        assert!(!vm.is_running());
        assert!(vm.data_path().is_dir());
        vm.start_again();
        assert!(vm.is_running());
        assert_eq!(
            vm.series_count("probe_metric"),
            2,
            "{}",
            vm.export("probe_metric")
        );

        let dir = vm.dir().to_path_buf();
        drop(vm);
        assert!(!dir.exists(), "temp dir not removed");
    }
}
