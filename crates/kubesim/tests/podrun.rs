//! PodRun tests: pods created with kube-rs are run as local processes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use hasteward_kubesim::{PodRun, SimConfig, Simulator};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;

/// A simulator running pods named `run-*` in `db`, with `/data` mounted on `dir`.
fn start(dir: &Path) -> Simulator {
    let sim = common::start();
    sim.set_pod_run(PodRun {
        namespace: "db".into(),
        name_prefix: Some("run-".into()),
        mounts: BTreeMap::from([("/data".to_string(), dir.to_path_buf())]),
        env: BTreeMap::from([("KUBESIM_RUN_VAR".to_string(), "from-podrun".to_string())]),
        ..Default::default()
    });
    sim
}

fn pods(sim: &Simulator) -> Api<Pod> {
    Api::namespaced(common::client(sim), "db")
}

/// A one-container pod running `script` with `sh -c`.
fn pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "helper"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c"], "args": [script]}],
        },
    }))
    .unwrap()
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.phase.clone()
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("terminated")
}

/// Poll until the pod has ended (Succeeded/Failed).
async fn wait_done(api: &Api<Pod>, name: &str, within: Duration) -> Pod {
    let deadline = Instant::now() + within;
    loop {
        let pod = api.get(name).await.unwrap();
        if matches!(phase(&pod).as_deref(), Some("Succeeded" | "Failed")) {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} still {:?} after {within:?}",
            phase(&pod)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alive = exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

async fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait for a file holding a pid (written by the pod's script).
async fn read_pid(path: PathBuf) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn succeeded_pod_writes_into_mount_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    let secrets: Api<Secret> = Api::namespaced(common::client(&sim), "db");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "creds"},
                "data": {"password": "czNjcmV0"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut p = pod(
        "run-ok",
        "echo hello from the pod; echo done > /data/out.txt; echo to-stderr >&2; \
         echo \"$KUBESIM_RUN_VAR $SPEC_VAR $PASSWORD $POD_NAME\"",
    );
    p.spec.as_mut().unwrap().containers[0].env = Some(
        serde_json::from_value(json!([
            {"name": "SPEC_VAR", "value": "/data/x"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]))
        .unwrap(),
    );
    let created = api.create(&PostParams::default(), &p).await.unwrap();
    assert!(
        created.status.is_none(),
        "the create response is the pod as sent"
    );

    let done = wait_done(&api, "run-ok", Duration::from_secs(10)).await;
    assert_eq!(phase(&done).as_deref(), Some("Succeeded"));
    let t = terminated(&done);
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "done\n"
    );
    let log = api.logs("run-ok", &LogParams::default()).await.unwrap();
    assert!(log.contains("hello from the pod\n"), "{log}");
    assert!(log.contains("to-stderr\n"), "{log}");
    let spec_var = format!("{}/x", dir.path().display());
    assert!(
        log.contains(&format!("from-podrun {spec_var} s3cret run-ok\n")),
        "{log}"
    );
}

#[tokio::test]
async fn failing_command_and_start_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    api.create(
        &PostParams::default(),
        &pod("run-fail", "echo failing; exit 7"),
    )
    .await
    .unwrap();
    let done = wait_done(&api, "run-fail", Duration::from_secs(10)).await;
    assert_eq!(phase(&done).as_deref(), Some("Failed"));
    let t = terminated(&done);
    assert_eq!((t.exit_code, t.reason.as_deref()), (7, Some("Error")));
    assert!(done.status.unwrap().reason.is_none());
    assert_eq!(
        api.logs("run-fail", &LogParams::default()).await.unwrap(),
        "failing\n"
    );

    // A program that does not exist: Failed at once, StartError.
    let mut p = pod("run-missing", "");
    p.spec.as_mut().unwrap().containers[0].command =
        Some(vec!["definitely-not-a-command-kubesim".into()]);
    api.create(&PostParams::default(), &p).await.unwrap();
    let done = wait_done(&api, "run-missing", Duration::from_secs(2)).await;
    assert_eq!(phase(&done).as_deref(), Some("Failed"));
    let t = terminated(&done);
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert!(
        t.message.unwrap().contains("executable file not found"),
        "message"
    );

    // A pod created by server-side apply is run too.
    let applied = pod("run-applied", "exit 3");
    api.patch(
        "run-applied",
        &PatchParams::apply("kubesim-test"),
        &Patch::Apply(&applied),
    )
    .await
    .unwrap();
    let done = wait_done(&api, "run-applied", Duration::from_secs(10)).await;
    assert_eq!(terminated(&done).exit_code, 3);
}

#[tokio::test]
async fn active_deadline_kills_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    let mut p = pod("run-slow", "echo $$ > /data/pid; exec sleep 30");
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    let started = Instant::now();
    api.create(&PostParams::default(), &p).await.unwrap();
    let pid = read_pid(dir.path().join("pid")).await;
    let done = wait_done(&api, "run-slow", Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    let t = terminated(&done);
    assert_eq!((t.exit_code, t.signal), (137, Some(9)));
    wait_dead(pid).await;
}

#[tokio::test]
async fn deleting_a_running_pod_kills_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    api.create(
        &PostParams::default(),
        &pod(
            "run-forever",
            "sleep 30 & echo $! > /data/bg; echo $$ > /data/pid; exec sleep 30",
        ),
    )
    .await
    .unwrap();
    let pid = read_pid(dir.path().join("pid")).await;
    let background = read_pid(dir.path().join("bg")).await;
    assert!(alive(pid) && alive(background));
    let running = api.get("run-forever").await.unwrap();
    assert_eq!(phase(&running).as_deref(), Some("Running"));
    let cs = &running.status.unwrap().container_statuses.unwrap()[0];
    assert!(!cs.ready && cs.state.as_ref().unwrap().running.is_some());

    api.delete("run-forever", &DeleteParams::default())
        .await
        .unwrap();
    wait_dead(pid).await;
    wait_dead(background).await;
    // Nothing writes the deleted pod back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, _, _) = common::api_code(api.get("run-forever").await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn watch_sees_added_running_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default()
        .fields("metadata.name=run-watched")
        .timeout(10);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    api.create(
        &PostParams::default(),
        &pod("run-watched", "sleep 0.2; echo ok"),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    while let Some(event) = stream.try_next().await.unwrap() {
        let (kind, pod) = match event {
            WatchEvent::Added(p) => ("ADDED", p),
            WatchEvent::Modified(p) => ("MODIFIED", p),
            other => panic!("unexpected {other:?}"),
        };
        let rv: u64 = pod
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv > last_rv, "resourceVersions increase");
        last_rv = rv;
        let phase = phase(&pod);
        seen.push((kind, phase.clone()));
        if phase.as_deref() == Some("Succeeded") {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", None),
            ("MODIFIED", Some("Running".to_string())),
            ("MODIFIED", Some("Succeeded".to_string())),
        ]
    );
}

#[tokio::test]
async fn unmatched_and_dry_run_pods_are_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path());
    let api = pods(&sim);
    api.create(
        &PostParams::default(),
        &pod("other", "echo ran > /data/other"),
    )
    .await
    .unwrap();
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &pod("run-dry", "echo ran > /data/dry"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = api.get("other").await.unwrap();
    assert!(other.status.is_none(), "{:?}", other.status);
    assert_eq!(other.metadata.resource_version, {
        let created = sim.get("v1", "pods", Some("db"), "other").unwrap();
        created["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    });
    assert!(!dir.path().join("other").exists());
    assert!(!dir.path().join("dry").exists());
    assert_eq!(api.logs("other", &LogParams::default()).await.unwrap(), "");
    let (code, _, _) = common::api_code(api.get("run-dry").await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn yaml_config_by_labels_and_drop_kills() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}---\napiVersion: kubesim.hasteward.dev/v1\nkind: PodRun\nnamespace: db\nlabels: {{app: helper}}\ncwd: {}\n",
        common::FIXTURES,
        dir.path().display()
    );
    let config = SimConfig::from_yaml(&yaml).unwrap();
    assert_eq!(config.pod_runs().unwrap().len(), 1);
    // The PodRun document (which has no metadata.name) is taken out, not seeded.
    let sim = Simulator::start(config).unwrap();
    let api = pods(&sim);
    api.create(
        &PostParams::default(),
        &pod("labelled", "echo $$ > pid; exec sleep 30"),
    )
    .await
    .unwrap();
    let pid = read_pid(dir.path().join("pid")).await;
    assert!(alive(pid));
    drop(sim);
    wait_dead(pid).await;
}
