//! From the watched objects to what should be scheduled: the effective settings of every
//! target (policy, then overrides), and every problem with them, named so it can become a
//! status condition and an Event. Pure: the inputs are plain data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use hasteward_api::{
    annotations, BackupPolicySpec, BackupRepositorySpec, PolicyMode, Retention,
    StandaloneDatabaseSpec,
};
use hasteward_restic::KeepPolicy;

use crate::schedule::{jitter, Schedule};
use crate::scheduler::{JobKey, JobKind, JobSpec};

/// Which engine a database target uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetEngine {
    /// A `StandaloneDatabase`.
    Standalone,
    /// A CloudNativePG `Cluster` opted in by annotation.
    Cnpg,
    /// A MariaDB `MariaDB` (Galera) opted in by annotation.
    Galera,
}

impl TargetEngine {
    /// The engine's name, as in snapshot tags and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Cnpg => "cnpg",
            Self::Galera => "galera",
        }
    }
}

/// A `StandaloneDatabase` as read.
#[derive(Debug, Clone)]
pub struct StandaloneInput {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec.
    pub spec: StandaloneDatabaseSpec,
    /// `status.lastBackup`.
    pub last_backup: Option<DateTime<Utc>>,
    /// `status.lastDrill`.
    pub last_drill: Option<DateTime<Utc>>,
    /// `status.lastTriage` (`dbType: vault`).
    pub last_triage: Option<DateTime<Utc>>,
}

/// A CNPG `Cluster` or `MariaDB` as read (only its annotations matter).
#[derive(Debug, Clone)]
pub struct AnnotatedInput {
    /// Cnpg or Galera.
    pub engine: TargetEngine,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// Everything the operator watches, as read.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `BackupPolicy` specs by name.
    pub policies: BTreeMap<String, BackupPolicySpec>,
    /// `BackupRepository` specs by name, with `status.lastCheck`.
    pub repositories: BTreeMap<String, (BackupRepositorySpec, Option<DateTime<Utc>>)>,
    /// `status.syncs[TO].lastSync` by (from, to).
    pub last_syncs: BTreeMap<(String, String), DateTime<Utc>>,
    /// `StandaloneDatabase`s.
    pub standalone: Vec<StandaloneInput>,
    /// Opted-in (or not) CNPG and MariaDB resources.
    pub annotated: Vec<AnnotatedInput>,
}

/// Something wrong with a resource's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, for conditions and Events.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn problem(reason: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        reason,
        message: message.into(),
    }
}

/// The effective backup settings of a database target.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSettings {
    /// When.
    pub schedule: Schedule,
    /// Fixed delay.
    pub jitter: Duration,
    /// Into which repositories (names).
    pub repositories: Vec<String>,
    /// Retention after each backup (`None`: keep everything).
    pub retention: Option<KeepPolicy>,
}

/// The effective triage settings of a replicated cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageSettings {
    /// When.
    pub schedule: Schedule,
    /// Fixed delay.
    pub jitter: Duration,
    /// `triage` (report only) or `repair`.
    pub mode: PolicyMode,
    /// Seconds a repair waits for a healed instance.
    pub heal_timeout: Option<u32>,
}

/// A database's scheduled restore drill.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillSettings {
    /// When.
    pub schedule: Schedule,
    /// Fixed delay.
    pub jitter: Duration,
    /// The repository whose latest backup is restored (the database's first).
    pub repository: String,
    /// What to check and which image to run.
    pub spec: hasteward_api::DrillSpec,
}

/// One database the operator knows about.
#[derive(Debug, Clone)]
pub struct DatabaseTarget {
    /// Engine.
    pub engine: TargetEngine,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation` (standalone only).
    pub generation: Option<i64>,
    /// The standalone spec, for the runner.
    pub standalone: Option<StandaloneDatabaseSpec>,
    /// Backups, when scheduled.
    pub backup: Option<BackupSettings>,
    /// Triage, when scheduled (replicated clusters only).
    pub triage: Option<TriageSettings>,
    /// Restore drills, when scheduled.
    pub drill: Option<DrillSettings>,
    /// Why it is not (fully) scheduled: empty when all is well.
    pub problems: Vec<Problem>,
    /// Not scheduled on purpose (`suspend`, `mode: disabled`), with the reason.
    pub idle: Option<&'static str>,
    /// When its last backup ended.
    pub last_backup: Option<DateTime<Utc>>,
    /// When its last triage ended.
    pub last_triage: Option<DateTime<Utc>>,
    /// When its last restore drill ended.
    pub last_drill: Option<DateTime<Utc>>,
}

impl DatabaseTarget {
    /// `standalone/db/pg`: the scheduler's target key.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.engine.as_str(), self.namespace, self.name)
    }
}

/// A scheduled copy into another repository.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// The destination repository's name.
    pub to: String,
    /// When.
    pub schedule: Schedule,
    /// Retention on the destination afterwards.
    pub retention: Option<KeepPolicy>,
    /// When the last copy into it ended.
    pub last_sync: Option<DateTime<Utc>>,
}

/// One repository with a check schedule.
#[derive(Debug, Clone)]
pub struct RepositoryTarget {
    /// `BackupRepository` name.
    pub name: String,
    /// The check schedule and subset, when valid.
    pub check: Option<(Schedule, Option<String>)>,
    /// Valid scheduled copies.
    pub syncs: Vec<SyncTarget>,
    /// Problems with it.
    pub problems: Vec<Problem>,
    /// When its last check ended.
    pub last_check: Option<DateTime<Utc>>,
}

impl RepositoryTarget {
    /// `repository/NAME`.
    pub fn key(&self) -> String {
        format!("repository/{}", self.name)
    }

    /// `sync/FROM/TO`: the scheduler's target key of one copy.
    pub fn sync_key(&self, to: &str) -> String {
        format!("sync/{}/{to}", self.name)
    }
}

/// A policy's own verdict and how many databases use it.
#[derive(Debug, Clone, Default)]
pub struct PolicyVerdict {
    /// Problems with the policy itself.
    pub problems: Vec<Problem>,
    /// Databases naming it.
    pub databases: u32,
}

/// Everything resolved.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Database targets (opted-in only).
    pub databases: Vec<DatabaseTarget>,
    /// Repositories.
    pub repositories: Vec<RepositoryTarget>,
    /// Policies by name.
    pub policies: BTreeMap<String, PolicyVerdict>,
}

impl Desired {
    /// The jobs to hand to the scheduler.
    pub fn jobs(&self) -> Vec<JobSpec> {
        let mut jobs = Vec::new();
        for db in &self.databases {
            if let Some(b) = &db.backup {
                jobs.push(JobSpec {
                    key: JobKey {
                        target: db.key(),
                        kind: JobKind::Backup,
                    },
                    schedule: b.schedule.clone(),
                    jitter: b.jitter,
                    last_run: db.last_backup,
                    group: db.key(),
                });
            }
            if let Some(t) = &db.triage {
                jobs.push(JobSpec {
                    key: JobKey {
                        target: db.key(),
                        kind: JobKind::Triage,
                    },
                    schedule: t.schedule.clone(),
                    jitter: t.jitter,
                    last_run: db.last_triage,
                    // Read-only triage runs beside a backup; a repair never does.
                    group: match t.mode {
                        PolicyMode::Repair => db.key(),
                        _ => format!("{}/triage", db.key()),
                    },
                });
            }
        }
        for db in &self.databases {
            if let Some(d) = &db.drill {
                jobs.push(JobSpec {
                    key: JobKey {
                        target: db.key(),
                        kind: JobKind::Drill,
                    },
                    schedule: d.schedule.clone(),
                    jitter: d.jitter,
                    last_run: db.last_drill,
                    // A drill reads the repository and runs in a pod of its own: beside backups.
                    group: format!("{}/drill", db.key()),
                });
            }
        }
        for repo in &self.repositories {
            if let Some((schedule, _)) = &repo.check {
                jobs.push(JobSpec {
                    key: JobKey {
                        target: repo.key(),
                        kind: JobKind::Check,
                    },
                    schedule: schedule.clone(),
                    jitter: Duration::zero(),
                    last_run: repo.last_check,
                    group: repo.key(),
                });
            }
            for sync in &repo.syncs {
                jobs.push(JobSpec {
                    key: JobKey {
                        target: repo.sync_key(&sync.to),
                        kind: JobKind::Sync,
                    },
                    schedule: sync.schedule.clone(),
                    jitter: Duration::zero(),
                    last_run: sync.last_sync,
                    group: repo.sync_key(&sync.to),
                });
            }
        }
        jobs
    }
}

/// Resolves every target.
pub fn resolve(inputs: &Inputs) -> Desired {
    let mut desired = Desired::default();
    for (name, spec) in &inputs.policies {
        desired
            .policies
            .insert(name.clone(), policy_verdict(spec, &inputs.repositories));
    }
    for db in &inputs.standalone {
        let target = resolve_standalone(db, inputs);
        if let Some(policy) = &db.spec.policy {
            if let Some(v) = desired.policies.get_mut(policy) {
                v.databases += 1;
            }
        }
        desired.databases.push(target);
    }
    for obj in &inputs.annotated {
        let Some(target) = resolve_annotated(obj, inputs) else {
            continue;
        };
        if let Some(v) = obj
            .annotations
            .get(annotations::POLICY)
            .and_then(|p| desired.policies.get_mut(p))
        {
            v.databases += 1;
        }
        desired.databases.push(target);
    }
    for (name, (spec, last_check)) in &inputs.repositories {
        let mut problems = Vec::new();
        let check = spec.check.as_ref().and_then(|c| {
            let subset = c.read_data_subset.clone().filter(|s| !s.is_empty());
            if let Some(s) = &subset {
                let valid = match s.strip_prefix("rotate/") {
                    Some(n) => n.parse::<u32>().is_ok_and(|n| n > 0),
                    None => hasteward_engines::repository::valid_subset(s),
                };
                if !valid {
                    problems.push(problem(
                        "InvalidCheck",
                        format!("check.readDataSubset `{s}` is not `N%`, `n/t` or `rotate/t`"),
                    ));
                    return None;
                }
            }
            match Schedule::parse(&c.schedule, c.timezone.as_deref()) {
                Ok(s) => Some((s, subset)),
                Err(e) => {
                    problems.push(problem("InvalidSchedule", format!("check.schedule: {e}")));
                    None
                }
            }
        });
        let mut syncs = Vec::new();
        for sync in &spec.sync {
            if sync.to == *name {
                problems.push(problem(
                    "InvalidSync",
                    format!("sync.to `{}` is this repository itself", sync.to),
                ));
                continue;
            }
            if !inputs.repositories.contains_key(&sync.to) {
                problems.push(missing_repository(&sync.to));
                continue;
            }
            match Schedule::parse(&sync.schedule, sync.timezone.as_deref()) {
                Ok(schedule) => syncs.push(SyncTarget {
                    to: sync.to.clone(),
                    schedule,
                    retention: sync.retention.as_ref().and_then(keep_policy),
                    last_sync: inputs
                        .last_syncs
                        .get(&(name.clone(), sync.to.clone()))
                        .copied(),
                }),
                Err(e) => problems.push(problem(
                    "InvalidSchedule",
                    format!("sync to {}: {e}", sync.to),
                )),
            }
        }
        desired.repositories.push(RepositoryTarget {
            name: name.clone(),
            check,
            syncs,
            problems,
            last_check: *last_check,
        });
    }
    desired
}

fn policy_verdict(
    spec: &BackupPolicySpec,
    repositories: &BTreeMap<String, (BackupRepositorySpec, Option<DateTime<Utc>>)>,
) -> PolicyVerdict {
    let mut problems = Vec::new();
    for (field, expr) in [
        ("backupSchedule", &spec.backup_schedule),
        ("triageSchedule", &spec.triage_schedule),
    ] {
        if let Some(expr) = expr {
            if let Err(e) = Schedule::parse(expr, spec.timezone.as_deref()) {
                problems.push(problem("InvalidSchedule", format!("{field}: {e}")));
            }
        }
    }
    if let Some(d) = &spec.drill {
        let tz = d.timezone.as_deref().or(spec.timezone.as_deref());
        if let Err(e) = Schedule::parse(&d.schedule, tz) {
            problems.push(problem("InvalidSchedule", format!("drill.schedule: {e}")));
        }
    }
    for repo in &spec.repositories {
        if !repositories.contains_key(repo) {
            problems.push(missing_repository(repo));
        }
    }
    PolicyVerdict {
        problems,
        databases: 0,
    }
}

fn missing_repository(name: &str) -> Problem {
    problem(
        "RepositoryNotFound",
        format!("BackupRepository `{name}` does not exist: create it or remove it from the list"),
    )
}

fn keep_policy(r: &Retention) -> Option<KeepPolicy> {
    if r.is_empty() {
        return None;
    }
    Some(KeepPolicy {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: r.keep_within.clone(),
    })
}

/// The parts both kinds of targets resolve the same way.
struct Effective<'a> {
    key: String,
    schedule: Option<&'a str>,
    timezone: Option<&'a str>,
    jitter_seconds: u32,
    repositories: Vec<String>,
    retention: Option<Retention>,
}

fn backup_settings(
    e: Effective<'_>,
    inputs: &Inputs,
    problems: &mut Vec<Problem>,
    destination: Option<&str>,
) -> Option<BackupSettings> {
    let Some(expr) = e.schedule else {
        problems.push(problem(
            "NoSchedule",
            "no backup schedule: set spec.schedule.backup or name a policy with backupSchedule",
        ));
        return None;
    };
    let schedule = match Schedule::parse(expr, e.timezone) {
        Ok(s) => s,
        Err(err) => {
            problems.push(problem("InvalidSchedule", err.to_string()));
            return None;
        }
    };
    if let Some(dst) = destination {
        // vmbackup writes to its own destination: no restic repository is involved.
        return Some(BackupSettings {
            schedule,
            jitter: jitter(&e.key, e.jitter_seconds),
            repositories: vec![dst.to_string()],
            retention: e.retention.as_ref().and_then(keep_policy),
        });
    }
    if e.repositories.is_empty() {
        problems.push(problem(
            "NoRepository",
            "no repository: list BackupRepository names in repositories (here or in the policy)",
        ));
        return None;
    }
    let missing: Vec<_> = e
        .repositories
        .iter()
        .filter(|r| !inputs.repositories.contains_key(*r))
        .collect();
    if !missing.is_empty() {
        problems.extend(missing.iter().map(|r| missing_repository(r)));
        return None;
    }
    Some(BackupSettings {
        schedule,
        jitter: jitter(&e.key, e.jitter_seconds),
        repositories: e.repositories,
        retention: e.retention.as_ref().and_then(keep_policy),
    })
}

fn resolve_standalone(db: &StandaloneInput, inputs: &Inputs) -> DatabaseTarget {
    let mut target = DatabaseTarget {
        engine: TargetEngine::Standalone,
        namespace: db.namespace.clone(),
        name: db.name.clone(),
        generation: db.generation,
        standalone: Some(db.spec.clone()),
        backup: None,
        triage: None,
        drill: None,
        problems: Vec::new(),
        idle: None,
        last_backup: db.last_backup,
        last_triage: db.last_triage,
        last_drill: db.last_drill,
    };
    let t = &db.spec.target;
    let kinds = [t.host.is_some(), t.pod.is_some(), t.stateful_set.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if kinds != 1 {
        target.problems.push(problem(
            "InvalidTarget",
            format!("spec.target must set exactly one of host, pod, statefulSet ({kinds} set)"),
        ));
    }
    for name in [t.pod.as_ref(), t.stateful_set.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Err(e) =
            hasteward_model::validate_name("spec.target pod/statefulSet name", &name.name)
        {
            target.problems.push(problem("InvalidTarget", e));
        }
    }
    let policy = match &db.spec.policy {
        Some(name) => match inputs.policies.get(name) {
            Some(p) => Some(p),
            None => {
                target.problems.push(problem(
                    "PolicyNotFound",
                    format!(
                        "BackupPolicy `{name}` does not exist: create it or remove spec.policy"
                    ),
                ));
                return target;
            }
        },
        None => None,
    };
    if db.spec.suspend == Some(true) {
        target.idle = Some("Suspended");
        return target;
    }
    if policy.is_some_and(|p| p.mode == PolicyMode::Disabled) {
        target.idle = Some("PolicyDisabled");
        return target;
    }
    let inline = db.spec.schedule.as_ref();
    let effective = Effective {
        key: target.key(),
        schedule: inline
            .map(|s| s.backup.as_str())
            .or_else(|| policy.and_then(|p| p.backup_schedule.as_deref())),
        timezone: inline
            .and_then(|s| s.timezone.as_deref())
            .or_else(|| policy.and_then(|p| p.timezone.as_deref())),
        jitter_seconds: inline
            .and_then(|s| s.jitter_seconds)
            .or_else(|| policy.and_then(|p| p.jitter_seconds))
            .unwrap_or(0),
        repositories: if db.spec.repositories.is_empty() {
            policy.map(|p| p.repositories.clone()).unwrap_or_default()
        } else {
            db.spec.repositories.clone()
        },
        retention: db
            .spec
            .retention
            .clone()
            .or_else(|| policy.and_then(|p| p.retention.clone())),
    };
    let repositories = effective.repositories.clone();
    let destination = engine_problems(&db.spec, effective.retention.as_ref(), &mut target.problems);
    let backup = backup_settings(
        effective,
        inputs,
        &mut target.problems,
        destination.as_deref(),
    );
    let drill = db
        .spec
        .drill
        .as_ref()
        .or(policy.and_then(|p| p.drill.as_ref()));
    let drill = drill.and_then(|d| {
        use hasteward_api::StandaloneDbType as T;
        if matches!(db.spec.db_type, T::Mongo | T::Vault | T::Victoriametrics) {
            target.problems.push(problem(
                "InvalidDrill",
                "restore drills run PostgreSQL, MariaDB and MySQL, not mongo, vault or victoriametrics: remove `drill`",
            ));
            return None;
        }
        if db.spec.target.host.is_some() && d.image.is_none() {
            target.problems.push(problem(
                "InvalidDrill",
                "a host target has no image to run the drill with: set drill.image (e.g. postgres:15)",
            ));
            return None;
        }
        drill_settings(
            &target.key(),
            d,
            policy.and_then(|p| p.timezone.as_deref()),
            policy.and_then(|p| p.jitter_seconds).unwrap_or(0),
            &repositories,
            &mut target.problems,
        )
    });
    let triage = standalone_triage(db, policy, &target.key(), &mut target.problems);
    if target.problems.is_empty() {
        target.backup = backup;
        target.drill = drill;
        target.triage = triage;
    }
    target
}

/// A Vault database's triage schedule (report only: nothing is repaired unattended there):
/// `schedule.triage`, else the policy's `triageSchedule`. Other types have none.
fn standalone_triage(
    db: &StandaloneInput,
    policy: Option<&BackupPolicySpec>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<TriageSettings> {
    let inline = db.spec.schedule.as_ref();
    let own = inline.and_then(|s| s.triage.as_deref());
    if db.spec.db_type != hasteward_api::StandaloneDbType::Vault {
        if own.is_some() {
            problems.push(problem(
                "InvalidSchedule",
                "schedule.triage applies to dbType vault only (CNPG and Galera clusters are triaged through their annotations)",
            ));
        }
        return None;
    }
    let expr = own.or_else(|| policy.and_then(|p| p.triage_schedule.as_deref()))?;
    let timezone = inline
        .and_then(|s| s.timezone.as_deref())
        .or_else(|| policy.and_then(|p| p.timezone.as_deref()));
    match Schedule::parse(expr, timezone) {
        Ok(schedule) => Some(TriageSettings {
            schedule,
            jitter: jitter(&format!("{key}/triage"), 0),
            mode: PolicyMode::Triage,
            heal_timeout: None,
        }),
        Err(e) => {
            problems.push(problem("InvalidSchedule", format!("triage schedule: {e}")));
            None
        }
    }
}

/// Checks the engine-specific settings of Vault and VictoriaMetrics targets; returns the
/// vmbackup destination, which replaces the repositories for `victoriametrics`.
fn engine_problems(
    spec: &StandaloneDatabaseSpec,
    retention: Option<&Retention>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    use hasteward_api::StandaloneDbType as T;
    if spec.vault.is_some() && spec.db_type != T::Vault {
        problems.push(problem(
            "InvalidTarget",
            "spec.vault applies to dbType vault only",
        ));
    }
    if spec.vmbackup.is_some() && spec.db_type != T::Victoriametrics {
        problems.push(problem(
            "InvalidTarget",
            "spec.vmbackup applies to dbType victoriametrics only",
        ));
    }
    match spec.db_type {
        T::Vault => {
            if let Some(host) = &spec.target.host {
                let c = hasteward_engines::vault::Connection {
                    address: Some(host.address.clone()),
                    ca_cert: None,
                };
                if c.validate().is_err() {
                    problems.push(problem(
                        "InvalidTarget",
                        format!(
                            "spec.target.host.address `{}` must be the Vault API URL, e.g. https://vault.vault.svc:8200",
                            host.address
                        ),
                    ));
                }
            }
            None
        }
        T::Victoriametrics => {
            let Some(vm) = &spec.vmbackup else {
                problems.push(problem(
                    "InvalidTarget",
                    "dbType victoriametrics needs spec.vmbackup (storageDataPath, dst)",
                ));
                return None;
            };
            if !spec.repositories.is_empty() {
                problems.push(problem(
                    "InvalidTarget",
                    "victoriametrics backs up into spec.vmbackup.dst, not restic repositories: remove spec.repositories",
                ));
            }
            if let Err(e) = hasteward_engines::vmbackup::Destination::parse(&vm.dst) {
                problems.push(problem("InvalidTarget", format!("spec.vmbackup.dst: {e}")));
            }
            if !vm.storage_data_path.starts_with('/') {
                problems.push(problem(
                    "InvalidTarget",
                    "spec.vmbackup.storageDataPath must be an absolute directory",
                ));
            }
            if let Some(r) = retention {
                if r.keep_last.is_some() || r.keep_yearly.is_some() || r.keep_within.is_some() {
                    problems.push(problem(
                        "InvalidRetention",
                        "victoriametrics generations are kept by keepHourly, keepDaily, keepWeekly and keepMonthly only",
                    ));
                }
            }
            Some(vm.dst.clone())
        }
        _ => None,
    }
}

fn drill_settings(
    key: &str,
    d: &hasteward_api::DrillSpec,
    policy_timezone: Option<&str>,
    jitter_seconds: u32,
    repositories: &[String],
    problems: &mut Vec<Problem>,
) -> Option<DrillSettings> {
    let Some(repository) = repositories.first() else {
        problems.push(problem(
            "NoRepository",
            "a restore drill restores the latest backup of the first repository, and there is none",
        ));
        return None;
    };
    match Schedule::parse(&d.schedule, d.timezone.as_deref().or(policy_timezone)) {
        Ok(schedule) => Some(DrillSettings {
            schedule,
            jitter: jitter(&format!("{key}/drill"), jitter_seconds),
            repository: repository.clone(),
            spec: d.clone(),
        }),
        Err(e) => {
            problems.push(problem("InvalidSchedule", format!("drill.schedule: {e}")));
            None
        }
    }
}

fn resolve_annotated(obj: &AnnotatedInput, inputs: &Inputs) -> Option<DatabaseTarget> {
    let a = &obj.annotations;
    let policy_name = a.get(annotations::POLICY)?;
    if a.get(annotations::EXCLUDE).map(String::as_str) == Some("true") {
        return None;
    }
    let mut target = DatabaseTarget {
        engine: obj.engine,
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
        generation: None,
        standalone: None,
        backup: None,
        triage: None,
        drill: None,
        problems: Vec::new(),
        idle: None,
        last_backup: parse_annotation_time(a.get(annotations::LAST_BACKUP)),
        last_triage: parse_annotation_time(a.get(annotations::LAST_TRIAGE)),
        last_drill: parse_annotation_time(a.get(annotations::LAST_DRILL)),
    };
    let Some(policy) = inputs.policies.get(policy_name) else {
        target.problems.push(problem(
            "PolicyNotFound",
            format!(
                "BackupPolicy `{policy_name}` (annotation {}) does not exist",
                annotations::POLICY
            ),
        ));
        return Some(target);
    };
    let mode = match a.get(annotations::MODE).map(String::as_str) {
        None => policy.mode,
        Some("triage") => PolicyMode::Triage,
        Some("repair") => PolicyMode::Repair,
        Some("disabled") => PolicyMode::Disabled,
        Some(other) => {
            target.problems.push(problem(
                "InvalidAnnotation",
                format!(
                    "{} is `{other}`: use triage, repair or disabled",
                    annotations::MODE
                ),
            ));
            return Some(target);
        }
    };
    if mode == PolicyMode::Disabled {
        target.idle = Some("PolicyDisabled");
        return Some(target);
    }
    let mut retention = policy.retention.clone().unwrap_or_default();
    for (key, slot) in [
        (annotations::RETENTION_KEEP_LAST, &mut retention.keep_last),
        (annotations::RETENTION_KEEP_DAILY, &mut retention.keep_daily),
        (
            annotations::RETENTION_KEEP_WEEKLY,
            &mut retention.keep_weekly,
        ),
        (
            annotations::RETENTION_KEEP_MONTHLY,
            &mut retention.keep_monthly,
        ),
    ] {
        if let Some(v) = a.get(key) {
            match v.trim().parse::<u32>() {
                Ok(n) => *slot = Some(n),
                // The earlier tool dropped these silently; a typo should not mean "keep all".
                Err(_) => target.problems.push(problem(
                    "InvalidAnnotation",
                    format!("{key} is `{v}`: use a whole number"),
                )),
            }
        }
    }
    let repositories = match a.get(annotations::REPOSITORIES) {
        Some(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        None => policy.repositories.clone(),
    };
    let effective = Effective {
        key: target.key(),
        schedule: a
            .get(annotations::BACKUP_SCHEDULE)
            .map(String::as_str)
            .or(policy.backup_schedule.as_deref()),
        timezone: policy.timezone.as_deref(),
        jitter_seconds: policy.jitter_seconds.unwrap_or(0),
        repositories,
        retention: Some(retention),
    };
    let key = target.key();
    let has_backup_schedule = effective.schedule.is_some();
    let drill_repositories = effective.repositories.clone();
    let heal_timeout = match a.get(annotations::HEAL_TIMEOUT) {
        None => None,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                target.problems.push(problem(
                    "InvalidAnnotation",
                    format!(
                        "{} is `{v}`: use a whole number of seconds",
                        annotations::HEAL_TIMEOUT
                    ),
                ));
                None
            }
        },
    };
    let backup = if has_backup_schedule {
        backup_settings(effective, inputs, &mut target.problems, None)
    } else {
        None
    };
    let triage = a
        .get(annotations::TRIAGE_SCHEDULE)
        .map(String::as_str)
        .or(policy.triage_schedule.as_deref())
        .and_then(
            |expr| match Schedule::parse(expr, policy.timezone.as_deref()) {
                Ok(schedule) => Some(TriageSettings {
                    schedule,
                    jitter: jitter(&format!("{key}/triage"), policy.jitter_seconds.unwrap_or(0)),
                    mode,
                    heal_timeout: heal_timeout.or(policy.heal_timeout),
                }),
                Err(e) => {
                    target
                        .problems
                        .push(problem("InvalidSchedule", format!("triage schedule: {e}")));
                    None
                }
            },
        );
    if !has_backup_schedule && triage.is_none() {
        target.problems.push(problem(
            "NoSchedule",
            "neither a backup nor a triage schedule: set them in the policy or the annotations",
        ));
    }
    let drill = policy.drill.as_ref().and_then(|d| {
        drill_settings(
            &key,
            d,
            policy.timezone.as_deref(),
            policy.jitter_seconds.unwrap_or(0),
            &drill_repositories,
            &mut target.problems,
        )
    });
    if target.problems.is_empty() {
        target.backup = backup;
        target.triage = triage;
        target.drill = drill;
    }
    Some(target)
}

fn parse_annotation_time(t: Option<&String>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hasteward_api::{
        DatabaseTarget as TargetSpec, PodTargetSpec, ResticSpec, ScheduleSpec, StandaloneDbType,
    };

    fn repo() -> BackupRepositorySpec {
        BackupRepositorySpec {
            restic: ResticSpec {
                repository: "/srv/restic".into(),
                ..ResticSpec::default()
            },
            ..BackupRepositorySpec::default()
        }
    }

    fn policy(schedule: &str, repos: &[&str]) -> BackupPolicySpec {
        BackupPolicySpec {
            backup_schedule: Some(schedule.into()),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            retention: Some(Retention {
                keep_last: Some(7),
                ..Retention::default()
            }),
            ..BackupPolicySpec::default()
        }
    }

    fn sdb(name: &str, policy: Option<&str>) -> StandaloneInput {
        StandaloneInput {
            namespace: "db".into(),
            name: name.into(),
            generation: Some(1),
            spec: StandaloneDatabaseSpec {
                db_type: StandaloneDbType::Postgres,
                target: TargetSpec {
                    pod: Some(PodTargetSpec {
                        name: format!("{name}-0"),
                        container: None,
                    }),
                    ..TargetSpec::default()
                },
                credentials: None,
                policy: policy.map(String::from),
                schedule: None,
                retention: None,
                repositories: vec![],
                suspend: None,
                drill: None,
                vault: None,
                vmbackup: None,
            },
            last_backup: None,
            last_drill: None,
            last_triage: None,
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn inputs() -> Inputs {
        let mut i = Inputs::default();
        i.policies
            .insert("nightly".into(), policy("0 2 * * *", &["local"]));
        i.repositories.insert("local".into(), (repo(), None));
        i
    }

    #[test]
    fn a_policy_gives_schedule_repositories_and_retention() {
        let mut i = inputs();
        i.standalone.push(sdb("pg", Some("nightly")));
        let d = resolve(&i);
        let db = &d.databases[0];
        assert!(db.problems.is_empty(), "{:?}", db.problems);
        let b = db.backup.as_ref().unwrap();
        assert_eq!(b.schedule.expression, "0 2 * * *");
        assert_eq!(b.repositories, ["local"]);
        assert_eq!(b.retention.as_ref().unwrap().keep_last, Some(7));
        assert_eq!(d.policies["nightly"].databases, 1);
        assert_eq!(d.jobs().len(), 1);
    }

    #[test]
    fn inline_settings_override_the_policy() {
        let mut i = inputs();
        i.repositories.insert("offsite".into(), (repo(), None));
        let mut db = sdb("pg", Some("nightly"));
        db.spec.schedule = Some(ScheduleSpec {
            backup: "30 3 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
            jitter_seconds: Some(60),
            triage: None,
        });
        db.spec.repositories = vec!["offsite".into()];
        i.standalone.push(db);
        let d = resolve(&i);
        let b = d.databases[0].backup.as_ref().unwrap();
        assert_eq!(b.schedule.expression, "30 3 * * *");
        assert_eq!(b.schedule.timezone(), "Europe/Berlin");
        assert_eq!(b.repositories, ["offsite"]);
        assert!(b.jitter < Duration::seconds(60));
    }

    #[test]
    fn invalid_settings_become_named_problems_and_nothing_is_scheduled() {
        let mut i = inputs();
        i.policies
            .insert("bad".into(), policy("0 0 2 * *  *  *", &["nope"]));
        i.standalone.push(sdb("a", Some("missing")));
        i.standalone.push(sdb("b", Some("bad")));
        let mut c = sdb("c", None);
        c.spec.target.host = Some(hasteward_api::HostTargetSpec {
            address: "pg".into(),
            port: None,
        });
        i.standalone.push(c);
        let d = resolve(&i);
        let reasons: Vec<Vec<&str>> = d
            .databases
            .iter()
            .map(|t| t.problems.iter().map(|p| p.reason).collect())
            .collect();
        assert_eq!(reasons[0], ["PolicyNotFound"]);
        assert_eq!(reasons[1], ["InvalidSchedule"]);
        assert_eq!(reasons[2], ["InvalidTarget", "NoSchedule"]);
        assert!(d.jobs().is_empty());
        let bad = &d.policies["bad"].problems;
        assert_eq!(
            bad.iter().map(|p| p.reason).collect::<Vec<_>>(),
            ["InvalidSchedule", "RepositoryNotFound"]
        );
        assert!(bad[1].message.contains("`nope`"));
    }

    #[test]
    fn suspend_and_disabled_are_idle_not_problems() {
        let mut i = inputs();
        let mut a = sdb("a", Some("nightly"));
        a.spec.suspend = Some(true);
        i.standalone.push(a);
        i.policies.get_mut("nightly").unwrap().mode = PolicyMode::Triage;
        let mut off = policy("0 2 * * *", &["local"]);
        off.mode = PolicyMode::Disabled;
        i.policies.insert("off".into(), off);
        i.standalone.push(sdb("b", Some("off")));
        let d = resolve(&i);
        assert_eq!(d.databases[0].idle, Some("Suspended"));
        assert_eq!(d.databases[1].idle, Some("PolicyDisabled"));
        assert!(d.databases.iter().all(|t| t.problems.is_empty()));
        assert!(d.jobs().is_empty());
    }

    #[test]
    fn annotations_opt_in_override_and_reject_typos() {
        let mut i = inputs();
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Cnpg,
            namespace: "db".into(),
            name: "pg".into(),
            annotations: ann(&[
                (annotations::POLICY, "nightly"),
                (annotations::BACKUP_SCHEDULE, "0 0 4 * * *"),
                (annotations::RETENTION_KEEP_DAILY, "14"),
                (annotations::LAST_BACKUP, "2026-11-22T04:00:09Z"),
            ]),
        });
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Galera,
            namespace: "db".into(),
            name: "excluded".into(),
            annotations: ann(&[
                (annotations::POLICY, "nightly"),
                (annotations::EXCLUDE, "true"),
            ]),
        });
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Galera,
            namespace: "db".into(),
            name: "unannotated".into(),
            annotations: BTreeMap::new(),
        });
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Galera,
            namespace: "db".into(),
            name: "typo".into(),
            annotations: ann(&[
                (annotations::POLICY, "nightly"),
                (annotations::RETENTION_KEEP_LAST, "seven"),
            ]),
        });
        let d = resolve(&i);
        assert_eq!(d.databases.len(), 2);
        let pg = &d.databases[0];
        assert_eq!(pg.key(), "cnpg/db/pg");
        let b = pg.backup.as_ref().unwrap();
        assert_eq!(b.schedule.expression, "0 4 * * *");
        let keep = b.retention.as_ref().unwrap();
        assert_eq!((keep.keep_last, keep.keep_daily), (Some(7), Some(14)));
        assert_eq!(
            pg.last_backup.unwrap().to_rfc3339(),
            "2026-11-22T04:00:09+00:00"
        );
        let typo = &d.databases[1];
        assert_eq!(typo.problems[0].reason, "InvalidAnnotation");
        assert!(typo.backup.is_none());
        assert_eq!(d.policies["nightly"].databases, 2);
    }

    #[test]
    fn annotated_clusters_get_a_triage_job_in_its_own_group_unless_repairing() {
        let mut i = inputs();
        let mut p = policy("0 2 * * *", &["local"]);
        p.triage_schedule = Some("*/15 * * * *".into());
        i.policies.insert("watch".into(), p);
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Cnpg,
            namespace: "db".into(),
            name: "pg".into(),
            annotations: ann(&[(annotations::POLICY, "watch")]),
        });
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Galera,
            namespace: "db".into(),
            name: "maria".into(),
            annotations: ann(&[
                (annotations::POLICY, "watch"),
                (annotations::MODE, "repair"),
                (annotations::TRIAGE_SCHEDULE, "*/5 * * * *"),
            ]),
        });
        i.annotated.push(AnnotatedInput {
            engine: TargetEngine::Galera,
            namespace: "db".into(),
            name: "bad".into(),
            annotations: ann(&[
                (annotations::POLICY, "watch"),
                (annotations::TRIAGE_SCHEDULE, "every 5 minutes"),
            ]),
        });
        let d = resolve(&i);
        let jobs = d.jobs();
        let triage: Vec<(&str, &str)> = jobs
            .iter()
            .filter(|j| j.key.kind == JobKind::Triage)
            .map(|j| (j.key.target.as_str(), j.group.as_str()))
            .collect();
        assert_eq!(
            triage,
            [
                ("cnpg/db/pg", "cnpg/db/pg/triage"),
                ("galera/db/maria", "galera/db/maria")
            ]
        );
        let maria = d.databases.iter().find(|t| t.name == "maria").unwrap();
        assert_eq!(
            maria.triage.as_ref().unwrap().schedule.expression,
            "*/5 * * * *"
        );
        let bad = d.databases.iter().find(|t| t.name == "bad").unwrap();
        assert_eq!(bad.problems[0].reason, "InvalidSchedule");
        assert!(bad.problems[0].message.starts_with("triage schedule:"));
        assert!(bad.backup.is_none() && bad.triage.is_none());
    }

    #[test]
    fn repository_syncs_are_scheduled_per_destination_and_validated() {
        let mut i = inputs();
        let mut a = repo();
        a.sync = vec![
            hasteward_api::SyncSpec {
                to: "offsite".into(),
                schedule: "0 4 * * *".into(),
                timezone: None,
                retention: Some(Retention {
                    keep_daily: Some(30),
                    ..Retention::default()
                }),
            },
            hasteward_api::SyncSpec {
                to: "local".into(),
                schedule: "0 4 * * *".into(),
                ..Default::default()
            },
            hasteward_api::SyncSpec {
                to: "nowhere".into(),
                schedule: "0 4 * * *".into(),
                ..Default::default()
            },
        ];
        i.repositories.insert("local".into(), (a, None));
        i.repositories.insert("offsite".into(), (repo(), None));
        let d = resolve(&i);
        let local = d.repositories.iter().find(|r| r.name == "local").unwrap();
        assert_eq!(local.syncs.len(), 1);
        assert_eq!(
            local.syncs[0].retention.as_ref().unwrap().keep_daily,
            Some(30)
        );
        let reasons: Vec<&str> = local.problems.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, ["InvalidSync", "RepositoryNotFound"]);
        let sync_jobs: Vec<String> = d
            .jobs()
            .into_iter()
            .filter(|j| j.key.kind == JobKind::Sync)
            .map(|j| j.key.target)
            .collect();
        assert_eq!(sync_jobs, ["sync/local/offsite"]);
    }

    #[test]
    fn repository_checks_are_scheduled_and_validated() {
        let mut i = inputs();
        let mut good = repo();
        good.check = Some(hasteward_api::CheckSpec {
            schedule: "0 5 * * 0".into(),
            timezone: None,
            read_data_subset: Some("rotate/7".into()),
        });
        let mut bad = repo();
        bad.check = Some(hasteward_api::CheckSpec {
            schedule: "0 5 * * 0".into(),
            timezone: None,
            read_data_subset: Some("lots".into()),
        });
        i.repositories.insert("good".into(), (good, None));
        i.repositories.insert("bad".into(), (bad, None));
        let d = resolve(&i);
        let by_name: BTreeMap<_, _> = d
            .repositories
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        assert!(by_name["good"].check.is_some());
        assert_eq!(by_name["bad"].problems[0].reason, "InvalidCheck");
        assert_eq!(d.jobs().len(), 1);
    }

    #[test]
    fn drills_are_scheduled_from_the_policy_into_the_first_repository_or_refused_clearly() {
        let mut i = inputs();
        i.repositories.insert("offsite".into(), (repo(), None));
        let p = i.policies.get_mut("nightly").unwrap();
        p.repositories = vec!["local".into(), "offsite".into()];
        p.drill = Some(hasteward_api::DrillSpec {
            schedule: "0 5 * * 0".into(),
            ..Default::default()
        });
        i.standalone.push(sdb("a", Some("nightly")));
        let mut mongo = sdb("m", Some("nightly"));
        mongo.spec.db_type = StandaloneDbType::Mongo;
        i.standalone.push(mongo);
        let mut host = sdb("h", Some("nightly"));
        host.spec.target = TargetSpec {
            host: Some(hasteward_api::HostTargetSpec {
                address: "db.example".into(),
                ..Default::default()
            }),
            ..TargetSpec::default()
        };
        i.standalone.push(host);
        let d = resolve(&i);
        let a = &d.databases[0];
        let drill = a.drill.as_ref().expect("scheduled");
        assert_eq!(drill.repository, "local");
        assert!(d.jobs().iter().any(|j| j.key.kind == JobKind::Drill
            && j.key.target == a.key()
            && j.group == format!("{}/drill", a.key())));
        let reason = |n: usize| d.databases[n].problems.first().map(|p| p.reason);
        assert_eq!(reason(1), Some("InvalidDrill"), "mongo has no drill");
        assert_eq!(
            reason(2),
            Some("InvalidDrill"),
            "a host target needs drill.image"
        );
        assert!(d.databases[1].drill.is_none() && d.databases[1].backup.is_none());
        // An invalid drill schedule is the policy's problem too.
        i.policies.get_mut("nightly").unwrap().drill = Some(hasteward_api::DrillSpec {
            schedule: "weekly-ish".into(),
            ..Default::default()
        });
        let d = resolve(&i);
        assert!(d.policies["nightly"]
            .problems
            .iter()
            .any(|p| p.message.starts_with("drill.schedule")));
    }

    #[test]
    fn vault_and_victoriametrics_targets_are_checked_and_victoriametrics_needs_no_repository() {
        use hasteward_api::{HostTargetSpec, VmBackupSpec};
        let schedule = Some(ScheduleSpec {
            backup: "@daily".into(),
            ..ScheduleSpec::default()
        });
        let mut vault = sdb("vault", None);
        vault.spec.db_type = StandaloneDbType::Vault;
        vault.spec.schedule = schedule.clone().map(|mut s| {
            s.triage = Some("*/15 * * * *".into());
            s
        });
        vault.spec.repositories = vec!["local".into()];
        let mut bad_vault = vault.clone();
        bad_vault.name = "bad-vault".into();
        bad_vault.spec.target = TargetSpec {
            host: Some(HostTargetSpec {
                address: "vault.svc".into(),
                port: None,
            }),
            ..TargetSpec::default()
        };
        let mut vm = sdb("vm", None);
        vm.spec.db_type = StandaloneDbType::Victoriametrics;
        vm.spec.schedule = schedule;
        vm.spec.vmbackup = Some(VmBackupSpec {
            storage_data_path: "/storage".into(),
            dst: "s3://bucket/vm".into(),
            ..VmBackupSpec::default()
        });
        vm.spec.retention = Some(Retention {
            keep_daily: Some(7),
            ..Retention::default()
        });
        let mut no_spec = vm.clone();
        no_spec.name = "no-spec".into();
        no_spec.spec.vmbackup = None;
        let mut with_repo = vm.clone();
        with_repo.name = "with-repo".into();
        with_repo.spec.repositories = vec!["r1".into()];
        let mut vm_triage = vm.clone();
        vm_triage.name = "vm-triage".into();
        vm_triage.spec.schedule.as_mut().unwrap().triage = Some("@hourly".into());
        let mut bad_dst = vm.clone();
        bad_dst.name = "bad-dst".into();
        bad_dst.spec.vmbackup.as_mut().unwrap().dst = "/backups".into();
        let mut inputs = inputs();
        inputs.standalone = vec![vault, bad_vault, vm, no_spec, with_repo, bad_dst, vm_triage];
        let d = resolve(&inputs);
        let by = |n: &str| d.databases.iter().find(|t| t.name == n).unwrap();
        assert!(
            by("vault").problems.is_empty(),
            "{:?}",
            by("vault").problems
        );
        assert!(by("vault").backup.is_some());
        let triage = by("vault").triage.as_ref().expect("vault is triaged");
        assert_eq!(triage.mode, PolicyMode::Triage);
        assert_eq!(triage.schedule.expression, "*/15 * * * *");
        assert!(by("vm").triage.is_none());
        let b = by("vm")
            .backup
            .as_ref()
            .expect("scheduled without a repository");
        assert_eq!(b.repositories, vec!["s3://bucket/vm".to_string()]);
        assert_eq!(b.retention.as_ref().unwrap().keep_daily, Some(7));
        for (name, needle) in [
            ("bad-vault", "Vault API URL"),
            ("no-spec", "needs spec.vmbackup"),
            ("with-repo", "remove spec.repositories"),
            ("bad-dst", "spec.vmbackup.dst"),
            ("vm-triage", "schedule.triage applies to dbType vault only"),
        ] {
            let t = by(name);
            assert!(t.backup.is_none(), "{name} was scheduled");
            assert!(
                t.problems.iter().any(|p| p.message.contains(needle)),
                "{name}: {:?}",
                t.problems
            );
        }
    }
}
