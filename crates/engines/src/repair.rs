//! Repair execution: the data-changing steps of an approved plan, each one a
//! [`fenced::Operation`] (quiesce the operator, work, put back exactly what was changed — on
//! success, failure and Ctrl-C).
//!
//! # CNPG reseed
//! The instance's RWO volume must be freed from its pod and held by a helper while its data is
//! replaced, without CloudNativePG recreating the pod and racing for the volume:
//! 1. fence the instance (`cnpg.io/fencedInstances`, read-modify-write, other fences kept);
//! 2. turn reconciliation off (`cnpg.io/reconciliationLoop: disabled`);
//! 3. delete the pod; a helper pod (the cluster's image, owned by the `Cluster`, pinned to the
//!    node that holds the volume, unique name, deadline) empties the data directory and runs
//!    `pg_basebackup -R` from the primary's read-write service with the replication
//!    certificates, then strips `primary_conninfo` (CloudNativePG writes its own);
//! 4. reconciliation back on — on every path once it was turned off;
//! 5. the fence removed — except after a failure once the data directory was touched: the
//!    instance then stays fenced on purpose, with a message saying how to lift it.

use std::time::Duration;

use hasteward_exec::CancellationToken;
use hasteward_k8s::helper::HelperSpec;
use hasteward_k8s::Kube;

use crate::fenced::{force_bootstrap, KeepFence, Operation};
use crate::{Error, Result};

pub use crate::fenced::RECONCILIATION_LOOP;

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

/// Rebuilds `instance` from the primary (steps in the module docs). Returns the helper's log and
/// a note on anything left in place.
pub async fn cnpg_reseed(
    kube: &Kube,
    r: &CnpgReseed,
    cancel: &CancellationToken,
) -> Result<(String, String)> {
    let cluster = kube.cnpg_cluster(&r.namespace, &r.cluster).await?;
    if cluster.current_primary.as_deref() == Some(r.instance.as_str()) {
        return Err(Error::Refused(format!(
            "{} has become the primary of {}/{} since the plan was made: not rebuilding it",
            r.instance, r.namespace, r.cluster
        )));
    }
    let image = helper_image(
        &cluster.image_name,
        ("Cluster", &r.namespace, &r.cluster, "spec.imageName"),
        "reseed helper pod",
    )?;
    let node = node_of(kube, &r.namespace, &r.instance).await;
    let op = Operation::new(kube, cancel.clone());
    let mut fenced_before = false;
    let (log, mut note) = op
        .run(async {
            // Checked first, so a refusal changes nothing.
            crate::fenced::require_reconciliation_on(&cluster)?;
            fenced_before = op
                .fence_cnpg_instance(
                    &r.namespace,
                    &r.cluster,
                    &r.instance,
                    KeepFence::AfterDestructiveFailure,
                )
                .await?;
            op.disable_reconciliation(&cluster).await?;
            free_volume(&op, kube, &r.namespace, &r.instance, r.timeout).await?;
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
            op.destructive_helper(&spec, r.timeout, "the reseed helper")
                .await
        })
        .await?;
    if fenced_before {
        // Someone else's fence stays: the instance is rebuilt but not started.
        note = join_notes(
            &note,
            &format!(
                "{} was fenced before this run and stays fenced (not waited for)",
                r.instance
            ),
        );
    } else {
        op.cancellable("waiting for the reseeded instance", async {
            kube.wait_pod_ready(&r.namespace, &r.instance, "postgres", None, r.timeout)
                .await
                .map_err(|e| failed(e.into()))
        })
        .await?;
    }
    Ok((log, note))
}

/// What a WAL relief needs.
#[derive(Debug, Clone)]
pub struct CnpgPruneWal {
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// The instance whose volume is full.
    pub instance: String,
    /// Leave it fenced afterwards (it is not the operator's primary).
    pub keep_fenced: bool,
    /// Remove unarchived segments and WAL that lagging replicas need (`--force`).
    pub force: bool,
    /// How long each helper and wait may take.
    pub timeout: Duration,
}

/// Frees a full volume whose server cannot start by removing the WAL its recovery does not
/// need ([`hasteward_triage::cnpg::walrelief`]):
/// 1. read each Ready replica's replay position (before anything changes);
/// 2. fence the instance, turn reconciliation off, delete its pod;
/// 3. a read-only helper on the volume reports `pg_controldata`, `pg_wal` and archive status;
///    the selection is decided (and may refuse: nothing removed, everything put back);
/// 4. a second helper removes the selected segments;
/// 5. reconciliation on, the fence removed (kept when `keep_fenced`, or after a failure
///    midway), and the instance waited for.
pub async fn cnpg_prune_wal(
    kube: &Kube,
    w: &CnpgPruneWal,
    cancel: &CancellationToken,
) -> Result<(String, String)> {
    use hasteward_triage::cnpg::walrelief;
    let cluster = kube.cnpg_cluster(&w.namespace, &w.cluster).await?;
    crate::fenced::require_reconciliation_on(&cluster)?;
    let image = helper_image(
        &cluster.image_name,
        ("Cluster", &w.namespace, &w.cluster, "spec.imageName"),
        "WAL relief helper pods",
    )?;
    let replicas = replica_positions(kube, &w.namespace, &cluster, &w.instance).await?;
    let node = node_of(kube, &w.namespace, &w.instance).await;
    let helper = |prefix: &str, purpose: &str, script: &str| HelperSpec {
        node_name: node.clone(),
        owner: cluster.owner_reference(),
        run_as: Some((26, 26)),
        labels: [("cnpg.io/cluster".to_string(), w.cluster.clone())].into(),
        ..HelperSpec::shell(
            &w.namespace,
            format!("{}-{prefix}", w.instance),
            purpose,
            image.clone(),
            script,
            (w.instance.clone(), "/var/lib/postgresql/data"),
            w.timeout,
        )
    };
    let keep = if w.keep_fenced {
        KeepFence::Always
    } else {
        KeepFence::AfterDestructiveFailure
    };
    let op = Operation::new(kube, cancel.clone());
    let mut fenced_before = false;
    let (log, mut note) = op
        .run(async {
            fenced_before = op
                .fence_cnpg_instance(&w.namespace, &w.cluster, &w.instance, keep)
                .await?;
            op.disable_reconciliation(&cluster).await?;
            free_volume(&op, kube, &w.namespace, &w.instance, w.timeout).await?;
            let mut reader = helper("walscan", "wal-scan", walrelief::LISTING_SCRIPT);
            if let Some(v) = reader.volume.as_mut() {
                v.2 = true;
            }
            let listing = op
                .helper(&reader, w.timeout, "the WAL listing helper")
                .await?;
            let listing = walrelief::parse_listing(&listing).map_err(|e| {
                Error::RepairFailed(format!("the WAL listing helper's output: {e}"))
            })?;
            let selection = walrelief::select(&listing, &replicas, w.force)
                .map_err(|r| Error::Refused(format!("{} [{}]", r.message, r.gate)))?;
            let mut pruner = helper("walprune", "wal-prune", walrelief::PRUNE_SCRIPT);
            pruner.env.push(("CUTOFF".into(), selection.cutoff.clone()));
            let removed = op
                .destructive_helper(&pruner, w.timeout, "the WAL relief helper")
                .await?;
            let mut log = format!(
                "cluster state {}; {} segments before {} ({} MiB) selected\n{}",
                listing.cluster_state,
                selection.remove.len(),
                selection.cutoff,
                selection.bytes / (1024 * 1024),
                removed.trim()
            );
            if !selection.not_archived.is_empty() {
                log.push_str(&format!(
                    "\n--force: {} segments were not archived yet: take a new base backup",
                    selection.not_archived.len()
                ));
            }
            if !selection.replicas_behind.is_empty() {
                log.push_str(&format!(
                    "\n--force: replicas behind the REDO point need a reseed: {}",
                    selection.replicas_behind.join(", ")
                ));
            }
            Ok(log)
        })
        .await?;
    if fenced_before {
        note = join_notes(
            &note,
            &format!(
                "{} was fenced before this run and stays fenced (not waited for)",
                w.instance
            ),
        );
    } else if !w.keep_fenced {
        op.cancellable("waiting for the relieved instance", async {
            kube.wait_pod_ready(&w.namespace, &w.instance, "postgres", None, w.timeout)
                .await
                .map_err(|e| failed(e.into()))
        })
        .await?;
    }
    Ok((log, note))
}

/// Each Ready replica's `pg_last_wal_replay_lsn()` (other than `except`). A Ready replica whose
/// position cannot be read stops the relief before anything changes.
async fn replica_positions(
    kube: &Kube,
    namespace: &str,
    cluster: &hasteward_k8s::CnpgCluster,
    except: &str,
) -> Result<Vec<hasteward_triage::cnpg::walrelief::ReplicaPosition>> {
    use hasteward_triage::Observed;
    let pods = kube
        .pods(namespace, &format!("cnpg.io/cluster={}", cluster.name))
        .await?;
    let mut out = Vec::new();
    for pod in pods {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let instance = cluster.instance_names.contains(&name)
            || crate::triage::is_instance_pod(&pod, &cluster.name, "cnpg.io/podRole");
        if name == except
            || !instance
            || hasteward_k8s::container_ready(&pod, "postgres") != Some(true)
        {
            continue;
        }
        let runner = hasteward_k8s::PodRunner::new(kube, namespace, &name, "postgres");
        let sql = "SELECT pg_last_wal_replay_lsn()";
        match crate::triage::observe(&runner, crate::triage::cnpg::psql(sql)).await {
            Observed::Output(o) if !o.trim().is_empty() => {
                out.push(hasteward_triage::cnpg::walrelief::ReplicaPosition {
                    name,
                    replay_lsn: o.trim().to_string(),
                })
            }
            // A Ready primary (a failover happened) replays nothing: it is not a replica.
            Observed::Output(_) => {}
            other => {
                return Err(Error::Refused(format!(
                    "the replay position of the Ready replica {name} could not be read ({other:?}): nothing was changed; run again once it can be"
                )))
            }
        }
    }
    Ok(out)
}

/// The image a helper pod runs: the cluster's own, so the tools match the data (else a refusal
/// naming the resource and its field).
fn helper_image(
    image: &Option<String>,
    (kind, namespace, name, field): (&str, &str, &str, &str),
    purpose: &str,
) -> Result<String> {
    image.clone().ok_or_else(|| {
        Error::Refused(format!(
            "{kind} {namespace}/{name} has no {field} for the {purpose}"
        ))
    })
}

/// The node `pod` runs on (a helper on its RWO volume must land there too), if known.
async fn node_of(kube: &Kube, namespace: &str, pod: &str) -> Option<String> {
    kube.pod(namespace, pod)
        .await
        .ok()
        .and_then(|p| p.spec.and_then(|s| s.node_name))
}

/// Deletes `pod` (if present) and waits until it is gone, then checks that nothing recreated it:
/// its volume must be free before a helper touches it.
async fn free_volume(
    op: &Operation<'_>,
    kube: &Kube,
    namespace: &str,
    pod: &str,
    timeout: Duration,
) -> Result<()> {
    match kube.delete_pod(namespace, pod).await {
        Ok(uid) => {
            op.cancellable(&format!("waiting for {pod} to be gone"), async {
                Ok(kube
                    .wait_pod_gone(namespace, pod, uid.as_deref(), timeout)
                    .await?)
            })
            .await?
        }
        Err(hasteward_k8s::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::from(e)),
    }
    match kube.pod(namespace, pod).await {
        Err(hasteward_k8s::Error::NotFound { .. }) => {}
        Ok(_) => {
            return Err(Error::RepairFailed(format!(
                "a new {pod} pod appeared while its operator was quiesced: not touching its volume"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn join_notes(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// The helper script that sets `safe_to_bootstrap` (`$SAFE_TO_BOOTSTRAP`, 0 or 1) in a node's
/// current `grastate.dat`, keeping copies as `grastate.dat.pre-bootstrap` (the latest) and
/// `grastate.dat.pre-bootstrap.$MARK` (this run's, which a rollback restores).
const BOOTSTRAP_FLAG_SCRIPT: &str = r#"set -eu
f=/var/lib/mysql/grastate.dat
[ -f "$f" ] || { echo "hasteward: no $f on this volume" >&2; exit 1; }
cp -p "$f" "$f.pre-bootstrap.$MARK"
cp -p "$f" "$f.pre-bootstrap"
t=$(mktemp)
sed "s/^safe_to_bootstrap:.*/safe_to_bootstrap: $SAFE_TO_BOOTSTRAP/" "$f" > "$t"
# Written back in place (not a new file), so its owner stays the server's.
cat "$t" > "$f"
rm -f "$t"
cat "$f""#;

/// The rollback of [`BOOTSTRAP_FLAG_SCRIPT`]: this run's copy written back in place (nothing to
/// do when the flag script stopped before making it).
const BOOTSTRAP_FLAG_RESTORE_SCRIPT: &str = r#"set -eu
f=/var/lib/mysql/grastate.dat
if [ -f "$f.pre-bootstrap.$MARK" ]; then
  cat "$f.pre-bootstrap.$MARK" > "$f"
  echo "hasteward: $f restored"
else
  echo "hasteward: $f was not changed"
fi"#;

/// Where escrow captures taken inside a repair go.
pub struct Escrow<'a> {
    /// The repository.
    pub restic: &'a hasteward_restic::Restic,
    /// The stream's settings (stall timeout, progress, cancellation).
    pub settings: &'a crate::flows::StreamSettings,
    /// The repair run's id (`job=` tag).
    pub job: String,
}

/// Archives `node`'s data directory (`claim` mounted read-only at `mount` in a helper pod with
/// `image`) into restic as a `diverged` snapshot `<node>.datadir.tar`, through the gated stream.
#[allow(clippy::too_many_arguments)]
async fn capture_datadir(
    op: &Operation<'_>,
    kube: &Kube,
    escrow: &Escrow<'_>,
    (namespace, cluster): (&str, &str),
    node: &str,
    image: &str,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    (claim, mount): (String, &str),
    timeout: Duration,
) -> Result<String> {
    use hasteward_model::{Engine, SnapshotKind, SnapshotLabels};
    let mut spec = HelperSpec {
        owner,
        ..HelperSpec::shell(
            namespace,
            format!("{node}-capture"),
            "capture",
            image.to_string(),
            &format!("exec sleep {}", timeout.as_secs().max(1)),
            (claim, mount),
            timeout,
        )
    };
    if let Some(v) = spec.volume.as_mut() {
        v.2 = true;
    }
    let pod = op.start_helper(&spec, timeout).await?;
    let runner = hasteward_k8s::PodRunner::new(kube, namespace, &pod, "helper");
    let archive = crate::pod::archive::DataDirArchive::new(
        runner,
        format!("{node}'s data directory (helper pod {namespace}/{pod})"),
        mount,
    );
    let labels = SnapshotLabels {
        engine: Engine::Galera,
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        kind: SnapshotKind::Diverged,
        db_type: None,
        file: format!("{node}.datadir.tar"),
        database: None,
        job: Some(escrow.job.clone()),
    };
    let result = crate::flows::backup(escrow.restic, &archive, &labels, escrow.settings).await;
    match kube.delete_pod(namespace, &pod).await {
        Ok(_) | Err(hasteward_k8s::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(pod = %pod, "could not delete the capture helper yet: {e}"),
    }
    let saved = result?;
    Ok(format!(
        "{node}: data directory saved as snapshot {} ({} bytes, sha256 {})\n",
        saved.short_id,
        saved.bytes,
        &saved.sha256[..16]
    ))
}

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
    /// Nodes of another lineage (a forced bootstrap) whose data directories are captured
    /// first, once every pod is gone.
    pub captures: Vec<String>,
    /// How long each wait may take.
    pub timeout: Duration,
}

/// Starts a new Primary component from `node` after a total outage:
/// 1. suspend the `MariaDB` CR (mariadb-operator does not act meanwhile);
/// 2. scale the StatefulSet to 0 and wait until every pod is gone;
/// 3. on every node's volume, a helper sets `safe_to_bootstrap` (1 on `node`, 0 elsewhere),
///    keeping a copy of the file;
/// 4. `spec.galera.recovery.forceClusterBootstrapInPod: node`; the StatefulSet back to its
///    replicas and the CR resumed; wait until every node is Ready;
/// 5. the force field removed (on every path once set).
///
/// A failure or Ctrl-C before the cluster is started rolls back every marker: the force field
/// cleared, every changed `grastate.dat` restored from this run's copy, the scale restored, the
/// CR resumed.
pub async fn galera_bootstrap(
    kube: &Kube,
    b: &GaleraBootstrap,
    escrow: Option<&Escrow<'_>>,
    cancel: &CancellationToken,
) -> Result<(String, String)> {
    let cr = kube.mariadb(&b.namespace, &b.cluster).await?;
    let image = helper_image(
        &cr.image,
        ("MariaDB", &b.namespace, &b.cluster, "spec.image"),
        "bootstrap helper pods",
    )?;
    let mark = format!("{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let op = Operation::new(kube, cancel.clone());
    let force_requested = std::sync::atomic::AtomicBool::new(false);
    let clear_force = || async {
        let cleared = kube
            .patch_mariadb(&b.namespace, &b.cluster, &force_bootstrap(None))
            .await;
        match cleared {
            Ok(()) => "forceClusterBootstrapInPod was cleared".to_string(),
            Err(e) => format!(
                "forceClusterBootstrapInPod could NOT be cleared ({e}): remove it by hand (`kubectl -n {} edit mariadb {}`)",
                b.namespace, b.cluster
            ),
        }
    };
    let ran = op
        .run(async {
            op.suspend_mariadb(&cr).await?;
            op.scale(&b.namespace, &b.cluster, 0).await?;
            for node in &b.nodes {
                op.cancellable(&format!("waiting for {node} to stop"), async {
                    Ok(kube
                        .wait_pod_gone(&b.namespace, node, None, b.timeout)
                        .await?)
                })
                .await?;
            }
            let mut log = String::new();
            // The other lineage's data, before anything is changed on any volume (a failed
            // capture stops here and everything is put back).
            if let Some(escrow) = escrow {
                for node in &b.captures {
                    log.push_str(
                        &capture_datadir(
                            &op,
                            kube,
                            escrow,
                            (&b.namespace, &b.cluster),
                            node,
                            &image,
                            cr.owner_reference(),
                            (format!("storage-{node}"), "/var/lib/mysql"),
                            b.timeout,
                        )
                        .await?,
                    );
                }
            }
            for node in &b.nodes {
                let flag = if *node == b.node { "1" } else { "0" };
                let on_volume = |prefix: &str, purpose: &str, script: &str| HelperSpec {
                    owner: cr.owner_reference(),
                    env: vec![
                        ("SAFE_TO_BOOTSTRAP".into(), flag.into()),
                        ("MARK".into(), mark.clone()),
                    ],
                    ..HelperSpec::shell(
                        &b.namespace,
                        format!("{node}-{prefix}"),
                        purpose,
                        image.clone(),
                        script,
                        (format!("storage-{node}"), "/var/lib/mysql"),
                        b.timeout,
                    )
                };
                op.marker(
                    format!("{node}'s grastate.dat"),
                    on_volume(
                        "unbootstrap",
                        "bootstrap-rollback",
                        BOOTSTRAP_FLAG_RESTORE_SCRIPT,
                    ),
                );
                op.destructive_helper(
                    &on_volume("bootstrap", "bootstrap", BOOTSTRAP_FLAG_SCRIPT),
                    b.timeout,
                    &format!("setting safe_to_bootstrap on {node}"),
                )
                .await?;
                log.push_str(&format!("{node}: safe_to_bootstrap: {flag}\n"));
            }
            force_requested.store(true, std::sync::atomic::Ordering::SeqCst);
            op.force_bootstrap(&b.namespace, &b.cluster, &b.node)
                .await?;
            Ok(log)
        })
        .await;
    // The force field must not outlive this run, whatever went wrong once it was requested
    // (the operation clears it on failure, but not when only putting something back failed).
    let (log, note) = match ran {
        Ok(v) => v,
        Err(e) if force_requested.load(std::sync::atomic::Ordering::SeqCst) => {
            let cleared = clear_force().await;
            return Err(match e {
                Error::RepairCancelled(m) => Error::RepairCancelled(format!("{m}; {cleared}")),
                other => Error::RepairFailed(format!("{}; {cleared}", other)),
            });
        }
        Err(e) => return Err(e),
    };
    // The cluster is starting (scale and suspension put back by the operation). The force
    // field goes once it is up, or the wait gave up or was cancelled: it must not outlive this
    // bootstrap.
    let waited = op
        .cancellable("waiting for the bootstrapped cluster", async {
            for node in &b.nodes {
                kube.wait_pod_ready(&b.namespace, node, "mariadb", None, b.timeout)
                    .await?;
            }
            Ok(())
        })
        .await;
    let cleared = clear_force().await;
    match waited {
        Err(Error::RepairCancelled(m)) => {
            return Err(Error::RepairCancelled(format!(
                "{m} (the bootstrap itself was done; {cleared})"
            )))
        }
        Err(e) => {
            return Err(Error::RepairFailed(format!(
                "after the bootstrap: {e}; {cleared}"
            )))
        }
        Ok(()) if !cleared.ends_with("was cleared") => return Err(Error::RepairFailed(cleared)),
        Ok(()) => {}
    }
    Ok((log, note))
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
pub async fn galera_reseed(
    kube: &Kube,
    r: &GaleraReseed,
    cancel: &CancellationToken,
) -> Result<(String, String)> {
    let cr = kube.mariadb(&r.namespace, &r.cluster).await?;
    let image = helper_image(
        &cr.image,
        ("MariaDB", &r.namespace, &r.cluster, "spec.image"),
        "reset helper pod",
    )?;
    let saved = kube.statefulset(&r.namespace, &r.cluster).await?;
    let node_name = node_of(kube, &r.namespace, &r.node).await;
    let op = Operation::new(kube, cancel.clone());
    let (log, note) = op
        .run(async {
            op.suspend_mariadb(&cr).await?;
            op.orphan_statefulset(saved, r.timeout).await?;
            free_volume(&op, kube, &r.namespace, &r.node, r.timeout).await?;
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
            op.destructive_helper(&spec, r.timeout, "the reset helper")
                .await
        })
        .await?;
    op.cancellable("waiting for the reseeded node", async {
        kube.wait_pod_ready(&r.namespace, &r.node, "mariadb", None, r.timeout)
            .await
            .map_err(|e| failed(e.into()))
    })
    .await?;
    Ok((log, note))
}

/// Once a repair has changed something, any error is a failed repair (exit 1), whatever its
/// cause: not a missing dependency (exit 4) or a refusal (exit 3).
fn failed(e: Error) -> Error {
    match e {
        Error::RepairFailed(_) => e,
        other => Error::RepairFailed(other.to_string()),
    }
}
