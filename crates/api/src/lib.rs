//! hasteward's Kubernetes API: the custom resources the operator watches, and the opt-in
//! annotations it reads on CloudNativePG `Cluster` and MariaDB `MariaDB` resources.
//!
//! The group, the `v1alpha1` kinds `BackupPolicy` and `BackupRepository`, their fields and the
//! annotation keys are the earlier tool's, so its users switch without rewriting manifests;
//! everything new (`StandaloneDatabase`, status, timezone, jitter, check schedules) is additive.
//! The CRD YAML in `deploy/crds/` is generated from these types (`hasteward crd`), never edited
//! by hand. Plain data and validation only; no I/O.

pub mod annotations;
mod common;
mod crds;
mod policy;
mod repository;
mod standalone;

pub use common::{
    Condition, ConditionStatus, DrillSpec, Retention, SecretKeyRef, SecretRef,
    CONDITION_LAST_BACKUP, CONDITION_READY,
};
pub use crds::{all_crds, crds_yaml};
pub use policy::{BackupPolicy, BackupPolicySpec, BackupPolicyStatus, PolicyMode};
pub use repository::{
    BackupRepository, BackupRepositorySpec, BackupRepositoryStatus, CheckSpec, ResticSpec,
    SyncSpec, SyncStatus,
};
pub use standalone::{
    DatabaseTarget, HostTargetSpec, PodTargetSpec, ScheduleSpec, StandaloneCredentials,
    StandaloneDatabase, StandaloneDatabaseSpec, StandaloneDatabaseStatus, StandaloneDbType,
    VaultSpec, VmBackupSpec,
};

/// The API group of every hasteward resource and annotation.
pub const GROUP: &str = "clinic.hasteward.prplanit.com";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
