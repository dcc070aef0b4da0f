//! Kind ↔ resource-name mapping. The store is addressed by URL resource names
//! (plurals) while fixtures name kinds, so both directions are needed; real
//! clusters get this from discovery, the simulator from these rules.

/// Kinds whose plural does not follow the general rule.
const IRREGULAR: &[(&str, &str)] = &[("Endpoints", "endpoints"), ("MariaDB", "mariadbs")];

/// Kinds that are cluster-scoped (objects of other kinds default to namespace `default`).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "VolumeSnapshotClass",
    "VolumeSnapshotContent",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    // hasteward's own cluster-scoped kinds.
    "BackupPolicy",
    "BackupRepository",
];

/// Well-known resources, so lists of an empty collection still get a proper kind.
const KNOWN: &[(&str, &str)] = &[
    ("pods", "Pod"),
    ("secrets", "Secret"),
    ("configmaps", "ConfigMap"),
    ("services", "Service"),
    ("endpoints", "Endpoints"),
    ("namespaces", "Namespace"),
    ("nodes", "Node"),
    ("events", "Event"),
    ("persistentvolumeclaims", "PersistentVolumeClaim"),
    ("persistentvolumes", "PersistentVolume"),
    ("serviceaccounts", "ServiceAccount"),
    ("statefulsets", "StatefulSet"),
    ("deployments", "Deployment"),
    ("replicasets", "ReplicaSet"),
    ("daemonsets", "DaemonSet"),
    ("jobs", "Job"),
    ("cronjobs", "CronJob"),
    ("leases", "Lease"),
    ("mariadbs", "MariaDB"),
    ("clusters", "Cluster"),
    ("backuppolicies", "BackupPolicy"),
    ("backuprepositories", "BackupRepository"),
    ("standalonedatabases", "StandaloneDatabase"),
];

/// The URL resource name (plural) of a kind, e.g. `BackupPolicy` → `backuppolicies`.
pub fn plural_of(kind: &str) -> String {
    if let Some((_, plural)) = IRREGULAR.iter().find(|(k, _)| *k == kind) {
        return (*plural).to_string();
    }
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        let vowel_before = stem.ends_with(['a', 'e', 'i', 'o', 'u']);
        if !vowel_before {
            return format!("{stem}ies");
        }
    }
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        return format!("{lower}es");
    }
    format!("{lower}s")
}

/// Best guess for the kind of a resource nobody has stored yet.
pub fn known_kind(plural: &str) -> Option<&'static str> {
    KNOWN.iter().find(|(p, _)| *p == plural).map(|(_, k)| *k)
}

/// Whether objects of `kind` live outside namespaces.
pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// Split an `apiVersion` into (group, version); the core group is `""`.
pub fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    }
}

/// Join (group, version) back into an `apiVersion`.
pub fn join_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        for (kind, plural) in [
            ("MariaDB", "mariadbs"),
            ("Lease", "leases"),
            ("StatefulSet", "statefulsets"),
            ("PersistentVolumeClaim", "persistentvolumeclaims"),
            ("BackupPolicy", "backuppolicies"),
            ("BackupRepository", "backuprepositories"),
            ("StandaloneDatabase", "standalonedatabases"),
            ("Cluster", "clusters"),
            ("Endpoints", "endpoints"),
            ("Ingress", "ingresses"),
            ("Gateway", "gateways"),
            ("Pod", "pods"),
        ] {
            assert_eq!(plural_of(kind), plural, "{kind}");
        }
    }
}
