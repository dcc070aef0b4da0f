//! HTTP routing and the generic REST verbs. Every resource is handled the same
//! way (the store does not know about types), which keeps the simulator small
//! while still exercising kube-rs' real request/response paths.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::patch::{self, PatchKind};
use crate::status::ApiError;
use crate::store::{ObjectKey, ResourceKey, Selector, Store};
use crate::{discovery, exec, lock, podrun, scale, watch, RecordedRequest, Shared};

/// Largest request body accepted.
const MAX_BODY: usize = 256 << 20;

/// The router: everything goes through one fallback handler that parses
/// Kubernetes paths itself.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Decoded query parameters (repeated keys kept in order).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Self {
        let uri: axum::http::Uri = format!("/?{raw}").parse().unwrap_or_default();
        Query(
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
                .map(|q| q.0)
                .unwrap_or_default(),
        )
    }

    /// First value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `key` is `true` / `1`.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// A parsed resource URL.
#[derive(Debug, Clone)]
pub(crate) struct ResourcePath {
    pub(crate) resource: ResourceKey,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

impl ResourcePath {
    pub(crate) fn key(&self) -> Option<ObjectKey> {
        Some(ObjectKey {
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone()?,
        })
    }
}

enum Route {
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    Resource(ResourcePath),
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::Api),
        ["apis"] => Some(Route::Apis),
        ["api", v] => Some(Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g] => Some(Route::Group(g.to_string())),
        ["apis", g, v] => Some(Route::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => parse_resource("", v, rest).map(Route::Resource),
        ["apis", g, v, rest @ ..] => parse_resource(g, v, rest).map(Route::Resource),
        _ => None,
    }
}

fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    let rk = |plural: &str| ResourceKey {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
    };
    let opt = |s: Option<&&str>| s.map(|s| s.to_string());
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    match rest {
        // Namespace objects themselves and their subresources.
        ["namespaces"] | ["namespaces", _] | ["namespaces", _, "status" | "finalize"]
            if group.is_empty() =>
        {
            Some(ResourcePath {
                resource: rk("namespaces"),
                namespace: None,
                name: opt(rest.get(1)),
                sub: opt(rest.get(2)),
            })
        }
        ["namespaces", ns, plural, more @ ..] if more.len() <= 2 => Some(ResourcePath {
            resource: rk(plural),
            namespace: Some(ns.to_string()),
            name: opt(more.first()),
            sub: opt(more.get(1)),
        }),
        [plural, more @ ..] if more.len() <= 2 => Some(ResourcePath {
            resource: rk(plural),
            namespace: None,
            name: opt(more.first()),
            sub: opt(more.get(1)),
        }),
        _ => None,
    }
}

/// A JSON response.
pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `Status` error response.
pub(crate) fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

pub(crate) fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

pub(crate) fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/__sim/requests" {
        return sim_requests(&shared, req.method());
    }
    let method = req.method().clone();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = Query::parse(&raw_query);
    let route = parse_route(&path);

    if let Some(Route::Resource(rp)) = &route {
        let is_exec = rp.resource.group.is_empty()
            && rp.resource.plural == "pods"
            && matches!(rp.sub.as_deref(), Some("exec" | "attach"))
            && rp.namespace.is_some();
        if is_exec {
            let command = query.all("command");
            let (parts, _body) = req.into_parts();
            let response = exec::handle(shared.clone(), parts, rp, &query).await;
            shared.record(RecordedRequest {
                method: method.to_string(),
                path,
                query: raw_query,
                body: None,
                exec_command: Some(command),
                status: response.status().as_u16(),
            });
            return response;
        }
    }

    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!("reading body: {e}")));
        }
    };
    let fault = shared.take_fault(method.as_str(), &path);
    let response = match &route {
        _ if fault.is_some() => error_response(&ApiError::new(
            fault.unwrap_or(500),
            "InternalError",
            "kubesim: injected fault",
        )),
        None => error_response(&not_found_path()),
        Some(route) => match dispatch(&shared, &method, route, &query, &parts.headers, &body) {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    };
    shared.record(RecordedRequest {
        method: method.to_string(),
        path,
        query: raw_query,
        body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        exec_command: None,
        status: response.status().as_u16(),
    });
    response
}

fn sim_requests(shared: &Shared, method: &Method) -> Response {
    match *method {
        Method::GET => json_response(200, &json!(shared.requests())),
        Method::DELETE => {
            shared.clear_requests();
            json_response(200, &json!({}))
        }
        _ => error_response(&method_not_allowed(method)),
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    route: &Route,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    if *method != Method::GET && !matches!(route, Route::Resource(_)) {
        return Err(method_not_allowed(method));
    }
    let rp = match route {
        Route::Version => {
            return Ok(json_response(
                200,
                &json!({
                    "major": "1",
                    "minor": "34",
                    "gitVersion": "v1.34.0-kubesim",
                    "gitCommit": "kubesim",
                    "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }),
            ))
        }
        Route::Api => return Ok(json_response(200, &discovery::api_versions(shared.addr))),
        Route::Apis => {
            let store = lock(&shared.store);
            return Ok(json_response(200, &discovery::group_list(&store)));
        }
        Route::Group(g) => {
            let store = lock(&shared.store);
            return discovery::group(&store, g).map(|v| json_response(200, &v));
        }
        Route::GroupVersion(g, v) => {
            let store = lock(&shared.store);
            return Ok(json_response(200, &discovery::resource_list(&store, g, v)));
        }
        Route::Resource(rp) => rp,
    };

    let dry_run = query.dry_run();
    match (rp.name.is_some(), rp.sub.as_deref()) {
        (false, _) => match *method {
            Method::GET if query.flag("watch") => watch::watch(shared, rp, query),
            Method::GET => {
                let store = lock(&shared.store);
                Ok(json_response(200, &list(&store, rp, query)?))
            }
            Method::POST => {
                let created = {
                    let mut store = lock(&shared.store);
                    create(&mut store, rp, parse_json(body)?, dry_run)?
                };
                if !dry_run {
                    podrun::on_create(shared, &rp.resource, &created);
                }
                Ok(json_response(201, &created))
            }
            Method::DELETE => {
                let mut store = lock(&shared.store);
                delete_collection(&mut store, rp, query, dry_run).map(|v| json_response(200, &v))
            }
            _ => Err(method_not_allowed(method)),
        },
        (true, None) if *method == Method::PATCH => {
            let key = rp.key().expect("named");
            let (code, obj) = {
                let mut store = lock(&shared.store);
                patch(&mut store, rp, &key, headers, body, dry_run)?
            };
            if code == 201 && !dry_run {
                // Server-side apply created the object.
                podrun::on_create(shared, &rp.resource, &obj);
            }
            Ok(json_response(code, &obj))
        }
        (true, None) => {
            let key = rp.key().expect("named");
            let mut store = lock(&shared.store);
            match *method {
                Method::GET => store
                    .get(&key)
                    .cloned()
                    .map(|v| json_response(200, &v))
                    .ok_or_else(|| ApiError::not_found(&key.resource.plural, &key.name)),
                Method::PUT => replace(&mut store, &key, parse_json(body)?, dry_run)
                    .map(|v| json_response(200, &v)),
                Method::DELETE => store.delete(&key, dry_run).map(|v| json_response(200, &v)),
                _ => Err(method_not_allowed(method)),
            }
        }
        (true, Some("status")) => {
            let key = rp.key().expect("named");
            let mut store = lock(&shared.store);
            match *method {
                Method::GET => store
                    .get(&key)
                    .cloned()
                    .map(|v| json_response(200, &v))
                    .ok_or_else(|| ApiError::not_found(&key.resource.plural, &key.name)),
                Method::PUT => replace_status(&mut store, &key, parse_json(body)?, dry_run)
                    .map(|v| json_response(200, &v)),
                Method::PATCH => patch(&mut store, rp, &key, headers, body, dry_run)
                    .map(|(code, v)| json_response(code, &v)),
                _ => Err(method_not_allowed(method)),
            }
        }
        (true, Some("scale")) => {
            let key = rp.key().expect("named");
            let mut store = lock(&shared.store);
            scale::scale(&mut store, method, &key, headers, body, dry_run)
        }
        (true, Some("log")) if rp.resource.plural == "pods" && *method == Method::GET => {
            let key = rp.key().expect("named");
            let store = lock(&shared.store);
            let pod = store
                .get(&key)
                .ok_or_else(|| ApiError::not_found("pods", &key.name))?;
            // A run pod's captured output, else the annotation (fixtures' canned logs).
            let captured = pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .and_then(|uid| lock(&shared.pod_logs).get(uid).cloned());
            let text = match captured {
                Some(bytes) => bytes,
                None => pod
                    .pointer("/metadata/annotations/kubesim.hasteward.dev~1log")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .as_bytes()
                    .to_vec(),
            };
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                Body::from(text),
            )
                .into_response())
        }
        _ => Err(not_found_path()),
    }
}

pub(crate) fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    Ok(v)
}

pub(crate) fn list(store: &Store, rp: &ResourcePath, query: &Query) -> Result<Value, ApiError> {
    let selector = Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
    let items = store.list(&rp.resource, rp.namespace.as_deref(), &selector);
    Ok(json!({
        "kind": format!("{}List", store.kind_of(&rp.resource)),
        "apiVersion": rp.resource.api_version(),
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": items,
    }))
}

/// Fill apiVersion/kind from the URL when absent, reject mismatches.
fn check_type(store: &mut Store, rp: &ResourcePath, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = rp.resource.api_version();
    let kind = store.kind_of(&rp.resource);
    let map = obj.as_object_mut().expect("object body");
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(kind));
        }
        Some(k) => {
            let k = k.to_string();
            store.learn_kind(&rp.resource, &k);
        }
    }
    Ok(())
}

fn body_meta<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn create(
    store: &mut Store,
    rp: &ResourcePath,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_type(store, rp, &mut obj)?;
    let namespace = match (&rp.namespace, body_meta(&obj, "namespace")) {
        (Some(path_ns), Some(body_ns)) if path_ns != body_ns => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(ns), _) => Some(ns.clone()),
        (None, body_ns) => body_ns.map(str::to_string),
    };
    let name = match (body_meta(&obj, "name"), body_meta(&obj, "generateName")) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => {
            let prefix = prefix.to_string();
            store.generate_name(&rp.resource, namespace.as_deref(), &prefix)
        }
        (None, None) => {
            return Err(ApiError::invalid(format!(
            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
            rp.resource.plural
        )))
        }
    };
    let key = ObjectKey {
        resource: rp.resource.clone(),
        namespace,
        name,
    };
    store.create(&key, obj, dry_run)
}

fn check_name(key: &ObjectKey, obj: &Value) -> Result<(), ApiError> {
    match body_meta(obj, "name") {
        Some(name) if name != key.name => Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            key.name
        ))),
        _ => Ok(()),
    }
}

fn set_field(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        match value {
            Some(v) => map.insert(field.to_string(), v),
            None => map.remove(field),
        };
    }
}

fn replace(
    store: &mut Store,
    key: &ObjectKey,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_name(key, &obj)?;
    let current = store
        .get(key)
        .ok_or_else(|| ApiError::not_found(&key.resource.plural, &key.name))?;
    // Like resources with a status subresource: status is only written via /status.
    set_field(&mut obj, "status", current.get("status").cloned());
    for field in ["apiVersion", "kind"] {
        if obj.get(field).is_none() {
            set_field(&mut obj, field, current.get(field).cloned());
        }
    }
    store.update(key, obj, dry_run)
}

fn replace_status(
    store: &mut Store,
    key: &ObjectKey,
    obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_name(key, &obj)?;
    let mut new = store
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&key.resource.plural, &key.name))?;
    set_field(&mut new, "status", obj.get("status").cloned());
    if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    store.update(key, new, dry_run)
}

pub(crate) fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchKind::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"),
        )
    })
}

pub(crate) fn parse_patch_body(kind: PatchKind, body: &Bytes) -> Result<Value, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("patch body is not UTF-8"))?;
    if kind == PatchKind::Apply {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(v);
        }
        return serde_saphyr::from_str_with_options::<Value>(text, crate::config::yaml_options())
            .map_err(|e| ApiError::bad_request(format!("invalid apply patch: {e}")));
    }
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))
}

fn patch(
    store: &mut Store,
    rp: &ResourcePath,
    key: &ObjectKey,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let kind = patch_kind(headers)?;
    let patch_body = parse_patch_body(kind, body)?;
    let Some(current) = store.get(key).cloned() else {
        if kind == PatchKind::Apply && rp.sub.is_none() {
            // Server-side apply creates missing objects.
            let mut obj = patch_body;
            if !obj.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            check_name(key, &obj)?;
            check_type(store, rp, &mut obj)?;
            let created = store.create(key, obj, dry_run)?;
            return Ok((201, created));
        }
        return Err(ApiError::not_found(&key.resource.plural, &key.name));
    };
    let mut patched = current.clone();
    match kind {
        PatchKind::Json => {
            patch::json_patch(&mut patched, &patch_body).map_err(ApiError::invalid)?
        }
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            if !patch_body.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut patched, &patch_body)
        }
    }
    check_name(key, &patched)?;
    let new = if rp.sub.as_deref() == Some("status") {
        let mut new = current.clone();
        set_field(&mut new, "status", patched.get("status").cloned());
        if let Some(rv) = patched.pointer("/metadata/resourceVersion") {
            new["metadata"]["resourceVersion"] = rv.clone();
        }
        new
    } else {
        set_field(&mut patched, "status", current.get("status").cloned());
        patched
    };
    store.update(key, new, dry_run).map(|v| (200, v))
}

fn delete_collection(
    store: &mut Store,
    rp: &ResourcePath,
    query: &Query,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let selector = Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
    let mut deleted = Vec::new();
    for obj in store.list(&rp.resource, rp.namespace.as_deref(), &selector) {
        let key = ObjectKey {
            resource: rp.resource.clone(),
            namespace: body_meta(&obj, "namespace").map(str::to_string),
            name: body_meta(&obj, "name").unwrap_or_default().to_string(),
        };
        deleted.push(store.delete(&key, dry_run)?);
    }
    Ok(json!({
        "kind": format!("{}List", store.kind_of(&rp.resource)),
        "apiVersion": rp.resource.api_version(),
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": deleted,
    }))
}
