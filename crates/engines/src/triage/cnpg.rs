//! CloudNativePG collection: the `Cluster`, its pods and PVCs, and per running instance
//! `pg_controldata`, the current timeline's history file, disk usage and the replication views;
//! on the primary `pg_stat_replication`, the slots and the WAL position.
//!
//! The commands are the ones `hasteward_triage::cnpg` defines next to its parsers; they run in the
//! instance's `postgres` container (local connections as `postgres`, no password).

use futures::future::join_all;
use hasteward_exec::CommandSpec;
use hasteward_k8s::{fencing, Kube, PodRunner};
use hasteward_triage::cnpg::{
    self as analysis, ClusterView, CnpgInput, InstanceInput, PrimaryQueries,
};
use hasteward_triage::{Observed, PodView};
use k8s_openapi::api::core::v1::Pod;

use super::{observe, pod_view, script, volume_state};
use crate::Result;

/// The container CNPG runs PostgreSQL in.
const CONTAINER: &str = "postgres";
/// Log lines read from a crash-looping instance.
const LOG_LINES: i64 = 200;

/// Reads everything triage needs about CNPG cluster `namespace/name`. Only fails when the
/// `Cluster` itself cannot be read; anything else that cannot be read is recorded as such.
pub async fn collect(kube: &Kube, namespace: &str, name: &str) -> Result<CnpgInput> {
    let cluster = kube.cnpg_cluster(namespace, name).await?;
    let pods = kube
        .pods(namespace, &format!("cnpg.io/cluster={name}"))
        .await?;
    let spec_instances = cluster.spec_instances.unwrap_or(0).max(0) as u32;
    let mut expected = cluster.instance_names.clone();
    if expected.is_empty() {
        expected = (1..=spec_instances)
            .map(|i| format!("{name}-{i}"))
            .collect();
    }
    // Instance pods of the cluster that are not in the expected list are looked at too; job
    // pods (`<instance>-join-…`, `-initdb-…`) carry the cluster label but are not instances.
    for pod in &pods {
        if let Some(n) = &pod.metadata.name {
            if !expected.contains(n) && super::is_instance_pod(pod, name, "cnpg.io/podRole") {
                expected.push(n.clone());
            }
        }
    }
    let find = |inst: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(inst))
    };
    let primary_name = cluster.current_primary.clone();
    let instance_futures = expected.iter().map(|inst| {
        let is_primary = primary_name.as_deref() == Some(inst.as_str());
        collect_instance(kube, namespace, inst, find(inst), is_primary)
    });
    let primary_future = async {
        let primary = primary_name.as_deref()?;
        let pod = find(primary)?;
        let view = pod_view(pod, CONTAINER);
        if !view.is_running() {
            return None;
        }
        let runner = PodRunner::new(kube, namespace, primary, CONTAINER);
        let (stat_replication, slots, wal) = futures::join!(
            observe(&runner, psql(analysis::STAT_REPLICATION_SQL)),
            observe(&runner, psql(analysis::SLOTS_SQL)),
            observe(&runner, psql(analysis::WAL_SQL)),
        );
        Some(PrimaryQueries {
            instance: primary.to_string(),
            stat_replication,
            slots,
            wal,
        })
    };
    let (instances, primary) = futures::join!(join_all(instance_futures), primary_future);
    let fenced = fencing::parse(
        cluster
            .annotations
            .get(fencing::FENCED_INSTANCES)
            .map(String::as_str),
    )
    .unwrap_or_else(|e| vec![format!("(unreadable {}: {e})", fencing::FENCED_INSTANCES)]);
    Ok(CnpgInput {
        cluster: ClusterView {
            name: name.to_string(),
            namespace: namespace.to_string(),
            phase: cluster.phase.clone(),
            instances: spec_instances,
            ready_instances: cluster.ready_instances.map(|n| n.max(0) as u32),
            current_primary: cluster.current_primary.clone(),
            target_primary: cluster.target_primary.clone(),
            instance_names: cluster.instance_names.clone(),
            fenced,
        },
        instances,
        primary,
    })
}

/// `psql … -c SQL` in the container.
pub(crate) fn psql(sql: &str) -> CommandSpec {
    CommandSpec::new(analysis::PSQL_ARGV[0])
        .args(&analysis::PSQL_ARGV[1..])
        .arg(sql)
}

async fn collect_instance(
    kube: &Kube,
    namespace: &str,
    name: &str,
    pod: Option<&Pod>,
    is_primary: bool,
) -> InstanceInput {
    let view = pod.map(|p| pod_view(p, CONTAINER));
    let volume = volume_state(kube.pvc(namespace, name).await);
    let mut input = InstanceInput {
        name: name.to_string(),
        pod: view.clone(),
        volume,
        controldata: not_running(&view),
        history: not_running(&view),
        df: not_running(&view),
        wal_bytes: None,
        crash_log: None,
        in_recovery: not_running(&view),
        receive_lsn: not_running(&view),
    };
    let Some(view) = view.filter(PodView::is_running) else {
        return input;
    };
    if view.is_crashloop() {
        input.crash_log = Some(
            kube.pod_log_tail(namespace, name, CONTAINER, LOG_LINES)
                .await
                .unwrap_or_else(|e| format!("(the container log could not be read: {e})")),
        );
    }
    let runner = PodRunner::new(kube, namespace, name, CONTAINER);
    let no_args: [&str; 0] = [];
    let (controldata, df, wal_du, in_recovery, receive) = futures::join!(
        observe(&runner, script(analysis::CONTROLDATA_SCRIPT, no_args)),
        observe(&runner, script(analysis::DF_SCRIPT, no_args)),
        observe(&runner, script(WAL_DU_SCRIPT, no_args)),
        observe(&runner, psql(analysis::IN_RECOVERY_SQL)),
        async {
            if is_primary {
                Observed::NotAttempted("the primary has no WAL receiver".into())
            } else {
                observe(&runner, psql(analysis::RECEIVE_SQL)).await
            }
        },
    );
    input.history = match controldata.output().map(analysis::parse_controldata) {
        Some(Ok(cd)) if cd.timeline <= 1 => {
            Observed::NotAttempted("timeline 1 has no history file".into())
        }
        Some(Ok(cd)) => {
            observe(
                &runner,
                script(&analysis::history_script(cd.timeline), no_args),
            )
            .await
        }
        Some(Err(e)) => Observed::NotAttempted(format!("pg_controldata unreadable: {e}")),
        None => Observed::NotAttempted(format!(
            "pg_controldata did not run: {}",
            controldata.reason()
        )),
    };
    input.wal_bytes = wal_du
        .output()
        .and_then(|o| o.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024);
    input.controldata = controldata;
    input.df = df;
    input.in_recovery = in_recovery;
    input.receive_lsn = receive;
    input
}

/// `du -sk` of `pg_wal`.
const WAL_DU_SCRIPT: &str = "exec du -sk /var/lib/postgresql/data/pgdata/pg_wal";

fn not_running(view: &Option<PodView>) -> Observed {
    Observed::NotAttempted(match view {
        None => "no pod".into(),
        Some(v) => format!("pod is {}", v.phase),
    })
}
