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
    kube.annotate_cnpg_cluster(
        &r.namespace,
        &r.cluster,
        RECONCILIATION_LOOP,
        Some("disabled"),
    )
    .await?;
    let work = async {
        match kube.delete_pod(&r.namespace, &r.instance).await {
            Ok(uid) => {
                kube.wait_pod_gone(&r.namespace, &r.instance, uid.as_deref(), r.timeout)
                    .await?
            }
            Err(hasteward_k8s::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::from(e)),
        }
        let spec = HelperSpec {
            namespace: r.namespace.clone(),
            name_prefix: format!("{}-reseed", r.instance),
            purpose: "reseed".into(),
            image,
            command: vec!["sh".into(), "-c".into(), RESEED_SCRIPT.into()],
            volume: Some((r.instance.clone(), "/var/lib/postgresql/data".into(), false)),
            node_name: node,
            owner: cluster.owner_reference(),
            run_as: Some((26, 26)),
            deadline: r.timeout,
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
        };
        let outcome = kube.run_helper(&spec, r.timeout).await?;
        if !outcome.succeeded() {
            return Err(Error::RepairFailed(format!(
                "the reseed helper {} ended {} (exit {:?}): {}",
                outcome.pod,
                outcome.phase,
                outcome.exit_code,
                tail(&outcome.log)
            )));
        }
        Ok(outcome.log)
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
        .await?;
    Ok(log)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
