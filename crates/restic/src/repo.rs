//! One repository, reached through the restic binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hasteward_exec::scratch::{writable, writable_temp_dir};
use hasteward_exec::{capture, CommandSpec, LocalRunner, Runner};

use crate::backup::{BackupRequest, BackupRun};
use crate::json::{ForgetGroup, Snapshot, Stats};
use crate::{Capabilities, Error, KeepPolicy, Result, Version};

/// Where the repository is and how to open it. Secrets stay out of argv: the password reaches
/// restic as `RESTIC_PASSWORD_FILE` (or whatever password variable the caller's environment
/// already holds), backend credentials as environment variables.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Repository location; falls back to `RESTIC_REPOSITORY`.
    pub repo: Option<String>,
    /// Password file; falls back to `RESTIC_PASSWORD_FILE`, `RESTIC_PASSWORD_COMMAND`, `RESTIC_PASSWORD`.
    pub password_file: Option<PathBuf>,
    /// Extra environment for restic (backend credentials such as `AWS_ACCESS_KEY_ID`).
    pub env: Vec<(String, String)>,
}

/// Which snapshots to list.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Every tag must be present (`--tag k=v,k2=v2`).
    pub tags: Vec<(String, String)>,
    /// Only snapshots of this path.
    pub path: Option<String>,
    /// Only snapshots of this host.
    pub host: Option<String>,
}

impl SnapshotFilter {
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self.tags.is_empty() {
            args.push("--tag".into());
            args.push(
                self.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        if let Some(p) = &self.path {
            args.push("--path".into());
            args.push(p.clone());
        }
        if let Some(h) = &self.host {
            args.push("--host".into());
            args.push(h.clone());
        }
        args
    }
}

/// A restic binary bound to one repository.
#[derive(Debug, Clone)]
pub struct Restic {
    bin: PathBuf,
    repo: String,
    caps: Capabilities,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    global_args: Vec<String>,
}

/// How long tagging a committed snapshot waits for other processes' locks.
pub const TAG_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Restic {
    /// Finds the binary, reads its version, and checks that a repository and a password source
    /// exist. Nothing touches the repository yet.
    pub async fn open(bin: &str, creds: &Credentials) -> Result<Self> {
        let bin = which::which(bin).map_err(|_| Error::NotInstalled {
            bin: bin.to_string(),
        })?;
        let version = detect_version(&bin).await?;
        let repo = creds
            .repo
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| {
                std::env::var("RESTIC_REPOSITORY")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .or_else(|| {
                std::env::var("RESTIC_REPOSITORY_FILE")
                    .ok()
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .map(|s| s.trim().to_string())
                    .filter(|r| !r.is_empty())
            })
            .ok_or(Error::NoRepository)?;
        let mut env: Vec<(OsString, OsString)> =
            vec![("RESTIC_REPOSITORY".into(), repo.clone().into())];
        let mut env_remove: Vec<OsString> = vec!["RESTIC_REPOSITORY_FILE".into()];
        match &creds.password_file {
            Some(file) => {
                check_readable(file)?;
                env.push(("RESTIC_PASSWORD_FILE".into(), file.clone().into()));
                env_remove.push("RESTIC_PASSWORD_COMMAND".into());
                env_remove.push("RESTIC_PASSWORD".into());
            }
            None => {
                let has = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
                if let Some(file) =
                    std::env::var_os("RESTIC_PASSWORD_FILE").filter(|v| !v.is_empty())
                {
                    check_readable(Path::new(&file))?;
                } else if !has("RESTIC_PASSWORD_COMMAND") && !has("RESTIC_PASSWORD") {
                    return Err(Error::NoPassword);
                }
            }
        }
        for (k, v) in &creds.env {
            env.push((k.into(), v.into()));
        }
        let mut global_args = Vec::new();
        match scratch_dirs() {
            Scratch::Defaults => {}
            Scratch::Use { cache, tmp } => {
                if let Some(cache) = cache {
                    env.push(("RESTIC_CACHE_DIR".into(), cache.into()));
                }
                if let Some(tmp) = tmp {
                    env.push(("TMPDIR".into(), tmp.into()));
                }
            }
            Scratch::NoCache => global_args.push("--no-cache".into()),
        }
        Ok(Self {
            bin,
            repo,
            caps: Capabilities::of(version),
            env,
            env_remove,
            global_args,
        })
    }

    /// What this restic can do.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The repository location.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// A `restic <sub>` command with this repository's environment.
    pub fn command(&self, sub: &str) -> CommandSpec {
        let mut spec = CommandSpec::new(self.bin.clone()).arg(sub);
        spec.env = self.env.clone();
        spec.env_remove = self.env_remove.clone();
        spec.args
            .extend(self.global_args.iter().map(OsString::from));
        spec
    }

    async fn run(&self, sub: &str, spec: CommandSpec) -> Result<String> {
        let out = capture(&LocalRunner, &spec).await.map_err(Error::Exec)?;
        if !out.outcome.success() {
            return Err(Error::from_exit(sub, &self.repo, out.outcome));
        }
        Ok(out.stdout_text())
    }

    fn parse<T: serde::de::DeserializeOwned>(sub: &str, text: &str) -> Result<T> {
        serde_json::from_str(text.trim()).map_err(|e| Error::Parse {
            command: sub.into(),
            detail: e.to_string(),
        })
    }

    /// Creates the repository unless it exists. Returns true when it was created.
    pub async fn init(&self) -> Result<bool> {
        self.init_with(self.command("init")).await
    }

    /// Creates this repository with the chunker parameters of `from`, so deduplication carries
    /// over to copies. Returns false when it already existed.
    pub async fn init_from(&self, from: &Restic) -> Result<bool> {
        let spec = self
            .with_from(self.command("init"), from)
            .arg("--copy-chunker-params");
        self.init_with(spec).await
    }

    async fn init_with(&self, spec: CommandSpec) -> Result<bool> {
        match self.run("init", spec).await {
            Ok(_) => Ok(true),
            Err(Error::Failed { outcome, .. })
                if outcome.stderr_tail.contains("already exists")
                    || outcome.stderr_tail.contains("already initialized") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Starts `restic backup --stdin`; feed it through the gated pump.
    pub async fn backup(&self, req: &BackupRequest) -> Result<BackupRun> {
        let mut spec = self
            .command("backup")
            .args([
                "--stdin",
                "--json",
                "--stdin-filename",
                &req.filename,
                "--host",
                &req.host,
            ])
            .stdin_piped();
        for (k, v) in &req.tags {
            spec = spec.arg("--tag").arg(format!("{k}={v}"));
        }
        if let Some(t) = req.time {
            // restic reads --time in its local zone: pin that zone to UTC.
            spec = spec
                .arg("--time")
                .arg(t.format("%Y-%m-%d %H:%M:%S").to_string())
                .env("TZ", "UTC");
        }
        let proc = LocalRunner.spawn(&spec).await.map_err(Error::Exec)?;
        Ok(BackupRun::start(proc, self.repo.clone()))
    }

    /// Lists snapshots, oldest first.
    pub async fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<Snapshot>> {
        let spec = self
            .command("snapshots")
            .arg("--json")
            .args(filter.to_args());
        let text = self.run("snapshots", spec).await?;
        let mut snaps: Vec<Snapshot> = Self::parse("snapshots", &text)?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(snaps)
    }

    /// One snapshot by (short or full) id.
    pub async fn snapshot(&self, id: &str) -> Result<Snapshot> {
        let spec = self.command("snapshots").arg("--json").arg(id);
        let text = match self.run("snapshots", spec).await {
            Ok(t) => t,
            Err(Error::Failed { outcome, .. })
                if outcome.stderr_tail.contains("no matching ID")
                    || outcome.stderr_tail.contains("not found") =>
            {
                return Err(Error::SnapshotNotFound {
                    what: format!("id {id}"),
                })
            }
            Err(e) => return Err(e),
        };
        let snaps: Vec<Snapshot> = Self::parse("snapshots", &text)?;
        snaps
            .into_iter()
            .next()
            .ok_or_else(|| Error::SnapshotNotFound {
                what: format!("id {id}"),
            })
    }

    /// `restic dump <id> <path>` as a producer command for the pump.
    pub fn dump_command(&self, snapshot_id: &str, path: &str) -> CommandSpec {
        self.command("dump").arg(snapshot_id).arg(path)
    }

    /// Applies a retention policy to the snapshots matching `filter` (grouped by host and path).
    pub async fn forget(
        &self,
        filter: &SnapshotFilter,
        policy: &KeepPolicy,
        dry_run: bool,
    ) -> Result<Vec<ForgetGroup>> {
        let mut spec = self
            .command("forget")
            .arg("--json")
            .args(["--group-by", "host,paths"])
            .args(policy.to_args())
            .args(filter.to_args());
        if dry_run {
            spec = spec.arg("--dry-run");
        }
        let text = self.run("forget", spec).await?;
        // restic prints one JSON array; older versions may add text lines around it.
        let json = text
            .lines()
            .find(|l| l.trim_start().starts_with('['))
            .unwrap_or("[]");
        Self::parse("forget", json)
    }

    /// Forgets the given snapshots.
    pub async fn forget_ids(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.run("forget", self.command("forget").args(ids))
            .await
            .map(drop)
    }

    /// Removes unreferenced data (takes the exclusive lock).
    pub async fn prune(&self) -> Result<()> {
        self.run("prune", self.command("prune")).await.map(drop)
    }

    /// `restic check`, optionally reading a subset of the data (`10%`, `1/7`). Returns restic's
    /// report text.
    pub async fn check(&self, read_data_subset: Option<&str>) -> Result<String> {
        let mut spec = self.command("check");
        if let Some(subset) = read_data_subset {
            spec = spec.arg(format!("--read-data-subset={subset}"));
        }
        self.run("check", spec).await
    }

    /// Copies snapshots matching `filter` from `from` into this repository.
    pub async fn copy_from(&self, from: &Restic, filter: &SnapshotFilter) -> Result<String> {
        let spec = self
            .with_from(self.command("copy"), from)
            .args(filter.to_args());
        self.run("copy", spec).await
    }

    /// Removes stale locks (restic's own staleness rules; `remove_all` removes every lock).
    pub async fn unlock(&self, remove_all: bool) -> Result<()> {
        let mut spec = self.command("unlock");
        if remove_all {
            spec = spec.arg("--remove-all");
        }
        self.run("unlock", spec).await.map(drop)
    }

    /// Repository statistics in raw-data mode.
    pub async fn stats(&self) -> Result<Stats> {
        let spec = self.command("stats").args(["--json", "--mode", "raw-data"]);
        let text = self.run("stats", spec).await?;
        Self::parse("stats", &text)
    }

    /// Adds `key=value` tags to a snapshot and returns the id of the rewritten snapshot (restic
    /// saves it under a new id and removes the old one). `tag` needs the exclusive lock, so a
    /// lock held by a concurrent backup is retried with bounded backoff for up to
    /// [`TAG_LOCK_WAIT`].
    ///
    /// Finding the new id costs another repository open (~0.7 s of key derivation) unless it
    /// can be had cheaper: restic >= 0.18 prints it with `--json`; for a local repository the
    /// new file in `snapshots/` names it. Otherwise the snapshot is looked up by its new tags.
    pub async fn add_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
        path: &str,
    ) -> Result<String> {
        let mut spec = self.command("tag");
        if self.caps.tag_json {
            spec = spec.arg("--json");
        }
        for (k, v) in tags {
            spec = spec.arg("--add").arg(format!("{k}={v}"));
        }
        spec = spec.arg(id);
        let local_dir = self.local_snapshots_dir();
        let before = local_dir.as_deref().and_then(list_dir);
        // The snapshot is already committed; only its checksum tags wait. Another backup's
        // shared lock blocks `tag` until that backup ends, so wait as long as a backup may take.
        let mut delay = std::time::Duration::from_millis(500);
        let mut attempt = 0;
        let started = std::time::Instant::now();
        let output = loop {
            match self.run("tag", spec.clone()).await {
                Ok(out) => break out,
                Err(e) if e.is_transient() && started.elapsed() < TAG_LOCK_WAIT => {
                    attempt += 1;
                    tracing::info!(attempt, "repository busy, retrying tag in {:?}", delay);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(15));
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(new) = output.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("new_snapshot_id")?.as_str().map(str::to_string)
        }) {
            return Ok(new);
        }
        if let (Some(before), Some(after)) = (before, local_dir.as_deref().and_then(list_dir)) {
            let mut added = after.difference(&before);
            if let (Some(new), None) = (added.next(), added.next()) {
                return Ok(new.clone());
            }
        }
        let filter = SnapshotFilter {
            tags: tags.to_vec(),
            path: Some(path.to_string()),
            host: None,
        };
        self.snapshots(&filter)
            .await?
            .pop()
            .map(|s| s.id)
            .ok_or_else(|| Error::SnapshotNotFound {
                what: format!("the re-tagged snapshot {id}"),
            })
    }

    /// The `snapshots/` directory when the repository is a local path.
    fn local_snapshots_dir(&self) -> Option<PathBuf> {
        let repo = self.repo.strip_prefix("local:").unwrap_or(&self.repo);
        let has_scheme = repo
            .split_once(':')
            .is_some_and(|(scheme, _)| !scheme.contains('/') && !scheme.is_empty());
        (!has_scheme).then(|| PathBuf::from(repo).join("snapshots"))
    }

    /// Lists lock ids in the repository.
    pub async fn locks(&self) -> Result<Vec<String>> {
        let text = self.run("list", self.command("list").arg("locks")).await?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn with_from(&self, mut spec: CommandSpec, from: &Restic) -> CommandSpec {
        // The source repository's location and password, as restic's --from-* variables.
        for (k, v) in &from.env {
            let key = k.to_string_lossy();
            let mapped = match key.as_ref() {
                "RESTIC_REPOSITORY" => Some("RESTIC_FROM_REPOSITORY"),
                "RESTIC_PASSWORD_FILE" => Some("RESTIC_FROM_PASSWORD_FILE"),
                "RESTIC_PASSWORD" => Some("RESTIC_FROM_PASSWORD"),
                "RESTIC_PASSWORD_COMMAND" => Some("RESTIC_FROM_PASSWORD_COMMAND"),
                _ => None,
            };
            if let Some(m) = mapped {
                spec.env.push((m.into(), v.clone()));
            }
        }
        spec
    }
}

/// File names in a directory, or `None` when it cannot be read.
fn list_dir(dir: &Path) -> Option<std::collections::BTreeSet<String>> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect(),
    )
}

async fn detect_version(bin: &Path) -> Result<Version> {
    let out = capture(&LocalRunner, &CommandSpec::new(bin).arg("version"))
        .await
        .map_err(|e| match e {
            hasteward_exec::Error::ProgramNotFound { program } => {
                Error::NotInstalled { bin: program }
            }
            other => Error::Exec(other),
        })?;
    let text = out.stdout_text();
    Version::parse(&text).ok_or(Error::UnknownVersion {
        output: text.trim().to_string(),
    })
}

fn check_readable(file: &Path) -> Result<()> {
    std::fs::File::open(file)
        .map(drop)
        .map_err(|source| Error::Setup {
            what: format!("password file {}", file.display()),
            source,
        })
}

enum Scratch {
    Defaults,
    Use {
        cache: Option<PathBuf>,
        tmp: Option<PathBuf>,
    },
    NoCache,
}

/// restic needs a writable cache and temp dir. In a scratch container neither `$HOME` nor
/// `/tmp` may be writable; pick what works instead of failing half-way through a backup.
fn scratch_dirs() -> Scratch {
    let explicit_cache = std::env::var_os("RESTIC_CACHE_DIR").is_some();
    let default_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let cache_ok = explicit_cache || default_cache.as_deref().is_some_and(writable);
    let tmp = std::env::temp_dir();
    let tmp_ok = writable(&tmp);
    if cache_ok && tmp_ok {
        return Scratch::Defaults;
    }
    match writable_temp_dir() {
        None => Scratch::NoCache,
        Some(base) => {
            // Stable names: restic's cache is safe to share between runs, and reusing it
            // keeps repeated backups from reloading the whole index.
            let cache = (!cache_ok).then(|| base.join("hasteward-restic-cache"));
            let tmp = (!tmp_ok).then(|| base.join("hasteward-restic-tmp"));
            for d in cache.iter().chain(tmp.iter()) {
                if std::fs::create_dir_all(d).is_err() {
                    return Scratch::NoCache;
                }
            }
            Scratch::Use { cache, tmp }
        }
    }
}
