//! Repair execution: the data-changing steps of an approved plan.
//!
//! # CNPG reseed: the fenced-instance primitive
//! The instance's RWO volume must be freed from its pod and held by a helper while its data is
//! replaced, without CloudNativePG recreating the pod and racing for the volume:
//! 1. fence the instance (`cnpg.io/fencedInstances`, read-modify-write, other fences kept);
//! 2. turn reconciliation off (`cnpg.io/reconciliationLoop: disabled`);
//! 3. delete the pod; a helper pod (the cluster's image, owned by the `Cluster`, pinned to the
//!    node that holds the volume, unique name, deadline) empties the data directory and runs
//!    `pg_basebackup -R` from the primary's read-write service with the replication
//!    certificates, then strips `primary_conninfo` (CloudNativePG writes its own);
//! 4. reconciliation back on — on every path once it was turned off;
//! 5. the fence removed — only after success: a failed reseed leaves the instance fenced on
//!    purpose (its data directory may be half written), with a message saying how to lift it.

use std::time::Duration;

use hasteward_k8s::fencing;
use hasteward_k8s::helper::HelperSpec;
use hasteward_k8s::Kube;

use crate::{Error, Result};

/// The annotation that pauses CloudNativePG's reconciliation of a cluster.
pub const RECONCILIATION_LOOP: &str = "cnpg.io/reconciliationLoop";

/// The reseed script run by the helper pod. It waits (up to 60 s) for a server still running on
/// the data directory to stop and refuses otherwise. The connection comes from the `PG*`
/// environment (host, user, TLS files); nothing user-supplied is spliced in.
const RESEED_SCRIPT: &str = r#"set -eu
d=/var/lib/postgresql/data/pgdata
# Never wipe a data directory whose server is still alive (as far as this pod can see).
live() {
  [ -f "$d/postmaster.pid" ] || return 1
  pid=$(head -n 1 "$d/postmaster.pid")
  [ -n "$pid" ] && [ "$pid" != "$$" ] && grep -q postgres "/proc/$pid/cmdline" 2>/dev/null
}
i=0
while live; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then echo "hasteward: a server still runs on $d; not touching it" >&2; exit 1; fi
  sleep 1
done
rm -rf "$d"
mkdir -p "$d"
chmod 0700 "$d"
pg_basebackup -D "$d" -X stream -c fast -R --no-password
sed -i '/^primary_conninfo/d' "$d/postgresql.auto.conf"
echo "hasteward: reseeded $d from $PGHOST""#;

/// What a reseed needs.
#[derive(Debug, Clone)]
pub struct CnpgReseed {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// The instance to rebuild.
    pub instance: String,
    /// How long the helper may run, and how long to wait for the instance afterwards.
    pub timeout: Duration,
}

/// Rebuilds `instance` from the primary (steps in the module docs). Returns the helper's log.
pub async fn cnpg_reseed(kube: &Kube, r: &CnpgReseed) -> Result<String> {
    let cluster = kube.cnpg_cluster(&r.namespace, &r.cluster).await?;
    if cluster.current_primary.as_deref() == Some(r.instance.as_str()) {
        return Err(Error::Refused(format!(
            "{} has become the primary of {}/{} since the plan was made: not rebuilding it",
            r.instance, r.namespace, r.cluster
        )));
    }
    let image = cluster.image_name.clone().ok_or_else(|| {
        Error::Refused(format!(
            "Cluster {}/{} has no spec.imageName for the reseed helper pod",
            r.namespace, r.cluster
        ))
    })?;
    let node = kube
        .pod(&r.namespace, &r.instance)
        .await
        .ok()
        .and_then(|p| p.spec.and_then(|s| s.node_name));
    let fences = fencing::fence(
        kube,
        &r.namespace,
        &r.cluster,
        std::slice::from_ref(&r.instance),
    )
    .await?;
    if let Err(e) = kube
        .annotate_cnpg_cluster(
            &r.namespace,
            &r.cluster,
            RECONCILIATION_LOOP,
            Some("disabled"),
        )
        .await
    {
        // Nothing was touched yet: take the fence back.
        let unfenced = fencing::unfence(kube, &fences).await;
        return Err(Error::RepairFailed(format!(
            "turning reconciliation off failed ({e}); nothing was changed{}",
            unfenced
                .err()
                .map(|u| format!(
                    ", but removing the fence failed too ({u}): `kubectl -n {} annotate cluster {} cnpg.io/fencedInstances-` after checking the value",
                    r.namespace, r.cluster
                ))
                .unwrap_or_default()
        )));
    }
    let work = async {
        match kube.delete_pod(&r.namespace, &r.instance).await {
            Ok(uid) => {
                kube.wait_pod_gone(&r.namespace, &r.instance, uid.as_deref(), r.timeout)
                    .await?
            }
            Err(hasteward_k8s::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::from(e)),
        }
        // The volume must be free: a pod recreated meanwhile (an operator acting on a cached
        // view) would be using it while the helper empties it.
        if kube.pod(&r.namespace, &r.instance).await.is_ok() {
            return Err(Error::RepairFailed(format!(
                "a new {} pod appeared while reconciliation was off: not touching its volume",
                r.instance
            )));
        }
        let spec = HelperSpec {
            node_name: node,
            owner: cluster.owner_reference(),
            run_as: Some((26, 26)),
            labels: [("cnpg.io/cluster".to_string(), r.cluster.clone())].into(),
            env: vec![
                ("PGHOST".into(), format!("{}-rw", r.cluster)),
                ("PGPORT".into(), "5432".into()),
                ("PGUSER".into(), "streaming_replica".into()),
                ("PGSSLMODE".into(), "verify-ca".into()),
                ("PGSSLCERT".into(), "/certs/replication/tls.crt".into()),
                ("PGSSLKEY".into(), "/certs/replication/tls.key".into()),
                ("PGSSLROOTCERT".into(), "/certs/ca/ca.crt".into()),
                ("PGAPPNAME".into(), r.instance.clone()),
            ],
            secrets: vec![
                (
                    format!("{}-replication", r.cluster),
                    "/certs/replication".into(),
                ),
                (format!("{}-ca", r.cluster), "/certs/ca".into()),
            ],
            ..HelperSpec::shell(
                &r.namespace,
                format!("{}-reseed", r.instance),
                "reseed",
                image,
                RESEED_SCRIPT,
                (r.instance.clone(), "/var/lib/postgresql/data"),
                r.timeout,
            )
        };
        let log = run_to_success(kube, &spec, r.timeout, "the reseed helper").await?;
        Ok(log)
    }
    .await;
    // Reconciliation back on, whatever happened.
    let reenabled = kube
        .annotate_cnpg_cluster(&r.namespace, &r.cluster, RECONCILIATION_LOOP, None)
        .await;
    let log = match work {
        Ok(log) => log,
        Err(e) => {
            return Err(Error::RepairFailed(format!(
                "{e}; {} stays fenced on purpose (its data directory may be half written): lift it with `kubectl -n {} annotate cluster {} cnpg.io/fencedInstances-` once it is dealt with{}",
                r.instance,
                r.namespace,
                r.cluster,
                reenabled
                    .err()
                    .map(|e| format!("; turning reconciliation back on also failed ({e}): `kubectl -n {} annotate cluster {} {RECONCILIATION_LOOP}-`", r.namespace, r.cluster))
                    .unwrap_or_default()
            )))
        }
    };
    reenabled?;
    fencing::unfence(kube, &fences).await?;
    kube.wait_pod_ready(&r.namespace, &r.instance, "postgres", None, r.timeout)
        .await
        .map_err(|e| failed(e.into()))?;
    Ok(log)
}

/// Runs a helper pod to completion; its log on success, a failed repair (with the log's tail)
/// otherwise.
async fn run_to_success(
    kube: &Kube,
    spec: &HelperSpec,
    timeout: Duration,
    what: &str,
) -> Result<String> {
    let outcome = kube.run_helper(spec, timeout).await?;
    if !outcome.succeeded() {
        return Err(Error::RepairFailed(format!(
            "{what} ({}) ended {} (exit {:?}): {}",
            outcome.pod,
            outcome.phase,
            outcome.exit_code,
            tail(&outcome.log)
        )));
    }
    Ok(outcome.log)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The helper script that sets `safe_to_bootstrap` (`$SAFE_TO_BOOTSTRAP`, 0 or 1) in a node's
/// current `grastate.dat`, keeping copies as `grastate.dat.pre-bootstrap` (the latest) and
/// `grastate.dat.pre-bootstrap.<UTC time>`.
const BOOTSTRAP_FLAG_SCRIPT: &str = r#"set -eu
f=/var/lib/mysql/grastate.dat
[ -f "$f" ] || { echo "hasteward: no $f on this volume" >&2; exit 1; }
cp -p "$f" "$f.pre-bootstrap.$(date -u +%Y%m%dT%H%M%SZ)"
cp -p "$f" "$f.pre-bootstrap"
t=$(mktemp)
sed "s/^safe_to_bootstrap:.*/safe_to_bootstrap: $SAFE_TO_BOOTSTRAP/" "$f" > "$t"
# Written back in place (not a new file), so its owner stays the server's.
cat "$t" > "$f"
rm -f "$t"
cat "$f""#;

/// What a Galera bootstrap needs.
#[derive(Debug, Clone)]
pub struct GaleraBootstrap {
    /// Namespace.
    pub namespace: String,
    /// The `MariaDB` (and its StatefulSet) name.
    pub cluster: String,
    /// The node to bootstrap from: the provable most advanced one.
    pub node: String,
    /// Every node (pod) of the cluster.
    pub nodes: Vec<String>,
    /// How long each wait may take.
    pub timeout: Duration,
}

/// Starts a new Primary component from `node` after a total outage:
/// 1. suspend the `MariaDB` CR (mariadb-operator does not act meanwhile);
/// 2. scale the StatefulSet to 0 and wait until every pod is gone;
/// 3. on every node's volume, a helper sets `safe_to_bootstrap` (1 on `node`, 0 elsewhere),
///    keeping `grastate.dat.pre-bootstrap`;
/// 4. `spec.galera.recovery.forceClusterBootstrapInPod: node`, the StatefulSet back to its
///    replicas, the CR resumed; wait until every node is Ready;
/// 5. the force field removed.
///
/// A failure before step 4 rolls back: flags restored from the backups, the scale restored, the
/// CR resumed.
pub async fn galera_bootstrap(kube: &Kube, b: &GaleraBootstrap) -> Result<String> {
    let cr = kube.mariadb(&b.namespace, &b.cluster).await?;
    let image = cr.image.clone().ok_or_else(|| {
        Error::Refused(format!(
            "MariaDB {}/{} has no spec.image for the bootstrap helper pods",
            b.namespace, b.cluster
        ))
    })?;
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    let force = |node: Option<&str>| serde_json::json!({"spec": {"galera": {"recovery": {"forceClusterBootstrapInPod": node}}}});
    kube.patch_mariadb(&b.namespace, &b.cluster, &suspend(true))
        .await?;
    // What was changed, for the restore below.
    let mut scaled_from: Option<i32> = None;
    let mut force_set = false;
    let work = async {
        scaled_from = Some(kube.scale_statefulset(&b.namespace, &b.cluster, 0).await?);
        for node in &b.nodes {
            kube.wait_pod_gone(&b.namespace, node, None, b.timeout)
                .await?;
        }
        let mut log = String::new();
        for node in &b.nodes {
            let flag = if *node == b.node { "1" } else { "0" };
            let spec = HelperSpec {
                owner: cr.owner_reference(),
                env: vec![("SAFE_TO_BOOTSTRAP".into(), flag.into())],
                ..HelperSpec::shell(
                    &b.namespace,
                    format!("{node}-bootstrap"),
                    "bootstrap",
                    image.clone(),
                    BOOTSTRAP_FLAG_SCRIPT,
                    (format!("storage-{node}"), "/var/lib/mysql"),
                    b.timeout,
                )
            };
            run_to_success(
                kube,
                &spec,
                b.timeout,
                &format!("setting safe_to_bootstrap on {node}"),
            )
            .await?;
            log.push_str(&format!("{node}: safe_to_bootstrap: {flag}\n"));
        }
        kube.patch_mariadb(&b.namespace, &b.cluster, &force(Some(&b.node)))
            .await?;
        force_set = true;
        Ok::<_, Error>(log)
    }
    .await;
    // Restore on every path: the scale, the suspension; the force field too when the work failed.
    let mut restore_errors = Vec::new();
    if work.is_err() && force_set {
        if let Err(e) = kube
            .patch_mariadb(&b.namespace, &b.cluster, &force(None))
            .await
        {
            restore_errors.push(format!("clearing forceClusterBootstrapInPod: {e}"));
        }
    }
    if let Some(replicas) = scaled_from {
        if let Err(e) = kube
            .scale_statefulset(&b.namespace, &b.cluster, replicas)
            .await
        {
            restore_errors.push(format!("scaling the StatefulSet back to {replicas}: {e}"));
        }
    }
    if let Err(e) = kube
        .patch_mariadb(&b.namespace, &b.cluster, &suspend(false))
        .await
    {
        restore_errors.push(format!("resuming the MariaDB CR: {e}"));
    }
    let restore_note = if restore_errors.is_empty() {
        String::new()
    } else {
        format!(
            "; restoring what was changed also failed: {} (`kubectl -n {} edit mariadb {}`)",
            restore_errors.join("; "),
            b.namespace,
            b.cluster
        )
    };
    let log = match work {
        Ok(log) if restore_errors.is_empty() => log,
        Ok(_) => {
            return Err(Error::RepairFailed(format!(
                "bootstrap prepared{restore_note}"
            )))
        }
        Err(e) => return Err(Error::RepairFailed(format!("{e}{restore_note}"))),
    };
    let waited = async {
        for node in &b.nodes {
            kube.wait_pod_ready(&b.namespace, node, "mariadb", None, b.timeout)
                .await?;
        }
        Ok::<_, hasteward_k8s::Error>(())
    }
    .await;
    // The force field goes once the cluster is up (or the wait gave up): it must not outlive
    // this bootstrap.
    let cleared = kube
        .patch_mariadb(&b.namespace, &b.cluster, &force(None))
        .await;
    waited.map_err(|e| Error::RepairFailed(format!("after the bootstrap: {e}")))?;
    cleared.map_err(|e| failed(e.into()))?;
    Ok(log)
}

/// Waits until the StatefulSet is gone (its deletion may wait on a finalizer).
async fn wait_statefulset_gone(
    kube: &Kube,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match kube.statefulset(namespace, name).await {
            Err(hasteward_k8s::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::RepairFailed(format!(
                    "StatefulSet {namespace}/{name} is still there {timeout:?} after its deletion"
                )))
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The helper script that makes a Galera node rejoin by a full state transfer: `grastate.dat`
/// kept as `grastate.dat.pre-heal` and reset (zero UUID, seqno -1, not safe to bootstrap; written
/// in place so its owner stays), `galera.cache` moved aside. The data files stay until the SST
/// replaces them.
const GALERA_RESET_SCRIPT: &str = r#"set -eu
d=/var/lib/mysql
if [ -f "$d/grastate.dat" ]; then
  cp -p "$d/grastate.dat" "$d/grastate.dat.pre-heal"
  printf '# GALERA saved state\nversion: 2.1\nuuid:    00000000-0000-0000-0000-000000000000\nseqno:   -1\nsafe_to_bootstrap: 0\n' > "$d/grastate.dat"
fi
if [ -f "$d/galera.cache" ]; then mv "$d/galera.cache" "$d/galera.cache.pre-heal"; fi
echo "hasteward: $d reset for a state transfer""#;

/// What a Galera node reseed needs.
#[derive(Debug, Clone)]
pub struct GaleraReseed {
    /// Namespace.
    pub namespace: String,
    /// The `MariaDB` (and its StatefulSet) name.
    pub cluster: String,
    /// The node (pod) to reseed; any ordinal.
    pub node: String,
    /// How long each wait may take.
    pub timeout: Duration,
}

/// Makes one Galera node (any ordinal, not only the highest) rejoin by SST while the others keep
/// serving:
/// 1. suspend the `MariaDB` CR;
/// 2. delete its StatefulSet with `propagationPolicy: Orphan` (the other pods keep running, and
///    nothing recreates the node's pod), then delete the node's pod and wait until it is gone;
/// 3. a helper pod on `storage-<node>` resets `grastate.dat` and moves `galera.cache` aside;
/// 4. recreate the StatefulSet from the saved copy (it adopts the running pods and recreates
///    the missing one) and resume the CR — both on every path once started;
/// 5. wait until the node is Ready (it joined by SST from a Synced donor).
pub async fn galera_reseed(kube: &Kube, r: &GaleraReseed) -> Result<String> {
    let cr = kube.mariadb(&r.namespace, &r.cluster).await?;
    let image = cr.image.clone().ok_or_else(|| {
        Error::Refused(format!(
            "MariaDB {}/{} has no spec.image for the reset helper pod",
            r.namespace, r.cluster
        ))
    })?;
    let saved = kube.statefulset(&r.namespace, &r.cluster).await?;
    let node_name = kube
        .pod(&r.namespace, &r.node)
        .await
        .ok()
        .and_then(|p| p.spec.and_then(|s| s.node_name));
    kube.patch_mariadb(
        &r.namespace,
        &r.cluster,
        &serde_json::json!({"spec": {"suspend": true}}),
    )
    .await?;
    let work = async {
        kube.orphan_statefulset(&r.namespace, &r.cluster).await?;
        wait_statefulset_gone(kube, &r.namespace, &r.cluster, r.timeout).await?;
        match kube.delete_pod(&r.namespace, &r.node).await {
            Ok(uid) => {
                kube.wait_pod_gone(&r.namespace, &r.node, uid.as_deref(), r.timeout)
                    .await?
            }
            Err(hasteward_k8s::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::from(e)),
        }
        let spec = HelperSpec {
            node_name,
            owner: cr.owner_reference(),
            ..HelperSpec::shell(
                &r.namespace,
                format!("{}-reset", r.node),
                "galera-reset",
                image,
                GALERA_RESET_SCRIPT,
                (format!("storage-{}", r.node), "/var/lib/mysql"),
                r.timeout,
            )
        };
        let log = run_to_success(kube, &spec, r.timeout, "the reset helper").await?;
        Ok(log)
    }
    .await;
    // Put back what was changed, whatever happened.
    let recreated = match kube.statefulset(&r.namespace, &r.cluster).await {
        Ok(sts) if sts.metadata.deletion_timestamp.is_none() => Ok(()),
        Ok(_) => match wait_statefulset_gone(kube, &r.namespace, &r.cluster, r.timeout).await {
            Ok(()) => kube.recreate_statefulset(&saved).await.map_err(Error::from),
            Err(e) => Err(e),
        },
        Err(hasteward_k8s::Error::NotFound { .. }) => {
            kube.recreate_statefulset(&saved).await.map_err(Error::from)
        }
        Err(e) => Err(Error::from(e)),
    };
    let resumed = kube
        .patch_mariadb(
            &r.namespace,
            &r.cluster,
            &serde_json::json!({"spec": {"suspend": false}}),
        )
        .await;
    let log = work.map_err(failed)?;
    recreated.map_err(failed)?;
    resumed.map_err(|e| failed(e.into()))?;
    kube.wait_pod_ready(&r.namespace, &r.node, "mariadb", None, r.timeout)
        .await
        .map_err(|e| failed(e.into()))?;
    Ok(log)
}

/// Once a repair has changed something, any error is a failed repair (exit 1), whatever its
/// cause: not a missing dependency (exit 4) or a refusal (exit 3).
fn failed(e: Error) -> Error {
    match e {
        Error::RepairFailed(_) => e,
        other => Error::RepairFailed(other.to_string()),
    }
}
