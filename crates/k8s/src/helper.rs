//! Helper pods: short-lived pods that run one command next to a volume (read a `grastate.dat`,
//! run `mariadbd --wsrep-recover`, `pg_basebackup` into a PVC).
//!
//! Every helper gets a unique name (a fixed name collides with a leftover from a crashed run),
//! an owner reference when one is given (so the cluster's deletion collects it), an
//! `activeDeadlineSeconds` (the kubelet kills it even if hasteward is gone), labels saying who
//! made it and why, and is deleted on every path by [`Kube::run_helper`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, LogParams, PostParams};

use crate::client::Target;
use crate::watch::watch_pod;
use crate::{Error, Kube, Result};

/// The label every helper carries (value: its purpose).
pub const HELPER_LABEL: &str = "hasteward.dev/helper";

/// What a helper pod runs and where.
#[derive(Debug, Clone)]
pub struct HelperSpec {
    /// Namespace.
    pub namespace: String,
    /// Name prefix (`<instance>-recover`); a unique suffix is added.
    pub name_prefix: String,
    /// Purpose, for the [`HELPER_LABEL`] label (`wsrep-recover`, `reseed`).
    pub purpose: String,
    /// Container image (the database's own image, so the tools match the data).
    pub image: String,
    /// argv.
    pub command: Vec<String>,
    /// The volume: PVC name, mount path, read-only.
    pub volume: Option<(String, String, bool)>,
    /// Run on this node (where an RWO volume is attached).
    pub node_name: Option<String>,
    /// Owner (the cluster's CR).
    pub owner: Option<OwnerReference>,
    /// `runAsUser`/`runAsGroup`.
    pub run_as: Option<(i64, i64)>,
    /// Killed by the kubelet after this long.
    pub deadline: Duration,
    /// Extra labels (e.g. the cluster's, for NetworkPolicies).
    pub labels: BTreeMap<String, String>,
    /// Environment variables (no secrets: use `secrets` files).
    pub env: Vec<(String, String)>,
    /// Secrets mounted read-only (0400, owned by the pod's group): (secret name, mount path).
    pub secrets: Vec<(String, String)>,
}

impl HelperSpec {
    /// `sh -c script` in `image` with `volume` = (PVC name, mount path) mounted read-write; no
    /// node pin, owner, user, labels, env or secrets (set those fields as needed).
    pub fn shell(
        namespace: &str,
        name_prefix: String,
        purpose: &str,
        image: String,
        script: &str,
        (claim, mount_path): (String, &str),
        deadline: Duration,
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            name_prefix,
            purpose: purpose.to_string(),
            image,
            command: vec!["sh".into(), "-c".into(), script.into()],
            volume: Some((claim, mount_path.to_string(), false)),
            node_name: None,
            owner: None,
            run_as: None,
            deadline,
            labels: BTreeMap::new(),
            env: Vec::new(),
            secrets: Vec::new(),
        }
    }
}

/// How a helper ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperOutcome {
    /// The pod's name.
    pub pod: String,
    /// `Succeeded` or `Failed`.
    pub phase: String,
    /// The container's exit code, when reported.
    pub exit_code: Option<i32>,
    /// Its log (stdout and stderr).
    pub log: String,
}

impl HelperOutcome {
    /// Whether the command exited 0.
    pub fn succeeded(&self) -> bool {
        self.phase == "Succeeded"
    }
}

/// A unique suffix: 8 hex digits from the clock and the process id.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    format!("{:08x}", (mixed ^ (mixed >> 29)) as u32)
}

/// The pod object for `spec` (pure; the name gets a unique suffix).
pub fn helper_pod(spec: &HelperSpec) -> Pod {
    let name = format!("{}-{}", spec.name_prefix, unique_suffix());
    let mut labels = spec.labels.clone();
    labels.insert("app.kubernetes.io/managed-by".into(), "hasteward".into());
    labels.insert(HELPER_LABEL.into(), spec.purpose.clone());
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some((claim, path, read_only)) = &spec.volume {
        volumes.push(Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(*read_only),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: path.clone(),
            read_only: Some(*read_only),
            ..VolumeMount::default()
        });
    }
    for (i, (secret, path)) in spec.secrets.iter().enumerate() {
        let name = format!("secret-{i}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let env: Vec<k8s_openapi::api::core::v1::EnvVar> = spec
        .env
        .iter()
        .map(|(k, v)| k8s_openapi::api::core::v1::EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels),
            annotations: Some(
                [("sidecar.istio.io/inject".to_string(), "false".to_string())].into(),
            ),
            owner_references: spec.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(spec.deadline.as_secs().max(1) as i64),
            node_name: spec.node_name.clone(),
            security_context: spec.run_as.map(|(uid, gid)| PodSecurityContext {
                run_as_user: Some(uid),
                run_as_group: Some(gid),
                fs_group: Some(gid),
                run_as_non_root: Some(uid != 0),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "helper".into(),
                image: Some(spec.image.clone()),
                command: Some(spec.command.clone()),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                env: (!env.is_empty()).then_some(env),
                ..Container::default()
            }],
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The last `max` bytes of `text` (on a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn finished(pod: &Pod) -> Option<String> {
    let phase = pod.status.as_ref()?.phase.clone()?;
    matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

impl Kube {
    /// Creates the helper, waits (watching) until it has finished or `timeout` passes, reads its
    /// log, and deletes it on every path.
    pub async fn run_helper(&self, spec: &HelperSpec, timeout: Duration) -> Result<HelperOutcome> {
        self.run_helper_pod(helper_pod(spec), timeout).await
    }

    /// [`Kube::run_helper`] for a pod built with [`helper_pod`], so the caller knows its name
    /// before it exists (and can delete it if this future is dropped, e.g. on Ctrl-C).
    pub async fn run_helper_pod(&self, pod: Pod, timeout: Duration) -> Result<HelperOutcome> {
        self.create_helper_pod(&pod).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        self.finish_helper_pod(&namespace, &name, timeout).await
    }

    /// Creates a helper pod built with [`helper_pod`]; [`Kube::finish_helper_pod`] waits for it
    /// and deletes it.
    pub async fn create_helper_pod(&self, pod: &Pod) -> Result<()> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let target = Target {
            kind: "helper pod",
            namespace: &namespace,
            name: &name,
        };
        self.call(
            "create helper pod",
            target,
            api.create(&PostParams::default(), pod),
        )
        .await?;
        Ok(())
    }

    /// Waits (watching) until the helper `namespace/name` has finished or `timeout` passes,
    /// reads its log, and deletes it on every path.
    pub async fn finish_helper_pod(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<HelperOutcome> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "helper pod",
            namespace,
            name,
        };
        let waited = self.wait_finished(&api, name, timeout).await;
        let log = self
            .call(
                "read helper log",
                target,
                api.logs(name, &LogParams::default()),
            )
            .await
            .unwrap_or_else(|e| format!("(the helper's log could not be read: {e})"));
        let deleted = self
            .call(
                "delete helper pod",
                target,
                api.delete(name, &DeleteParams::background()),
            )
            .await;
        let pod = waited?;
        if let Err(e) = deleted {
            if !matches!(e, Error::NotFound { .. }) {
                tracing::warn!(pod = %name, "could not delete the helper pod: {e}");
            }
        }
        Ok(HelperOutcome {
            pod: name.to_string(),
            phase: finished(&pod).unwrap_or_default(),
            exit_code: exit_code(&pod),
            log,
        })
    }

    /// Creates a long-running helper (a throwaway server) and waits (watching) until its
    /// container runs. A helper that ends, disappears or does not start within `timeout` is an
    /// error, and is deleted before returning it.
    pub async fn start_helper_pod(&self, pod: &Pod, timeout: Duration) -> Result<()> {
        self.create_helper_pod(pod).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let fail = |reason: String| Error::PodNotReady {
            namespace: namespace.clone(),
            pod: name.clone(),
            reason,
        };
        let running = |pod: Option<&Pod>| match pod {
            None => Some(Err(fail("the helper pod disappeared before it ran".into()))),
            Some(p) if finished(p).is_some() => Some(Err(fail(format!(
                "the helper pod ended ({}) before it was used",
                finished(p).unwrap_or_default()
            )))),
            Some(p) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") => {
                Some(Ok(()))
            }
            Some(_) => None,
        };
        let outcome = watch_pod(&api, &name, timeout, running)
            .await
            .unwrap_or_else(|| Err(fail(format!("the helper did not start within {timeout:?}"))));
        if outcome.is_err() {
            let log = api
                .logs(&name, &LogParams::default())
                .await
                .unwrap_or_default();
            let _ = self.delete_helper_pod(&namespace, &name).await;
            if !log.trim().is_empty() {
                return Err(fail(format!(
                    "{}; its log ends: {}",
                    outcome.err().map(|e| e.to_string()).unwrap_or_default(),
                    tail(&log, 600)
                )));
            }
        }
        outcome
    }

    /// Deletes a helper pod; one already gone is not an error.
    pub async fn delete_helper_pod(&self, namespace: &str, name: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let target = Target {
            kind: "helper pod",
            namespace,
            name,
        };
        match self
            .call(
                "delete helper pod",
                target,
                api.delete(name, &DeleteParams::background()),
            )
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn wait_finished(&self, api: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
        let fail = |reason: String| Error::PodNotReady {
            namespace: api.namespace().unwrap_or_default().to_string(),
            pod: name.into(),
            reason,
        };
        let done = |pod: Option<&Pod>| match pod {
            None => Some(Err(fail(
                "the helper pod disappeared before it finished".into(),
            ))),
            Some(p) if finished(p).is_some() => Some(Ok(p.clone())),
            Some(_) => None,
        };
        watch_pod(api, name, timeout, done)
            .await
            .unwrap_or_else(|| {
                Err(fail(format!(
                    "the helper did not finish within {timeout:?}"
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HelperSpec {
        HelperSpec {
            namespace: "db".into(),
            name_prefix: "galera-2-recover".into(),
            purpose: "wsrep-recover".into(),
            image: "mariadb:11.4".into(),
            command: vec!["mariadbd".into(), "--wsrep-recover".into()],
            volume: Some(("storage-galera-2".into(), "/var/lib/mysql".into(), false)),
            node_name: Some("node-a".into()),
            owner: None,
            run_as: Some((999, 999)),
            deadline: Duration::from_secs(150),
            labels: BTreeMap::new(),
            env: Vec::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn helpers_have_unique_names_a_deadline_a_pinned_node_and_labels() {
        let a = helper_pod(&spec());
        std::thread::sleep(Duration::from_millis(2));
        let b = helper_pod(&spec());
        let name = a.metadata.name.clone().unwrap();
        assert!(name.starts_with("galera-2-recover-"), "{name}");
        assert_ne!(a.metadata.name, b.metadata.name);
        let s = a.spec.unwrap();
        assert_eq!(s.active_deadline_seconds, Some(150));
        assert_eq!(s.node_name.as_deref(), Some("node-a"));
        assert_eq!(s.restart_policy.as_deref(), Some("Never"));
        let labels = a.metadata.labels.unwrap();
        assert_eq!(labels[HELPER_LABEL], "wsrep-recover");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "hasteward");
        let vol = &s.volumes.unwrap()[0];
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "storage-galera-2"
        );
        assert_eq!(
            s.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            "/var/lib/mysql"
        );
    }
}
