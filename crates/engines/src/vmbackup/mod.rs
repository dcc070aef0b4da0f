//! VictoriaMetrics: `vmbackup` and `vmrestore` orchestrated, not piped.
//!
//! VictoriaMetrics backs up its own storage incrementally, file by file, to a destination
//! (`fs://`, `s3://`, `gs://`, `azblob://`); streaming it through restic would lose that. So
//! this engine runs the tools and manages what vmbackupmanager (an Enterprise feature) would:
//!
//! * **Backup.** `vmbackup` into `DST/latest` first (incremental against what is there), then
//!   into each periodic generation (`DST/daily/2026-11-24`, …) with `-origin=DST/latest`, so
//!   unchanged parts are copied server-side. Each run takes its own instant snapshot through
//!   `-snapshot.createURL` (and deletes it). A failed `latest` stops the run before any periodic
//!   generation is touched; vmbackup marks a generation complete (`backup_complete.ignore`)
//!   only when it finished, and vmrestore refuses one that is not.
//! * **Retention.** After a successful run, the generations of each period beyond the kept
//!   count are deleted ([`generations::expired`]); `latest` is never deleted.
//! * **Restore.** `vmrestore -src=DST/GENERATION`, only while VictoriaMetrics is stopped (its
//!   storage lock and its HTTP port are checked first), and only with `--force` when the data
//!   directory holds data.
//!
//! The tools run where the storage is: on this machine (`--storage-data-path`), or in the
//! VictoriaMetrics pod through the exec API. Credentials for object storage reach vmbackup
//! through its environment or `-credsFilePath`, never its argv.

pub mod generations;
pub mod s3;
pub mod store;

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use hasteward_exec::{capture, CommandSpec, ExitOutcome, Runner};
use serde::Serialize;

pub use generations::{Keep, Period, LATEST};

use crate::pod::WRAPPER;
use crate::{Error, Result};

/// `vmbackup` in Debian's package and the upstream release; `vmbackup-prod` in the vmutils
/// images.
pub const BACKUP_PROGRAMS: &str = "vmbackup,vmbackup-prod";
/// The same for `vmrestore`.
pub const RESTORE_PROGRAMS: &str = "vmrestore,vmrestore-prod";

/// A backup destination URL without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination(String);

impl Destination {
    /// Parses `fs:///abs/path`, `s3://bucket/prefix`, `gs://…` or `azblob://…`.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let bad = |why: &str| {
            Error::Usage(format!(
                "invalid --dst `{url}`: {why} (fs:///absolute/dir, s3://bucket/prefix, gs://bucket/prefix or azblob://container/prefix)"
            ))
        };
        if url.contains(|c: char| c.is_whitespace() || c.is_control()) || url.starts_with('-') {
            return Err(bad("no spaces or control characters"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        match scheme {
            "fs" => {
                if !rest.starts_with('/') || rest.len() < 2 {
                    return Err(bad("fs:// needs an absolute directory"));
                }
                if rest.split('/').any(|seg| seg == "..") {
                    return Err(bad("`..` is not allowed"));
                }
            }
            "s3" | "gs" | "azblob" => {
                let bucket = rest.split('/').next().unwrap_or("");
                if bucket.is_empty() {
                    return Err(bad("no bucket"));
                }
            }
            _ => return Err(bad("unknown scheme")),
        }
        Ok(Self(url.to_string()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of one generation.
    pub fn generation(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }

    /// The local directory of an `fs://` destination.
    pub fn fs_dir(&self) -> Option<&str> {
        self.0.strip_prefix("fs://")
    }
}

/// Options passed to both tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOptions {
    /// `-credsFilePath`: an AWS/GCS credentials file where the tool runs.
    pub credentials_file: Option<String>,
    /// `-customS3Endpoint`: an S3-compatible endpoint.
    pub s3_endpoint: Option<String>,
}

impl ToolOptions {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = &self.credentials_file {
            args.push(format!("-credsFilePath={c}"));
        }
        if let Some(e) = &self.s3_endpoint {
            args.push(format!("-customS3Endpoint={e}"));
        }
        args
    }

    fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--vm-credentials-file", &self.credentials_file),
            ("--vm-s3-endpoint", &self.s3_endpoint),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(Error::Usage(format!("invalid {flag} `{v}`")));
                }
            }
        }
        Ok(())
    }
}

/// One VictoriaMetrics single-node server: its HTTP address and storage directory, and where
/// its tools run.
#[derive(Debug)]
pub struct VmServer<R> {
    runner: R,
    location: String,
    /// The HTTP address as the tools see it (for `-snapshot.createURL`).
    url: String,
    storage_data_path: String,
    options: ToolOptions,
    in_pod: bool,
}

impl<R: Runner> VmServer<R> {
    /// A server whose tools run through `runner`; `in_pod` when that is the server's own pod.
    pub fn new(
        runner: R,
        location: String,
        url: &str,
        storage_data_path: &str,
        options: ToolOptions,
        in_pod: bool,
    ) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(Error::Usage(format!(
                "invalid --vm-url `{url}`: give VictoriaMetrics' HTTP address, e.g. http://127.0.0.1:8428"
            )));
        }
        if !storage_data_path.starts_with('/')
            || storage_data_path.contains(['\n', '\r', '\0'])
            || storage_data_path.split('/').any(|s| s == "..")
        {
            return Err(Error::Usage(format!(
                "invalid --storage-data-path `{storage_data_path}`: give the absolute -storageDataPath of the server"
            )));
        }
        options.validate()?;
        Ok(Self {
            runner,
            location,
            url: url.to_string(),
            storage_data_path: storage_data_path.trim_end_matches('/').to_string(),
            options,
            in_pod,
        })
    }

    /// Where the server is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// The storage directory.
    pub fn storage_data_path(&self) -> &str {
        &self.storage_data_path
    }

    fn tool(&self, programs: &str, args: Vec<String>) -> CommandSpec {
        CommandSpec::new("sh")
            .args(["-c", WRAPPER, "hasteward", "none", programs])
            .args(args)
            .labelled(programs.split(',').next().unwrap_or(programs).to_string())
    }

    /// `vmbackup` of the live storage into `dst` (optionally copying unchanged parts from
    /// `origin`).
    pub fn backup_command(&self, dst: &str, origin: Option<&str>) -> CommandSpec {
        let mut args = vec![
            format!("-storageDataPath={}", self.storage_data_path),
            format!("-snapshot.createURL={}/snapshot/create", self.url),
            format!("-dst={dst}"),
            // Its metrics port: loopback and kernel-chosen, so runs never collide or listen
            // on every interface.
            "-httpListenAddr=127.0.0.1:0".to_string(),
        ];
        if let Some(o) = origin {
            args.push(format!("-origin={o}"));
        }
        args.extend(self.options.args());
        self.tool(BACKUP_PROGRAMS, args)
    }

    /// `vmrestore` of `src` into the storage directory.
    pub fn restore_command(&self, src: &str) -> CommandSpec {
        let mut args = vec![
            format!("-src={src}"),
            format!("-storageDataPath={}", self.storage_data_path),
            "-httpListenAddr=127.0.0.1:0".to_string(),
        ];
        args.extend(self.options.args());
        self.tool(RESTORE_PROGRAMS, args)
    }

    async fn run_tool(&self, tool: &str, spec: &CommandSpec) -> Result<()> {
        let out = capture(&self.runner, spec).await?;
        if out.outcome.success() {
            Ok(())
        } else {
            Err(Error::ToolFailed {
                tool: tool.to_string(),
                detail: tool_message(&out.outcome),
            })
        }
    }

    /// Refuses a restore while the server runs, or into data without `force`. Host targets
    /// only: in its own pod the server is the container's main process.
    pub fn check_restorable(&self, force: bool) -> Result<()> {
        if self.in_pod {
            return Err(Error::Refused(format!(
                "vmrestore needs VictoriaMetrics stopped, and in {} it is the container's main process: restore from an init container or a stopped pod's volume (docs/engines.md, VictoriaMetrics)",
                self.location
            )));
        }
        if let Some(why) = running_because(&self.url, Path::new(&self.storage_data_path)) {
            return Err(Error::Refused(format!(
                "VictoriaMetrics is running ({why}); vmrestore needs it stopped: stop the server, restore, then start it again"
            )));
        }
        let has_data = std::fs::read_dir(&self.storage_data_path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if has_data && !force {
            return Err(Error::Refused(format!(
                "{} holds data; vmrestore replaces it with the backup: pass --force to do that",
                self.storage_data_path
            )));
        }
        Ok(())
    }
}

/// Why the server looks alive: its storage lock is held, or its HTTP port accepts connections.
fn running_because(url: &str, data: &Path) -> Option<String> {
    let lock = data.join("flock.lock");
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&lock) {
        use nix::fcntl::{Flock, FlockArg};
        // Released again when the probe is dropped.
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) =
            Flock::lock(f, FlockArg::LockExclusiveNonblock)
        {
            return Some(format!("{} is locked", lock.display()));
        }
    }
    let authority = url.split_once("://")?.1.split('/').next()?;
    let addr = if authority.contains(':') {
        authority.to_string()
    } else if url.starts_with("https://") {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    };
    use std::net::ToSocketAddrs;
    let sockets = addr.to_socket_addrs().ok()?;
    for s in sockets {
        if std::net::TcpStream::connect_timeout(&s, std::time::Duration::from_secs(2)).is_ok() {
            return Some(format!("{url} accepts connections"));
        }
    }
    None
}

/// vmbackup/vmrestore log `TIME\tLEVEL\tSOURCE\tMESSAGE`; the last `fatal`/`error` message is
/// what went wrong.
pub fn tool_message(outcome: &ExitOutcome) -> String {
    let found = outcome.stderr_tail.lines().rev().find_map(|line| {
        let mut parts = line.splitn(4, '\t');
        let (_, level, _, msg) = (parts.next(), parts.next()?, parts.next(), parts.next()?);
        matches!(level, "fatal" | "error" | "panic").then(|| msg.trim().to_string())
    });
    match found {
        Some(msg) => format!("{msg} ({})", outcome.status_text()),
        None => outcome.to_string(),
    }
}

/// One generation written by a run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WrittenGeneration {
    /// `latest`, `daily/2026-11-24`, …
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Wall time of its vmbackup run.
    pub seconds: f64,
}

/// The result of a backup run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupResult {
    /// The destination.
    pub destination: String,
    /// Generations written, in order.
    pub generations: Vec<WrittenGeneration>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// The generations a run at `now` writes: `latest` first, then one per period.
pub fn planned_generations(now: DateTime<Utc>, keep: &Keep) -> Vec<(String, Option<&'static str>)> {
    let mut out = vec![(LATEST.to_string(), None)];
    for p in keep.periods_written() {
        out.push((format!("{}/{}", p.dir(), p.name_at(now)), Some(LATEST)));
    }
    out
}

/// Runs vmbackup for every planned generation (`latest` first; a failure stops the run). The
/// caller applies retention afterwards ([`apply_retention`]), so a retention failure is told
/// apart from a backup failure.
pub async fn backup<R: Runner>(
    server: &VmServer<R>,
    dst: &Destination,
    keep: &Keep,
    now: DateTime<Utc>,
) -> Result<BackupResult> {
    let started = Instant::now();
    let mut written = Vec::new();
    for (name, origin) in planned_generations(now, keep) {
        let t = Instant::now();
        let url = dst.generation(&name);
        let origin = origin.map(|o| dst.generation(o));
        server
            .run_tool("vmbackup", &server.backup_command(&url, origin.as_deref()))
            .await
            .map_err(|e| match e {
                Error::ToolFailed { tool, detail } => Error::ToolFailed {
                    tool,
                    detail: format!(
                        "{detail}; generation {name} of {} is incomplete{}",
                        dst.as_str(),
                        if written.is_empty() {
                            ""
                        } else {
                            " (the generations written before it are complete)"
                        }
                    ),
                },
                other => other,
            })?;
        written.push(WrittenGeneration {
            name,
            url,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(BackupResult {
        destination: dst.as_str().to_string(),
        generations: written,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The generations retention would delete, as `period/name`, counting `upcoming` (generations a
/// run is about to write, as `period/name`) as complete: a dry run then names what the run
/// itself would delete.
pub async fn retention_plan<S: store::GenerationStore>(
    store: &S,
    keep: &Keep,
    upcoming: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in Period::ALL {
        let Some(n) = keep.of(p) else { continue };
        let mut listed = store.list(p.dir()).await?;
        for u in upcoming {
            if let Some(name) = u.strip_prefix(p.dir()).and_then(|r| r.strip_prefix('/')) {
                if !listed.iter().any(|(l, _)| l == name) {
                    listed.push((name.to_string(), true));
                }
            }
        }
        out.extend(
            generations::expired(p, &listed, n)
                .into_iter()
                .map(|name| format!("{}/{name}", p.dir())),
        );
    }
    Ok(out)
}

/// Deletes what [`retention_plan`] names; returns it.
pub async fn apply_retention<S: store::GenerationStore>(
    store: &S,
    keep: &Keep,
) -> Result<Vec<String>> {
    let plan = retention_plan(store, keep, &[]).await?;
    for generation in &plan {
        let (dir, name) = generation.split_once('/').unwrap_or((generation, ""));
        store.delete(dir, name).await?;
    }
    Ok(plan)
}

/// The result of a restore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResult {
    /// The generation's URL.
    pub source: String,
    /// The storage directory.
    pub storage_data_path: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// Restores `generation` into the (stopped) server's storage directory.
pub async fn restore<R: Runner>(
    server: &VmServer<R>,
    dst: &Destination,
    generation: &str,
    force: bool,
) -> Result<RestoreResult> {
    generations::validate(generation)?;
    server.check_restorable(force)?;
    let started = Instant::now();
    let src = dst.generation(generation);
    server
        .run_tool("vmrestore", &server.restore_command(&src))
        .await?;
    Ok(RestoreResult {
        source: src,
        storage_data_path: server.storage_data_path.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hasteward_exec::LocalRunner;

    fn server() -> VmServer<LocalRunner> {
        VmServer::new(
            LocalRunner,
            "http://127.0.0.1:8428".into(),
            "http://127.0.0.1:8428/",
            "/var/lib/vm",
            ToolOptions {
                credentials_file: Some("/etc/vm/creds".into()),
                s3_endpoint: None,
            },
            false,
        )
        .unwrap()
    }

    fn argv(spec: &CommandSpec) -> Vec<String> {
        spec.args[5..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn destinations_are_checked() {
        for ok in [
            "fs:///backups/vm/",
            "s3://bucket/vm/prod",
            "gs://b",
            "azblob://c/p",
        ] {
            Destination::parse(ok).unwrap();
        }
        for bad in [
            "/backups",
            "fs://rel",
            "fs:///a/../b",
            "s3://",
            "ftp://x/y",
            "s3://b/a b",
            "-dst=x",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        let d = Destination::parse("fs:///bk/").unwrap();
        assert_eq!(
            d.generation("daily/2026-11-24"),
            "fs:///bk/daily/2026-11-24"
        );
        assert_eq!(d.fs_dir(), Some("/bk"));
    }

    #[test]
    fn backup_runs_latest_then_periods_from_latest() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 5, 0, 0).unwrap();
        let keep = Keep {
            daily: Some(7),
            monthly: Some(3),
            ..Keep::default()
        };
        assert_eq!(
            planned_generations(t, &keep),
            vec![
                ("latest".to_string(), None),
                ("daily/2026-11-24".to_string(), Some("latest")),
                ("monthly/2026-11".to_string(), Some("latest")),
            ]
        );
        let s = server();
        assert_eq!(
            argv(&s.backup_command("fs:///bk/daily/2026-11-24", Some("fs:///bk/latest"))),
            vec![
                "-storageDataPath=/var/lib/vm",
                "-snapshot.createURL=http://127.0.0.1:8428/snapshot/create",
                "-dst=fs:///bk/daily/2026-11-24",
                "-httpListenAddr=127.0.0.1:0",
                "-origin=fs:///bk/latest",
                "-credsFilePath=/etc/vm/creds",
            ]
        );
        assert_eq!(
            argv(&s.restore_command("fs:///bk/latest")),
            vec![
                "-src=fs:///bk/latest",
                "-storageDataPath=/var/lib/vm",
                "-httpListenAddr=127.0.0.1:0",
                "-credsFilePath=/etc/vm/creds",
            ]
        );
    }

    #[test]
    fn the_tools_fatal_line_is_the_message() {
        let outcome = ExitOutcome {
            code: Some(255),
            signal: None,
            stderr_tail: "2026-11-24T05:24:51.169Z\tinfo\tVictoriaMetrics/lib/snapshot/snapshot.go:28\tCreating snapshot\n2026-11-24T05:24:51.170Z\tfatal\tVictoriaMetrics/app/vmbackup/main.go:62\tcannot create snapshot: dial tcp 127.0.0.1:1: connect: connection refused\n".into(),
        };
        assert_eq!(
            tool_message(&outcome),
            "cannot create snapshot: dial tcp 127.0.0.1:1: connect: connection refused (exit code 255)"
        );
    }

    #[test]
    fn a_pod_server_is_never_restored_in_place() {
        let s = VmServer::new(
            LocalRunner,
            "pod ns/vm-0".into(),
            "http://127.0.0.1:8428",
            "/storage",
            ToolOptions::default(),
            true,
        )
        .unwrap();
        assert!(matches!(s.check_restorable(true), Err(Error::Refused(_))));
    }

    #[test]
    fn bad_server_flags_are_refused() {
        let mk = |url: &str, path: &str| {
            VmServer::new(
                LocalRunner,
                "x".into(),
                url,
                path,
                ToolOptions::default(),
                false,
            )
        };
        assert!(mk("127.0.0.1:8428", "/d").is_err());
        assert!(mk("http://h:1", "rel").is_err());
        assert!(mk("http://h:1", "/a/../b").is_err());
        assert!(mk("http://h:1", "/d").is_ok());
    }
}
