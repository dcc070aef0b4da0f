//! PodRun: pods created through the API that match a [`PodRun`] configuration
//! are *run* — the first container's `command` + `args` become a local process
//! whose output is the pod's log and whose exit decides the pod's phase. This
//! is what lets helper pods (a `pg_basebackup` into a volume, a
//! `mariadbd --wsrep-recover`) be tested against real local servers.
//!
//! Lifecycle: created as sent → `Running` (container running, not ready) →
//! `Succeeded` / `Failed` (container terminated), each step an ordinary store
//! update (new resourceVersion, watch `MODIFIED`). `spec.activeDeadlineSeconds`
//! kills the process group (`Failed`, reason `DeadlineExceeded`); deleting the
//! pod kills it too.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PodRun;
use crate::exec::{self, GroupGuard};
use crate::store::{now_rfc3339, ObjectKey, ResourceKey, Store, WatchEvent};
use crate::{lock, Shared};

/// Read size when capturing output into the log.
const LOG_READ: usize = 64 * 1024;
/// How long output is still collected after the process ended (a daemon that
/// left the process group may keep the pipes open forever).
const DRAIN: Duration = Duration::from_secs(2);

/// The container being run, as reported in `containerStatuses`.
#[derive(Clone)]
struct ContainerInfo {
    name: String,
    image: String,
    id: Option<String>,
}

impl ContainerInfo {
    fn status(&self, state: Value, started: bool) -> Value {
        let mut status = json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "started": started,
            "state": state,
        });
        if let Some(id) = &self.id {
            status["containerID"] = json!(id);
        }
        status
    }
}

/// Called after a pod was created through the API (not dry-run): runs it if a
/// [`PodRun`] matches, otherwise leaves it alone.
pub(crate) fn on_create(shared: &Arc<Shared>, resource: &ResourceKey, pod: &Value) {
    if !(resource.group.is_empty() && resource.version == "v1" && resource.plural == "pods") {
        return;
    }
    let meta = |f: &str| {
        pod.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (namespace, name, uid) = (meta("namespace"), meta("name"), meta("uid"));
    let labels = pod.pointer("/metadata/labels");
    let config = lock(&shared.pod_runs)
        .iter()
        .rev()
        .find(|r| r.matches(&namespace, &name, labels))
        .cloned();
    let Some(config) = config else { return };
    let key = ObjectKey {
        resource: resource.clone(),
        namespace: Some(namespace),
        name,
    };
    start(shared, key, uid, pod, &config);
}

fn start(shared: &Arc<Shared>, key: ObjectKey, uid: String, pod: &Value, config: &PodRun) {
    let container = pod.pointer("/spec/containers/0");
    let mut info = ContainerInfo {
        name: container
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        image: container
            .and_then(|c| c.get("image"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        id: None,
    };
    let has_init = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let Some(container) = container.filter(|_| !has_init) else {
        let message = if has_init {
            "kubesim: PodRun does not run init containers"
        } else {
            "kubesim: the pod has no containers"
        };
        return start_error(shared, &key, &uid, &info, message);
    };
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let command = strings("command");
    if command.is_empty() {
        let message = format!(
            "kubesim: container {} has no command (image entrypoints are not simulated)",
            info.name
        );
        return start_error(shared, &key, &uid, &info, &message);
    }
    let mut argv = command;
    argv.extend(strings("args"));
    let argv = exec::rewrite_mounts(argv, &config.mounts);

    let spec_env = {
        let store = lock(&shared.store);
        container_env(
            &store,
            key.namespace.as_deref().unwrap_or(""),
            pod,
            container,
        )
    };
    let mut env = match spec_env {
        Ok(env) => env,
        Err(message) => return config_error(shared, &key, &uid, &info, &message),
    };
    let (names, values): (Vec<String>, Vec<String>) = env.into_iter().unzip();
    env = names
        .into_iter()
        .zip(exec::rewrite_mounts(values, &config.mounts))
        .collect();
    env.extend(config.env.clone());
    let path = match shared.volume_tools.process_path(
        &config.mounts,
        config.volume_size_kib,
        &config.path_prepend,
        &mut env,
    ) {
        Ok(path) => path,
        Err(message) => return start_error(shared, &key, &uid, &info, &message),
    };
    let mut cmd = exec::local_command(&argv, &env, path.as_ref(), config.cwd.as_ref());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = exec::spawn_failure_message(&argv[0], &e);
            return start_error(shared, &key, &uid, &info, &message);
        }
    };
    let Some(pid) = child.id() else { return };
    info.id = Some(format!("kubesim://{pid}"));
    let mut guard = GroupGuard::new(pid as i32, shared.clone());
    lock(&shared.pod_logs).insert(uid.clone(), Vec::new());
    let readers: Vec<JoinHandle<()>> = [
        capture(shared, &uid, child.stdout.take()),
        capture(shared, &uid, child.stderr.take()),
    ]
    .into_iter()
    .flatten()
    .collect();

    // Subscribing and going Running under one lock: a delete after this point is seen.
    let started_at = now_rfc3339();
    let (events, running) = {
        let mut store = lock(&shared.store);
        let (_, events) = store.subscribe(None).expect("no resume point");
        let running = update_status(&mut store, &key, &uid, |status| {
            status.insert("phase".into(), json!("Running"));
            status
                .entry("startTime")
                .or_insert_with(|| json!(started_at));
            status.insert(
                "containerStatuses".into(),
                json!([info.status(json!({"running": {"startedAt": started_at}}), true)]),
            );
        });
        (events, running)
    };
    if !running {
        guard.kill();
        return;
    }
    let deadline = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_u64)
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let run = Run {
        shared: shared.clone(),
        key,
        uid,
        info,
        started_at,
    };
    tokio::spawn(run.supervise(child, guard, readers, events, deadline));
}

/// Copy a stream into the pod's log until EOF.
fn capture<R>(shared: &Arc<Shared>, uid: &str, reader: Option<R>) -> Option<JoinHandle<()>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut reader = reader?;
    let (shared, uid) = (shared.clone(), uid.to_string());
    Some(tokio::spawn(async move {
        let mut buf = vec![0u8; LOG_READ];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(log) = lock(&shared.pod_logs).get_mut(&uid) {
                        log.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }))
}

enum End {
    Exited(ExitStatus),
    Deadline,
    Deleted,
}

/// One running pod.
struct Run {
    shared: Arc<Shared>,
    key: ObjectKey,
    uid: String,
    info: ContainerInfo,
    started_at: String,
}

impl Run {
    async fn supervise(
        self,
        mut child: Child,
        mut guard: GroupGuard,
        readers: Vec<JoinHandle<()>>,
        mut events: broadcast::Receiver<WatchEvent>,
        deadline: Option<Instant>,
    ) {
        let end = loop {
            tokio::select! {
                res = child.wait() => {
                    break End::Exited(res.unwrap_or_else(|_| ExitStatus::from_raw(255 << 8)))
                }
                () = sleep_until(deadline) => break End::Deadline,
                event = events.recv() => match event {
                    Ok(event) if self.is_my_deletion(&event) => break End::Deleted,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) if !self.exists() => break End::Deleted,
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break End::Deleted,
                },
            }
        };
        // As in a container, whatever the main process left behind ends with it.
        guard.kill();
        let status = match end {
            End::Exited(status) => status,
            End::Deadline | End::Deleted => tokio::time::timeout(DRAIN, child.wait())
                .await
                .ok()
                .and_then(Result::ok)
                // Raw wait status of a process killed by SIGKILL.
                .unwrap_or_else(|| ExitStatus::from_raw(nix::sys::signal::Signal::SIGKILL as i32)),
        };
        let aborts: Vec<_> = readers.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(DRAIN, futures::future::join_all(readers))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        match end {
            End::Deleted => {
                lock(&self.shared.pod_logs).remove(&self.uid);
            }
            End::Exited(_) | End::Deadline => self.finish(status, matches!(end, End::Deadline)),
        }
        drop(guard);
    }

    fn is_my_deletion(&self, event: &WatchEvent) -> bool {
        event.event_type == "DELETED"
            && event.resource == self.key.resource
            && event
                .object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                == Some(self.uid.as_str())
    }

    fn exists(&self) -> bool {
        lock(&self.shared.store)
            .get(&self.key)
            .and_then(|p| p.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            == Some(self.uid.as_str())
    }

    /// Record the container's termination and the pod's final phase.
    fn finish(&self, status: ExitStatus, deadline_exceeded: bool) {
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let mut terminated = json!({
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
        });
        if let Some(signal) = status.signal() {
            terminated["signal"] = json!(signal);
        }
        if let Some(id) = &self.info.id {
            terminated["containerID"] = json!(id);
        }
        let succeeded = code == 0 && !deadline_exceeded;
        let mut store = lock(&self.shared.store);
        update_status(&mut store, &self.key, &self.uid, |st| {
            st.insert(
                "phase".into(),
                json!(if succeeded { "Succeeded" } else { "Failed" }),
            );
            if deadline_exceeded {
                st.insert("reason".into(), json!("DeadlineExceeded"));
                st.insert(
                    "message".into(),
                    json!("Pod was active on the node longer than the specified deadline"),
                );
            }
            st.insert(
                "containerStatuses".into(),
                json!([self.info.status(json!({ "terminated": terminated }), false)]),
            );
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Change the status of the pod at `key` if it is still the one with `uid` (an ordinary store
/// update: new resourceVersion, watch `MODIFIED`). Returns whether it was.
fn update_status(
    store: &mut Store,
    key: &ObjectKey,
    uid: &str,
    change: impl FnOnce(&mut Map<String, Value>),
) -> bool {
    let Some(current) = store.get(key) else {
        return false;
    };
    if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return false;
    }
    let mut pod = current.clone();
    let Some(map) = pod.as_object_mut() else {
        return false;
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    if let Some(status) = status.as_object_mut() {
        change(status);
    }
    store.update(key, pod, false).is_ok()
}

/// The container could not be started (restartPolicy is treated as `Never`): `Failed`, with
/// the container terminated (exit code 128, reason `StartError`).
fn start_error(shared: &Shared, key: &ObjectKey, uid: &str, info: &ContainerInfo, message: &str) {
    let now = now_rfc3339();
    let mut store = lock(&shared.store);
    update_status(&mut store, key, uid, |st| {
        st.insert("phase".into(), json!("Failed"));
        st.insert("message".into(), json!(message));
        st.entry("startTime").or_insert_with(|| json!(now));
        st.insert(
            "containerStatuses".into(),
            json!([info.status(
                json!({"terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": now,
                    "finishedAt": now,
                }}),
                false
            )]),
        );
    });
}

/// The container's env could not be built (missing Secret/ConfigMap): stays `Pending`, the
/// container waiting with reason `CreateContainerConfigError` (not retried).
fn config_error(shared: &Shared, key: &ObjectKey, uid: &str, info: &ContainerInfo, message: &str) {
    let mut store = lock(&shared.store);
    update_status(&mut store, key, uid, |st| {
        st.insert("phase".into(), json!("Pending"));
        st.insert(
            "containerStatuses".into(),
            json!([info.status(
                json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}}),
                false
            )]),
        );
    });
}

/// The container's `env` from the pod spec: literal values, `secretKeyRef`, `configMapKeyRef`
/// (looked up in the store) and `fieldRef` (a dotted path into the pod). Later entries win.
fn container_env(
    store: &Store,
    namespace: &str,
    pod: &Value,
    container: &Value,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    let entries = container.get("env").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(value) = entry.get("value") {
            Some(value.as_str().unwrap_or("").to_string())
        } else if let Some(from) = entry.get("valueFrom") {
            value_from(store, namespace, pod, name, from)?
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            env.insert(name.to_string(), value);
        }
    }
    Ok(env)
}

fn value_from(
    store: &Store,
    namespace: &str,
    pod: &Value,
    var: &str,
    from: &Value,
) -> Result<Option<String>, String> {
    let key_ref = |kind: &str, plural: &str, r: &Value| -> Result<Option<String>, String> {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let key = r.get("key").and_then(Value::as_str).unwrap_or("");
        let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let obj = store.get(&ObjectKey {
            resource: ResourceKey::new("v1", plural),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        });
        let Some(obj) = obj else {
            return match optional {
                true => Ok(None),
                false => Err(format!("{} \"{name}\" not found", kind.to_lowercase())),
            };
        };
        let text = obj
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let data = obj
            .pointer(&format!("/data/{key}"))
            .and_then(Value::as_str)
            .map(|v| match plural {
                "secrets" => base64_decode(v).map(|b| String::from_utf8_lossy(&b).into_owned()),
                _ => Some(v.to_string()),
            });
        match (text, data) {
            (Some(v), _) | (None, Some(Some(v))) => Ok(Some(v)),
            (None, Some(None)) => Err(format!("invalid base64 in {kind} {namespace}/{name}")),
            (None, None) if optional => Ok(None),
            (None, None) => Err(format!(
                "couldn't find key {key} in {kind} {namespace}/{name}"
            )),
        }
    };
    if let Some(r) = from.get("secretKeyRef") {
        key_ref("Secret", "secrets", r)
    } else if let Some(r) = from.get("configMapKeyRef") {
        key_ref("ConfigMap", "configmaps", r)
    } else if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        Ok(Some(field_path(pod, path)))
    } else {
        Err(format!(
            "kubesim: unsupported valueFrom for env {var} (only secretKeyRef, configMapKeyRef, fieldRef)"
        ))
    }
}

/// `metadata.name`, `metadata.labels['app']` and the like; missing fields are empty.
fn field_path(pod: &Value, path: &str) -> String {
    let (base, sub) = match path.split_once("['") {
        Some((base, rest)) => (base, rest.strip_suffix("']")),
        None => (path, None),
    };
    let mut pointer = format!("/{}", base.replace('.', "/"));
    if let Some(sub) = sub {
        pointer.push('/');
        pointer.push_str(&sub.replace('~', "~0").replace('/', "~1"));
    }
    match pod.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Standard (or URL-safe) base64, padding optional, whitespace ignored.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("c2VjcmV0IQ==").unwrap(), b"secret!");
        assert!(base64_decode("a$b").is_none());
    }

    #[test]
    fn field_paths() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "x"}}});
        assert_eq!(field_path(&pod, "metadata.name"), "p");
        assert_eq!(
            field_path(&pod, "metadata.labels['app.kubernetes.io/name']"),
            "x"
        );
        assert_eq!(field_path(&pod, "status.podIP"), "");
    }
}
