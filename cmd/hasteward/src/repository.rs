//! `hasteward sync` and `hasteward check`: repository operations (see
//! `hasteward_engines::repository`), and the lock waiting `prune` shares with them.

use std::time::Duration;

use hasteward_engines::repository::{self, LockWait};
use hasteward_engines::{flows, Error};
use hasteward_exec::CancellationToken;
use hasteward_model::ExitCode;
use hasteward_restic::KeepPolicy;

use crate::cli::{CheckArgs, Cli, KeepArgs, LockArgs, RepoArgs, SyncArgs};
use crate::commands::{filter_tags, open_repo, usage};
use crate::output::{human_bytes, Reporter};

/// Waiting for a locked repository, telling the user each time.
pub(crate) fn lock_wait(l: &LockArgs, rep: &Reporter, cancel: &CancellationToken) -> LockWait {
    let tell = rep.notifier();
    LockWait {
        max: Duration::from_secs(l.lock_wait),
        on_wait: Some(Box::new(move |why: &str, delay: Duration| {
            tell(&format!(
                "repository busy ({why}); retrying in {} s",
                delay.as_secs()
            ))
        })),
        cancel: cancel.clone(),
    }
}

/// The retention policy of `--keep-*`.
pub(crate) fn keep_policy(k: &KeepArgs) -> Result<KeepPolicy, Error> {
    if let Some(w) = &k.keep_within {
        if !KeepPolicy::valid_duration(w) {
            return Err(usage(format!(
                "invalid --keep-within `{w}` (use a duration like 30d, 12h, 1y6m)"
            )));
        }
    }
    Ok(KeepPolicy {
        keep_last: k.keep_last,
        keep_hourly: k.keep_hourly,
        keep_daily: k.keep_daily,
        keep_weekly: k.keep_weekly,
        keep_monthly: k.keep_monthly,
        keep_yearly: k.keep_yearly,
        keep_within: k.keep_within.clone(),
    })
}

/// `hasteward sync`.
pub async fn sync(
    cli: &Cli,
    a: &SyncArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let tags = filter_tags(&a.filter, None)?;
    let policy = if a.keep.any() {
        Some(keep_policy(&a.keep)?)
    } else {
        None
    };
    if a.repo.repo.as_deref() == Some(a.to_repo.as_str()) {
        return Err(usage(
            "--to-repo is the source repository itself: name another one",
        ));
    }
    let source = open_repo(cli, &a.repo).await?;
    let destination = open_repo(
        cli,
        &RepoArgs {
            repo: Some(a.to_repo.clone()),
            password_file: Some(a.to_password_file.clone()),
        },
    )
    .await?;
    let wait = lock_wait(&a.lock, rep, cancel);
    let result = rep
        .step(
            "copy",
            repository::sync(&source, &destination, tags.clone(), a.dry_run, &wait),
        )
        .await?;
    let retention = match &policy {
        Some(policy) => Some(
            rep.step(
                "retention",
                repository::with_lock_retry(&destination, &wait, || {
                    flows::prune(&destination, tags.clone(), policy, a.dry_run)
                }),
            )
            .await?,
        ),
        None => None,
    };
    let mut text = format!(
        "{}{}{} snapshot(s) copied to {}, {} already there{}",
        if a.dry_run { "dry run: " } else { "" },
        if result.created {
            if a.dry_run {
                "would create the destination (same chunker parameters); "
            } else {
                "destination created (same chunker parameters); "
            }
        } else {
            ""
        },
        result.copied.len(),
        result.destination,
        result.already_there,
        result
            .bytes_added
            .map(|b| format!(", {} added", human_bytes(b)))
            .unwrap_or_default()
    );
    if let Some(r) = &retention {
        text.push_str(&format!(
            "\nretention on the destination: kept {}, removed {}",
            r.kept.len(),
            r.removed.len()
        ));
    }
    Ok(rep.succeed(
        serde_json::json!({ "sync": result, "retention": retention }),
        &text,
    ))
}

/// `hasteward check`.
pub async fn check(
    cli: &Cli,
    a: &CheckArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let subset = match (&a.read_data_subset, a.rotate) {
        (Some(s), _) if !repository::valid_subset(s) => {
            return Err(usage(format!(
                "invalid --read-data-subset `{s}` (use n/t with 1 ≤ n ≤ t, a percentage like 10%, or a size like 500M)"
            )))
        }
        (Some(s), _) => Some(s.clone()),
        (None, Some(0)) => return Err(usage("--rotate needs at least 1 part")),
        (None, Some(parts)) => Some(repository::rotating_subset(
            parts,
            chrono::Utc::now().date_naive(),
        )),
        (None, None) => None,
    };
    let restic = open_repo(cli, &a.repo).await?;
    let wait = lock_wait(&a.lock, rep, cancel);
    let result = rep
        .step(
            "check",
            repository::check(&restic, subset.as_deref(), &wait),
        )
        .await?;
    let text = format!(
        "repository {} is healthy ({}checked in {:.1} s)",
        result.repository,
        result
            .read_data_subset
            .as_deref()
            .map(|s| format!("data subset {s} read; "))
            .unwrap_or_default(),
        result.seconds
    );
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}
