//! Galera (mariadb-operator) collection: the `MariaDB` CR, its pods and `storage-<pod>` PVCs,
//! and per running node `grastate.dat`, the `wsrep_%` status and disk usage, in the `mariadb`
//! container. The root password comes from the CR's Secret and reaches the container on the
//! exec's stdin (see [`crate::pod`]), never in argv.
//!
//! Nodes that are down cannot be read without running something next to their volume
//! (`mariadbd --wsrep-recover`); triage leaves them unread unless that is allowed, so the
//! analysis refuses to name an authority it cannot prove.

use futures::future::join_all;
use hasteward_exec::CommandSpec;
use hasteward_k8s::{Kube, PodRunner};
use hasteward_model::DbType;
use hasteward_triage::galera::{self as analysis, ClusterView, Condition, GaleraInput, NodeInput};
use hasteward_triage::{Observed, PodView};
use k8s_openapi::api::core::v1::Pod;

use super::{observe, observe_with_deadline, pod_view};
use crate::pod::{PodAuth, PodDatabase};
use crate::target::Target;
use crate::Result;

/// The container mariadb-operator runs MariaDB in.
const CONTAINER: &str = "mariadb";
/// Log lines read from a node whose wsrep status cannot be read.
const LOG_LINES: i64 = 200;

/// Reads everything triage needs about the `MariaDB` cluster `namespace/name`. Only fails when
/// the CR itself cannot be read; a root password that cannot be read leaves the wsrep status of
/// every node unread.
pub async fn collect(
    kube: &Kube,
    namespace: &str,
    name: &str,
    options: &CollectOptions,
) -> Result<GaleraInput> {
    let cr = kube.mariadb(namespace, name).await?;
    let pods = kube.pods(namespace, &cr.pod_selector()).await?;
    let password = match &cr.root_password {
        Some(r) => kube
            .secret_value(namespace, &r.name, &r.key)
            .await
            .map_err(|e| e.to_string()),
        None => Err("the MariaDB CR has no spec.rootPasswordSecretKeyRef".to_string()),
    };
    let replicas = cr.replicas.unwrap_or(0).max(0) as u32;
    let mut expected: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
    // Only StatefulSet members (`<name>-N`): mariadb-operator's recovery pods carry the same
    // instance label.
    for pod in &pods {
        if let Some(n) = &pod.metadata.name {
            if !expected.contains(n) && super::is_instance_pod(pod, name, "") {
                expected.push(n.clone());
            }
        }
    }
    let find = |node: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(node))
    };
    let helper = HelperContext {
        image: cr.image.clone(),
        owner: cr.owner_reference(),
    };
    let nodes = join_all(expected.iter().map(|node| {
        let password = password.as_ref().map(|p| p.expose().to_string());
        collect_node(
            kube,
            namespace,
            node,
            find(node),
            password,
            options,
            &helper,
        )
    }))
    .await;
    Ok(GaleraInput {
        cluster: ClusterView {
            name: name.to_string(),
            namespace: namespace.to_string(),
            replicas,
            conditions: cr
                .conditions
                .iter()
                .map(|c| Condition {
                    kind: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                })
                .collect(),
            suspended: cr.suspended,
            galera_recovery: cr.galera_recovery.clone(),
        },
        nodes,
    })
}

async fn collect_node(
    kube: &Kube,
    namespace: &str,
    name: &str,
    pod: Option<&Pod>,
    password: std::result::Result<String, &String>,
    options: &CollectOptions,
    helper: &HelperContext,
) -> NodeInput {
    let view = pod.map(|p| pod_view(p, CONTAINER));
    let volume = super::volume_state(kube.pvc(namespace, &format!("storage-{name}")).await);
    let not_running = Observed::NotAttempted(match &view {
        None => "no pod".into(),
        Some(v) => format!("pod is {}", v.phase),
    });
    let mut input = NodeInput {
        name: name.to_string(),
        pod: view.clone(),
        volume,
        grastate: not_running.clone(),
        wsrep: not_running.clone(),
        recovered: Observed::NotAttempted(
            "recovering positions (mariadbd --wsrep-recover) was not requested".into(),
        ),
        log_hint: None,
        df: not_running,
    };
    let Some(_) = view.as_ref().filter(|v| PodView::is_running(v)) else {
        if options.recover_positions
            && options.helper_pods
            && input.volume == hasteward_triage::VolumeState::Bound
        {
            let node_name = view.as_ref().and_then(|v| v.node.clone());
            let (grastate, recovered) =
                recover_with_helper(kube, namespace, name, node_name, helper).await;
            input.grastate = grastate;
            input.recovered = recovered;
        }
        return input;
    };
    let runner = PodRunner::new(kube, namespace, name, CONTAINER);
    let wsrep = async {
        match &password {
            Ok(pw) => {
                let db = PodDatabase::new(
                    runner.clone(),
                    runner.location(),
                    DbType::Mariadb,
                    "root",
                    PodAuth::Password(pw.clone()),
                );
                let inv = db.mysql_query(analysis::WSREP_STATUS_SQL);
                observe_invocation(db.runner(), &inv).await
            }
            Err(e) => Observed::NotAttempted(format!("no root password: {e}")),
        }
    };
    let (grastate, df, wsrep) = futures::join!(
        observe(&runner, argv(&analysis::GRASTATE_COMMAND)),
        observe(&runner, argv(&analysis::DF_COMMAND)),
        wsrep,
    );
    if wsrep.output().is_none() {
        input.log_hint = Some(
            kube.pod_log_tail(namespace, name, CONTAINER, LOG_LINES)
                .await
                .unwrap_or_else(|e| format!("(the container log could not be read: {e})")),
        );
    }
    let serving = view.as_ref().is_some_and(|v| v.ready);
    if wsrep.output().is_none() {
        input.recovered = if serving {
            Observed::NotAttempted(
                "the container is Ready (its server may be running): its position is not recovered offline".into(),
            )
        } else if options.recover_positions {
            observe_with_deadline(
                RECOVER_DEADLINE,
                &runner,
                super::script(RECOVER_SCRIPT, [analysis::DATA_DIR])
                    .labelled("mariadbd --wsrep-recover"),
            )
            .await
        } else {
            Observed::NotAttempted(
                "mariadbd is not serving; recovering its position (mariadbd --wsrep-recover) was not requested (--recover-positions)".into(),
            )
        };
    }
    input.grastate = grastate;
    input.df = df;
    input.wsrep = wsrep;
    input
}

/// The `MariaDB` CR's parts a helper pod needs.
struct HelperContext {
    image: Option<String>,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

/// What the recovery helper prints: `grastate.dat`, then the recovery's log.
const HELPER_RECOVER_SCRIPT: &str = r#"echo '===GRASTATE==='
cat /var/lib/mysql/grastate.dat
echo '===RECOVER==='
mariadbd --wsrep-recover --datadir=/var/lib/mysql --wsrep-on=ON --wsrep-provider=/usr/lib/galera/libgalera_smm.so --wsrep-cluster-address=gcomm:// --binlog-format=ROW --skip-networking --user=mysql 2>&1"#;

/// For a node with no running container: a helper pod on its `storage-<node>` volume (the
/// MariaDB image, pinned to the node's last node, owned by the CR, 150 s deadline) reads
/// `grastate.dat` and runs `mariadbd --wsrep-recover`. Returns (grastate, recovered).
async fn recover_with_helper(
    kube: &Kube,
    namespace: &str,
    node: &str,
    node_name: Option<String>,
    helper: &HelperContext,
) -> (Observed, Observed) {
    let Some(image) = helper.image.clone() else {
        let why = "the MariaDB CR has no spec.image for the recovery helper pod".to_string();
        return (
            Observed::NotAttempted(why.clone()),
            Observed::NotAttempted(why),
        );
    };
    let spec = hasteward_k8s::helper::HelperSpec {
        node_name,
        owner: helper.owner.clone(),
        ..hasteward_k8s::helper::HelperSpec::shell(
            namespace,
            format!("{node}-recover"),
            "wsrep-recover",
            image,
            HELPER_RECOVER_SCRIPT,
            (format!("storage-{node}"), analysis::DATA_DIR),
            std::time::Duration::from_secs(150),
        )
    };
    match kube.run_helper(&spec, RECOVER_DEADLINE).await {
        Err(e) => {
            let why = format!("recovery helper pod: {e}");
            (Observed::Failed(why.clone()), Observed::Failed(why))
        }
        Ok(outcome) => {
            let (grastate, recovered) = split_helper_log(&outcome.log);
            let grastate = match grastate {
                Some(text) if !text.trim().is_empty() => Observed::Output(text),
                _ => Observed::Failed(format!(
                    "helper {}: no grastate.dat in its log",
                    outcome.pod
                )),
            };
            let recovered = match (outcome.succeeded(), recovered) {
                (true, Some(text)) => Observed::Output(text),
                (_, text) => Observed::Failed(format!(
                    "helper {} ended {} (exit {:?}): {}",
                    outcome.pod,
                    outcome.phase,
                    outcome.exit_code,
                    text.unwrap_or_default()
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | ")
                )),
            };
            (grastate, recovered)
        }
    }
}

/// Splits the helper's log into its `grastate.dat` and recovery sections.
fn split_helper_log(log: &str) -> (Option<String>, Option<String>) {
    let Some((_, rest)) = log.split_once("===GRASTATE===\n") else {
        return (None, None);
    };
    match rest.split_once("===RECOVER===\n") {
        Some((grastate, recovered)) => (Some(grastate.to_string()), Some(recovered.to_string())),
        None => (Some(rest.to_string()), None),
    }
}

/// How long `mariadbd --wsrep-recover` may take (InnoDB crash recovery, and its wait for the
/// data files' lock when a server still holds them).
const RECOVER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// What collection may do beyond reading.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// Run `mariadbd --wsrep-recover` in the containers of nodes whose server is not serving
    /// (`--recover-positions`). It runs InnoDB crash recovery on the node's data directory (what
    /// mariadb-operator's own recovery does), so it is never done unasked. A server that is in
    /// fact running holds the InnoDB lock, and the recovery then exits without touching anything.
    pub recover_positions: bool,
    /// Whether recovering a node with no running container may create a helper pod on its
    /// volume (false in a repair dry run, which writes nothing).
    pub helper_pods: bool,
}

/// `mariadbd --wsrep-recover` on the data directory `$1`, its log written to a private temp file
/// and printed (the analysis reads `WSREP: Recovered position: <uuid>:<seqno>` from it). ROW
/// binlog format is required by current MariaDB for the recovery; no networking. As root (not
/// the case in mariadb-operator's containers) the server drops to `mysql`, which must be able to
/// write the log file.
const RECOVER_SCRIPT: &str = r#"f=$(mktemp) || exit 126
trap 'rm -f "$f"' EXIT
if [ "$(id -u)" = 0 ]; then chown mysql "$f" || exit 126; fi
mariadbd --wsrep-recover --datadir="$1" --binlog-format=ROW --skip-networking --user=mysql --log-error="$f" >/dev/null 2>&1
rc=$?
cat "$f"
exit $rc"#;

fn argv(parts: &[&str]) -> CommandSpec {
    CommandSpec::new(parts[0]).args(&parts[1..])
}

/// Like [`super::observe`], for an invocation with a credential preamble.
async fn observe_invocation<R: hasteward_exec::Runner>(
    runner: &R,
    inv: &crate::target::Invocation,
) -> Observed {
    match tokio::time::timeout(
        super::EXEC_DEADLINE,
        crate::target::capture(runner, inv, "wsrep status"),
    )
    .await
    {
        Err(_) => Observed::Failed(format!(
            "the wsrep status query did not finish within {:?}",
            super::EXEC_DEADLINE
        )),
        Ok(Err(e)) => Observed::Failed(e.to_string()),
        Ok(Ok(out)) => Observed::Output(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_log_splits_into_grastate_and_recovery() {
        let log = "===GRASTATE===\nuuid: x\nseqno: -1\n===RECOVER===\n[Note] WSREP: Recovered position: x:7\n";
        let (g, r) = split_helper_log(log);
        assert_eq!(g.unwrap(), "uuid: x\nseqno: -1\n");
        assert!(r.unwrap().contains("Recovered position: x:7"));
        assert_eq!(split_helper_log("garbage"), (None, None));
    }
}
