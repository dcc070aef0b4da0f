//! Small helpers shared by the server harnesses: private temp dirs that a
//! service user can use, ownership changes, passwords, log tails and running
//! helper commands with clear panics.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::unistd::{chown, geteuid, Gid, Uid, User};
use tempfile::TempDir;

/// Whether this process runs as root (then servers run as their service user).
pub(crate) fn is_root() -> bool {
    geteuid().is_root()
}

/// Name of the OS user this process runs as.
pub(crate) fn current_user_name() -> String {
    match User::from_uid(geteuid()) {
        Ok(Some(u)) => u.name,
        _ => panic!("testkit: cannot find the name of uid {}", geteuid()),
    }
}

/// Uid and gid of an OS user, or a panic that says how to get it.
pub(crate) fn lookup_user(name: &str) -> (Uid, Gid) {
    match User::from_name(name) {
        Ok(Some(u)) => (u.uid, u.gid),
        Ok(None) => panic!(
            "testkit: OS user {name:?} does not exist (it comes with the server package): \
             run scripts/install-deps.sh"
        ),
        Err(e) => panic!("testkit: cannot look up OS user {name:?}: {e}"),
    }
}

/// Base directory for private temp dirs.
///
/// As root this is `/tmp/hasteward-testkit` (mode 0755) so that a service
/// user can traverse it whatever `TMPDIR` says; otherwise the usual temp dir.
fn base_dir() -> PathBuf {
    if !is_root() {
        return std::env::temp_dir();
    }
    let base = PathBuf::from("/tmp/hasteward-testkit");
    fs::create_dir_all(&base)
        .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", base.display()));
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("testkit: cannot chmod {}: {e}", base.display()));
    base
}

/// Creates a fresh private temp dir named `<prefix>XXXXXX`, owned by `owner`
/// (a uid/gid pair) when given.
pub(crate) fn private_dir(prefix: &str, owner: Option<(Uid, Gid)>) -> TempDir {
    let base = base_dir();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap_or_else(|e| {
            panic!(
                "testkit: cannot create a temp dir in {}: {e}",
                base.display()
            )
        });
    if let Some((uid, gid)) = owner {
        chown_to(dir.path(), uid, gid);
    }
    dir
}

/// Changes the owner of one path, panicking on failure.
pub(crate) fn chown_to(path: &Path, uid: Uid, gid: Gid) {
    chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("testkit: cannot chown {}: {e}", path.display()));
}

/// A password of 24 alphanumeric characters, different for each call (mixes
/// the pid, the time and a counter).
pub(crate) fn password() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) ^ count.wrapping_mul(0x9E37_79B9);
    (0..24)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            char::from(ALPHABET[(z % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A command that runs `program` as `as_user` (via `runuser`) when given,
/// directly otherwise.
pub(crate) fn command_as(as_user: Option<&str>, program: &Path) -> Command {
    match as_user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs a command to completion with stdin null and captured output; panics
/// with `what`, the output and the tail of `log` if it fails.
pub(crate) fn run_checked(cmd: &mut Command, what: &str, log: Option<&Path>) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("testkit: {what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        let log_text = log
            .map(|p| format!("\n--- tail of {} ---\n{}", p.display(), log_tail(p, 40)))
            .unwrap_or_default();
        panic!(
            "testkit: {what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}{log_text}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end(),
        );
    }
    out
}

/// Trimmed stdout of a finished command as a `String`.
pub(crate) fn stdout_trimmed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a command with `input` on its stdin and captured output; panics with
/// `what` and the command's stderr if it fails.
pub(crate) fn run_with_stdin(cmd: &mut Command, input: &str, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("testkit: {what}: cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    // A thread, so that a large script cannot deadlock against large output.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("testkit: {what}: waiting for {cmd:?}: {e}"));
    let _ = writer.join();
    if !out.status.success() {
        panic!(
            "testkit: {what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
        );
    }
    out
}

/// Finds a program on `PATH` or in `/usr/sbin` or `/usr/bin`; panics saying
/// to install `component` if it is missing.
pub(crate) fn find_program(name: &str, component: &str) -> PathBuf {
    which::which(name)
        .ok()
        .or_else(|| {
            ["/usr/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{component} not found (no {name}): run scripts/install-deps.sh"))
}

/// SIGTERM to `child`, up to `timeout` for it to exit, then SIGKILL; reaps it. `what` names it
/// in the message printed when it had to be killed.
pub(crate) fn stop_gracefully(
    child: &mut std::process::Child,
    what: &str,
    timeout: std::time::Duration,
) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                eprintln!("testkit: {what} did not stop in {timeout:?}; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
}
