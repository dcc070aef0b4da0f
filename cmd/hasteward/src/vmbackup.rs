//! `-e vmbackup`: backup, restore, snapshots (generations) and prune (retention) of
//! VictoriaMetrics through vmbackup/vmrestore, against a destination instead of a restic
//! repository.

use chrono::Utc;
use hasteward_engines::vmbackup::store::{list_all, AnyStore};
use hasteward_engines::vmbackup::{self, generations, Destination, Keep, VmServer};
use hasteward_engines::Error;
use hasteward_exec::{LocalRunner, Runner};
use hasteward_model::ExitCode;
use serde_json::json;

use crate::cli::{
    BackupArgs, Cli, GenerationKeepArgs, PruneArgs, RestoreArgs, SnapshotsArgs, VmDestArgs,
    VmServerArgs,
};
use crate::commands::usage;
use crate::output::Reporter;
use crate::targets::{resolve_vm, VmResolved};

/// VictoriaMetrics flags given to another engine are a mistake worth naming (callers run
/// `-e vmbackup` before they get here).
pub fn reject_flags(
    server: Option<&VmServerArgs>,
    dst: Option<&VmDestArgs>,
    keep: Option<&GenerationKeepArgs>,
) -> Result<(), Error> {
    let given = server.is_some_and(|s| s.vm_url.is_some() || s.storage_data_path.is_some())
        || dst.is_some_and(|d| {
            d.dst.is_some() || d.vm_credentials_file.is_some() || d.vm_s3_endpoint.is_some()
        })
        || keep.is_some_and(|k| keep_of(k) != Keep::default());
    if given {
        return Err(usage(
            "--vm-url/--storage-data-path/--dst/--vm-* (and --keep-* on `backup`) apply to -e vmbackup only (restic retention is `hasteward prune`)",
        ));
    }
    Ok(())
}

fn keep_of(k: &GenerationKeepArgs) -> Keep {
    Keep {
        hourly: k.keep_hourly,
        daily: k.keep_daily,
        weekly: k.keep_weekly,
        monthly: k.keep_monthly,
    }
}

fn destination(d: &VmDestArgs) -> Result<Destination, Error> {
    let url = d.dst.as_deref().ok_or_else(|| {
        usage("-e vmbackup needs --dst URL (fs:///DIR, s3://BUCKET/PREFIX, gs://…, azblob://…)")
    })?;
    Destination::parse(url)
}

/// The store of a destination, reached through `runner` for `fs://`.
fn store<'a, R: Runner>(
    runner: &'a R,
    dst: &Destination,
    d: &VmDestArgs,
) -> Result<AnyStore<'a, R>, Error> {
    AnyStore::new(
        runner,
        dst,
        d.vm_credentials_file.as_deref(),
        d.vm_s3_endpoint.as_deref(),
    )
}

/// Runs `$body` with `$s` bound to the resolved server.
macro_rules! with_vm {
    ($resolved:expr, $s:ident => $body:expr) => {
        match $resolved {
            VmResolved::Host($s) => $body,
            VmResolved::Pod($s) => $body,
        }
    };
}

/// The tool's own command line, as a dry run shows it: `sh -c WRAPPER hasteward none PROGRAMS
/// ARGS…` becomes `vmbackup ARGS…` (the first program the wrapper tries).
fn shown(spec: &hasteward_exec::CommandSpec) -> String {
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = args
        .get(4)
        .and_then(|p| p.split(',').next())
        .unwrap_or("?")
        .to_string();
    std::iter::once(program)
        .chain(args.into_iter().skip(5))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `backup -e vmbackup`.
pub async fn backup(cli: &Cli, a: &BackupArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    if !a.databases.is_empty() {
        return Err(usage("--database does not apply to -e vmbackup"));
    }
    let dst = destination(&a.vm_dst)?;
    let keep = keep_of(&a.generations);
    let server = resolve_vm(cli, &a.set.namespace, &a.pod, &a.vm, &a.vm_dst).await?;
    if a.dry_run {
        return with_vm!(&server, s => backup_plan(s, &dst, &keep, &a.vm_dst, rep).await);
    }
    let (result, expired) = with_vm!(&server, s => {
        let result = rep
            .step("vmbackup", vmbackup::backup(s, &dst, &keep, Utc::now()))
            .await?;
        let expired = if keep.is_empty() {
            Vec::new()
        } else {
            let st = store(s.runner(), &dst, &a.vm_dst)?;
            match rep.step("retention", vmbackup::apply_retention(&st, &keep)).await {
                Ok(e) => e,
                Err(e) => {
                    let written: Vec<&str> =
                        result.generations.iter().map(|g| g.name.as_str()).collect();
                    return Ok(rep.fail(
                        ExitCode::Partial,
                        e.code(),
                        &format!(
                            "generations {} written to {}, then retention failed: {e}",
                            written.join(", "),
                            dst.as_str()
                        ),
                        e.is_transient(),
                        serde_json::to_value(&result).unwrap_or_default(),
                    ));
                }
            }
        };
        (result, expired)
    });
    let text = format!(
        "backed up {} to {}: {} in {:.1}s{}",
        with_vm!(&server, s => s.location().to_string()),
        dst.as_str(),
        result
            .generations
            .iter()
            .map(|g| format!("{} ({:.1}s)", g.name, g.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        result.duration_ms as f64 / 1000.0,
        if expired.is_empty() {
            String::new()
        } else {
            format!("; deleted {}", expired.join(", "))
        }
    );
    let mut data = serde_json::to_value(&result).unwrap_or_default();
    data["expired"] = json!(expired);
    Ok(rep.succeed(data, &text))
}

async fn backup_plan<R: Runner>(
    s: &VmServer<R>,
    dst: &Destination,
    keep: &Keep,
    d: &VmDestArgs,
    rep: &mut Reporter,
) -> Result<ExitCode, Error> {
    let planned = vmbackup::planned_generations(Utc::now(), keep);
    let commands: Vec<String> = planned
        .iter()
        .map(|(name, origin)| {
            let spec = s.backup_command(
                &dst.generation(name),
                origin.map(|o| dst.generation(o)).as_deref(),
            );
            shown(&spec)
        })
        .collect();
    let expired = if keep.is_empty() {
        Vec::new()
    } else {
        let upcoming: Vec<String> = planned.iter().map(|(n, _)| n.clone()).collect();
        vmbackup::retention_plan(&store(s.runner(), dst, d)?, keep, &upcoming).await?
    };
    let data = json!({
        "dryRun": true,
        "target": s.location(),
        "destination": dst.as_str(),
        "generations": planned.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "commands": commands,
        "wouldDelete": expired,
    });
    let text = format!(
        "dry run: would run on {}:\n  {}\n{}",
        s.location(),
        commands.join("\n  "),
        if expired.is_empty() {
            "and delete no generation".to_string()
        } else {
            format!("then delete {} (retention)", expired.join(", "))
        }
    );
    Ok(rep.succeed(data, &text))
}

/// `restore -e vmbackup`.
pub async fn restore(cli: &Cli, a: &RestoreArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    if a.database.is_some() || a.restore_system_schema {
        return Err(usage(
            "--database/--restore-system-schema do not apply to -e vmbackup",
        ));
    }
    generations::validate(&a.snapshot)?;
    let dst = destination(&a.vm_dst)?;
    let server = resolve_vm(cli, &a.set.namespace, &a.pod, &a.vm, &a.vm_dst).await?;
    if a.dry_run {
        let (location, command, check) = with_vm!(&server, s => {
            let spec = s.restore_command(&dst.generation(&a.snapshot));
            (s.location().to_string(), shown(&spec), s.check_restorable(a.force))
        });
        let data = json!({
            "dryRun": true,
            "target": location,
            "source": dst.generation(&a.snapshot),
            "command": command,
            "refusal": check.as_ref().err().map(|e| e.to_string()),
        });
        let text = match check {
            Ok(()) => format!("dry run: would run on {location}: {command}"),
            Err(e) => format!("dry run: would refuse: {e}"),
        };
        return Ok(rep.succeed(data, &text));
    }
    let result = with_vm!(&server, s => rep
        .step("vmrestore", vmbackup::restore(s, &dst, &a.snapshot, a.force))
        .await?);
    let text = format!(
        "restored {} into {} in {:.1}s; start VictoriaMetrics again",
        result.source,
        result.storage_data_path,
        result.duration_ms as f64 / 1000.0
    );
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}

/// `snapshots -e vmbackup`: the generations under the destination.
pub async fn snapshots(a: &SnapshotsArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    let dst = destination(&a.vm_dst)?;
    let st = store(&LocalRunner, &dst, &a.vm_dst)?;
    let all = list_all(&st).await?;
    let mut text = format!("{:<24} state\n", "generation");
    for g in &all {
        text.push_str(&format!(
            "{:<24} {}\n",
            g.name,
            if g.complete { "complete" } else { "INCOMPLETE" }
        ));
    }
    text.push_str(&format!("{} generations under {}", all.len(), dst.as_str()));
    Ok(rep.succeed(
        json!({ "destination": dst.as_str(), "generations": all }),
        &text,
    ))
}

/// `prune -e vmbackup`: generation retention (`--keep-hourly/daily/weekly/monthly`).
pub async fn prune(a: &PruneArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    if a.keep.keep_last.is_some() || a.keep.keep_yearly.is_some() || a.keep.keep_within.is_some() {
        return Err(usage(
            "-e vmbackup keeps generations by --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly",
        ));
    }
    let keep = Keep {
        hourly: a.keep.keep_hourly,
        daily: a.keep.keep_daily,
        weekly: a.keep.keep_weekly,
        monthly: a.keep.keep_monthly,
    };
    if keep.is_empty() {
        return Err(usage(
            "give at least one of --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly",
        ));
    }
    let dst = destination(&a.vm_dst)?;
    let st = store(&LocalRunner, &dst, &a.vm_dst)?;
    let removed = if a.dry_run {
        vmbackup::retention_plan(&st, &keep, &[]).await?
    } else {
        rep.step("retention", vmbackup::apply_retention(&st, &keep))
            .await?
    };
    let text = format!(
        "{}removed {} generation(s){}",
        if a.dry_run {
            "dry run: would have "
        } else {
            ""
        },
        removed.len(),
        if removed.is_empty() {
            String::new()
        } else {
            format!(": {}", removed.join(", "))
        }
    );
    Ok(rep.succeed(
        json!({ "dryRun": a.dry_run, "destination": dst.as_str(), "removed": removed }),
        &text,
    ))
}
