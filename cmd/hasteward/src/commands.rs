//! One function per subcommand: resolve flags into validated jobs, run the flow, report.

use std::time::Duration;

use hasteward_engines::flows::{self, SnapshotSelector, StreamSettings};
use hasteward_engines::pod::cnpg;
use hasteward_engines::standalone::HostTarget;
use hasteward_engines::target::Target;
use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_model::{validate_name, DbType, Engine, ExitCode, SnapshotKind, SnapshotLabels};
use hasteward_restic::{Credentials, Restic};
use serde_json::json;

use crate::cli::{
    BackupArgs, Cli, Command, EngineArg, FilterArgs, HostArgs, PodArgs, PruneArgs, RepoArgs,
    RestoreArgs, SetArgs, SnapshotsArgs, StreamArgs, VaultArgs, VerifyArgs,
};
use crate::output::{human_bytes, Reporter};
use crate::targets::{resolve, with_target, Resolved};

/// Resolves the target of a backup set (checks host flags first, so a typo fails before any
/// connection is made).
async fn resolve_target(
    cli: &Cli,
    set: &SetArgs,
    db: Option<DbType>,
    host: &HostArgs,
    pod: &PodArgs,
    vault: &VaultArgs,
) -> Result<Resolved, Error> {
    resolve(
        cli,
        engine(set.engine),
        &set.namespace,
        &set.cluster,
        db,
        host,
        pod,
        vault,
    )
    .await
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let name = match &cli.command {
        Command::Backup(_) => "backup",
        Command::Restore(_) => "restore",
        Command::Snapshots(_) => "snapshots",
        Command::Prune(_) => "prune",
        Command::Verify(_) => "verify",
        Command::Sync(_) => "sync",
        Command::Check(_) => "check",
        Command::Triage(_) => "triage",
        Command::Repair(_) => "repair",
        Command::Demo(_) => "demo",
        Command::Crd => "crd",
        Command::Serve(_) => "serve",
    };
    let mut rep = Reporter::new(cli.output, name);
    let result = match &cli.command {
        Command::Backup(a) => backup(&cli, a, &mut rep, &cancel).await,
        Command::Restore(a) => restore(&cli, a, &mut rep, &cancel).await,
        Command::Snapshots(a) => snapshots(&cli, a, &mut rep).await,
        Command::Prune(a) => prune(&cli, a, &mut rep, &cancel).await,
        Command::Sync(a) => crate::repository::sync(&cli, a, &mut rep, &cancel).await,
        Command::Check(a) => crate::repository::check(&cli, a, &mut rep, &cancel).await,
        Command::Verify(a) => verify(&cli, a, &mut rep, &cancel).await,
        Command::Triage(a) => crate::triage::run(&cli, a, &mut rep).await,
        Command::Repair(a) => crate::repair::run(&cli, a, &mut rep, &cancel).await,
        Command::Demo(a) => crate::demo::run(&cli, a, &mut rep, &cancel).await,
        Command::Crd => {
            print!("{}", hasteward_api::crds_yaml());
            Ok(ExitCode::Success)
        }
        Command::Serve(a) => crate::serve::run(&cli, a, &cancel).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = s.source();
            }
            rep.fail(
                e.exit_code(),
                e.code(),
                &message,
                e.is_transient(),
                serde_json::Value::Null,
            )
        }
    }
}

/// Ctrl-C or SIGTERM cancels the run: streams abort their consumer before end of stream.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("signal received: aborting; nothing partial will be committed");
        cancel.cancel();
    });
}

pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// The backup set named by `-e -c -n --db-type`; the database type is `None` for `-e vault`.
pub fn labels(set: &SetArgs) -> Result<(SnapshotLabels, Option<DbType>), Error> {
    validate_name("cluster (-c)", &set.cluster).map_err(usage)?;
    validate_name("namespace (-n)", &set.namespace).map_err(usage)?;
    let given: Option<DbType> = set
        .db_type
        .as_deref()
        .map(|d| d.parse().map_err(usage))
        .transpose()?;
    let db = match (set.engine, given) {
        (EngineArg::Standalone, Some(db)) => db,
        (EngineArg::Standalone, None) => {
            return Err(usage(
                "-e standalone needs --db-type postgres|mysql|mariadb|mongo",
            ))
        }
        (EngineArg::Cnpg, None | Some(DbType::Postgres)) => DbType::Postgres,
        (EngineArg::Galera, None | Some(DbType::Mariadb)) => DbType::Mariadb,
        (EngineArg::Cnpg | EngineArg::Galera, Some(other)) => {
            return Err(usage(format!(
                "--db-type {other} does not apply to -e {}: its type is fixed ({})",
                engine(set.engine),
                if set.engine == EngineArg::Cnpg {
                    "postgres"
                } else {
                    "mariadb"
                }
            )))
        }
        (EngineArg::Vault, None) => {
            return Ok((
                SnapshotLabels {
                    engine: Engine::Vault,
                    cluster: set.cluster.clone(),
                    namespace: set.namespace.clone(),
                    kind: SnapshotKind::Backup,
                    db_type: None,
                    file: hasteward_engines::vault::SNAPSHOT_FILE.to_string(),
                    database: None,
                    job: None,
                },
                None,
            ))
        }
        (EngineArg::Vault, Some(other)) => {
            return Err(usage(format!(
                "--db-type {other} does not apply to -e vault (a raft snapshot is the whole server)"
            )))
        }
        (EngineArg::Vmbackup, _) => {
            return Err(usage(
                "-e vmbackup keeps its backups in its own destination (--dst), not in a restic repository: use `backup`, `restore`, `snapshots` and `prune` with -e vmbackup --dst URL",
            ))
        }
    };
    Ok((
        SnapshotLabels {
            engine: engine(set.engine),
            cluster: set.cluster.clone(),
            namespace: set.namespace.clone(),
            kind: SnapshotKind::Backup,
            db_type: Some(db),
            file: db.dump_file().to_string(),
            database: None,
            job: None,
        },
        Some(db),
    ))
}

/// The labels of one database's snapshot (`--database`).
fn database_labels(
    labels: &SnapshotLabels,
    db: Option<DbType>,
    name: &str,
) -> Result<SnapshotLabels, Error> {
    let Some(db) = db else {
        return Err(usage(format!(
            "--database does not apply to -e {}: its snapshot is the whole server",
            labels.engine
        )));
    };
    if name.is_empty() || name.starts_with('-') || name.contains(['\0', '\n', '\r']) {
        return Err(usage(format!("invalid --database `{name}`")));
    }
    Ok(labels.for_database(name, db.database_dump_file()))
}

/// The backup set, narrowed to one database's snapshots when `--database` is given.
fn selected_labels(
    set: &SetArgs,
    database: Option<&str>,
) -> Result<(SnapshotLabels, Option<DbType>), Error> {
    let (labels, db) = labels(set)?;
    match database {
        Some(name) => Ok((database_labels(&labels, db, name)?, db)),
        None => Ok((labels, db)),
    }
}

/// The snapshots a backup takes: the whole server, or one per `--database`.
fn backup_sets(
    labels: &SnapshotLabels,
    db: Option<DbType>,
    databases: &[String],
) -> Result<Vec<SnapshotLabels>, Error> {
    if databases.is_empty() {
        return Ok(vec![labels.clone()]);
    }
    databases
        .iter()
        .map(|name| database_labels(labels, db, name))
        .collect()
}

fn engine(e: EngineArg) -> Engine {
    match e {
        EngineArg::Cnpg => Engine::Cnpg,
        EngineArg::Galera => Engine::Galera,
        EngineArg::Standalone => Engine::Standalone,
        EngineArg::Vault => Engine::Vault,
        EngineArg::Vmbackup => Engine::Vmbackup,
    }
}

fn require_file(flag: &str, path: Option<&std::path::Path>) -> Result<(), Error> {
    match path {
        Some(f) if !f.is_file() => Err(usage(format!(
            "{flag} {} does not exist or is not a file",
            f.display()
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn host_target(db: DbType, h: &HostArgs) -> Result<HostTarget, Error> {
    let host = h.host.clone().ok_or_else(|| {
        usage("a host target needs --host (and usually --port, --db-user, --db-password-file)")
    })?;
    require_file("--db-password-file", h.db_password_file.as_deref())?;
    let t = HostTarget {
        db_type: db,
        host,
        port: h.port.unwrap_or_else(|| HostTarget::default_port(db)),
        user: h
            .db_user
            .clone()
            .unwrap_or_else(|| HostTarget::default_user(db).to_string()),
        password_file: h.db_password_file.clone(),
    };
    t.validate()?;
    Ok(t)
}

pub(crate) async fn open_repo(cli: &Cli, r: &RepoArgs) -> Result<Restic, Error> {
    open_repo_with_env(cli, r, Vec::new()).await
}

/// Opens the repository with `env` over the ambient environment (a maintenance credential).
pub(crate) async fn open_repo_with_env(
    cli: &Cli,
    r: &RepoArgs,
    env: Vec<(String, String)>,
) -> Result<Restic, Error> {
    require_file("--password-file", r.password_file.as_deref())?;
    let creds = Credentials {
        repo: r.repo.clone(),
        password_file: r.password_file.clone(),
        env,
    };
    Ok(Restic::open(&cli.restic_bin, &creds).await?)
}

pub(crate) fn settings(
    s: &StreamArgs,
    rep: &Reporter,
    cancel: &CancellationToken,
) -> StreamSettings {
    StreamSettings {
        stall_timeout: (s.stall_timeout > 0).then(|| Duration::from_secs(s.stall_timeout)),
        progress: rep.progress(),
        cancel: cancel.clone(),
    }
}

async fn backup(
    cli: &Cli,
    a: &BackupArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    if a.set.engine == EngineArg::Vmbackup {
        return crate::vmbackup::backup(cli, a, rep).await;
    }
    crate::vmbackup::reject_flags(Some(&a.vm), Some(&a.vm_dst), Some(&a.generations))?;
    if a.set.engine != EngineArg::Vault {
        reject_vault_flags(&a.vault)?;
    }
    let (labels, db) = labels(&a.set)?;
    let sets = backup_sets(&labels, db, &a.databases)?;
    let restic = open_repo(cli, &a.repo).await?;
    let target = resolve_target(cli, &a.set, db, &a.host, &a.pod, &a.vault).await?;
    let location = target.location();
    let what = db.map_or("raft snapshot".to_string(), |db| db.to_string());
    if a.dry_run {
        let snapshots: Vec<serde_json::Value> = sets
            .iter()
            .map(|set| {
                json!({
                    "database": set.database,
                    "path": set.path(),
                    "tags": set.tags().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                    "dump": match &set.database {
                        None => format!("{what} whole-server dump of {location}"),
                        Some(name) => format!("{what} dump of database `{name}` on {location}"),
                    },
                })
            })
            .collect();
        let plan = json!({
            "dryRun": true,
            "repository": restic.repo(),
            "resticVersion": restic.capabilities().version.to_string(),
            "snapshots": snapshots,
            "steps": [
                if db.is_some() { format!("list user databases on {location}") } else { format!("check that {location} is unsealed") },
                "per snapshot: restic backup --stdin --host hasteward (restic init first if the repository does not exist)",
                "per snapshot: the dump streamed through the commit gate, then restic tag --add sha256=… --add bytes=…",
            ],
        });
        let text = format!(
            "dry run: would back up {location} ({what}) to {} as {}",
            restic.repo(),
            labels.path()
        );
        return Ok(rep.succeed(plan, &text));
    }
    if !a.databases.is_empty() {
        return with_target!(&target, t => backup_databases(&restic, a, &sets, t, rep, cancel).await);
    }
    match &target {
        Resolved::VaultHost(v) => rep.step("check", v.require_unsealed()).await?,
        Resolved::VaultPod(v) => rep.step("check", v.require_unsealed()).await?,
        _ => {}
    }
    let stream = settings(&a.stream, rep, cancel);
    let result = with_target!(&target, t => rep
        .step("backup", flows::backup(&restic, t, &labels, &stream))
        .await)?;
    if result.repository_created {
        rep.warn(format!("created a new repository at {}", result.repository));
    }
    let text = backup_line(&result);
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}

fn backup_line(result: &flows::BackupResult) -> String {
    format!(
        "snapshot {} saved: {} streamed ({} added), sha256 {}, {:.1}s",
        result.short_id,
        human_bytes(result.bytes),
        human_bytes(result.data_added),
        &result.sha256[..16],
        result.duration_ms as f64 / 1000.0
    )
}

/// Per-database mode: one snapshot per `--database`, in order. When a later one fails after
/// earlier ones were saved, the run is a partial success (exit 5) listing what was saved.
async fn backup_databases<T: Target>(
    restic: &Restic,
    a: &BackupArgs,
    sets: &[SnapshotLabels],
    target: &T,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let mut done = Vec::new();
    let mut lines = Vec::new();
    for set in sets {
        let name = set.database.clone().unwrap_or_default();
        let stream = settings(&a.stream, rep, cancel);
        let work = flows::backup(restic, target, set, &stream);
        match rep.step(&format!("backup {name}"), work).await {
            Ok(result) => {
                if result.repository_created {
                    rep.warn(format!("created a new repository at {}", result.repository));
                }
                lines.push(format!("{name}: {}", backup_line(&result)));
                done.push(result);
            }
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => {
                let data = json!({ "backups": done });
                let msg = format!(
                    "{} of {} databases saved, then `{name}` failed: {e}",
                    done.len(),
                    sets.len()
                );
                return Ok(rep.fail(ExitCode::Partial, e.code(), &msg, e.is_transient(), data));
            }
        }
    }
    Ok(rep.succeed(json!({ "backups": done }), &lines.join("\n")))
}

async fn restore(
    cli: &Cli,
    a: &RestoreArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    if a.set.engine == EngineArg::Vmbackup {
        return crate::vmbackup::restore(cli, a, rep).await;
    }
    crate::vmbackup::reject_flags(Some(&a.vm), Some(&a.vm_dst), None)?;
    if a.set.engine != EngineArg::Vault {
        reject_vault_flags(&a.vault)?;
    }
    let (labels, db) = selected_labels(&a.set, a.database.as_deref())?;
    if a.set.engine == EngineArg::Vault && !a.force {
        return Err(Error::Refused(
            "restoring a raft snapshot replaces all of the Vault server's data (secrets, policies, tokens written since); pass --force to do that".into(),
        ));
    }
    let restic = open_repo(cli, &a.repo).await?;
    let target = resolve_target(cli, &a.set, db, &a.host, &a.pod, &a.vault).await?;
    let location = target.location();
    let selector = SnapshotSelector::parse(&a.snapshot);
    let options = flows::RestoreOptions {
        force: a.force,
        restore_system_schema: a.restore_system_schema,
    };
    if a.dry_run {
        let snap = flows::select_snapshot(&restic, &labels, &selector).await?;
        let mut fence_step = None;
        if let Resolved::Cnpg { target: c, .. } = &target {
            let existing = hasteward_k8s::fencing::parse(
                c.cluster
                    .annotations
                    .get(hasteward_k8s::fencing::FENCED_INSTANCES)
                    .map(String::as_str),
            )
            .unwrap_or_default();
            let (_, added) = hasteward_k8s::fencing::add(&existing, &c.replicas());
            fence_step = Some(format!(
                "fence replicas {added:?} of Cluster {}/{} through {} (existing fences {existing:?} are kept), and remove only those fences afterwards",
                c.cluster.namespace, c.cluster.name, hasteward_k8s::fencing::FENCED_INSTANCES
            ));
        }
        let mut steps: Vec<String> = fence_step.into_iter().collect();
        match db {
            Some(db) => {
                steps.push(format!(
                    "list user databases on {location}; refuse if any in the snapshot still exists{}",
                    if a.force {
                        " (--force: drop and replace them)"
                    } else {
                        ""
                    }
                ));
                steps.push(format!("restic dump {} {} | {} client on {location} (stop at first error), checksum checked before end of stream", snap.short(), labels.path(), db));
            }
            None => steps.push(format!(
                "restic dump {} {} | operator raft snapshot restore /dev/stdin on {location} (replaces all of its data), checksum checked before end of stream",
                snap.short(),
                labels.path()
            )),
        }
        let plan = json!({
            "dryRun": true,
            "snapshot": snap.id,
            "time": snap.time,
            "path": labels.path(),
            "databases": hasteward_model::decode_list(snap.tag("databases").unwrap_or("")),
            "force": a.force,
            "restoreSystemSchema": a.restore_system_schema,
            "target": location,
            "steps": steps,
        });
        let text = format!(
            "dry run: would restore snapshot {} ({}) into {location}",
            snap.short(),
            labels.path(),
        );
        return Ok(rep.succeed(plan, &text));
    }
    let stream = settings(&a.stream, rep, cancel);
    let (result, data) = match &target {
        Resolved::Cnpg { kube, target: c } => {
            let work = cnpg::restore(kube, &restic, c, &labels, &selector, &options, &stream);
            let r = rep.step("restore", work).await?;
            let data = serde_json::to_value(&r).unwrap_or_default();
            (r.restore, data)
        }
        other => {
            let r = with_target!(other, t => rep
                .step("restore", flows::restore(&restic, t, &labels, &selector, &options, &stream))
                .await)?;
            let data = serde_json::to_value(&r).unwrap_or_default();
            (r, data)
        }
    };
    if !result.checksum_verified {
        rep.warn("the snapshot has no recorded checksum; the stream was not verified".into());
    }
    let text = if db.is_none() {
        format!(
            "restored raft snapshot {} into {location}: {}",
            &result.snapshot_id[..8.min(result.snapshot_id.len())],
            human_bytes(result.bytes),
        )
    } else {
        format!(
            "restored snapshot {} into {location}: {} ({} user databases{})",
            &result.snapshot_id[..8.min(result.snapshot_id.len())],
            human_bytes(result.bytes),
            result.databases.len(),
            if result.replaced.is_empty() {
                String::new()
            } else {
                format!(", replaced {}", result.replaced.join(", "))
            }
        )
    };
    Ok(rep.succeed(data, &text))
}

/// Vault flags on another engine are a mistake worth naming.
fn reject_vault_flags(v: &VaultArgs) -> Result<(), Error> {
    if v.vault_addr.is_some() || v.vault_token_file.is_some() || v.vault_ca_cert.is_some() {
        return Err(usage(
            "--vault-addr/--vault-token-file/--vault-ca-cert apply to -e vault only",
        ));
    }
    Ok(())
}

pub(crate) fn filter_tags(
    f: &FilterArgs,
    default_kind: Option<&str>,
) -> Result<Vec<(String, String)>, Error> {
    let mut tags = Vec::new();
    if let Some(e) = f.engine {
        tags.push(("engine".into(), engine(e).as_str().into()));
    }
    if let Some(c) = &f.cluster {
        validate_name("cluster (-c)", c).map_err(usage)?;
        tags.push(("cluster".into(), c.clone()));
    }
    if let Some(n) = &f.namespace {
        validate_name("namespace (-n)", n).map_err(usage)?;
        tags.push(("namespace".into(), n.clone()));
    }
    match f.kind.as_deref().or(default_kind) {
        None | Some("all") => {}
        Some(k @ ("backup" | "escrow" | "diverged")) => tags.push(("type".into(), k.into())),
        Some(other) => {
            return Err(usage(format!(
                "unknown --type `{other}` (expected backup, escrow, diverged or all)"
            )))
        }
    }
    if let Some(d) = &f.db_type {
        let db: DbType = d.parse().map_err(usage)?;
        tags.push(("db-type".into(), db.as_str().into()));
    }
    Ok(tags)
}

async fn snapshots(cli: &Cli, a: &SnapshotsArgs, rep: &mut Reporter) -> Result<ExitCode, Error> {
    if a.filter.engine == Some(EngineArg::Vmbackup) {
        return crate::vmbackup::snapshots(a, rep).await;
    }
    crate::vmbackup::reject_flags(None, Some(&a.vm_dst), None)?;
    let tags = filter_tags(&a.filter, None)?;
    let restic = open_repo(cli, &a.repo).await?;
    let snaps = flows::list(&restic, tags).await?;
    let mut text = format!(
        "{:<10} {:<20} {:<8} {:<10} {:>10}  path\n",
        "id", "time (UTC)", "type", "db-type", "size"
    );
    for s in &snaps {
        text.push_str(&format!(
            "{:<10} {:<20} {:<8} {:<10} {:>10}  {}\n",
            s.short(),
            s.time
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            s.tag("type").unwrap_or("-"),
            s.tag("db-type").unwrap_or("-"),
            s.tag("bytes")
                .and_then(|b| b.parse().ok())
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
            s.paths.join(",")
        ));
    }
    text.push_str(&format!("{} snapshots", snaps.len()));
    Ok(rep.succeed(json!({ "snapshots": snaps }), &text))
}

async fn prune(
    cli: &Cli,
    a: &PruneArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    if a.filter.engine == Some(EngineArg::Vmbackup) {
        return crate::vmbackup::prune(a, rep).await;
    }
    crate::vmbackup::reject_flags(None, Some(&a.vm_dst), None)?;
    let tags = filter_tags(&a.filter, Some("backup"))?;
    let policy = crate::repository::keep_policy(&a.keep)?;
    let maintenance = crate::repository::maintenance_env(&a.immutable)?;
    let restic = open_repo_with_env(cli, &a.repo, maintenance).await?;
    let wait = crate::repository::lock_wait(&a.lock, rep, cancel);
    let result = rep
        .step(
            "retention",
            hasteward_engines::repository::with_lock_retry(&restic, &wait, || {
                flows::prune(&restic, tags.clone(), &policy, a.dry_run)
            }),
        )
        .await?;
    let text = format!(
        "{}kept {}, removed {}{}",
        if a.dry_run { "dry run: " } else { "" },
        result.kept.len(),
        result.removed.len(),
        if result.pruned {
            ", unreferenced data pruned"
        } else {
            ""
        }
    );
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}

async fn verify(
    cli: &Cli,
    a: &VerifyArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let (labels, db) = selected_labels(&a.set, a.database.as_deref())?;
    if a.restore_test && db.is_none() {
        return Err(usage(
            "--restore-test restores SQL dumps into a throwaway server; a Vault raft snapshot is verified by its checksum (verify without --restore-test), and restored only into a Vault server",
        ));
    }
    let restic = open_repo(cli, &a.repo).await?;
    if a.restore_test {
        return restore_drill(cli, &restic, a, &labels, rep, cancel).await;
    }
    let result = rep
        .step(
            "verify",
            flows::verify(
                &restic,
                &labels,
                &SnapshotSelector::parse(&a.snapshot),
                cancel,
            ),
        )
        .await?;
    let text = format!(
        "snapshot {} verified: {} read back, sha256 matches ({})",
        &result.snapshot_id[..8.min(result.snapshot_id.len())],
        human_bytes(result.bytes),
        &result.actual_sha256[..16]
    );
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}

/// `verify --restore-test`.
/// The drill pod for `verify --restore-test --in-cluster`: in the backup set's namespace, with
/// the CNPG cluster's image (and an owner reference to it) unless `--drill-image` says otherwise.
async fn drill_pod_spec(
    cli: &Cli,
    a: &VerifyArgs,
    labels: &SnapshotLabels,
) -> Result<
    (
        hasteward_k8s::Kube,
        hasteward_engines::drillpod::DrillPodSpec,
    ),
    Error,
> {
    let db_type = labels.db_type.unwrap_or(DbType::Postgres);
    let kube = crate::targets::kube(cli).await?;
    let (image, owner) = match (&a.drill_image, a.set.engine) {
        (Some(image), _) => (image.clone(), None),
        (None, EngineArg::Cnpg) => {
            let cluster = kube
                .cnpg_cluster(&labels.namespace, &labels.cluster)
                .await?;
            let image = cluster.image_name.clone().ok_or_else(|| {
                usage(format!(
                    "CNPG cluster {}/{} has no spec.imageName: pass --drill-image",
                    labels.namespace, labels.cluster
                ))
            })?;
            (image, cluster.owner_reference())
        }
        (None, EngineArg::Galera) => {
            let cr = kube.mariadb(&labels.namespace, &labels.cluster).await?;
            let image = cr.image.clone().ok_or_else(|| {
                usage(format!(
                    "MariaDB {}/{} has no spec.image: pass --drill-image",
                    labels.namespace, labels.cluster
                ))
            })?;
            (image, cr.owner_reference())
        }
        (None, _) => {
            return Err(usage(
                "an in-cluster drill needs the database's image: pass --drill-image (e.g. postgres:16, mariadb:11.4)",
            ))
        }
    };
    let uid = i64::from(a.drill_uid.unwrap_or(match a.set.engine {
        EngineArg::Cnpg => 26,
        _ => 999,
    }));
    Ok((
        kube,
        hasteward_engines::drillpod::DrillPodSpec {
            namespace: labels.namespace.clone(),
            name_prefix: format!("{}-drill", labels.cluster),
            image,
            db_type,
            run_as: (uid, uid),
            owner,
            deadline: Duration::from_secs(3600),
            start_timeout: Duration::from_secs(180),
        },
    ))
}

async fn restore_drill(
    cli: &Cli,
    restic: &Restic,
    a: &VerifyArgs,
    labels: &SnapshotLabels,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let settings = StreamSettings {
        stall_timeout: Some(Duration::from_secs(1800)),
        progress: rep.progress(),
        cancel: cancel.clone(),
    };
    let options = hasteward_engines::drill::DrillOptions {
        assertions: a.assert_sql.clone(),
        assert_database: a.assert_database.clone(),
    };
    let selector = SnapshotSelector::parse(&a.snapshot);
    let drilled = if a.in_cluster {
        let (kube, spec) = drill_pod_spec(cli, a, labels).await?;
        rep.step(
            "restore-drill",
            hasteward_engines::drill::restore_drill_in_pod(
                &kube, &spec, restic, labels, &selector, &settings, &options,
            ),
        )
        .await
    } else {
        rep.step(
            "restore-drill",
            hasteward_engines::drill::restore_drill(restic, labels, &selector, &settings, &options),
        )
        .await
    };
    let result = match drilled {
        Ok(r) => r,
        Err(Error::DrillFailed { message, result }) => {
            return Ok(rep.fail(
                ExitCode::Failed,
                "drill.failed",
                &message,
                false,
                serde_json::to_value(&*result).unwrap_or_default(),
            ))
        }
        Err(e) => return Err(e),
    };
    let mut text = format!(
        "restore drill of snapshot {} passed: restored {} in {:.1} s (recovery time)",
        &result.snapshot_id[..8.min(result.snapshot_id.len())],
        human_bytes(result.bytes),
        result.restore_seconds
    );
    for d in &result.databases {
        text.push_str(&format!(
            "\n  {}: {} tables, {} rows",
            d.name, d.tables, d.rows
        ));
    }
    for x in &result.assertions {
        text.push_str(&format!("\n  assertion holds: {}", x.sql));
    }
    Ok(rep.succeed(serde_json::to_value(&result).unwrap_or_default(), &text))
}
