//! Writing back what the operator decided and did: conditions (pure helpers), status
//! subresources of hasteward's own kinds, annotations on CNPG/MariaDB resources (which have no
//! status of ours), and Events.

use chrono::{DateTime, SecondsFormat, Utc};
use hasteward_api::{
    BackupPolicy, BackupRepository, Condition, ConditionStatus, StandaloneDatabase,
};
use hasteward_k8s::{cnpg_resource, mariadb_resource};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;
use serde_json::{json, Value};

use crate::config::TargetEngine;

/// RFC 3339 with seconds, as Kubernetes writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `conditions` with `new` set: the transition time is kept when the status did not change.
pub fn with_condition(conditions: &[Condition], mut new: Condition) -> Vec<Condition> {
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != new.type_)
        .cloned()
        .collect();
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
    }
    out.push(new);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Whether setting `new` would change anything but the transition time.
pub fn condition_differs(conditions: &[Condition], new: &Condition) -> bool {
    match conditions.iter().find(|c| c.type_ == new.type_) {
        None => true,
        Some(old) => {
            old.status != new.status
                || old.reason != new.reason
                || old.message != new.message
                || old.observed_generation != new.observed_generation
        }
    }
}

/// A condition stamped now.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: rfc3339(now),
        observed_generation: generation,
    }
}

/// Status and annotation writes, and Events.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    recorder: Recorder,
}

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "hasteward";

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

impl Writer {
    /// A writer reporting Events as `hasteward` (instance `identity`).
    pub fn new(client: kube::Client, identity: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "hasteward".into(),
                instance: Some(identity.to_string()),
            },
        );
        Self { client, recorder }
    }

    /// Merges `status` into a StandaloneDatabase's status.
    pub async fn standalone_status(
        &self,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> kube::Result<()> {
        let api: Api<StandaloneDatabase> = Api::namespaced(self.client.clone(), namespace);
        api.patch_status(name, &params(), &Patch::Merge(json!({ "status": status })))
            .await
            .map(|_| ())
    }

    /// Merges `status` into a BackupRepository's status.
    pub async fn repository_status(&self, name: &str, status: Value) -> kube::Result<()> {
        let api: Api<BackupRepository> = Api::all(self.client.clone());
        api.patch_status(name, &params(), &Patch::Merge(json!({ "status": status })))
            .await
            .map(|_| ())
    }

    /// Merges `status` into a BackupPolicy's status.
    pub async fn policy_status(&self, name: &str, status: Value) -> kube::Result<()> {
        let api: Api<BackupPolicy> = Api::all(self.client.clone());
        api.patch_status(name, &params(), &Patch::Merge(json!({ "status": status })))
            .await
            .map(|_| ())
    }

    /// Merges annotations into a CNPG `Cluster` or `MariaDB`.
    pub async fn annotate(
        &self,
        engine: TargetEngine,
        namespace: &str,
        name: &str,
        annotations: Value,
    ) -> kube::Result<()> {
        let ar = match engine {
            TargetEngine::Cnpg => cnpg_resource(),
            TargetEngine::Galera => mariadb_resource(),
            TargetEngine::Standalone => return Ok(()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        api.patch(
            name,
            &params(),
            &Patch::Merge(json!({ "metadata": { "annotations": annotations } })),
        )
        .await
        .map(|_| ())
    }

    /// Publishes an Event about `reference`; a failure is logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            // Events cap notes at 1 kB.
            note: Some(truncate(&note, 1000)),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(object = ?reference.name, "publishing event {reason} failed: {e}");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A reference to a database target for Events.
pub fn database_reference(
    engine: TargetEngine,
    namespace: &str,
    name: &str,
    uid: Option<String>,
) -> ObjectReference {
    let (api_version, kind) = match engine {
        TargetEngine::Standalone => (
            StandaloneDatabase::api_version(&()).to_string(),
            "StandaloneDatabase".to_string(),
        ),
        TargetEngine::Cnpg => ("postgresql.cnpg.io/v1".into(), "Cluster".into()),
        TargetEngine::Galera => ("k8s.mariadb.com/v1alpha1".into(), "MariaDB".into()),
    };
    ObjectReference {
        api_version: Some(api_version),
        kind: Some(kind),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid,
        ..ObjectReference::default()
    }
}

/// A reference to a cluster-scoped hasteward object (Events land in `default`).
pub fn cluster_reference<K: Resource<DynamicType = ()>>(
    name: &str,
    uid: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(name.to_string()),
        uid,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let first = condition(
            "Ready",
            true,
            "Scheduled",
            "next 02:00",
            Some(1),
            at("2026-11-23T10:00:00Z"),
        );
        let c = with_condition(&[], first);
        let same = condition(
            "Ready",
            true,
            "Scheduled",
            "next 03:00",
            Some(2),
            at("2026-11-23T11:00:00Z"),
        );
        assert!(condition_differs(&c, &same));
        let c2 = with_condition(&c, same);
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].last_transition_time, "2026-11-23T10:00:00Z");
        assert_eq!(c2[0].message, "next 03:00");
        let flipped = condition(
            "Ready",
            false,
            "InvalidSchedule",
            "bad",
            Some(3),
            at("2026-11-23T12:00:00Z"),
        );
        let c3 = with_condition(&c2, flipped.clone());
        assert_eq!(c3[0].last_transition_time, "2026-11-23T12:00:00Z");
        assert!(!condition_differs(&c3, &flipped));
        let other = condition(
            "LastBackupSucceeded",
            true,
            "Succeeded",
            "",
            None,
            at("2026-11-23T12:00:00Z"),
        );
        let c4 = with_condition(&c3, other);
        assert_eq!(
            c4.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["LastBackupSucceeded", "Ready"]
        );
    }

    #[test]
    fn notes_are_capped_on_a_char_boundary() {
        let long = "é".repeat(600);
        let t = truncate(&long, 1000);
        assert!(t.len() <= 1004 && t.ends_with('…'));
    }
}
