//! Pods, and container readiness looked up by container name (never by index: sidecars and
//! init containers shift positions).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams};

use crate::client::Target;
use crate::watch::watch_pod;
use crate::{Error, Kube, Result};

/// The pod's phase (`Pending`, `Running`, ...), or `Unknown` when absent.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown")
}

/// Whether the named container is ready; `None` when the pod has no status for it.
pub fn container_ready(pod: &Pod, container: &str) -> Option<bool> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.ready)
}

/// The restart count of the named container (0 when it has no status).
pub fn container_restarts(pod: &Pod, container: &str) -> u32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .unwrap_or(0)
}

/// Checks that the pod is Running and its `container` exists and is Ready.
pub fn require_ready(pod: &Pod, container: &str) -> Result<()> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let fail = |reason: String| Error::PodNotReady {
        namespace: namespace.clone(),
        pod: name.clone(),
        reason,
    };
    let has_container = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == container));
    if !has_container {
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        return Err(fail(format!(
            "it has no container `{container}` (containers: {})",
            names.join(", ")
        )));
    }
    let phase = pod_phase(pod);
    if phase != "Running" {
        return Err(fail(format!("phase is {phase}, not Running")));
    }
    match container_ready(pod, container) {
        Some(true) => Ok(()),
        Some(false) => Err(fail(format!("container `{container}` is not Ready"))),
        None => Err(fail(format!("container `{container}` has no status yet"))),
    }
}

impl Kube {
    /// Reads one pod.
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        self.call(
            "get pod",
            Target {
                kind: "pod",
                namespace,
                name,
            },
            api.get(name),
        )
        .await
    }

    /// The last `lines` lines of a container's log (`pods/log`).
    pub async fn pod_log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        lines: i64,
    ) -> Result<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(lines),
            ..LogParams::default()
        };
        self.call(
            "read pod log",
            Target {
                kind: "pod",
                namespace,
                name: pod,
            },
            api.logs(pod, &params),
        )
        .await
    }

    /// A PersistentVolumeClaim, or `None` when it does not exist (a genuine NotFound).
    pub async fn pvc(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        match self
            .call(
                "get pvc",
                Target {
                    kind: "persistentvolumeclaim",
                    namespace,
                    name,
                },
                api.get(name),
            )
            .await
        {
            Ok(pvc) => Ok(Some(pvc)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a pod (default grace period); returns the deleted pod's uid, so a wait can tell
    /// the recreated pod from the old one.
    pub async fn delete_pod(&self, namespace: &str, name: &str) -> Result<Option<String>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "pod",
            namespace,
            name,
        };
        let uid = self
            .call("get pod", target, api.get(name))
            .await?
            .metadata
            .uid;
        self.call(
            "delete pod",
            target,
            api.delete(name, &DeleteParams::default()),
        )
        .await?;
        Ok(uid)
    }

    /// Waits, by watching, until the pod `name` with uid `uid` is gone (deleted, its containers
    /// stopped), or `timeout` passes.
    pub async fn wait_pod_gone(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let gone = |pod: Option<&Pod>| match pod {
            None => Some(()),
            Some(p) if uid.is_some() && p.metadata.uid.as_deref() != uid => Some(()),
            Some(_) => None,
        };
        watch_pod(&api, name, timeout, gone)
            .await
            .ok_or_else(|| Error::PodNotReady {
                namespace: namespace.into(),
                pod: name.into(),
                reason: format!("still there {timeout:?} after it was deleted"),
            })
    }

    /// Waits, by watching, until the pod `name` is Running (a helper that stays up to be
    /// exec'd into); fails when it finished or did not start within `timeout`.
    pub async fn wait_pod_running(
        &self,
        namespace: &str,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let running = |pod: Option<&Pod>| match pod.map(pod_phase) {
            Some("Running") => Some(Ok(())),
            Some("Succeeded" | "Failed") | None => Some(Err(())),
            Some(_) => None,
        };
        match watch_pod(&api, name, timeout, running).await {
            Some(Ok(())) => Ok(()),
            other => Err(Error::PodNotReady {
                namespace: namespace.into(),
                pod: name.into(),
                reason: if other.is_none() {
                    format!("not Running after {timeout:?}")
                } else {
                    "it ended (or disappeared) before it was Running".into()
                },
            }),
        }
    }

    /// Waits, by watching the pod, until a pod `name` whose uid is not `old_uid` is Running with
    /// `container` Ready, or `timeout` passes ([`Error::PodNotReady`] saying what it last was).
    pub async fn wait_pod_ready(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        old_uid: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut last = "not seen yet".to_string();
        let ready = |pod: Option<&Pod>| {
            let Some(pod) = pod else {
                last = "no pod yet".into();
                return None;
            };
            let new =
                pod.metadata.uid.as_deref() != old_uid && pod.metadata.deletion_timestamp.is_none();
            match require_ready(pod, container) {
                Ok(()) if new => Some(()),
                Ok(()) => {
                    last = "the old pod is still there".into();
                    None
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            }
        };
        match watch_pod(&api, name, timeout, ready).await {
            Some(()) => Ok(()),
            None => Err(Error::PodNotReady {
                namespace: namespace.into(),
                pod: name.into(),
                reason: format!("not Ready within {timeout:?} ({last})"),
            }),
        }
    }

    /// Lists pods matching a label selector, sorted by name.
    pub async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut pods = self
            .call(
                "list pods",
                Target {
                    kind: "pods",
                    namespace,
                    name: selector,
                },
                api.list(&ListParams::default().labels(selector)),
            )
            .await?
            .items;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(pods)
    }
}

/// The first pod (by name) matching `selector` whose `container` is Ready.
pub async fn find_ready_pod(
    kube: &Kube,
    namespace: &str,
    selector: &str,
    container: &str,
) -> Result<Pod> {
    let pods = kube.pods(namespace, selector).await?;
    let mut reasons = Vec::new();
    for pod in pods {
        match require_ready(&pod, container) {
            Ok(()) => return Ok(pod),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(Error::PodNotReady {
        namespace: namespace.to_string(),
        pod: format!("({selector})"),
        reason: if reasons.is_empty() {
            "no pod matches the selector".into()
        } else {
            reasons.join("; ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn readiness_is_looked_up_by_name_not_index() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "db-1", "namespace": "ns"},
            "spec": {"containers": [{"name": "sidecar"}, {"name": "postgres"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "postgres", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
                {"name": "sidecar", "ready": false, "restartCount": 0, "image": "", "imageID": ""}
            ]}
        }));
        assert_eq!(container_ready(&p, "postgres"), Some(true));
        assert_eq!(container_ready(&p, "sidecar"), Some(false));
        require_ready(&p, "postgres").unwrap();
        let err = require_ready(&p, "sidecar").unwrap_err().to_string();
        assert!(err.contains("`sidecar` is not Ready"), "{err}");
        let err = require_ready(&p, "mariadb").unwrap_err().to_string();
        assert!(err.contains("no container `mariadb`"), "{err}");
    }

    #[test]
    fn a_pod_that_is_not_running_is_refused_with_its_phase() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "db-1", "namespace": "ns"},
            "spec": {"containers": [{"name": "postgres"}]},
            "status": {"phase": "Pending"}
        }));
        let err = require_ready(&p, "postgres").unwrap_err();
        assert!(err.is_dependency());
        assert!(err.to_string().contains("phase is Pending"), "{err}");
    }
}
