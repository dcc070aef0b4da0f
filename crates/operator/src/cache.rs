//! Watched state: one reflector per kind, each driven by its own task; any event pokes the
//! planner. Standby replicas keep these warm, so a new leader plans at once.
//!
//! CNPG and MariaDB watches are optional (their CRDs may not be installed): a failing watch
//! backs off and retries, logs once per failure streak, and never blocks the others.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hasteward_api::{BackupPolicy, BackupRepository, StandaloneDatabase};
use hasteward_k8s::{cnpg_resource, mariadb_resource};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{AnnotatedInput, Inputs, StandaloneInput, TargetEngine};
use crate::http::Health;

/// The reflector stores.
#[derive(Clone)]
pub struct Caches {
    /// StandaloneDatabases.
    pub standalone: Store<StandaloneDatabase>,
    /// BackupPolicies.
    pub policies: Store<BackupPolicy>,
    /// BackupRepositories.
    pub repositories: Store<BackupRepository>,
    /// CNPG Clusters, when watched.
    pub cnpg: Option<Store<DynamicObject>>,
    /// MariaDBs, when watched.
    pub mariadb: Option<Store<DynamicObject>>,
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchScope {
    /// Only this namespace (databases); `None`: all.
    pub namespace: Option<String>,
    /// Watch CNPG `Cluster`s for opt-in annotations.
    pub cnpg: bool,
    /// Watch `MariaDB`s for opt-in annotations.
    pub mariadb: bool,
}

fn drive<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    health: Arc<Health>,
    what: &'static str,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if failing {
                        tracing::info!("watching {what} works again");
                    }
                    failing = false;
                    health.api_ok();
                    changed.notify_one();
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("watching {what} failed (retrying with backoff): {e}");
                    }
                    failing = true;
                }
            }
        }
    })
}

/// Starts every watch.
pub fn start(
    client: kube::Client,
    scope: &WatchScope,
    changed: Arc<Notify>,
    health: Arc<Health>,
) -> (Caches, Vec<JoinHandle<()>>) {
    let mut tasks = Vec::new();
    let ns_api = |client: kube::Client| -> Api<StandaloneDatabase> {
        match &scope.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    };
    let (standalone, w) = reflector::store();
    tasks.push(drive(
        ns_api(client.clone()),
        w,
        changed.clone(),
        health.clone(),
        "StandaloneDatabases",
    ));
    let (policies, w) = reflector::store();
    tasks.push(drive(
        Api::<BackupPolicy>::all(client.clone()),
        w,
        changed.clone(),
        health.clone(),
        "BackupPolicies",
    ));
    let (repositories, w) = reflector::store();
    tasks.push(drive(
        Api::<BackupRepository>::all(client.clone()),
        w,
        changed.clone(),
        health.clone(),
        "BackupRepositories",
    ));
    let mut dynamic = |on: bool, ar: kube::api::ApiResource, what: &'static str| {
        on.then(|| {
            let api: Api<DynamicObject> = match &scope.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let writer = reflector::store::Writer::new(ar);
            let store = writer.as_reader();
            tasks.push(drive(api, writer, changed.clone(), health.clone(), what));
            store
        })
    };
    let cnpg = dynamic(scope.cnpg, cnpg_resource(), "CNPG Clusters");
    let mariadb = dynamic(scope.mariadb, mariadb_resource(), "MariaDBs");
    (
        Caches {
            standalone,
            policies,
            repositories,
            cnpg,
            mariadb,
        },
        tasks,
    )
}

fn parse_time(t: Option<&String>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl Caches {
    /// Waits until hasteward's own kinds are listed once (the optional ones join later).
    /// Only one task may wait: kube-runtime wakes just the last waiter of a store.
    pub async fn wait_synced(&self) {
        let _ = self.standalone.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let _ = self.repositories.wait_until_ready().await;
    }

    /// The current state as planner input.
    pub fn inputs(&self) -> Inputs {
        let mut inputs = Inputs::default();
        for p in self.policies.state() {
            if let Some(name) = &p.metadata.name {
                inputs.policies.insert(name.clone(), p.spec.clone());
            }
        }
        for r in self.repositories.state() {
            if let Some(name) = &r.metadata.name {
                let last_check = parse_time(r.status.as_ref().and_then(|s| s.last_check.as_ref()));
                for (to, sync) in r.status.iter().flat_map(|s| s.syncs.iter()) {
                    if let Some(t) = parse_time(sync.last_sync.as_ref()) {
                        inputs.last_syncs.insert((name.clone(), to.clone()), t);
                    }
                }
                inputs
                    .repositories
                    .insert(name.clone(), (r.spec.clone(), last_check));
            }
        }
        for d in self.standalone.state() {
            let (Some(namespace), Some(name)) = (&d.metadata.namespace, &d.metadata.name) else {
                continue;
            };
            inputs.standalone.push(StandaloneInput {
                namespace: namespace.clone(),
                name: name.clone(),
                generation: d.metadata.generation,
                spec: d.spec.clone(),
                last_backup: parse_time(d.status.as_ref().and_then(|s| s.last_backup.as_ref())),
                last_drill: parse_time(d.status.as_ref().and_then(|s| s.last_drill.as_ref())),
                last_triage: parse_time(d.status.as_ref().and_then(|s| s.last_triage.as_ref())),
            });
        }
        for (engine, store) in [
            (TargetEngine::Cnpg, &self.cnpg),
            (TargetEngine::Galera, &self.mariadb),
        ] {
            for o in store.iter().flat_map(|s| s.state()) {
                let (Some(namespace), Some(name)) = (&o.metadata.namespace, &o.metadata.name)
                else {
                    continue;
                };
                let annotations: BTreeMap<String, String> = o
                    .metadata
                    .annotations
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                inputs.annotated.push(AnnotatedInput {
                    engine,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    annotations,
                });
            }
        }
        // Stable order: plans and status writes do not shuffle between passes.
        inputs
            .standalone
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        inputs.annotated.sort_by(|a, b| {
            (a.engine, &a.namespace, &a.name).cmp(&(b.engine, &b.namespace, &b.name))
        });
        inputs
    }

    /// A StandaloneDatabase as cached.
    pub fn standalone(&self, namespace: &str, name: &str) -> Option<Arc<StandaloneDatabase>> {
        self.standalone
            .get(&reflector::ObjectRef::new(name).within(namespace))
    }

    /// A BackupRepository as cached.
    pub fn repository(&self, name: &str) -> Option<Arc<BackupRepository>> {
        self.repositories.get(&reflector::ObjectRef::new(name))
    }

    /// A BackupPolicy as cached.
    pub fn policy(&self, name: &str) -> Option<Arc<BackupPolicy>> {
        self.policies.get(&reflector::ObjectRef::new(name))
    }

    fn annotated(
        &self,
        engine: TargetEngine,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<DynamicObject>> {
        let store = match engine {
            TargetEngine::Cnpg => self.cnpg.as_ref()?,
            TargetEngine::Galera => self.mariadb.as_ref()?,
            TargetEngine::Standalone => return None,
        };
        store.state().into_iter().find(|o| {
            o.metadata.namespace.as_deref() == Some(namespace)
                && o.metadata.name.as_deref() == Some(name)
        })
    }

    /// The uid of an annotated database, for Events.
    pub fn annotated_uid(
        &self,
        engine: TargetEngine,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        self.annotated(engine, namespace, name)?
            .metadata
            .uid
            .clone()
    }

    /// One annotation of an annotated database.
    pub fn annotation(
        &self,
        engine: TargetEngine,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Option<String> {
        self.annotated(engine, namespace, name)?
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .cloned()
    }
}
