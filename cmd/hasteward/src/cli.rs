//! Command-line surface. Every flag also reads `HASTEWARD_<FLAG>`; `--repo` and
//! `--password-file` fall back to restic's own variables.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Backup, triage and repair for databases in Kubernetes and on hosts.
#[derive(Debug, Parser)]
#[command(name = "hasteward", version, about, max_term_width = 100)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Human, env = "HASTEWARD_OUTPUT")]
    pub output: OutputFormat,
    /// More log output on stderr (repeat for more).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count, env = "HASTEWARD_VERBOSE")]
    pub verbose: u8,
    /// The restic binary.
    #[arg(
        long,
        global = true,
        default_value = "restic",
        env = "HASTEWARD_RESTIC_BIN"
    )]
    pub restic_bin: String,
    /// Kubeconfig file (falls back to KUBECONFIG, ~/.kube/config, then the in-cluster service
    /// account).
    #[arg(long, global = true, env = "HASTEWARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    #[arg(long, global = true, env = "HASTEWARD_CONTEXT")]
    pub context: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text for people (progress on a terminal).
    Human,
    /// One JSON envelope.
    Json,
    /// JSON events, one per line, then the envelope.
    Jsonl,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a database dump into `restic backup --stdin`; print the snapshot id.
    Backup(BackupArgs),
    /// Stream a snapshot back into the database.
    Restore(RestoreArgs),
    /// List hasteward snapshots.
    Snapshots(SnapshotsArgs),
    /// Apply retention per backup set, then `restic prune`.
    Prune(PruneArgs),
    /// Re-read a snapshot and compare it with its recorded checksum.
    Verify(VerifyArgs),
    /// Copy snapshots to another repository (`restic copy`), creating it with the same chunker
    /// parameters; optionally apply retention there.
    Sync(SyncArgs),
    /// Check a repository's integrity (`restic check`, optionally reading a subset of the data).
    Check(CheckArgs),
    /// Read-only diagnosis of a CNPG or Galera cluster: facts, authority, verdict, advice.
    Triage(TriageArgs),
    /// Heal a CNPG or Galera cluster: triage, plan, check the safety gates, escrow, act.
    Repair(RepairArgs),
    /// Run backup → snapshots → verify → restore on a throwaway local PostgreSQL and repository.
    Demo(DemoArgs),
    /// Print hasteward's CustomResourceDefinitions as YAML (`hasteward crd | kubectl apply -f -`).
    Crd,
    /// Run the operator: watch the CRDs and annotated databases, run backups and checks on
    /// their schedules (only the replica holding the leader Lease runs anything).
    Serve(ServeArgs),
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Watch databases in this namespace only (default: all namespaces).
    #[arg(long, env = "HASTEWARD_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "HASTEWARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long,
        default_value = "hasteward-operator",
        env = "HASTEWARD_LEASE_NAME"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME or HOSTNAME, plus the pid).
    #[arg(long, env = "HASTEWARD_IDENTITY")]
    pub identity: Option<String>,
    /// Address of `/metrics`, `/livez` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080", env = "HASTEWARD_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Operations running at a time, in all.
    #[arg(long, default_value_t = 4, env = "HASTEWARD_CONCURRENCY")]
    pub concurrency: usize,
    /// Seconds to wait for a repository locked by someone else.
    #[arg(long, default_value_t = 1800, env = "HASTEWARD_LOCK_WAIT")]
    pub lock_wait: u64,
    /// Abort a dump that sends nothing for this many seconds (0: never).
    #[arg(long, default_value_t = 1800, env = "HASTEWARD_STALL_TIMEOUT")]
    pub stall_timeout: u64,
    /// Seconds running operations get to finish on shutdown before they are cancelled (keep it
    /// below the pod's terminationGracePeriodSeconds).
    #[arg(long, default_value_t = 25, env = "HASTEWARD_SHUTDOWN_GRACE")]
    pub shutdown_grace: u64,
    /// Do not watch CloudNativePG `Cluster`s (their CRD is not installed).
    #[arg(long, env = "HASTEWARD_NO_CNPG")]
    pub no_cnpg: bool,
    /// Do not watch MariaDB `MariaDB`s (their CRD is not installed).
    #[arg(long, env = "HASTEWARD_NO_MARIADB")]
    pub no_mariadb: bool,
    /// A Secret in the operator's namespace whose keys `webhook-url` (generic JSON POST) and/or
    /// `slack-url` (Slack-compatible) receive notices on failures, recoveries and triage changes.
    #[arg(long, env = "HASTEWARD_NOTIFY_SECRET")]
    pub notify_secret: Option<String>,
    /// Seconds between a standby's attempts to take the leader Lease.
    #[arg(
        long,
        default_value_t = 5,
        env = "HASTEWARD_ELECTION_RETRY",
        hide = true
    )]
    pub election_retry: u64,
}

/// Engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// CloudNativePG.
    Cnpg,
    /// MariaDB Operator / Galera.
    Galera,
    /// A standalone database.
    Standalone,
    /// Vault/OpenBao raft snapshots.
    Vault,
    /// VictoriaMetrics vmbackup.
    Vmbackup,
}

/// A replicated cluster in Kubernetes (triage, repair).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Engine: `cnpg` or `galera`.
    #[arg(short = 'e', long, value_enum, env = "HASTEWARD_ENGINE")]
    pub engine: EngineArg,
    /// The cluster: the CNPG `Cluster` or the `MariaDB` resource.
    #[arg(short = 'c', long, env = "HASTEWARD_CLUSTER")]
    pub cluster: String,
    /// Namespace of the cluster.
    #[arg(
        short = 'n',
        long,
        default_value = "default",
        env = "HASTEWARD_NAMESPACE"
    )]
    pub namespace: String,
}

/// `triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(flatten)]
    pub target: ClusterArgs,
    #[command(flatten)]
    pub pod: PodArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Exit 1 when the verdict is at least this bad (healthy < unhealthy < undeterminable <
    /// diverged); without it triage exits 0 whatever it finds.
    #[arg(long, value_enum, env = "HASTEWARD_FAIL_ON")]
    pub fail_on: Option<FailOn>,
    /// Galera: for nodes whose server is not serving, run `mariadbd --wsrep-recover` in their
    /// container to learn their last committed position. It runs InnoDB crash recovery on that
    /// node's data (as mariadb-operator's recovery does), so it is opt-in.
    #[arg(long, env = "HASTEWARD_RECOVER_POSITIONS")]
    pub recover_positions: bool,
}

/// `repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Heal only this instance (pod name); default: every instance triage says needs it.
    #[arg(long, env = "HASTEWARD_INSTANCE")]
    pub instance: Option<String>,
    /// Galera: bootstrap a new Primary component from this node after a total outage (it must
    /// be the provable most advanced node).
    #[arg(long, value_name = "NODE", env = "HASTEWARD_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// CNPG: free this instance's full volume by removing the WAL before its last checkpoint
    /// (its server must be down; the primary or the authority; see docs/safety.md).
    #[arg(long, value_name = "INSTANCE", env = "HASTEWARD_PRUNE_WAL")]
    pub prune_wal: Option<String>,
    /// Override the gates that allow it (see docs/safety.md); never the ones protecting the
    /// authoritative data.
    #[arg(long, env = "HASTEWARD_FORCE")]
    pub force: bool,
    /// Skip the escrow backup before destructive steps (loud; the data is gone if the plan is
    /// wrong).
    #[arg(long, env = "HASTEWARD_NO_ESCROW")]
    pub no_escrow: bool,
    /// Galera: recover the positions of stopped nodes first (see `triage --recover-positions`).
    #[arg(long, env = "HASTEWARD_RECOVER_POSITIONS")]
    pub recover_positions: bool,
    /// How long to wait for a healed instance to be Ready, in seconds.
    #[arg(long, default_value_t = 600, env = "HASTEWARD_HEAL_TIMEOUT")]
    pub heal_timeout: u64,
    /// Print the exact plan and change nothing.
    #[arg(long, env = "HASTEWARD_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// `--fail-on` thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Anything that is not healthy.
    Unhealthy,
    /// An authority that cannot be proven, or diverged histories.
    Undeterminable,
    /// Diverged histories (split brain) only.
    Diverged,
}

/// The repository.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Repository")]
pub struct RepoArgs {
    /// restic repository (falls back to RESTIC_REPOSITORY).
    #[arg(long, env = "HASTEWARD_REPO")]
    pub repo: Option<String>,
    /// File holding the repository password (falls back to RESTIC_PASSWORD_FILE, then
    /// RESTIC_PASSWORD_COMMAND, then RESTIC_PASSWORD).
    #[arg(long, env = "HASTEWARD_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

/// Which backup set.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Target")]
pub struct SetArgs {
    /// Engine.
    #[arg(short = 'e', long, value_enum, env = "HASTEWARD_ENGINE")]
    pub engine: EngineArg,
    /// Cluster (or database server) name; names the backup set.
    #[arg(short = 'c', long, env = "HASTEWARD_CLUSTER")]
    pub cluster: String,
    /// Namespace; for host targets a free label of the backup set.
    #[arg(
        short = 'n',
        long,
        default_value = "default",
        env = "HASTEWARD_NAMESPACE"
    )]
    pub namespace: String,
    /// Database type (standalone engine): postgres, mysql, mariadb or mongo.
    #[arg(long, env = "HASTEWARD_DB_TYPE")]
    pub db_type: Option<String>,
}

/// How to reach a database over TCP.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Host target")]
pub struct HostArgs {
    /// Database host.
    #[arg(long, env = "HASTEWARD_HOST")]
    pub host: Option<String>,
    /// Database port (default: the type's standard port).
    #[arg(long, env = "HASTEWARD_PORT")]
    pub port: Option<u16>,
    /// Database user (default: postgres / root).
    #[arg(long, env = "HASTEWARD_DB_USER")]
    pub db_user: Option<String>,
    /// File holding the database password (first line).
    #[arg(long, env = "HASTEWARD_DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
}

/// A standalone database in a pod (`-e standalone --container`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Pod target")]
pub struct PodArgs {
    /// The pod (and container) running the database: `POD` or `POD/CONTAINER`; the tools run
    /// there through the exec API. Default container: the pod's first.
    #[arg(long, value_name = "POD[/CONTAINER]", env = "HASTEWARD_CONTAINER")]
    pub container: Option<String>,
    /// Secret (in the namespace) holding the database password.
    #[arg(long, env = "HASTEWARD_SECRET_NAME")]
    pub secret_name: Option<String>,
    /// Key of the password in that Secret.
    #[arg(long, env = "HASTEWARD_SECRET_KEY")]
    pub secret_key: Option<String>,
}

/// A Vault or OpenBao server (`-e vault`): on a host (`--vault-addr`), or in a pod
/// (`--container`, with the token from `--secret-name/--secret-key` or `--vault-token-file`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Vault target")]
pub struct VaultArgs {
    /// The server's API URL, e.g. https://vault.example:8200 (in a pod: overrides the
    /// container's VAULT_ADDR/BAO_ADDR).
    #[arg(long, value_name = "URL", env = "HASTEWARD_VAULT_ADDR")]
    pub vault_addr: Option<String>,
    /// File holding a token (first line) allowed to read and restore raft snapshots; default:
    /// the `bao`/`vault` CLI's own (VAULT_TOKEN, BAO_TOKEN, its token helper).
    #[arg(long, value_name = "FILE", env = "HASTEWARD_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the server's certificate (in a pod: a path in the
    /// container).
    #[arg(long, value_name = "FILE", env = "HASTEWARD_VAULT_CA_CERT")]
    pub vault_ca_cert: Option<String>,
}

/// A VictoriaMetrics server (`-e vmbackup`): its HTTP address and storage directory.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "VictoriaMetrics target")]
pub struct VmServerArgs {
    /// VictoriaMetrics' HTTP address as seen where vmbackup runs (its snapshot API; restore
    /// checks that nothing answers there). Default: http://127.0.0.1:8428.
    #[arg(long, value_name = "URL", env = "HASTEWARD_VM_URL")]
    pub vm_url: Option<String>,
    /// The server's -storageDataPath.
    #[arg(long, value_name = "DIR", env = "HASTEWARD_STORAGE_DATA_PATH")]
    pub storage_data_path: Option<String>,
}

/// Where VictoriaMetrics backups live (`-e vmbackup`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "VictoriaMetrics destination")]
pub struct VmDestArgs {
    /// The backup destination: fs:///DIR, s3://BUCKET/PREFIX, gs://… or azblob://…; the
    /// generations (latest, daily/…, weekly/…) live under it.
    #[arg(long, value_name = "URL", env = "HASTEWARD_DST")]
    pub dst: Option<String>,
    /// vmbackup's -credsFilePath (object storage credentials file, where vmbackup runs);
    /// default: the AWS_*/GOOGLE_* environment.
    #[arg(long, value_name = "FILE", env = "HASTEWARD_VM_CREDENTIALS_FILE")]
    pub vm_credentials_file: Option<String>,
    /// vmbackup's -customS3Endpoint (an S3-compatible server).
    #[arg(long, value_name = "URL", env = "HASTEWARD_VM_S3_ENDPOINT")]
    pub vm_s3_endpoint: Option<String>,
}

/// Generations a `-e vmbackup` backup writes and keeps (each given period is written every
/// run; older ones beyond the count are deleted afterwards). Default: write `daily`, delete
/// nothing.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "VictoriaMetrics generations")]
pub struct GenerationKeepArgs {
    /// Hourly generations to keep.
    #[arg(long, env = "HASTEWARD_KEEP_HOURLY")]
    pub keep_hourly: Option<u32>,
    /// Daily generations to keep.
    #[arg(long, env = "HASTEWARD_KEEP_DAILY")]
    pub keep_daily: Option<u32>,
    /// Weekly generations to keep.
    #[arg(long, env = "HASTEWARD_KEEP_WEEKLY")]
    pub keep_weekly: Option<u32>,
    /// Monthly generations to keep.
    #[arg(long, env = "HASTEWARD_KEEP_MONTHLY")]
    pub keep_monthly: Option<u32>,
}

/// Stream behaviour.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Stream")]
pub struct StreamArgs {
    /// Abort when the dump sends nothing for this many seconds (0: never).
    #[arg(long, default_value_t = 1800, env = "HASTEWARD_STALL_TIMEOUT")]
    pub stall_timeout: u64,
}

/// `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub set: SetArgs,
    #[command(flatten)]
    pub host: HostArgs,
    #[command(flatten)]
    pub pod: PodArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub vm: VmServerArgs,
    #[command(flatten)]
    pub vm_dst: VmDestArgs,
    #[command(flatten)]
    pub generations: GenerationKeepArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Per-database mode: dump only this database, as its own snapshot (repeatable).
    #[arg(long = "database", value_name = "NAME", env = "HASTEWARD_DATABASE")]
    pub databases: Vec<String>,
    /// Print what would run; change nothing.
    #[arg(long, env = "HASTEWARD_DRY_RUN")]
    pub dry_run: bool,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub set: SetArgs,
    #[command(flatten)]
    pub host: HostArgs,
    #[command(flatten)]
    pub pod: PodArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub vm: VmServerArgs,
    #[command(flatten)]
    pub vm_dst: VmDestArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// `latest` (newest snapshot of this backup set) or a snapshot id; for `-e vmbackup` a
    /// generation (`latest`, `daily/2026-11-24`, as `snapshots -e vmbackup` lists them).
    #[arg(long, default_value = "latest", env = "HASTEWARD_SNAPSHOT")]
    pub snapshot: String,
    /// Restore the per-database snapshot of this database (taken with `backup --database`).
    #[arg(long, value_name = "NAME", env = "HASTEWARD_DATABASE")]
    pub database: Option<String>,
    /// Replace user databases that still exist on the target (dropped, then restored); required
    /// for `-e vault` (a raft snapshot replaces all of the server's data) and for `-e vmbackup`
    /// into a data directory that holds data.
    #[arg(long, env = "HASTEWARD_FORCE")]
    pub force: bool,
    /// MySQL/MariaDB: also restore the `mysql` system schema (accounts and grants).
    #[arg(long, env = "HASTEWARD_RESTORE_SYSTEM_SCHEMA")]
    pub restore_system_schema: bool,
    /// Print the plan (snapshot, conflicts, commands); change nothing.
    #[arg(long, env = "HASTEWARD_DRY_RUN")]
    pub dry_run: bool,
}

/// Tag filters for listing and retention.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Engine.
    #[arg(short = 'e', long, value_enum, env = "HASTEWARD_ENGINE")]
    pub engine: Option<EngineArg>,
    /// Cluster.
    #[arg(short = 'c', long, env = "HASTEWARD_CLUSTER")]
    pub cluster: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long, env = "HASTEWARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Snapshot type: backup, escrow or diverged.
    #[arg(long = "type", env = "HASTEWARD_TYPE")]
    pub kind: Option<String>,
    /// Database type.
    #[arg(long, env = "HASTEWARD_DB_TYPE")]
    pub db_type: Option<String>,
}

/// `snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub vm_dst: VmDestArgs,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub vm_dst: VmDestArgs,
    #[command(flatten)]
    pub keep: KeepArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub immutable: ImmutableArgs,
    /// Show what would be removed; change nothing.
    #[arg(long, env = "HASTEWARD_DRY_RUN")]
    pub dry_run: bool,
}

/// Retention on an immutable repository (S3 Object Lock, append-only REST server).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Immutable repository")]
pub struct ImmutableArgs {
    /// The repository keeps its history against its writer: retention runs only with
    /// --maintenance-env-file, never with the backup credential in the environment.
    #[arg(long, env = "HASTEWARD_IMMUTABLE")]
    pub immutable: bool,
    /// A file of KEY=VALUE lines (e.g. AWS_ACCESS_KEY_ID=…, AWS_SECRET_ACCESS_KEY=…): the
    /// maintenance credential, given to restic as environment over the ambient one.
    #[arg(long, env = "HASTEWARD_MAINTENANCE_ENV_FILE")]
    pub maintenance_env_file: Option<PathBuf>,
}

/// Retention rules.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retention")]
pub struct KeepArgs {
    /// Keep the newest N snapshots of each backup set.
    #[arg(long, env = "HASTEWARD_KEEP_LAST")]
    pub keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    #[arg(long, env = "HASTEWARD_KEEP_HOURLY")]
    pub keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    #[arg(long, env = "HASTEWARD_KEEP_DAILY")]
    pub keep_daily: Option<u32>,
    /// Keep one per week for N weeks.
    #[arg(long, env = "HASTEWARD_KEEP_WEEKLY")]
    pub keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    #[arg(long, env = "HASTEWARD_KEEP_MONTHLY")]
    pub keep_monthly: Option<u32>,
    /// Keep one per year for N years.
    #[arg(long, env = "HASTEWARD_KEEP_YEARLY")]
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this (e.g. `30d`, `1y6m`); combine with --keep-last for
    /// "30 days but never fewer than 5".
    #[arg(long, env = "HASTEWARD_KEEP_WITHIN")]
    pub keep_within: Option<String>,
}

impl KeepArgs {
    /// Whether any rule is given.
    pub fn any(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
    }
}

/// Waiting for a locked repository.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long to wait, in seconds, when another process holds the repository locked
    /// (retrying with backoff; restic's provably stale locks are removed, live ones never).
    #[arg(long, default_value_t = 600, env = "HASTEWARD_LOCK_WAIT")]
    pub lock_wait: u64,
}

/// `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The destination repository (created, with the source's chunker parameters, if missing).
    #[arg(long, env = "HASTEWARD_TO_REPO", help_heading = "Destination")]
    pub to_repo: String,
    /// The destination's own password file.
    #[arg(long, env = "HASTEWARD_TO_PASSWORD_FILE", help_heading = "Destination")]
    pub to_password_file: PathBuf,
    /// Retention applied to the destination after the copy (any --keep-* flag turns it on).
    #[command(flatten)]
    pub keep: KeepArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Here: the destination (the only repository retention touches).
    #[command(flatten)]
    pub immutable: ImmutableArgs,
    /// Show what would be copied; change nothing.
    #[arg(long, env = "HASTEWARD_DRY_RUN")]
    pub dry_run: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read this part of the data: `n/t`, `p%` or a size (`500M`).
    #[arg(long, env = "HASTEWARD_READ_DATA_SUBSET")]
    pub read_data_subset: Option<String>,
    /// Read the data in T rotating parts, one per day (today's part of `n/T`): T daily checks
    /// read everything once.
    #[arg(
        long,
        value_name = "T",
        conflicts_with = "read_data_subset",
        env = "HASTEWARD_ROTATE"
    )]
    pub rotate: Option<u32>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub set: SetArgs,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// `latest` or a snapshot id.
    #[arg(long, default_value = "latest", env = "HASTEWARD_SNAPSHOT")]
    pub snapshot: String,
    /// Verify the per-database snapshot of this database.
    #[arg(long, value_name = "NAME", env = "HASTEWARD_DATABASE")]
    pub database: Option<String>,
    /// Restore drill: restore the snapshot into a throwaway local server of its database type
    /// and check it (every database has tables and rows; the assertions hold); reports the
    /// restore's duration.
    #[arg(long, env = "HASTEWARD_RESTORE_TEST")]
    pub restore_test: bool,
    /// Restore drill: SQL that must return true (repeatable), e.g. `SELECT count(*) > 0 FROM orders`.
    #[arg(
        long,
        value_name = "SQL",
        requires = "restore_test",
        env = "HASTEWARD_ASSERT_SQL"
    )]
    pub assert_sql: Vec<String>,
    /// Restore drill: the database the assertions run in (default: the first restored one).
    #[arg(
        long,
        value_name = "NAME",
        requires = "restore_test",
        env = "HASTEWARD_ASSERT_DATABASE"
    )]
    pub assert_database: Option<String>,
    /// Restore drill in the cluster: the throwaway server is a temporary pod (the database's
    /// image, deadline, owner reference; deleted afterwards) in the namespace (-n).
    #[arg(long, requires = "restore_test", env = "HASTEWARD_IN_CLUSTER")]
    pub in_cluster: bool,
    /// Restore drill in the cluster: the image (default: the CNPG cluster's `spec.imageName`, the
    /// MariaDB CR's `spec.image`).
    #[arg(
        long,
        value_name = "IMAGE",
        requires = "in_cluster",
        env = "HASTEWARD_DRILL_IMAGE"
    )]
    pub drill_image: Option<String>,
    /// Restore drill in the cluster: the uid the server runs as (default: 26 for CNPG images,
    /// else 999, the official images' database user).
    #[arg(
        long,
        value_name = "UID",
        requires = "in_cluster",
        env = "HASTEWARD_DRILL_UID"
    )]
    pub drill_uid: Option<u32>,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows to seed.
    #[arg(long, default_value_t = 10_000, env = "HASTEWARD_DEMO_ROWS")]
    pub rows: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
