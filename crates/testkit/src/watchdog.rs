//! A detached shell that cleans up a server if the test process dies without
//! running `Drop` (killed by a signal, `std::process::abort`, a test timeout).
//!
//! The watchdog runs `sh` in its own process group, so a runner that kills the
//! test's process group does not kill it too. It polls the test process once a
//! second; when the test process is gone it runs the cleanup script. A normal
//! `stop()` disarms it first by killing its whole process group.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The cleanup of a single-process server: `$1` is its temp dir, holding `server.pid` (written
/// right after the spawn). TERM, up to 30 s, KILL, then the directory is removed.
pub(crate) const SERVER_PID_CLEANUP: &str = r#"
pid=$(cat "$1/server.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"#;

/// Handle to a running watchdog; [`Watchdog::disarm`] stops it.
pub(crate) struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    /// Starts a watchdog that runs `cleanup` (a `sh` snippet that sees `args`
    /// as `$1`, `$2`, ...) once this process has exited.
    ///
    /// Failing to start a watchdog is not fatal: it is only a safety net.
    pub(crate) fn spawn<S: AsRef<OsStr>>(cleanup: &str, args: &[S]) -> Watchdog {
        let script = format!(
            "while kill -0 \"$HW_TESTKIT_PARENT\" 2>/dev/null; do sleep 1; done\n{cleanup}\n"
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("hasteward-testkit-watchdog")
            .args(args)
            .env("HW_TESTKIT_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match child {
            Ok(child) => Watchdog { child: Some(child) },
            Err(e) => {
                eprintln!("testkit: warning: cannot start the cleanup watchdog: {e}");
                Watchdog { child: None }
            }
        }
    }

    /// Stops the watchdog (and its `sleep`) without running the cleanup.
    pub(crate) fn disarm(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm();
    }
}
