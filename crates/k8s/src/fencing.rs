//! CloudNativePG fencing through the `cnpg.io/fencedInstances` annotation.
//!
//! # Guarantees
//! - Fences that were already there are never removed: the annotation is read, the new names
//!   are added, and the write carries the `resourceVersion` that was read, so a concurrent
//!   writer (a human, the CNPG operator) makes the write fail with a conflict and it is redone
//!   on fresh data instead of clobbering theirs.
//! - [`unfence`] removes only the names that [`fence`] added, again read-modify-write.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::client::Target;
use crate::resources::cnpg_resource;
use crate::{Error, Kube, Result};

/// The annotation CNPG reads.
pub const FENCED_INSTANCES: &str = "cnpg.io/fencedInstances";

/// How often a conflicting write is retried.
const ATTEMPTS: u32 = 8;

/// Parses the annotation's JSON array. Absent or empty means no fences.
pub fn parse(value: Option<&str>) -> std::result::Result<Vec<String>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Vec<String>>(text).map_err(|e| {
            format!("`{FENCED_INSTANCES}` is not a JSON array of names ({e}): {text}")
        }),
    }
}

/// Whether `instance` is fenced by `fences` (`*` fences every instance).
pub fn is_fenced(fences: &[String], instance: &str) -> bool {
    fences.iter().any(|f| f == "*" || f == instance)
}

/// The list after adding `wanted`, and which names were actually added.
pub fn add(existing: &[String], wanted: &[String]) -> (Vec<String>, Vec<String>) {
    let mut list = existing.to_vec();
    let mut added = Vec::new();
    for w in wanted {
        if !is_fenced(&list, w) {
            list.push(w.clone());
            added.push(w.clone());
        }
    }
    (list, added)
}

/// The list after removing `ours` (and only those).
pub fn remove(current: &[String], ours: &[String]) -> Vec<String> {
    let ours: BTreeSet<&String> = ours.iter().collect();
    current
        .iter()
        .filter(|f| !ours.contains(f))
        .cloned()
        .collect()
}

/// What [`fence`] did, to be undone by [`unfence`].
#[derive(Debug, Clone, Default)]
pub struct Fences {
    /// Namespace of the cluster.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// Names this run added.
    pub added: Vec<String>,
    /// Fences that were there before.
    pub preexisting: Vec<String>,
    /// Whether the annotation existed before.
    pub annotation_existed: bool,
}

async fn modify(
    kube: &Kube,
    namespace: &str,
    cluster: &str,
    what: &str,
    mut change: impl FnMut(&[String], bool) -> Result<Option<Option<Vec<String>>>>,
) -> Result<()> {
    let resource = cnpg_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &resource);
    for _ in 0..ATTEMPTS {
        let c = kube.cnpg_cluster(namespace, cluster).await?;
        let raw = c.annotations.get(FENCED_INSTANCES);
        let current = parse(raw.map(String::as_str)).map_err(|detail| Error::Resource {
            kind: "Cluster".into(),
            namespace: namespace.into(),
            name: cluster.into(),
            detail,
        })?;
        // None: nothing to write. Some(None): remove the annotation. Some(Some(list)): write it.
        let Some(next) = change(&current, raw.is_some())? else {
            return Ok(());
        };
        let value = match next {
            Some(list) => json!(serde_json::to_string(&list).expect("names serialize")),
            None => serde_json::Value::Null,
        };
        let patch = json!({
            "metadata": {
                "resourceVersion": c.resource_version,
                "annotations": { FENCED_INSTANCES: value },
            }
        });
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            api.patch(cluster, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await;
        match result {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => continue,
            Ok(Err(e)) => {
                return Err(kube.map_error(
                    what,
                    Target {
                        kind: "Cluster (postgresql.cnpg.io)",
                        namespace,
                        name: cluster,
                    },
                    e,
                ))
            }
            Err(_) => {
                return Err(Error::Unreachable {
                    server: kube.server.clone(),
                    detail: format!("{what} timed out"),
                })
            }
        }
    }
    Err(Error::Conflict {
        what: format!("{what} on Cluster {namespace}/{cluster}"),
        attempts: ATTEMPTS,
    })
}

/// Adds `instances` to the cluster's fenced instances, keeping every existing fence.
pub async fn fence(
    kube: &Kube,
    namespace: &str,
    cluster: &str,
    instances: &[String],
) -> Result<Fences> {
    let mut out = Fences {
        namespace: namespace.into(),
        cluster: cluster.into(),
        ..Fences::default()
    };
    modify(
        kube,
        namespace,
        cluster,
        "fence instances",
        |current, existed| {
            let (list, added) = add(current, instances);
            out.preexisting = current.to_vec();
            out.annotation_existed = existed;
            out.added = added;
            Ok((!out.added.is_empty()).then_some(Some(list)))
        },
    )
    .await?;
    Ok(out)
}

/// Removes the fences [`fence`] added; fences set by anyone else stay.
pub async fn unfence(kube: &Kube, fences: &Fences) -> Result<()> {
    if fences.added.is_empty() {
        return Ok(());
    }
    modify(
        kube,
        &fences.namespace,
        &fences.cluster,
        "unfence instances",
        |current, _| {
            if !current.iter().any(|f| fences.added.contains(f)) {
                return Ok(None);
            }
            let list = remove(current, &fences.added);
            Ok(Some(if list.is_empty() && !fences.annotation_existed {
                None
            } else {
                Some(list)
            }))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn adding_keeps_existing_fences_and_reports_only_new_ones() {
        let (list, added) = add(&v(&["pg-9"]), &v(&["pg-2", "pg-9", "pg-3"]));
        assert_eq!(list, v(&["pg-9", "pg-2", "pg-3"]));
        assert_eq!(added, v(&["pg-2", "pg-3"]));
    }

    #[test]
    fn a_wildcard_fence_covers_everything() {
        let (list, added) = add(&v(&["*"]), &v(&["pg-2"]));
        assert_eq!(list, v(&["*"]));
        assert!(added.is_empty());
        assert!(is_fenced(&list, "pg-1"));
    }

    #[test]
    fn removing_takes_only_ours() {
        assert_eq!(
            remove(&v(&["pg-9", "pg-2", "pg-5", "pg-3"]), &v(&["pg-2", "pg-3"])),
            v(&["pg-9", "pg-5"])
        );
    }

    #[test]
    fn parse_accepts_absent_empty_and_arrays_and_rejects_garbage() {
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some("")).unwrap().is_empty());
        assert!(parse(Some("[]")).unwrap().is_empty());
        assert_eq!(parse(Some(r#"["a","b"]"#)).unwrap(), v(&["a", "b"]));
        assert!(parse(Some("a,b")).unwrap_err().contains("not a JSON array"));
    }
}
