//! The CloudNativePG `Cluster` and mariadb-operator `MariaDB` resources, read as dynamic objects
//! and narrowed to the fields hasteward uses (so new CRD versions with extra fields still work).

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde::Deserialize;

use crate::client::Target;
use crate::{Error, Kube, Result};

/// `postgresql.cnpg.io/v1` `Cluster`.
pub fn cnpg_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    )
}

/// `k8s.mariadb.com/v1alpha1` `MariaDB`.
pub fn mariadb_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.mariadb.com", "v1alpha1", "MariaDB"),
        "mariadbs",
    )
}

/// The parts of a CNPG `Cluster` hasteward reads.
#[derive(Debug, Clone)]
pub struct CnpgCluster {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `status.currentPrimary`.
    pub current_primary: Option<String>,
    /// `status.instanceNames`.
    pub instance_names: Vec<String>,
    /// `spec.instances`.
    pub spec_instances: Option<i64>,
    /// `status.phase` (`Cluster in healthy state`, …).
    pub phase: Option<String>,
    /// `status.readyInstances`.
    pub ready_instances: Option<i64>,
    /// `status.targetPrimary`.
    pub target_primary: Option<String>,
    /// `spec.imageName` (helper pods use it, so the tools match the data).
    pub image_name: Option<String>,
    /// `metadata.uid`, for owner references.
    pub uid: Option<String>,
}

impl CnpgCluster {
    /// An owner reference to this `Cluster` (helper pods are collected with it).
    pub fn owner_reference(
        &self,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "postgresql.cnpg.io/v1".into(),
                kind: "Cluster".into(),
                name: self.name.clone(),
                uid: self.uid.clone()?,
                controller: Some(false),
                block_owner_deletion: Some(false),
            },
        )
    }
}

/// One `status.conditions[]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A reference to one key of a Secret.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside it.
    pub key: String,
}

/// The parts of a mariadb-operator `MariaDB` hasteward reads.
#[derive(Debug, Clone)]
pub struct MariaDbCluster {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `spec.replicas`.
    pub replicas: Option<i64>,
    /// `spec.rootPasswordSecretKeyRef`.
    pub root_password: Option<SecretKeyRef>,
    /// Whether `spec.galera.enabled` is true.
    pub galera: bool,
    /// `spec.suspend`.
    pub suspended: bool,
    /// `status.conditions`.
    pub conditions: Vec<Condition>,
    /// `status.galeraRecovery`, as is (its shape changes between operator versions).
    pub galera_recovery: Option<serde_json::Value>,
    /// `spec.image`: the MariaDB image (helper pods use it, so the tools match the data).
    pub image: Option<String>,
    /// `metadata.uid`, for owner references.
    pub uid: Option<String>,
}

impl MariaDbCluster {
    /// An owner reference to this CR (helper pods are collected with it).
    pub fn owner_reference(
        &self,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "k8s.mariadb.com/v1alpha1".into(),
                kind: "MariaDB".into(),
                name: self.name.clone(),
                uid: self.uid.clone()?,
                controller: Some(false),
                block_owner_deletion: Some(false),
            },
        )
    }
}

impl MariaDbCluster {
    /// The label selector of the cluster's pods.
    pub fn pod_selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.name)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CnpgStatus {
    current_primary: Option<String>,
    #[serde(default)]
    instance_names: Vec<String>,
    phase: Option<String>,
    ready_instances: Option<i64>,
    target_primary: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CnpgSpec {
    instances: Option<i64>,
    image_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MariaDbStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
    galera_recovery: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MariaDbSpec {
    replicas: Option<i64>,
    root_password_secret_key_ref: Option<SecretKeyRef>,
    galera: Option<GaleraSpec>,
    suspend: Option<bool>,
    image: Option<String>,
}

#[derive(Deserialize, Default)]
struct GaleraSpec {
    enabled: Option<bool>,
}

/// Reads the top-level `key` (`spec`, `status`) of a dynamic object into `T`; absent is
/// `T::default()`, malformed is an error naming the object.
fn section<T: serde::de::DeserializeOwned + Default>(
    obj: &DynamicObject,
    key: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<T> {
    obj.data
        .get(key)
        .map(|v| T::deserialize(v))
        .transpose()
        .map_err(|e| Error::Resource {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            detail: format!("unreadable {key}: {e}"),
        })
        .map(Option::unwrap_or_default)
}

impl Kube {
    pub(crate) async fn dynamic_get(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<DynamicObject> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, resource);
        let kind = format!("{} ({})", resource.kind, resource.group);
        self.call(
            "get",
            Target {
                kind: &kind,
                namespace,
                name,
            },
            api.get(name),
        )
        .await
    }

    /// Reads a CNPG `Cluster`.
    pub async fn cnpg_cluster(&self, namespace: &str, name: &str) -> Result<CnpgCluster> {
        let obj = self.dynamic_get(&cnpg_resource(), namespace, name).await?;
        let status: CnpgStatus = section(&obj, "status", "Cluster", namespace, name)?;
        let spec: CnpgSpec = section(&obj, "spec", "Cluster", namespace, name)?;
        Ok(CnpgCluster {
            name: name.into(),
            namespace: namespace.into(),
            resource_version: obj.metadata.resource_version.clone(),
            annotations: obj.metadata.annotations.clone().unwrap_or_default(),
            current_primary: status.current_primary,
            instance_names: status.instance_names,
            spec_instances: spec.instances,
            phase: status.phase,
            ready_instances: status.ready_instances,
            target_primary: status.target_primary,
            image_name: spec.image_name,
            uid: obj.metadata.uid.clone(),
        })
    }

    /// Sets (`Some`) or removes (`None`) one annotation of a CNPG `Cluster` (merge patch).
    pub async fn annotate_cnpg_cluster(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &cnpg_resource());
        let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
        self.call(
            "annotate Cluster",
            Target {
                kind: "Cluster (postgresql.cnpg.io)",
                namespace,
                name,
            },
            api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            ),
        )
        .await
        .map(|_| ())
    }

    /// Merge-patches a mariadb-operator `MariaDB` (`spec.suspend`,
    /// `spec.galera.recovery.forceClusterBootstrapInPod`, …).
    pub async fn patch_mariadb(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &mariadb_resource());
        self.call(
            "patch MariaDB",
            Target {
                kind: "MariaDB (k8s.mariadb.com)",
                namespace,
                name,
            },
            api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            ),
        )
        .await
        .map(|_| ())
    }

    /// Reads a StatefulSet.
    pub async fn statefulset(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<k8s_openapi::api::apps::v1::StatefulSet> {
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(self.client.clone(), namespace);
        self.call(
            "get StatefulSet",
            Target {
                kind: "StatefulSet",
                namespace,
                name,
            },
            api.get(name),
        )
        .await
    }

    /// Waits, by watching, until the StatefulSet is gone (its deletion may wait on a finalizer),
    /// or `timeout` passes.
    pub async fn wait_statefulset_gone(
        &self,
        namespace: &str,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(self.client.clone(), namespace);
        crate::watch::watch_object(&api, name, timeout, |sts| sts.is_none().then_some(()))
            .await
            .ok_or_else(|| Error::Resource {
                kind: "StatefulSet".into(),
                namespace: namespace.into(),
                name: name.into(),
                detail: format!("still there {timeout:?} after its deletion"),
            })
    }

    /// Deletes a StatefulSet but not its pods (`propagationPolicy: Orphan`): its pods keep
    /// running, and a pod deleted meanwhile is not recreated.
    pub async fn orphan_statefulset(&self, namespace: &str, name: &str) -> Result<()> {
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..kube::api::DeleteParams::default()
        };
        self.call(
            "delete StatefulSet (orphaning its pods)",
            Target {
                kind: "StatefulSet",
                namespace,
                name,
            },
            api.delete(name, &params),
        )
        .await
        .map(|_| ())
    }

    /// Creates a StatefulSet again from a copy read earlier (identity and status dropped); it
    /// adopts its running pods and recreates the missing ones.
    pub async fn recreate_statefulset(
        &self,
        saved: &k8s_openapi::api::apps::v1::StatefulSet,
    ) -> Result<()> {
        let namespace = saved.metadata.namespace.clone().unwrap_or_default();
        let name = saved.metadata.name.clone().unwrap_or_default();
        let mut fresh = saved.clone();
        fresh.status = None;
        fresh.metadata.uid = None;
        fresh.metadata.resource_version = None;
        fresh.metadata.creation_timestamp = None;
        fresh.metadata.managed_fields = None;
        fresh.metadata.deletion_timestamp = None;
        fresh.metadata.generation = None;
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(self.client.clone(), &namespace);
        self.call(
            "create StatefulSet",
            Target {
                kind: "StatefulSet",
                namespace: &namespace,
                name: &name,
            },
            api.create(&kube::api::PostParams::default(), &fresh),
        )
        .await
        .map(|_| ())
    }

    /// Sets a StatefulSet's replicas through its `scale` subresource; returns the previous
    /// count.
    pub async fn scale_statefulset(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<i32> {
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "StatefulSet",
            namespace,
            name,
        };
        let before = self
            .call("read scale", target, api.get_scale(name))
            .await?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.call(
            "scale StatefulSet",
            target,
            api.patch_scale(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            ),
        )
        .await?;
        Ok(before)
    }

    /// Reads a mariadb-operator `MariaDB`.
    pub async fn mariadb(&self, namespace: &str, name: &str) -> Result<MariaDbCluster> {
        let obj = self
            .dynamic_get(&mariadb_resource(), namespace, name)
            .await?;
        let spec: MariaDbSpec = section(&obj, "spec", "MariaDB", namespace, name)?;
        let status: MariaDbStatus = section(&obj, "status", "MariaDB", namespace, name)?;
        Ok(MariaDbCluster {
            name: name.into(),
            namespace: namespace.into(),
            replicas: spec.replicas,
            root_password: spec.root_password_secret_key_ref,
            galera: spec.galera.and_then(|g| g.enabled).unwrap_or(false),
            suspended: spec.suspend.unwrap_or(false),
            conditions: status.conditions,
            galera_recovery: status.galera_recovery,
            image: spec.image,
            uid: obj.metadata.uid.clone(),
        })
    }
}
