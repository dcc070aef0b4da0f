//! The `scale` subresource of statefulsets/deployments/replicasets: hasteward
//! scales workloads down and up around restores, so `spec.replicas` must be
//! readable and writable through an `autoscaling/v1` `Scale`.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::{json, Value};

use crate::patch::{self, PatchKind};
use crate::rest::{
    json_response, method_not_allowed, not_found_path, parse_json, parse_patch_body, patch_kind,
};
use crate::status::ApiError;
use crate::store::{ObjectKey, Store};

fn scale_of(obj: &Value) -> Value {
    let spec = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status = obj
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": obj.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status},
    });
    if let Some(sel) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        let text: Vec<String> = sel
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        scale["status"]["selector"] = json!(text.join(","));
    }
    scale
}

pub(crate) fn scale(
    store: &mut Store,
    method: &Method,
    key: &ObjectKey,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
) -> Result<Response, ApiError> {
    if !matches!(
        key.resource.plural.as_str(),
        "statefulsets" | "deployments" | "replicasets"
    ) {
        return Err(not_found_path());
    }
    let current = store
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&key.resource.plural, &key.name))?;
    let current_scale = scale_of(&current);
    let new_scale = match *method {
        Method::GET => return Ok(json_response(200, &current_scale)),
        Method::PUT => parse_json(body)?,
        Method::PATCH => {
            let kind = patch_kind(headers)?;
            let patch_body = parse_patch_body(kind, body)?;
            let mut s = current_scale;
            match kind {
                PatchKind::Json => {
                    patch::json_patch(&mut s, &patch_body).map_err(ApiError::invalid)?
                }
                _ => patch::merge_patch(&mut s, &patch_body),
            }
            s
        }
        _ => return Err(method_not_allowed(method)),
    };
    let replicas = new_scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::invalid("Scale spec.replicas must be a non-negative integer"))?;
    let mut owner = current;
    owner["spec"]["replicas"] = json!(replicas);
    owner["metadata"]["resourceVersion"] = new_scale
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    let updated = store.update(key, owner, dry_run)?;
    Ok(json_response(200, &scale_of(&updated)))
}
