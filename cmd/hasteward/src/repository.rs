//! `hasteward sync` and `hasteward check`: repository operations (see
//! `hasteward_engines::repository`), and the lock waiting `prune` shares with them.

use std::time::Duration;

use hasteward_engines::repository::{self, LockWait};
use hasteward_engines::{flows, Error};
use hasteward_exec::CancellationToken;
use hasteward_model::ExitCode;
use hasteward_restic::KeepPolicy;

use crate::cli::{CheckArgs, Cli, ImmutableArgs, KeepArgs, LockArgs, RepoArgs, SyncArgs};
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
/// The maintenance credential retention runs with (`--maintenance-env-file`), checked against
/// `--immutable`: an immutable repository is never pruned with the ambient (backup) credential.
pub(crate) fn maintenance_env(a: &ImmutableArgs) -> Result<Vec<(String, String)>, Error> {
    let Some(path) = &a.maintenance_env_file else {
        if a.immutable {
            return Err(usage(
                "the repository is immutable (--immutable): retention runs only with the maintenance credential, never the backup writer's; pass --maintenance-env-file FILE (KEY=VALUE lines such as AWS_ACCESS_KEY_ID=…)",
            ));
        }
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "--maintenance-env-file {}: {e}; give a readable file of KEY=VALUE lines",
            path.display()
        ))
    })?;
    parse_env_lines(&text)
        .map_err(|e| usage(format!("--maintenance-env-file {}: {e}", path.display())))
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped. Keys are environment variable
/// names; values are taken verbatim (no quotes, no expansion). Errors never echo a value.
pub(crate) fn parse_env_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=VALUE", n + 1));
        };
        let key = key.trim();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "line {}: `{key}` is not an environment variable name",
                n + 1
            ));
        }
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), value.to_string()));
    }
    if out.is_empty() {
        return Err("no KEY=VALUE line in it".into());
    }
    Ok(out)
}

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
    // Checked before anything is copied: an immutable destination's retention needs its
    // maintenance credential.
    let maintenance = match policy {
        Some(_) => maintenance_env(&a.immutable)?,
        None => Vec::new(),
    };
    if a.repo.repo.as_deref() == Some(a.to_repo.as_str()) {
        return Err(usage(
            "--to-repo is the source repository itself: name another one",
        ));
    }
    let source = open_repo(cli, &a.repo).await?;
    let destination_args = RepoArgs {
        repo: Some(a.to_repo.clone()),
        password_file: Some(a.to_password_file.clone()),
    };
    let destination = open_repo(cli, &destination_args).await?;
    let wait = lock_wait(&a.lock, rep, cancel);
    let result = rep
        .step(
            "copy",
            repository::sync(&source, &destination, tags.clone(), a.dry_run, &wait),
        )
        .await?;
    let retention = match &policy {
        Some(policy) => {
            let maintainer = if maintenance.is_empty() {
                destination.clone()
            } else {
                crate::commands::open_repo_with_env(cli, &destination_args, maintenance).await?
            };
            Some(
                rep.step(
                    "retention",
                    repository::with_lock_retry(&maintainer, &wait, || {
                        flows::prune(&maintainer, tags.clone(), policy, a.dry_run)
                    }),
                )
                .await?,
            )
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_parse_and_bad_lines_are_named_without_their_values() {
        let env = parse_env_lines(
            "# maintenance\nAWS_ACCESS_KEY_ID=maint\n\nAWS_SECRET_ACCESS_KEY=a=b c\r\nAWS_ACCESS_KEY_ID=m2\n",
        )
        .unwrap();
        assert_eq!(
            env,
            [
                ("AWS_SECRET_ACCESS_KEY".to_string(), "a=b c".to_string()),
                ("AWS_ACCESS_KEY_ID".to_string(), "m2".to_string()),
            ]
        );
        let e = parse_env_lines("AWS_SECRET_ACCESS_KEY hunter2\n").unwrap_err();
        assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
        assert!(parse_env_lines("1X=y").is_err());
        assert!(parse_env_lines("# nothing\n").is_err());
    }
}
