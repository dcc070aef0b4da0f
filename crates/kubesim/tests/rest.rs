//! REST surface tests, driven through kube-rs exactly as hasteward uses it.

mod common;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use hasteward_kubesim::{RecordedRequest, SimConfig, Simulator};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::ResourceExt;
use serde_json::json;

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_string(), "test".to_string())])),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn crud_conflicts_and_not_found() {
    let sim = common::start();
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&sim), "db");

    let created = cms
        .create(
            &PostParams::default(),
            &config_map("settings", &[("a", "1")]),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.resource_version.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("db"));

    let (code, reason, _) = common::api_code(
        cms.create(&PostParams::default(), &config_map("settings", &[]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let got = cms.get("settings").await.unwrap();
    assert_eq!(got.data.unwrap()["a"], "1");

    // Merge patch.
    let patched = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2", "a": null}})),
        )
        .await
        .unwrap();
    let data = patched.data.clone().unwrap();
    assert_eq!(data.get("b").map(String::as_str), Some("2"));
    assert!(!data.contains_key("a"));
    assert_ne!(patched.resource_version(), created.resource_version());

    // JSON patch (RFC 6902), including a failing test op. (kube's `Patch::Json`
    // needs the `jsonpatch` feature, so send it as a raw request.)
    let client = common::client(&sim);
    let json_patch = |ops: serde_json::Value| {
        axum::http::Request::patch("/api/v1/namespaces/db/configmaps/settings")
            .header("content-type", "application/json-patch+json")
            .body(serde_json::to_vec(&ops).unwrap())
            .unwrap()
    };
    let patched: ConfigMap = client
        .request(json_patch(json!([
            {"op": "test", "path": "/data/b", "value": "2"},
            {"op": "add", "path": "/data/c", "value": "3"},
            {"op": "replace", "path": "/data/b", "value": "22"},
        ])))
        .await
        .unwrap();
    let data = patched.data.clone().unwrap();
    assert_eq!((data["b"].as_str(), data["c"].as_str()), ("22", "3"));
    let failed = client
        .request::<ConfigMap>(json_patch(
            json!([{"op": "test", "path": "/data/b", "value": "nope"}]),
        ))
        .await;
    assert_eq!(common::api_code(failed).0, 422);

    // Replace with a stale resourceVersion is a 409 Conflict.
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("x".into(), "y".into())]));
    let (code, reason, message) = common::api_code(
        cms.replace("settings", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{message}");
    // ... and succeeds with the current one.
    let mut fresh = stale.clone();
    fresh.metadata.resource_version = patched.metadata.resource_version.clone();
    let replaced = cms
        .replace("settings", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["x"], "y");

    // Merge patch carrying a stale resourceVersion also conflicts.
    let (code, _, _) = common::api_code(
        cms.patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": created.resource_version()}, "data": {"z": "1"}})),
        )
        .await,
    );
    assert_eq!(code, 409);

    // A concurrent writer (Simulator::put) makes our copy stale.
    let current = cms.get("settings").await.unwrap();
    let mut theirs = serde_json::to_value(&current).unwrap();
    theirs["data"]["writer"] = json!("other");
    sim.put(theirs);
    let (code, _, _) = common::api_code(
        cms.replace("settings", &PostParams::default(), &current)
            .await,
    );
    assert_eq!(code, 409);
    let direct = sim.get("v1", "configmaps", Some("db"), "settings").unwrap();
    assert_eq!(direct["data"]["writer"], "other");

    // Delete, then 404.
    cms.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let (code, reason, message) = common::api_code(cms.get("settings").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, "configmaps \"settings\" not found");
    let (code, _, _) = common::api_code(cms.delete("settings", &DeleteParams::default()).await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn list_with_selectors() {
    let sim = common::start();
    let pods: Api<Pod> = Api::namespaced(common::client(&sim), "db");
    let names = |list: kube::api::ObjectList<Pod>| {
        let mut n: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    };
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(all.clone()), ["pg-0", "pg-1", "pg-2"]);
    assert!(all.metadata.resource_version.is_some());
    let lp = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(pods.list(&lp("app=pg,role=primary")).await.unwrap()),
        ["pg-0"]
    );
    assert_eq!(
        names(pods.list(&lp("role==replica")).await.unwrap()),
        ["pg-1"]
    );
    assert_eq!(
        names(pods.list(&lp("app=pg,role!=primary")).await.unwrap()),
        ["pg-1", "pg-2"]
    );
    assert_eq!(names(pods.list(&lp("!role")).await.unwrap()), ["pg-2"]);
    assert_eq!(
        names(pods.list(&lp("role")).await.unwrap()),
        ["pg-0", "pg-1"]
    );
    assert!(pods.list(&lp("app=web")).await.unwrap().items.is_empty());
    let fields = ListParams::default().fields("metadata.name=pg-1");
    assert_eq!(names(pods.list(&fields).await.unwrap()), ["pg-1"]);

    // All-namespaces list and an empty collection of a known kind.
    let everywhere: Api<Pod> = Api::all(common::client(&sim));
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let other_ns: Api<Pod> = Api::namespaced(common::client(&sim), "elsewhere");
    assert!(other_ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn statefulset_scale_and_status_subresources() {
    let sim = common::start();
    let sts: Api<StatefulSet> = Api::namespaced(common::client(&sim), "db");
    let scale = sts.get_scale("pg").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().replicas, 3);

    let scaled = sts
        .patch_scale(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(0));
    let owner = sts.get("pg").await.unwrap();
    assert_eq!(owner.spec.replicas, Some(0));
    assert_eq!(
        owner.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    // Status only changes through /status.
    let patched = sts
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 0, "readyReplicas": 0}, "spec": {"replicas": 7}}),
            ),
        )
        .await
        .unwrap();
    let status = patched.status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (0, Some(0)));
    assert_eq!(patched.spec.replicas, Some(0), "status patch ignores spec");
    let main = sts
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 9}, "metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.as_ref().unwrap().replicas,
        0,
        "main resource ignores status"
    );
    assert_eq!(main.labels()["x"], "y");

    // Scale of something that has no scale subresource.
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&sim), "db");
    cms.create(&PostParams::default(), &config_map("c", &[]))
        .await
        .unwrap();
    let req = axum::http::Request::get("/api/v1/namespaces/db/configmaps/c/scale")
        .body(Vec::new())
        .unwrap();
    let (code, _, _) = common::api_code(common::client(&sim).request_text(req).await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn watch_sends_added_then_modified() {
    let sim = common::start();
    let client = common::client(&sim);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "db");
    cms.create(&PostParams::default(), &config_map("w1", &[("k", "v")]))
        .await
        .unwrap();

    let wp = WatchParams::default().labels("app=test").timeout(10);
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), "w1"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Modified(cm)) => assert_eq!(cm.data.unwrap()["k"], "v2"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(cm)) => assert_eq!(cm.name_any(), "w1"),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // Resuming from a resourceVersion replays what happened since.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &config_map("w2", &[]))
        .await
        .unwrap();
    let mut resumed = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    match resumed.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), "w2"),
        other => panic!("expected replayed ADDED, got {other:?}"),
    }
    // timeoutSeconds ends the stream.
    let started = std::time::Instant::now();
    assert!(resumed.try_next().await.unwrap().is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn leases_events_generate_name_and_dry_run() {
    let sim = common::start();
    let client = common::client(&sim);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "db");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "hasteward-lock"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 30}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = leases.get("hasteward-lock").await.unwrap();
    taken.spec.as_mut().unwrap().holder_identity = Some("other".into());
    leases
        .replace("hasteward-lock", &PostParams::default(), &taken)
        .await
        .unwrap();
    let (code, _, _) = common::api_code(
        leases
            .replace("hasteward-lock", &PostParams::default(), &created)
            .await,
    );
    assert_eq!(code, 409);

    let events: Api<Event> = Api::namespaced(client.clone(), "db");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "backup-"},
        "involvedObject": {"kind": "Pod", "name": "pg-0", "namespace": "db"},
        "reason": "BackupStarted", "message": "hello", "type": "Normal"
    }))
    .unwrap();
    let ev = events.create(&PostParams::default(), &event).await.unwrap();
    let name = ev.name_any();
    assert!(
        name.starts_with("backup-") && name.len() == "backup-".len() + 5,
        "{name}"
    );
    assert_eq!(
        events.get(&name).await.unwrap().reason.as_deref(),
        Some("BackupStarted")
    );

    // events.k8s.io/v1 through the dynamic API.
    let ar = kube::api::ApiResource {
        group: "events.k8s.io".into(),
        version: "v1".into(),
        api_version: "events.k8s.io/v1".into(),
        kind: "Event".into(),
        plural: "events".into(),
    };
    let new_events: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), "db", &ar);
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1"}, "reason": "X", "note": "n", "eventTime": "2025-01-01T00:00:00.000000Z"
    }))
    .unwrap();
    new_events
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(new_events.get("e1").await.unwrap().data["note"], "n");

    // dryRun does not store.
    let cms: Api<ConfigMap> = Api::namespaced(client, "db");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&pp, &config_map("dry", &[])).await.unwrap();
    assert_eq!(common::api_code(cms.get("dry").await).0, 404);
    assert!(sim.get("v1", "configmaps", Some("db"), "dry").is_none());
}

#[tokio::test]
async fn server_side_apply_creates_and_updates() {
    let sim = common::start();
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&sim), "db");
    let pp = PatchParams::apply("hasteward");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let created = cms.patch("ssa", &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(created.data.unwrap()["a"], "1");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}});
    let updated = cms.patch("ssa", &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(updated.data.unwrap()["b"], "2");
}

#[tokio::test]
async fn requests_are_recorded() {
    let sim = common::start();
    let client = common::client(&sim);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "db");
    let _ = cms.get("missing").await;
    cms.create(&PostParams::default(), &config_map("r", &[]))
        .await
        .unwrap();
    let list = ListParams::default().labels("app=test");
    cms.list(&list).await.unwrap();

    let log = sim.requests();
    assert_eq!(log.len(), 3, "{log:#?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("GET", "/api/v1/namespaces/db/configmaps/missing", 404)
    );
    assert!(!log[0].is_mutation());
    assert_eq!((log[1].method.as_str(), log[1].status), ("POST", 201));
    assert!(log[1].is_mutation());
    assert!(log[1].body.as_deref().unwrap().contains("\"r\""));
    assert!(
        log[2].query.contains("labelSelector=app%3Dtest"),
        "{}",
        log[2].query
    );

    // The /__sim endpoint exposes the same log and is itself not recorded.
    let req = axum::http::Request::get("/__sim/requests")
        .body(Vec::new())
        .unwrap();
    let via_http: Vec<RecordedRequest> = client.request(req).await.unwrap();
    assert_eq!(via_http, log);
    let req = axum::http::Request::delete("/__sim/requests")
        .body(Vec::new())
        .unwrap();
    client.request_text(req).await.unwrap();
    assert!(sim.requests().is_empty());
    sim.clear_requests();
}

#[tokio::test]
async fn written_kubeconfig_works() {
    let sim = common::start();
    common::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path, Some("db")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "db");
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    assert_eq!(pods.get("pg-0").await.unwrap().name_any(), "pg-0");
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.34.0-kubesim");
}

#[test]
fn fixtures_from_dir_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "apiVersion: kubesim.hasteward.dev/v1\nkind: PodExec\nnamespace: n\npod: p\nunreachable: true\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not yaml: [").unwrap();
    let config = SimConfig::from_dir(dir.path()).unwrap();
    assert_eq!((config.objects.len(), config.exec.len()), (1, 1));
    assert!(config.exec[0].unreachable);
    let sim = Simulator::start(config).unwrap();
    // Namespaced kinds without a namespace land in "default"; seeding fills metadata.
    let secret = sim.get("v1", "secrets", Some("default"), "s").unwrap();
    assert!(secret["metadata"]["uid"].is_string());
    assert!(secret["metadata"]["resourceVersion"].is_string());
    assert!(secret["metadata"]["creationTimestamp"].is_string());

    let err = Simulator::start_with(
        SimConfig::default(),
        hasteward_kubesim::StartOptions {
            listen: "0.0.0.0:0".parse().unwrap(),
            record_file: None,
        },
    )
    .err()
    .expect("non-loopback refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[test]
fn simulator_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Simulator>();
    assert_send_sync::<SimConfig>();
}

#[tokio::test]
async fn an_injected_fault_hits_the_nth_matching_request_once() {
    let sim = common::start();
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&sim), "db");
    cms.create(&PostParams::default(), &config_map("a", &[("k", "1")]))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/db/configmaps/a";
    sim.fail_request(hasteward_kubesim::RequestFault {
        method: "PATCH".into(),
        path: path.into(),
        nth: 1,
        status: 500,
    });
    let patch = |v: &str| json!({"data": {"k": v}});
    // A GET does not count; the first PATCH passes, the second fails, the third passes again.
    cms.get("a").await.unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(patch("2")))
        .await
        .unwrap();
    let (code, _, _) = common::api_code(
        cms.patch("a", &PatchParams::default(), &Patch::Merge(patch("3")))
            .await,
    );
    assert_eq!(code, 500);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "2");
    cms.patch("a", &PatchParams::default(), &Patch::Merge(patch("4")))
        .await
        .unwrap();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "4");
    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 500, 200]);
}
