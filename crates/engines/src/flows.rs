//! Backup, restore, verify, list and retention over one repository.
//!
//! # Guarantees
//! - A backup becomes a snapshot only if the dump exited 0 and its stream ended with the
//!   dump's completion marker (the gated pump). The snapshot then carries `sha256=` and `bytes=`
//!   of the exact stream.
//! - A restore picks its snapshot by tags, type and path; it refuses to overwrite user databases
//!   that still exist unless forced; the client never sees a clean end of stream unless
//!   `restic dump` succeeded and the stream's checksum matched the recorded one.

use std::time::{Duration, Instant};

use chrono::Utc;
use hasteward_exec::{
    gated, gated_filtered, hash_output, CancellationToken, LocalRunner, ProgressFn, PumpError,
    PumpOptions, Runner, Signal,
};
use hasteward_model::{decode_list, encode_list, SnapshotLabels, SNAPSHOT_HOST};
use hasteward_restic::{BackupRequest, ForgetGroup, KeepPolicy, Restic, Snapshot, SnapshotFilter};
use serde::Serialize;

use crate::target::{list_databases, start, Target};
use crate::{Error, Result};

/// Knobs shared by every stream.
#[derive(Clone, Default)]
pub struct StreamSettings {
    /// Abort when the producer sends nothing for this long.
    pub stall_timeout: Option<Duration>,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Cancels the stream (Ctrl-C / SIGTERM).
    pub cancel: CancellationToken,
}

impl StreamSettings {
    fn pump(&self, marker: Option<&[u8]>, consumer_abort: Signal) -> PumpOptions {
        PumpOptions {
            stall_timeout: self.stall_timeout,
            completion_marker: marker.map(<[u8]>::to_vec),
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
            consumer_abort,
            ..PumpOptions::default()
        }
    }
}

/// Which snapshot to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSelector {
    /// The newest snapshot with the target's tags, type and path.
    Latest,
    /// A snapshot id (short or full); its tags and path must match the target.
    Id(String),
}

impl SnapshotSelector {
    /// Parses `latest` or an id.
    pub fn parse(s: &str) -> Self {
        if s == "latest" {
            Self::Latest
        } else {
            Self::Id(s.to_string())
        }
    }
}

/// The result of a backup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupResult {
    /// The snapshot id (full).
    pub snapshot_id: String,
    /// The short id.
    pub short_id: String,
    /// Repository location.
    pub repository: String,
    /// Path inside the snapshot.
    pub path: String,
    /// Bytes streamed.
    pub bytes: u64,
    /// SHA-256 of the stream.
    pub sha256: String,
    /// Bytes added to the repository.
    pub data_added: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The snapshot's tags.
    pub tags: Vec<String>,
    /// User databases in the dump.
    pub databases: Vec<String>,
    /// Whether the repository was created by this run.
    pub repository_created: bool,
}

/// Backs up a target into the repository.
pub async fn backup<T: Target>(
    restic: &Restic,
    target: &T,
    labels: &SnapshotLabels,
    settings: &StreamSettings,
) -> Result<BackupResult> {
    let started = Instant::now();
    let listed = list_databases(target).await?;
    let mut databases = listed.clone().unwrap_or_default();
    if let Some(one) = &labels.database {
        if listed.as_ref().is_some_and(|l| !l.contains(one)) {
            return Err(Error::Usage(format!(
                "database `{one}` does not exist on {} (user databases there: {})",
                target.location(),
                if databases.is_empty() {
                    "none".to_string()
                } else {
                    databases.join(", ")
                }
            )));
        }
        databases = vec![one.clone()];
    }

    let mut tags = labels.tags();
    tags.push(("databases".into(), encode_list(&databases)));
    let request = BackupRequest {
        filename: labels.stdin_filename(),
        tags,
        host: SNAPSHOT_HOST.into(),
        time: Some(Utc::now()),
    };
    // restic first: it loads the index before reading stdin; the dump starts once it is ready.
    // A missing repository is created then (one restic start saved on every other run).
    let mut created = false;
    let mut run = loop {
        let mut run = restic.backup(&request).await?;
        let ready = tokio::select! {
            biased;
            _ = settings.cancel.cancelled() => {
                let _ = run.proc.signal(Signal::Interrupt);
                let _ = run.proc.wait().await;
                return Err(Error::Stream(PumpError::Cancelled { consumer: "restic".into(), bytes: 0 }));
            }
            ready = run.ready() => ready,
        };
        match ready {
            Ok(()) => break run,
            Err(hasteward_restic::Error::RepositoryMissing { .. }) if !created => {
                created = restic.init().await?;
                if !created {
                    return Err(Error::Restic(hasteward_restic::Error::RepositoryMissing {
                        repo: restic.repo().to_string(),
                        stderr: "the repository could not be opened after init".into(),
                    }));
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let one_database = labels.database.as_deref();
    let mut producer = match start(target.runner(), &target.dump(one_database), true).await {
        Ok(p) => p,
        Err(e) => {
            // No dump, no snapshot: restic is stopped before it sees the end of its input.
            let _ = run.proc.signal(Signal::Interrupt);
            let _ = run.proc.wait().await;
            return Err(e);
        }
    };
    let opts = settings.pump(
        target.completion_marker(one_database.is_some()),
        Signal::Interrupt,
    );
    let report = match gated(&mut producer, &mut run.proc, &opts).await {
        Ok(r) => r,
        Err(PumpError::ConsumerFailed { outcome, .. }) => return Err(run.failure(outcome).into()),
        Err(e) => return Err(e.into()),
    };
    let summary = run.finish().await?;
    let recorded = vec![
        ("sha256".to_string(), report.sha256.clone()),
        ("bytes".to_string(), report.bytes.to_string()),
    ];
    let snapshot_id = restic
        .add_tags(&summary.snapshot_id, &recorded, &labels.path())
        .await
        .map_err(|source| Error::Tagging {
            snapshot: summary.snapshot_id.clone(),
            source,
        })?;
    let mut tags: Vec<String> = request
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tags.extend(recorded.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(BackupResult {
        short_id: snapshot_id[..8.min(snapshot_id.len())].to_string(),
        snapshot_id,
        repository: restic.repo().to_string(),
        path: labels.path(),
        bytes: report.bytes,
        sha256: report.sha256,
        data_added: summary.data_added,
        duration_ms: started.elapsed().as_millis() as u64,
        tags,
        databases,
        repository_created: created,
    })
}

/// Finds the snapshot a restore or verify should use.
pub async fn select_snapshot(
    restic: &Restic,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
) -> Result<Snapshot> {
    match selector {
        SnapshotSelector::Latest => {
            let filter = SnapshotFilter {
                tags: labels.tags(),
                path: Some(labels.path()),
                host: None,
            };
            restic.snapshots(&filter).await?.pop().ok_or_else(|| {
                Error::Restic(hasteward_restic::Error::SnapshotNotFound {
                    what: format!(
                        "{} with tags {}",
                        labels.path(),
                        labels
                            .tags()
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                })
            })
        }
        SnapshotSelector::Id(id) => {
            let snap = restic.snapshot(id).await?;
            let mismatched: Vec<String> = labels
                .tags()
                .into_iter()
                .filter(|(k, v)| snap.tag(k) != Some(v.as_str()))
                .map(|(k, v)| format!("{k}={v} (snapshot has {})", snap.tag(&k).unwrap_or("none")))
                .collect();
            if !mismatched.is_empty() || !snap.paths.contains(&labels.path()) {
                return Err(Error::Usage(format!(
                    "snapshot {} does not belong to this target: {}{}",
                    snap.short(),
                    mismatched.join(", "),
                    if snap.paths.contains(&labels.path()) {
                        String::new()
                    } else {
                        format!(" path {} not in {:?}", labels.path(), snap.paths)
                    }
                )));
            }
            Ok(snap)
        }
    }
}

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace user databases that still exist (drop, then restore).
    pub force: bool,
    /// MySQL/MariaDB: also restore the `mysql` system schema (accounts, grants).
    pub restore_system_schema: bool,
}

/// The result of a restore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResult {
    /// The restored snapshot.
    pub snapshot_id: String,
    /// Its path.
    pub path: String,
    /// Bytes streamed.
    pub bytes: u64,
    /// Whether the stream matched the recorded checksum (false when none was recorded).
    pub checksum_verified: bool,
    /// User databases in the dump.
    pub databases: Vec<String>,
    /// Databases that existed and were replaced (`--force`).
    pub replaced: Vec<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// Restores a snapshot into a target.
pub async fn restore<T: Target>(
    restic: &Restic,
    target: &T,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    options: &RestoreOptions,
    settings: &StreamSettings,
) -> Result<RestoreResult> {
    let started = Instant::now();
    let snap = select_snapshot(restic, labels, selector).await?;
    let in_dump = decode_list(snap.tag("databases").unwrap_or(""));
    let existing = list_databases(target).await?.unwrap_or_default();
    let conflicts: Vec<String> = in_dump
        .iter()
        .filter(|d| existing.contains(d))
        .cloned()
        .collect();
    if !conflicts.is_empty() && !options.force {
        return Err(Error::Refused(format!(
            "databases {} still exist on {}; drop them first, or pass --force to replace them with the snapshot's copy",
            conflicts.join(", "),
            target.location()
        )));
    }
    let expected = snap.tag("sha256").map(str::to_string);
    let mut consumer = start(
        target.runner(),
        &target.restore_client(options.force),
        false,
    )
    .await?;
    let mut producer = LocalRunner
        .spawn(&restic.dump_command(&snap.id, &labels.path()))
        .await?;
    let mut opts = settings.pump(
        target.completion_marker(labels.database.is_some()),
        target.client_abort(),
    );
    opts.expected_sha256 = expected.clone();
    // The producer is restic: SIGINT lets it remove its lock.
    opts.producer_stop = Signal::Interrupt;
    opts.producer_grace = Duration::from_secs(30);
    let filter = target.restore_filter(options.force, options.restore_system_schema);
    let report = match gated_filtered(&mut producer, &mut consumer, &opts, filter).await {
        Ok(r) => r,
        Err(PumpError::ProducerFailed { outcome, .. }) => {
            return Err(hasteward_restic::Error::from_exit("dump", restic.repo(), outcome).into())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(RestoreResult {
        snapshot_id: snap.id,
        path: labels.path(),
        bytes: report.bytes,
        checksum_verified: expected.is_some(),
        databases: in_dump,
        replaced: conflicts,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    /// The verified snapshot.
    pub snapshot_id: String,
    /// Its path.
    pub path: String,
    /// Bytes read back.
    pub bytes: u64,
    /// Checksum recorded at backup.
    pub recorded_sha256: String,
    /// Checksum of what was read back.
    pub actual_sha256: String,
}

/// Re-reads a snapshot with `restic dump` and compares it with its recorded checksum and size.
pub async fn verify(
    restic: &Restic,
    labels: &SnapshotLabels,
    selector: &SnapshotSelector,
    cancel: &CancellationToken,
) -> Result<VerifyResult> {
    let snap = select_snapshot(restic, labels, selector).await?;
    let recorded = snap.tag("sha256").map(str::to_string).ok_or_else(|| {
        Error::Usage(format!(
            "snapshot {} has no recorded sha256= tag; it was not written by hasteward's backup",
            snap.short()
        ))
    })?;
    let mut producer = LocalRunner
        .spawn(&restic.dump_command(&snap.id, &labels.path()))
        .await?;
    let (bytes, actual) = match hash_output(&mut producer, cancel).await {
        Ok(v) => v,
        Err(PumpError::ProducerFailed { outcome, .. }) => {
            return Err(hasteward_restic::Error::from_exit("dump", restic.repo(), outcome).into())
        }
        Err(e) => return Err(e.into()),
    };
    let recorded_bytes = snap.tag("bytes").and_then(|b| b.parse::<u64>().ok());
    if actual != recorded || recorded_bytes.is_some_and(|b| b != bytes) {
        return Err(Error::ChecksumMismatch {
            snapshot: snap.id,
            expected: recorded,
            actual: format!("{actual} ({bytes} bytes)"),
        });
    }
    Ok(VerifyResult {
        snapshot_id: snap.id,
        path: labels.path(),
        bytes,
        recorded_sha256: recorded,
        actual_sha256: actual,
    })
}

/// Lists hasteward snapshots matching tag filters (host `hasteward`), oldest first.
pub async fn list(restic: &Restic, tags: Vec<(String, String)>) -> Result<Vec<Snapshot>> {
    let filter = SnapshotFilter {
        tags,
        path: None,
        host: Some(SNAPSHOT_HOST.into()),
    };
    Ok(restic.snapshots(&filter).await?)
}

/// The result of retention.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneResult {
    /// Snapshot ids kept.
    pub kept: Vec<String>,
    /// Snapshot ids removed (or that would be, in a dry run).
    pub removed: Vec<String>,
    /// Whether `restic prune` ran.
    pub pruned: bool,
    /// Dry run: nothing was changed.
    pub dry_run: bool,
}

/// Applies retention per backup set (grouped by host and path) to snapshots matching `tags`,
/// then prunes unreferenced data if anything was removed.
pub async fn prune(
    restic: &Restic,
    tags: Vec<(String, String)>,
    policy: &KeepPolicy,
    dry_run: bool,
) -> Result<PruneResult> {
    if policy.is_empty() {
        return Err(Error::Usage(
            "no retention rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within".into(),
        ));
    }
    let filter = SnapshotFilter {
        tags,
        path: None,
        host: Some(SNAPSHOT_HOST.into()),
    };
    let groups: Vec<ForgetGroup> = restic.forget(&filter, policy, dry_run).await?;
    let ids = |f: fn(&ForgetGroup) -> &Option<Vec<hasteward_restic::SnapshotRef>>| -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| f(g).iter().flatten().map(|s| s.id.clone()))
            .collect()
    };
    let kept = ids(|g| &g.keep);
    let removed = ids(|g| &g.remove);
    let pruned = !dry_run && !removed.is_empty();
    if pruned {
        restic.prune().await?;
    }
    Ok(PruneResult {
        kept,
        removed,
        pruned,
        dry_run,
    })
}
