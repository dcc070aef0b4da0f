//! Minimal discovery documents (`/api`, `/apis`, `/apis/{group}[/{version}]`)
//! built from what the store holds, for clients that probe before acting.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::status::ApiError;
use crate::store::Store;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/api`.
pub(crate) fn api_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

fn groups(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (res, _, _) in store.resources() {
        if res.group.is_empty() {
            continue;
        }
        let versions = groups.entry(res.group.clone()).or_default();
        if !versions.contains(&res.version) {
            versions.push(res.version.clone());
        }
    }
    groups
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": list,
        "preferredVersion": list.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub(crate) fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store)
        .iter()
        .map(|(name, versions)| {
            let mut g = group_doc(name, versions);
            let map = g.as_object_mut().expect("object");
            map.remove("kind");
            map.remove("apiVersion");
            g
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub(crate) fn group(store: &Store, name: &str) -> Result<Value, ApiError> {
    groups(store)
        .get(name)
        .map(|versions| group_doc(name, versions))
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub(crate) fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for (res, kind, namespaced) in store.resources() {
        if res.group != group || res.version != version {
            continue;
        }
        resources.push(json!({
            "name": res.plural, "singularName": kind.to_ascii_lowercase(),
            "namespaced": namespaced, "kind": kind, "verbs": VERBS,
        }));
        resources.push(json!({
            "name": format!("{}/status", res.plural), "singularName": "",
            "namespaced": namespaced, "kind": kind, "verbs": ["get", "patch", "update"],
        }));
        match res.plural.as_str() {
            "statefulsets" | "deployments" | "replicasets" => resources.push(json!({
                "name": format!("{}/scale", res.plural), "singularName": "", "namespaced": true,
                "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            })),
            "pods" if group.is_empty() => {
                for (sub, verbs) in [("exec", json!(["create", "get"])), ("log", json!(["get"]))] {
                    resources.push(json!({
                        "name": format!("pods/{sub}"), "singularName": "", "namespaced": true,
                        "kind": if sub == "exec" { "PodExecOptions" } else { "Pod" }, "verbs": verbs,
                    }));
                }
            }
            _ => {}
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": crate::kinds::join_api_version(group, version),
        "resources": resources,
    })
}
