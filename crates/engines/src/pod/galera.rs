//! MariaDB Galera clusters run by mariadb-operator (`MariaDB` CR, container `mariadb`).
//!
//! The root password comes from the CR's `spec.rootPasswordSecretKeyRef` and reaches the pod
//! only through the exec's stdin (see [`super::WRAPPER`]). Dumps and restores run on a node
//! whose `wsrep_local_state_comment` is `Synced`; a donor or joining node is skipped. The
//! `mysql.global_priv` table (the operator's root and operator users) is never dumped, so a
//! restore cannot replace the accounts the operator relies on.

use hasteward_k8s::{require_ready, Kube, PodRunner};
use hasteward_model::DbType;

use super::{PodAuth, PodDatabase};
use crate::target::capture;
use crate::Result;

/// The container mariadb-operator runs MariaDB in.
pub const CONTAINER: &str = "mariadb";

const WSREP_STATE_SQL: &str = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'";

/// Parses `SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'` output (`name\tvalue`).
pub fn parse_wsrep_state(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("wsrep_local_state_comment"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Finds a Synced node of the `MariaDB` cluster and returns it as a flow target.
pub async fn resolve(kube: &Kube, namespace: &str, name: &str) -> Result<PodDatabase<PodRunner>> {
    let cr = kube.mariadb(namespace, name).await?;
    let secret_ref = cr
        .root_password
        .clone()
        .ok_or_else(|| hasteward_k8s::Error::Resource {
            kind: "MariaDB".into(),
            namespace: namespace.into(),
            name: name.into(),
            detail: "has no spec.rootPasswordSecretKeyRef; hasteward needs the root password to dump and restore".into(),
        })?;
    let password = kube
        .secret_value(namespace, &secret_ref.name, &secret_ref.key)
        .await?;
    let pods = kube.pods(namespace, &cr.pod_selector()).await?;
    let mut seen = Vec::new();
    for pod in &pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = require_ready(pod, CONTAINER) {
            seen.push(format!("{pod_name}: {e}"));
            continue;
        }
        let runner = PodRunner::new(kube, namespace, &pod_name, CONTAINER);
        let location = runner.location();
        let node = PodDatabase::new(
            runner,
            location.clone(),
            DbType::Mariadb,
            "root",
            PodAuth::Password(password.expose().to_string()),
        )
        .operator_managed_accounts();
        match capture(
            node.runner_ref(),
            &node.mysql_query(WSREP_STATE_SQL),
            &location,
        )
        .await
        {
            Ok(out) => match parse_wsrep_state(&out) {
                Some(state) if state == "Synced" => return Ok(node),
                Some(state) => seen.push(format!("{pod_name}: {state}")),
                None => seen.push(format!("{pod_name}: not a Galera node (no wsrep status)")),
            },
            Err(e) => seen.push(format!("{pod_name}: {e}")),
        }
    }
    Err(hasteward_k8s::Error::PodNotReady {
        namespace: namespace.into(),
        pod: format!("(MariaDB {name})"),
        reason: if seen.is_empty() {
            format!("no pods match {}", cr.pod_selector())
        } else {
            format!("no Synced node: {}", seen.join("; "))
        },
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsrep_state_is_read_from_status_output() {
        assert_eq!(
            parse_wsrep_state("wsrep_local_state_comment\tSynced\n").as_deref(),
            Some("Synced")
        );
        assert_eq!(
            parse_wsrep_state("wsrep_local_state_comment\tDonor/Desynced").as_deref(),
            Some("Donor/Desynced")
        );
        assert_eq!(parse_wsrep_state(""), None);
    }
}
