//! Repository operations that are not a backup: copying snapshots to another repository
//! (`sync`), checking a repository's integrity (`check`), and waiting for a repository that
//! another process holds locked.
//!
//! # Coordination
//! Backups take restic's shared lock and run concurrently; `prune`, `check` and the retention
//! after a copy need the exclusive lock. When restic reports the repository locked,
//! [`with_lock_retry`] waits with a bounded backoff (saying so) instead of failing at once. Before
//! each retry it runs a plain `restic unlock`, which removes only locks restic itself proves
//! stale (its process gone on this host, or not refreshed for 30 minutes); a live holder's lock
//! is never removed.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use hasteward_exec::CancellationToken;
use hasteward_model::SNAPSHOT_HOST;
use hasteward_restic::{Restic, SnapshotFilter};
use serde::Serialize;

use crate::{Error, Result};

/// Told before each wait: restic's message and the delay.
pub type WaitNotice = Box<dyn Fn(&str, Duration) + Send + Sync>;

/// How long to wait for a locked repository, and whom to tell.
pub struct LockWait {
    /// Give up after this long (0: do not wait).
    pub max: Duration,
    /// Called before each wait with restic's message and the delay.
    pub on_wait: Option<WaitNotice>,
    /// Stops the waiting.
    pub cancel: CancellationToken,
}

/// The first delay between attempts; doubled up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_secs(2);
/// The longest delay between attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Runs `op` against `restic`, retrying while the repository is locked by someone else (module
/// docs), until `wait.max` has passed.
pub async fn with_lock_retry<T, E, F, Fut>(restic: &Restic, wait: &LockWait, mut op: F) -> Result<T>
where
    E: Into<Error>,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        let error: Error = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e.into(),
        };
        if !error.is_transient() || started.elapsed() + delay > wait.max {
            return Err(error);
        }
        if let Some(tell) = &wait.on_wait {
            tell(&error.to_string(), delay);
        }
        // Removes only the locks restic proves stale.
        let _ = restic.unlock(false).await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wait.cancel.cancelled() => {
                return Err(Error::Cancelled(format!(
                    "cancelled while waiting for the lock on {}; nothing was changed",
                    restic.repo()
                )))
            }
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    /// The destination repository.
    pub destination: String,
    /// Whether the destination was created (with the source's chunker parameters).
    pub created: bool,
    /// Source snapshots copied (short ids).
    pub copied: Vec<String>,
    /// Source snapshots the destination already had.
    pub already_there: usize,
    /// Growth of the destination's raw data, bytes (not in a dry run).
    pub bytes_added: Option<u64>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Dry run: nothing was changed.
    pub dry_run: bool,
}

/// Copies the hasteward snapshots matching `tags` from `source` to `destination` with
/// `restic copy`. A destination that does not exist is created with the source's chunker
/// parameters (`init --from-repo … --copy-chunker-params`), so deduplication carries over.
/// Idempotent: snapshots the destination already has (by the `original` id restic records on
/// copies and re-tagged snapshots) are not copied again. Every matching source snapshot is checked to be in the destination
/// afterwards.
pub async fn sync(
    source: &Restic,
    destination: &Restic,
    tags: Vec<(String, String)>,
    dry_run: bool,
    wait: &LockWait,
) -> Result<SyncResult> {
    let started = Instant::now();
    let filter = SnapshotFilter {
        tags,
        path: None,
        host: Some(SNAPSHOT_HOST.into()),
    };
    let wanted = with_lock_retry(source, wait, || source.snapshots(&filter)).await?;
    let existing = match with_lock_retry(destination, wait, || destination.snapshots(&filter)).await
    {
        Ok(list) => Some(list),
        Err(Error::Restic(hasteward_restic::Error::RepositoryMissing { .. })) => None,
        Err(e) => return Err(e),
    };
    // A snapshot's identity across copies: the id it was first saved under. restic records it
    // as `original` on a copy, and on a re-tagged snapshot (hasteward tags each backup with its
    // checksum, which saves it under a new id), and keeps an existing `original` when copying.
    // The tags count too: a copy taken before its source got its checksum tags is not the
    // tagged snapshot (restic's copy compares them the same way).
    let identity = |s: &hasteward_restic::Snapshot| {
        let mut tags = s.tags.clone();
        tags.sort();
        (s.original.clone().unwrap_or_else(|| s.id.clone()), tags)
    };
    let present = |list: &[hasteward_restic::Snapshot]| -> HashSet<(String, Vec<String>)> {
        list.iter().map(identity).collect()
    };
    let there = present(existing.as_deref().unwrap_or_default());
    let missing: Vec<&hasteward_restic::Snapshot> = wanted
        .iter()
        .filter(|s| !there.contains(&identity(s)))
        .collect();
    let mut result = SyncResult {
        destination: destination.repo().to_string(),
        created: existing.is_none(),
        copied: missing.iter().map(|s| s.short().to_string()).collect(),
        already_there: wanted.len() - missing.len(),
        bytes_added: None,
        seconds: 0.0,
        dry_run,
    };
    if dry_run {
        result.seconds = started.elapsed().as_secs_f64();
        return Ok(result);
    }
    if existing.is_none() {
        result.created = destination.init_from(source).await?;
    }
    let before = if result.created {
        0
    } else {
        with_lock_retry(destination, wait, || destination.stats())
            .await?
            .total_size
    };
    if !missing.is_empty() {
        with_lock_retry(destination, wait, || destination.copy_from(source, &filter)).await?;
    }
    let after = with_lock_retry(destination, wait, || destination.stats())
        .await?
        .total_size;
    result.bytes_added = Some(after.saturating_sub(before));
    let now_there =
        present(&with_lock_retry(destination, wait, || destination.snapshots(&filter)).await?);
    let lost: Vec<&str> = wanted
        .iter()
        .filter(|s| !now_there.contains(&identity(s)))
        .map(|s| s.short())
        .collect();
    if !lost.is_empty() {
        return Err(Error::SyncIncomplete(format!(
            "restic copy finished, but {} is still missing {} snapshot(s): {}; run the sync again",
            destination.repo(),
            lost.len(),
            lost.join(", ")
        )));
    }
    result.seconds = started.elapsed().as_secs_f64();
    Ok(result)
}

/// What a check found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The repository.
    pub repository: String,
    /// The data subset read (`--read-data-subset`), if any.
    pub read_data_subset: Option<String>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// restic's report.
    pub report: String,
}

/// Whether `subset` is a `--read-data-subset` value restic accepts: `n/t` (1 ≤ n ≤ t), a
/// percentage `p%` (0 < p ≤ 100), or a size (`500M`, `2G`).
pub fn valid_subset(subset: &str) -> bool {
    if let Some((n, t)) = subset.split_once('/') {
        return matches!((n.parse::<u32>(), t.parse::<u32>()), (Ok(n), Ok(t)) if n >= 1 && n <= t);
    }
    if let Some(p) = subset.strip_suffix('%') {
        return p.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0);
    }
    let digits = subset.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty()
        && digits.len() + 1 >= subset.len()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// The `n/t` subset for today when the data is read in `t` rotating parts (part `n` = days since
/// the epoch mod `t`, plus one), so `t` daily checks read everything once.
pub fn rotating_subset(parts: u32, today: chrono::NaiveDate) -> String {
    let days = today
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days()
        .max(0) as u64;
    format!("{}/{parts}", days % u64::from(parts.max(1)) + 1)
}

/// `restic check` (reading `subset` of the data when given). A damaged repository is
/// [`Error::RepositoryDamaged`] with restic's findings.
pub async fn check(restic: &Restic, subset: Option<&str>, wait: &LockWait) -> Result<CheckResult> {
    let started = Instant::now();
    match with_lock_retry(restic, wait, || restic.check(subset)).await {
        Ok(report) => Ok(CheckResult {
            repository: restic.repo().to_string(),
            read_data_subset: subset.map(String::from),
            seconds: started.elapsed().as_secs_f64(),
            report,
        }),
        // Only restic's verdict on the data is damage; any other failure (a backend outage,
        // a killed restic) stays what it is.
        Err(Error::Restic(hasteward_restic::Error::Failed { outcome, .. }))
            if outcome.stderr_tail.contains("repository contains errors")
                || outcome.stderr_tail.contains("does not exist")
                || outcome.stderr_tail.contains("error for tree") =>
        {
            let findings: Vec<&str> = outcome
                .stderr_tail
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            Err(Error::RepositoryDamaged(format!(
                "repository {} is damaged: {}. Do not prune it; find the cause (storage, a partial upload), then rebuild the index (`restic repair index`; `restic rebuild-index` before restic 0.16) and drop or repair the affected snapshots, or copy the lost snapshots back from another repository (hasteward sync)",
                restic.repo(),
                findings
                    .iter()
                    .rev()
                    .take(6)
                    .rev()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" | ")
            )))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        for ok in ["1/7", "7/7", "10%", "2.5%", "100%", "500M", "2G", "1024"] {
            assert!(valid_subset(ok), "{ok}");
        }
        for bad in [
            "0/7", "8/7", "x/7", "0%", "101%", "%", "M", "5X", "", "1/0", "--x",
        ] {
            assert!(!valid_subset(bad), "{bad}");
        }
    }

    #[test]
    fn a_rotating_subset_visits_every_part() {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let mut seen: Vec<String> = (0..7)
            .map(|d| rotating_subset(7, start + chrono::Duration::days(d)))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert!(seen.iter().all(|s| valid_subset(s)));
    }
}
