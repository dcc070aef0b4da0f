//! One run of a scheduled job: a backup of a database into each of its repositories (then
//! retention there), or a check of a repository. The same engine flows as the CLI, so a run
//! has the same guarantees: the commit gate, lock waiting, no secret in argv (the restic
//! password and database passwords reach children as 0600 files in a private directory that
//! is removed after the run, backend credentials as environment variables).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hasteward_api::{BackupRepositorySpec, StandaloneDatabaseSpec, StandaloneDbType};
use hasteward_engines::flows::{self, PruneResult, StreamSettings};
use hasteward_engines::pod::{cnpg, galera, PodAuth, PodDatabase};
use hasteward_engines::repository::{
    check, rotating_subset, with_lock_retry, CheckResult, LockWait,
};
use hasteward_engines::secrets::SecretFiles;
use hasteward_engines::standalone::{HostEndpoint, HostTarget};
use hasteward_engines::target::Target;
use hasteward_engines::vault::{self, VaultServer};
use hasteward_engines::vmbackup::{
    self, store::AnyStore, Destination, Keep, ToolOptions, VmServer,
};
use hasteward_engines::Error;
use hasteward_exec::{CancellationToken, LocalRunner, Runner};
use hasteward_k8s::{Kube, PodRunner};
use hasteward_model::{DbType, Engine, SnapshotKind, SnapshotLabels};
use hasteward_restic::{Credentials, Restic, SnapshotFilter};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::config::{BackupSettings, DatabaseTarget, DrillSettings, TargetEngine};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// One fair read-write lock per repository name: backups read, retention and checks write.
#[derive(Debug, Default)]
pub struct RepositoryQueue {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<RwLock<()>>>>,
}

impl RepositoryQueue {
    fn lock_of(&self, repository: &str) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repository.to_string())
            .or_default()
            .clone()
    }

    /// Shared access (a backup), or `None` when cancelled while waiting.
    pub async fn shared(
        &self,
        repository: &str,
        cancel: &CancellationToken,
    ) -> Option<OwnedRwLockReadGuard<()>> {
        let lock = self.lock_of(repository);
        tokio::select! {
            g = lock.read_owned() => Some(g),
            _ = cancel.cancelled() => None,
        }
    }

    /// Exclusive access (retention, a check), or `None` when cancelled while waiting.
    pub async fn exclusive(
        &self,
        repository: &str,
        cancel: &CancellationToken,
    ) -> Option<OwnedRwLockWriteGuard<()>> {
        let lock = self.lock_of(repository);
        tokio::select! {
            g = lock.write_owned() => Some(g),
            _ = cancel.cancelled() => None,
        }
    }
}

fn cancelled_waiting(repository: &str) -> Error {
    Error::Cancelled(format!(
        "cancelled while waiting for other operations on repository {repository}"
    ))
}

/// What every run needs.
#[derive(Clone)]
pub struct RunEnv {
    /// The API client.
    pub kube: Kube,
    /// The restic binary.
    pub restic_bin: String,
    /// How long to wait for a locked repository.
    pub lock_wait: Duration,
    /// Abort a dump that sends nothing for this long.
    pub stall_timeout: Option<Duration>,
    /// The per-repository queue.
    pub queue: Arc<RepositoryQueue>,
}

/// What one destination holds after a successful backup.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The snapshot's short id, or the vmbackup generations written (`latest+daily/…`).
    pub id: String,
    /// Bytes streamed (restic snapshots; vmbackup does not say).
    pub bytes: Option<u64>,
}

/// The outcome of a backup into one repository (or one vmbackup destination).
#[derive(Debug)]
pub struct RepositoryBackup {
    /// The repository's name, or the vmbackup destination URL.
    pub repository: String,
    /// A vmbackup destination rather than a `BackupRepository`.
    pub destination: bool,
    /// The backup.
    pub backup: Result<Saved, Error>,
    /// Retention afterwards (`None`: no policy, or the backup failed).
    pub retention: Option<Result<(), Error>>,
    /// Snapshots in the repository afterwards, when they could be counted.
    pub snapshot_count: Option<u64>,
    /// Seconds this repository took.
    pub seconds: f64,
}

/// The outcome of a scheduled backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// Seconds in all.
    pub seconds: f64,
    /// The target could not be resolved (nothing was attempted).
    pub target_error: Option<Error>,
    /// One entry per repository.
    pub repositories: Vec<RepositoryBackup>,
}

impl BackupOutcome {
    /// Whether every repository got its snapshot.
    pub fn succeeded(&self) -> bool {
        self.target_error.is_none()
            && !self.repositories.is_empty()
            && self.repositories.iter().all(|r| r.backup.is_ok())
    }

    /// The first error, for messages.
    pub fn first_error(&self) -> Option<String> {
        if let Some(e) = &self.target_error {
            return Some(e.to_string());
        }
        self.repositories.iter().find_map(|r| {
            r.backup
                .as_ref()
                .err()
                .map(|e| format!("repository {}: {e}", r.repository))
                .or_else(|| match &r.retention {
                    Some(Err(e)) => Some(format!("retention in {}: {e}", r.repository)),
                    _ => None,
                })
        })
    }
}

/// Opens a repository from its spec: the password into a private file, the env Secret into
/// restic's environment.
pub async fn open_repository(
    env: &RunEnv,
    name: &str,
    spec: &BackupRepositorySpec,
    files: &SecretFiles,
) -> Result<Restic, Error> {
    open_with(env, name, spec, files, None).await
}

/// The handle retention (`forget`/`prune`) runs with: `writer` itself, except on an immutable
/// repository, where only the maintenance credential may remove anything (its Secret's keys go
/// over the writer's). Without one, retention is refused rather than run with the writer's
/// credential.
pub async fn retention_handle(
    env: &RunEnv,
    name: &str,
    spec: &BackupRepositorySpec,
    files: &SecretFiles,
    writer: &Restic,
) -> Result<Restic, Error> {
    if !spec.immutable {
        return Ok(writer.clone());
    }
    let Some(maintenance) = &spec.maintenance_credentials_secret_ref else {
        return Err(Error::Usage(format!(
            "repository {name} is immutable and has no maintenanceCredentialsSecretRef: retention never runs with the backup writer's credential; add the maintenance credential's Secret (or apply retention by hand)"
        )));
    };
    open_with(env, name, spec, files, Some(maintenance)).await
}

async fn open_with(
    env: &RunEnv,
    name: &str,
    spec: &BackupRepositorySpec,
    files: &SecretFiles,
    maintenance: Option<&hasteward_api::SecretRef>,
) -> Result<Restic, Error> {
    let pw_ref = &spec.restic.password_secret_ref;
    let password = env
        .kube
        .secret_value(&pw_ref.namespace, &pw_ref.name, &pw_ref.key)
        .await?;
    // One file per handle: the writer's and the maintainer's handles of one repository live in
    // the same run.
    let role = if maintenance.is_some() {
        "-maintenance"
    } else {
        ""
    };
    let password_file = files.file(&format!("restic-password-{name}{role}"), password.expose())?;
    let mut extra = Vec::new();
    // Later entries win: the maintenance credential's keys replace the writer's.
    for r in spec.restic.env_secret_ref.iter().chain(maintenance) {
        for (k, v) in env.kube.secret_env(&r.namespace, &r.name).await? {
            extra.retain(|(key, _)| *key != k);
            extra.push((k, v.expose().to_string()));
        }
    }
    Ok(Restic::open(
        &env.restic_bin,
        &Credentials {
            repo: Some(spec.restic.repository.clone()),
            password_file: Some(password_file),
            env: extra,
        },
    )
    .await?)
}

/// The database type of a dumped engine; `None` for Vault and VictoriaMetrics.
fn db_type(t: StandaloneDbType) -> Option<DbType> {
    match t {
        StandaloneDbType::Postgres => Some(DbType::Postgres),
        StandaloneDbType::Mysql => Some(DbType::Mysql),
        StandaloneDbType::Mariadb => Some(DbType::Mariadb),
        StandaloneDbType::Mongo => Some(DbType::Mongo),
        StandaloneDbType::Vault | StandaloneDbType::Victoriametrics => None,
    }
}

/// A resolved target, ready for the flows.
enum Resolved {
    Host(HostEndpoint),
    Pod(PodDatabase<PodRunner>),
    VaultHost(VaultServer<LocalRunner>),
    VaultPod(VaultServer<PodRunner>),
}

/// The pod a pod or StatefulSet target names, and its container.
fn pod_of(t: &hasteward_api::DatabaseTarget) -> Result<(String, Option<String>), Error> {
    match (&t.pod, &t.stateful_set) {
        (Some(p), _) => Ok((p.name.clone(), p.container.clone())),
        (None, Some(s)) => Ok((format!("{}-0", s.name), s.container.clone())),
        (None, None) => Err(Error::Usage(
            "spec.target sets none of host, pod, statefulSet".into(),
        )),
    }
}

/// The exec runner of a pod or StatefulSet target's container.
async fn target_pod_runner(
    env: &RunEnv,
    namespace: &str,
    t: &hasteward_api::DatabaseTarget,
) -> Result<PodRunner, Error> {
    let (pod, container) = pod_of(t)?;
    hasteward_engines::pod::standalone::pod_runner(&env.kube, namespace, &pod, container.as_deref())
        .await
}

async fn resolve_standalone(
    env: &RunEnv,
    namespace: &str,
    spec: &StandaloneDatabaseSpec,
    files: &SecretFiles,
) -> Result<Resolved, Error> {
    let creds = spec.credentials.clone().unwrap_or_default();
    let default_key = if spec.db_type == StandaloneDbType::Vault {
        "token"
    } else {
        "password"
    };
    let password = match &creds.secret_name {
        Some(secret) => {
            let key = creds.password_key.as_deref().unwrap_or(default_key);
            Some(env.kube.secret_value(namespace, secret, key).await?)
        }
        None => None,
    };
    let t = &spec.target;
    let Some(db) = db_type(spec.db_type) else {
        let token = password
            .map(|p| vault::Token::new(p.expose()))
            .transpose()?;
        let ca_cert = spec.vault.as_ref().and_then(|v| v.ca_cert.clone());
        if let Some(host) = &t.host {
            let connection = vault::Connection {
                address: Some(host.address.clone()),
                ca_cert,
            };
            return Ok(Resolved::VaultHost(VaultServer::new(
                LocalRunner,
                host.address.clone(),
                connection,
                token,
            )?));
        }
        let runner = target_pod_runner(env, namespace, t).await?;
        let location = runner.location();
        let connection = vault::Connection {
            address: None,
            ca_cert,
        };
        return Ok(Resolved::VaultPod(VaultServer::new(
            runner, location, connection, token,
        )?));
    };
    if let Some(host) = &t.host {
        let password_file = match &password {
            Some(p) => Some(files.file("db-password", p.expose())?),
            None => None::<PathBuf>,
        };
        let target = HostTarget {
            db_type: db,
            host: host.address.clone(),
            port: host.port.unwrap_or_else(|| HostTarget::default_port(db)),
            user: creds
                .user
                .clone()
                .unwrap_or_else(|| HostTarget::default_user(db).to_string()),
            password_file,
        };
        return Ok(Resolved::Host(HostEndpoint::prepare(&target)?));
    }
    let (pod, container) = pod_of(t)?;
    let auth = match password {
        Some(p) => PodAuth::Password(p.expose().to_string()),
        None => PodAuth::Container,
    };
    Ok(Resolved::Pod(
        hasteward_engines::pod::standalone::resolve(
            &env.kube,
            namespace,
            &pod,
            container.as_deref(),
            db,
            creds.user.as_deref(),
            auth,
        )
        .await?,
    ))
}

/// The labels every snapshot of this target gets.
pub fn labels(target: &DatabaseTarget) -> SnapshotLabels {
    let (engine, db) = match target.engine {
        TargetEngine::Standalone => match target.standalone.as_ref().map(|s| s.db_type) {
            Some(StandaloneDbType::Vault) => (Engine::Vault, None),
            Some(StandaloneDbType::Victoriametrics) => (Engine::Vmbackup, None),
            Some(t) => (Engine::Standalone, db_type(t)),
            None => (Engine::Standalone, Some(DbType::Postgres)),
        },
        TargetEngine::Cnpg => (Engine::Cnpg, Some(DbType::Postgres)),
        TargetEngine::Galera => (Engine::Galera, Some(DbType::Mariadb)),
    };
    SnapshotLabels {
        engine,
        cluster: target.name.clone(),
        namespace: target.namespace.clone(),
        kind: SnapshotKind::Backup,
        db_type: db,
        file: db
            .map_or(vault::SNAPSHOT_FILE, |d| d.dump_file())
            .to_string(),
        database: None,
        job: None,
    }
}

/// Backs `target` up into each repository, then applies retention there.
pub async fn backup(
    env: &RunEnv,
    target: &DatabaseTarget,
    settings: &BackupSettings,
    repositories: &[(String, BackupRepositorySpec)],
    cancel: &CancellationToken,
) -> BackupOutcome {
    let started = Instant::now();
    let mut outcome = BackupOutcome {
        ended: Utc::now(),
        seconds: 0.0,
        target_error: None,
        repositories: Vec::new(),
    };
    let files = match SecretFiles::new() {
        Ok(f) => f,
        Err(e) => {
            outcome.target_error = Some(e);
            return outcome;
        }
    };
    if let Some(spec) = target
        .standalone
        .as_ref()
        .filter(|s| s.db_type == StandaloneDbType::Victoriametrics)
    {
        let entry = backup_victoriametrics(env, &target.namespace, spec, settings, &files).await;
        match entry {
            Ok(entry) => outcome.repositories.push(entry),
            Err(e) => outcome.target_error = Some(e),
        }
        outcome.seconds = started.elapsed().as_secs_f64();
        outcome.ended = Utc::now();
        return outcome;
    }
    let resolved = match target.engine {
        TargetEngine::Standalone => match &target.standalone {
            Some(spec) => resolve_standalone(env, &target.namespace, spec, &files).await,
            None => Err(Error::Usage("a standalone target without its spec".into())),
        },
        TargetEngine::Cnpg => cnpg::resolve(&env.kube, &target.namespace, &target.name)
            .await
            .map(|t| Resolved::Pod(t.database)),
        TargetEngine::Galera => galera::resolve(&env.kube, &target.namespace, &target.name)
            .await
            .map(Resolved::Pod),
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err(e) => {
            outcome.target_error = Some(e);
            outcome.seconds = started.elapsed().as_secs_f64();
            outcome.ended = Utc::now();
            return outcome;
        }
    };
    let labels = labels(target);
    for (name, spec) in repositories {
        if cancel.is_cancelled() {
            outcome.repositories.push(RepositoryBackup {
                repository: name.clone(),
                destination: false,
                backup: Err(Error::Cancelled("stopped before it started".into())),
                retention: None,
                snapshot_count: None,
                seconds: 0.0,
            });
            continue;
        }
        let repo_started = Instant::now();
        let result = match &resolved {
            Resolved::Host(t) => {
                backup_one(env, name, spec, t, &labels, settings, &files, cancel).await
            }
            Resolved::Pod(t) => {
                backup_one(env, name, spec, t, &labels, settings, &files, cancel).await
            }
            Resolved::VaultHost(t) => {
                backup_one(env, name, spec, t, &labels, settings, &files, cancel).await
            }
            Resolved::VaultPod(t) => {
                backup_one(env, name, spec, t, &labels, settings, &files, cancel).await
            }
        };
        let mut entry = result;
        entry.seconds = repo_started.elapsed().as_secs_f64();
        outcome.repositories.push(entry);
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.ended = Utc::now();
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn backup_one<T: Target>(
    env: &RunEnv,
    name: &str,
    spec: &BackupRepositorySpec,
    target: &T,
    labels: &SnapshotLabels,
    settings: &BackupSettings,
    files: &SecretFiles,
    cancel: &CancellationToken,
) -> RepositoryBackup {
    let mut entry = RepositoryBackup {
        repository: name.to_string(),
        destination: false,
        backup: Err(Error::Cancelled("stopped before it started".into())),
        retention: None,
        snapshot_count: None,
        seconds: 0.0,
    };
    let restic = match open_repository(env, name, spec, files).await {
        Ok(r) => r,
        Err(e) => {
            entry.backup = Err(e);
            return entry;
        }
    };
    let stream = StreamSettings {
        stall_timeout: env.stall_timeout,
        progress: None,
        cancel: cancel.clone(),
    };
    {
        let Some(_shared) = env.queue.shared(name, cancel).await else {
            entry.backup = Err(cancelled_waiting(name));
            return entry;
        };
        entry.backup = flows::backup(&restic, target, labels, &stream)
            .await
            .map(|b| Saved {
                id: b.short_id,
                bytes: Some(b.bytes),
            });
    }
    if entry.backup.is_err() {
        return entry;
    }
    let wait = LockWait {
        max: env.lock_wait,
        on_wait: None,
        cancel: cancel.clone(),
    };
    if let Some(policy) = &settings.retention {
        let tags = vec![
            ("engine".to_string(), labels.engine.as_str().to_string()),
            ("cluster".to_string(), labels.cluster.clone()),
            ("namespace".to_string(), labels.namespace.clone()),
            (
                "type".to_string(),
                SnapshotKind::Backup.as_str().to_string(),
            ),
        ];
        entry.retention = Some(
            match retention_handle(env, name, spec, files, &restic).await {
                Err(e) => Err(e),
                Ok(maintainer) => match env.queue.exclusive(name, cancel).await {
                    None => Err(cancelled_waiting(name)),
                    Some(_exclusive) => with_lock_retry(&maintainer, &wait, || {
                        flows::prune(&maintainer, tags.clone(), policy, false)
                    })
                    .await
                    .map(|_| ()),
                },
            },
        );
    }
    entry.snapshot_count = restic
        .snapshots(&SnapshotFilter::default())
        .await
        .ok()
        .map(|s| s.len() as u64);
    entry
}

/// A scheduled vmbackup run: the generations the retention asks for, then retention there.
async fn backup_victoriametrics(
    env: &RunEnv,
    namespace: &str,
    spec: &StandaloneDatabaseSpec,
    settings: &BackupSettings,
    files: &SecretFiles,
) -> Result<RepositoryBackup, Error> {
    let vm = spec
        .vmbackup
        .as_ref()
        .ok_or_else(|| Error::Usage("dbType victoriametrics needs spec.vmbackup".into()))?;
    let dst = Destination::parse(&vm.dst)?;
    let keep = settings
        .retention
        .as_ref()
        .map(|k| Keep {
            hourly: k.keep_hourly,
            daily: k.keep_daily,
            weekly: k.keep_weekly,
            monthly: k.keep_monthly,
        })
        .unwrap_or_default();
    let options = ToolOptions {
        credentials_file: vm.credentials_file.clone(),
        s3_endpoint: vm.s3_endpoint.clone(),
    };
    // The operator's own S3 calls (retention) use the Secret's keys, as a credentials file.
    let store_credentials = match &vm.s3_credentials_secret {
        Some(secret) => {
            let id = env
                .kube
                .secret_value(namespace, secret, "AWS_ACCESS_KEY_ID")
                .await?;
            let key = env
                .kube
                .secret_value(namespace, secret, "AWS_SECRET_ACCESS_KEY")
                .await?;
            let text = format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                id.expose(),
                key.expose()
            );
            Some(files.file("s3-credentials", &text)?.display().to_string())
        }
        None => None,
    };
    let t = &spec.target;
    if let Some(host) = &t.host {
        let url = vm.url.clone().unwrap_or_else(|| host.address.clone());
        let server = VmServer::new(
            LocalRunner,
            url.clone(),
            &url,
            &vm.storage_data_path,
            options,
            false,
        )?;
        return run_vmbackup(&server, &dst, &keep, store_credentials.as_deref(), vm).await;
    }
    let runner = target_pod_runner(env, namespace, t).await?;
    let location = runner.location();
    let url = vm
        .url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8428".into());
    let server = VmServer::new(runner, location, &url, &vm.storage_data_path, options, true)?;
    run_vmbackup(&server, &dst, &keep, store_credentials.as_deref(), vm).await
}

async fn run_vmbackup<R: Runner>(
    server: &VmServer<R>,
    dst: &Destination,
    keep: &Keep,
    store_credentials: Option<&str>,
    vm: &hasteward_api::VmBackupSpec,
) -> Result<RepositoryBackup, Error> {
    let started = Instant::now();
    let mut entry = RepositoryBackup {
        repository: dst.as_str().to_string(),
        destination: true,
        backup: Err(Error::Cancelled("stopped before it started".into())),
        retention: None,
        snapshot_count: None,
        seconds: 0.0,
    };
    entry.backup = vmbackup::backup(server, dst, keep, Utc::now())
        .await
        .map(|r| Saved {
            id: r
                .generations
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            bytes: None,
        });
    if entry.backup.is_ok() && !keep.is_empty() {
        let store = AnyStore::new(
            server.runner(),
            dst,
            store_credentials.or(vm.credentials_file.as_deref()),
            vm.s3_endpoint.as_deref(),
        );
        entry.retention = Some(match store {
            Ok(store) => vmbackup::apply_retention(&store, keep).await.map(|_| ()),
            Err(e) => Err(e),
        });
    }
    entry.seconds = started.elapsed().as_secs_f64();
    Ok(entry)
}

/// The outcome of a scheduled check.
#[derive(Debug)]
pub struct CheckOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// Seconds it took.
    pub seconds: f64,
    /// restic's verdict, or why it could not run / what is damaged.
    pub result: Result<CheckResult, Error>,
    /// Snapshots, when counted.
    pub snapshot_count: Option<u64>,
    /// Stored bytes after deduplication, when measured.
    pub deduplicated_size: Option<u64>,
}

impl CheckOutcome {
    /// `healthy`, `damaged` or `failed`.
    pub fn verdict(&self) -> &'static str {
        match &self.result {
            Ok(_) => "healthy",
            Err(Error::RepositoryDamaged(_)) => "damaged",
            Err(_) => "failed",
        }
    }
}

/// Checks a repository, reading `subset` of its data (`rotate/N`: a different Nth each day).
pub async fn check_repository(
    env: &RunEnv,
    name: &str,
    spec: &BackupRepositorySpec,
    subset: Option<&str>,
    cancel: &CancellationToken,
) -> CheckOutcome {
    let started = Instant::now();
    let mut outcome = CheckOutcome {
        ended: Utc::now(),
        seconds: 0.0,
        result: Err(Error::Cancelled("stopped before it started".into())),
        snapshot_count: None,
        deduplicated_size: None,
    };
    let files = match SecretFiles::new() {
        Ok(f) => f,
        Err(e) => {
            outcome.result = Err(e);
            return outcome;
        }
    };
    match open_repository(env, name, spec, &files).await {
        Err(e) => outcome.result = Err(e),
        Ok(restic) => {
            let subset = subset.map(|s| match s.strip_prefix("rotate/") {
                Some(n) => rotating_subset(n.parse().unwrap_or(1), Utc::now().date_naive()),
                None => s.to_string(),
            });
            let wait = LockWait {
                max: env.lock_wait,
                on_wait: None,
                cancel: cancel.clone(),
            };
            let exclusive = env.queue.exclusive(name, cancel).await;
            outcome.result = match &exclusive {
                None => Err(cancelled_waiting(name)),
                Some(_) => check(&restic, subset.as_deref(), &wait).await,
            };
            if outcome.result.is_ok() {
                outcome.snapshot_count = restic
                    .snapshots(&SnapshotFilter::default())
                    .await
                    .ok()
                    .map(|s| s.len() as u64);
                outcome.deduplicated_size = restic.stats().await.ok().map(|s| s.total_size);
            }
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.ended = Utc::now();
    outcome
}

/// The outcome of a scheduled triage.
#[derive(Debug)]
pub struct TriageOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// Seconds it took.
    pub seconds: f64,
    /// The report, or why none could be made.
    pub result: Result<hasteward_triage::Report, Error>,
}

/// A read-only triage of a CNPG or Galera cluster: the same collection and analysis as
/// `hasteward triage`, without helper pods (a scheduled triage creates nothing).
pub async fn triage(env: &RunEnv, target: &DatabaseTarget) -> TriageOutcome {
    let started = Instant::now();
    let result = triage_report(env, target, false).await;
    TriageOutcome {
        ended: Utc::now(),
        seconds: started.elapsed().as_secs_f64(),
        result,
    }
}

/// Collects and analyzes a replicated cluster; `helper_pods` lets a Galera collection read the
/// volumes of nodes without a running pod (a repair, under the cluster's Lease, does).
pub async fn triage_report(
    env: &RunEnv,
    target: &DatabaseTarget,
    helper_pods: bool,
) -> Result<hasteward_triage::Report, Error> {
    use hasteward_engines::triage as collect;
    match target.engine {
        TargetEngine::Cnpg => collect::cnpg::collect(&env.kube, &target.namespace, &target.name)
            .await
            .map(|input| hasteward_triage::cnpg::analyze(&input)),
        TargetEngine::Galera => collect::galera::collect(
            &env.kube,
            &target.namespace,
            &target.name,
            &collect::galera::CollectOptions {
                recover_positions: false,
                helper_pods,
            },
        )
        .await
        .map(|input| hasteward_triage::galera::analyze(&input)),
        TargetEngine::Standalone => {
            let spec = target
                .standalone
                .as_ref()
                .filter(|s| s.db_type == StandaloneDbType::Vault)
                .ok_or_else(|| {
                    Error::Usage("only a Vault StandaloneDatabase has a triage".into())
                })?;
            let files = SecretFiles::new()?;
            let input = match resolve_standalone(env, &target.namespace, spec, &files).await? {
                Resolved::VaultHost(v) => v.collect(&target.namespace, &target.name).await?,
                Resolved::VaultPod(v) => v.collect(&target.namespace, &target.name).await?,
                Resolved::Host(_) | Resolved::Pod(_) => {
                    return Err(Error::Usage("a Vault target resolved as a database".into()))
                }
            };
            Ok(hasteward_triage::vault::analyze(&input))
        }
    }
}

/// The outcome of a scheduled copy.
#[derive(Debug)]
pub struct SyncOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// The copy, or why it failed.
    pub result: Result<hasteward_engines::repository::SyncResult, Error>,
    /// Retention on the destination afterwards (`None`: no policy, or the copy failed).
    pub retention: Option<Result<PruneResult, Error>>,
}

/// Copies `from`'s hasteward snapshots into `to` (created with `from`'s chunker parameters when
/// missing), then applies `retention` there. The source is shared, the destination exclusive.
pub async fn sync(
    env: &RunEnv,
    from: (&str, &BackupRepositorySpec),
    to: (&str, &BackupRepositorySpec),
    retention: Option<&hasteward_restic::KeepPolicy>,
    cancel: &CancellationToken,
) -> SyncOutcome {
    let mut outcome = SyncOutcome {
        ended: Utc::now(),
        result: Err(cancelled_waiting(to.0)),
        retention: None,
    };
    let files = match SecretFiles::new() {
        Ok(f) => f,
        Err(e) => {
            outcome.result = Err(e);
            return outcome;
        }
    };
    let opened = async {
        let source = open_repository(env, from.0, from.1, &files).await?;
        let destination = open_repository(env, to.0, to.1, &files).await?;
        Ok::<_, Error>((source, destination))
    };
    let (source, destination) = match opened.await {
        Ok(r) => r,
        Err(e) => {
            outcome.result = Err(e);
            outcome.ended = Utc::now();
            return outcome;
        }
    };
    let wait = LockWait {
        max: env.lock_wait,
        on_wait: None,
        cancel: cancel.clone(),
    };
    // Both queues, always in name order: two syncs in opposite directions must not each hold
    // one and wait for the other.
    let (shared, exclusive) = if from.0 < to.0 {
        let s = env.queue.shared(from.0, cancel).await;
        let x = match s {
            Some(_) => env.queue.exclusive(to.0, cancel).await,
            None => None,
        };
        (s, x)
    } else {
        let x = env.queue.exclusive(to.0, cancel).await;
        let s = match x {
            Some(_) => env.queue.shared(from.0, cancel).await,
            None => None,
        };
        (s, x)
    };
    let (Some(_shared), Some(_exclusive)) = (shared, exclusive) else {
        outcome.ended = Utc::now();
        return outcome;
    };
    outcome.result =
        hasteward_engines::repository::sync(&source, &destination, Vec::new(), false, &wait).await;
    if let (Ok(_), Some(policy)) = (&outcome.result, retention) {
        outcome.retention = Some(
            match retention_handle(env, to.0, to.1, &files, &destination).await {
                Err(e) => Err(e),
                Ok(maintainer) => {
                    with_lock_retry(&maintainer, &wait, || {
                        flows::prune(&maintainer, Vec::new(), policy, false)
                    })
                    .await
                }
            },
        );
    }
    outcome.ended = Utc::now();
    outcome
}

/// The outcome of a scheduled restore drill.
#[derive(Debug)]
pub struct DrillOutcome {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// The drill's findings, or why it could not run (a failed check is
    /// [`Error::DrillFailed`], carrying the findings).
    pub result: Result<hasteward_engines::drill::DrillResult, Error>,
}

/// The image a target's drill pod runs, and the owner it gets: `drill.image` when set, else a
/// CNPG cluster's `spec.imageName` (owned by the cluster), else a pod target's own image.
async fn drill_image(
    env: &RunEnv,
    target: &DatabaseTarget,
    settings: &DrillSettings,
) -> Result<(String, Option<OwnerReference>), Error> {
    let owner = match target.engine {
        TargetEngine::Cnpg => env
            .kube
            .cnpg_cluster(&target.namespace, &target.name)
            .await
            .ok()
            .and_then(|c| c.owner_reference().map(|o| (c.image_name, o))),
        TargetEngine::Galera => env
            .kube
            .mariadb(&target.namespace, &target.name)
            .await
            .ok()
            .and_then(|c| c.owner_reference().map(|o| (c.image, o))),
        TargetEngine::Standalone => None,
    };
    if let Some(image) = &settings.spec.image {
        return Ok((image.clone(), owner.map(|(_, o)| o)));
    }
    if let Some((Some(image), o)) = owner {
        return Ok((image, Some(o)));
    }
    let pod_target = target.standalone.as_ref().and_then(|s| {
        s.target
            .pod
            .as_ref()
            .map(|p| (p.name.clone(), p.container.clone()))
            .or_else(|| {
                s.target
                    .stateful_set
                    .as_ref()
                    .map(|p| (format!("{}-0", p.name), p.container.clone()))
            })
    });
    let Some((pod, container)) = pod_target else {
        return Err(Error::Usage(format!(
            "{}: no image for the drill pod: set drill.image",
            target.key()
        )));
    };
    let found = env.kube.pod(&target.namespace, &pod).await?;
    found
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| container.as_ref().is_none_or(|want| c.name == *want))
        .and_then(|c| c.image.clone())
        .map(|image| (image, None))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: pod {pod} names no image for the drill: set drill.image",
                target.key()
            ))
        })
}

/// Restores `target`'s latest backup from `repository` into a temporary pod and checks it.
pub async fn drill(
    env: &RunEnv,
    target: &DatabaseTarget,
    settings: &DrillSettings,
    repository: (&str, &BackupRepositorySpec),
    cancel: &CancellationToken,
) -> DrillOutcome {
    let result = async {
        let files = SecretFiles::new()?;
        let restic = open_repository(env, repository.0, repository.1, &files).await?;
        let (image, owner) = drill_image(env, target, settings).await?;
        let uid = i64::from(settings.spec.run_as_user.unwrap_or(match target.engine {
            TargetEngine::Cnpg => 26,
            _ => 999,
        }));
        let labels = labels(target);
        let spec = hasteward_engines::drillpod::DrillPodSpec {
            namespace: target.namespace.clone(),
            name_prefix: format!("{}-drill", target.name),
            image,
            db_type: labels.db_type.unwrap_or(DbType::Postgres),
            run_as: (uid, uid),
            owner,
            deadline: Duration::from_secs(3600),
            start_timeout: Duration::from_secs(180),
        };
        let stream = StreamSettings {
            stall_timeout: env.stall_timeout,
            progress: None,
            cancel: cancel.clone(),
        };
        let options = hasteward_engines::drill::DrillOptions {
            assertions: settings.spec.assert_sql.clone(),
            assert_database: settings.spec.assert_database.clone(),
        };
        // A drill reads the repository like a backup: it shares it.
        let Some(_shared) = env.queue.shared(repository.0, cancel).await else {
            return Err(cancelled_waiting(repository.0));
        };
        hasteward_engines::drill::restore_drill_in_pod(
            &env.kube,
            &spec,
            &restic,
            &labels,
            &hasteward_engines::flows::SnapshotSelector::parse("latest"),
            &stream,
            &options,
        )
        .await
    }
    .await;
    DrillOutcome {
        ended: Utc::now(),
        result,
    }
}
