//! The in-memory object store: objects keyed by (group, version, plural,
//! namespace, name), a global resourceVersion counter, and the event history
//! plus broadcast channel that watches are served from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::config::Error;
use crate::kinds;
use crate::status::ApiError;

/// How many past events are kept for watches that resume from a resourceVersion.
const HISTORY: usize = 10_000;

/// A resource type as addressed in URLs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group (`""` for core).
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Resource name (plural), e.g. `pods`.
    pub plural: String,
}

impl ResourceKey {
    /// Build from an `apiVersion` and a plural.
    pub fn new(api_version: &str, plural: &str) -> Self {
        let (group, version) = kinds::split_api_version(api_version);
        ResourceKey {
            group,
            version,
            plural: plural.to_string(),
        }
    }

    /// `group/version` (or just `version` for core).
    pub fn api_version(&self) -> String {
        kinds::join_api_version(&self.group, &self.version)
    }
}

/// One object's address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Its resource type.
    pub resource: ResourceKey,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

/// A change, as sent to watchers.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// resourceVersion after the change.
    pub rv: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: &'static str,
    /// Resource type of the object.
    pub resource: ResourceKey,
    /// The object after the change (before it, for deletes).
    pub object: Arc<Value>,
}

/// Label and field selector of a list or watch request.
#[derive(Debug, Default, Clone)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parse `labelSelector` and `fieldSelector` query values.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let mut sel = Selector::default();
        for term in split_top_level(labels.unwrap_or("")) {
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {term:?}"));
            let req = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if term.contains([' ', '(', ')']) {
                return Err(bad());
            } else {
                Requirement::Exists(term.into())
            };
            sel.labels.push(req);
        }
        for term in split_top_level(fields.unwrap_or("")) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term:?}"
                )));
            };
            sel.fields.push((k.trim().into(), eq, v.trim().into()));
        }
        Ok(sel)
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|req| match req {
            Requirement::Eq(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        });
        labels_ok
            && self.fields.iter().all(|(path, eq, want)| {
                let pointer = format!("/{}", path.replace('.', "/"));
                let actual = match obj.pointer(&pointer) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *want) == *eq
            })
    }
}

/// The store itself. All operations are synchronous and run under one mutex,
/// which makes every write atomic with respect to watches.
pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    kinds: HashMap<(String, String), String>,
    rv: u64,
    serial: u64,
    history: VecDeque<WatchEvent>,
    history_floor: u64,
    events: broadcast::Sender<WatchEvent>,
}

/// Current time as RFC 3339 (UTC, seconds precision) like Kubernetes timestamps.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant), valid for all dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("object");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("object")
}

/// The object without metadata and status, to detect spec changes.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    v
}

impl Store {
    /// A store seeded with `objects` (missing uid/resourceVersion/creationTimestamp are filled).
    pub fn new(objects: Vec<Value>) -> Result<Self, Error> {
        let (events, _) = broadcast::channel(4096);
        let mut store = Store {
            objects: BTreeMap::new(),
            kinds: HashMap::new(),
            rv: 0,
            serial: 0,
            history: VecDeque::new(),
            history_floor: 0,
            events,
        };
        for obj in objects {
            let key = store.key_of(&obj).map_err(Error::Fixture)?;
            if store.objects.contains_key(&key) {
                return Err(Error::Fixture(format!(
                    "duplicate object {}/{} {:?}/{}",
                    key.resource.api_version(),
                    key.resource.plural,
                    key.namespace,
                    key.name
                )));
            }
            let obj = store.prepare_new(obj, &key);
            store.objects.insert(key, obj);
        }
        store.history_floor = store.rv;
        Ok(store)
    }

    /// Derive an object's key from its apiVersion, kind and metadata, and
    /// remember the kind for its resource. Namespaced kinds default to `default`.
    pub fn key_of(&mut self, obj: &Value) -> Result<ObjectKey, String> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = meta_str(obj, "name").unwrap_or("");
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err("object needs apiVersion, kind and metadata.name".into());
        }
        let resource = ResourceKey::new(api_version, &kinds::plural_of(kind));
        self.learn_kind(&resource, kind);
        let namespace = match meta_str(obj, "namespace") {
            Some(ns) if !ns.is_empty() => Some(ns.to_string()),
            _ if kinds::is_cluster_scoped(kind) => None,
            _ => Some("default".to_string()),
        };
        Ok(ObjectKey {
            resource,
            namespace,
            name: name.to_string(),
        })
    }

    /// Remember that `resource` holds objects of `kind`.
    pub fn learn_kind(&mut self, resource: &ResourceKey, kind: &str) {
        self.kinds
            .entry((resource.group.clone(), resource.plural.clone()))
            .or_insert_with(|| kind.to_string());
    }

    /// The kind served under `resource`.
    pub fn kind_of(&self, resource: &ResourceKey) -> String {
        if let Some(kind) = self
            .kinds
            .get(&(resource.group.clone(), resource.plural.clone()))
        {
            return kind.clone();
        }
        if let Some(kind) = kinds::known_kind(&resource.plural) {
            return kind.to_string();
        }
        let p = &resource.plural;
        let singular = if let Some(stem) = p.strip_suffix("ies") {
            format!("{stem}y")
        } else if let Some(stem) = p.strip_suffix("ses") {
            format!("{stem}s")
        } else {
            p.strip_suffix('s').unwrap_or(p).to_string()
        };
        let mut chars = singular.chars();
        match chars.next() {
            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
            None => singular,
        }
    }

    /// Every (resource, kind, namespaced) currently holding objects, for discovery.
    pub fn resources(&self) -> Vec<(ResourceKey, String, bool)> {
        let mut out: Vec<(ResourceKey, String, bool)> = Vec::new();
        for key in self.objects.keys() {
            if out.last().is_some_and(|(r, _, _)| *r == key.resource) {
                continue;
            }
            let kind = self.kind_of(&key.resource);
            out.push((key.resource.clone(), kind, key.namespace.is_some()));
        }
        out
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.serial += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as u64;
        let mix = nanos ^ self.serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (mix >> 32) as u32,
            (mix >> 16) as u16,
            (mix & 0xfff) as u16,
            self.serial & 0xfff,
            (nanos.rotate_left(17) ^ self.serial) & 0xffff_ffff_ffff
        )
    }

    fn generated_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.serial += 1;
        let mut n = self
            .serial
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Fill server-set metadata of a new object and assign it a fresh resourceVersion.
    fn prepare_new(&mut self, mut obj: Value, key: &ObjectKey) -> Value {
        let rv = self.next_rv();
        let uid = self.new_uid();
        let meta = metadata_mut(&mut obj);
        meta.insert("name".into(), json!(key.name));
        match &key.namespace {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        meta.entry("uid").or_insert_with(|| json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("creationTimestamp")
            .or_insert_with(|| json!(now_rfc3339()));
        meta.entry("generation").or_insert_with(|| json!(1));
        obj
    }

    fn emit(&mut self, event_type: &'static str, resource: &ResourceKey, object: &Value) {
        let event = WatchEvent {
            rv: self.rv,
            event_type,
            resource: resource.clone(),
            object: Arc::new(object.clone()),
        };
        if self.history.len() == HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
        self.history.push_back(event.clone());
        let _ = self.events.send(event);
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of `resource` (in `namespace`, or all namespaces) matching `selector`.
    pub fn list(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.resource == *resource)
            .filter(|(k, _)| namespace.is_none() || k.namespace.as_deref() == namespace)
            .filter(|(_, v)| selector.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Create `obj` at `key` (409 if it exists). With `dry_run` nothing is stored.
    pub fn create(
        &mut self,
        key: &ObjectKey,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if self.objects.contains_key(key) {
            return Err(ApiError::already_exists(&key.resource.plural, &key.name));
        }
        let mut obj = obj;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            // Server-owned fields are never taken from a create request.
            meta.remove("resourceVersion");
            meta.remove("uid");
            meta.remove("creationTimestamp");
            meta.remove("generation");
        }
        if dry_run {
            let saved = (self.rv, self.serial);
            let obj = self.prepare_new(obj, key);
            (self.rv, self.serial) = saved;
            return Ok(obj);
        }
        let obj = self.prepare_new(obj, key);
        self.objects.insert(key.clone(), obj.clone());
        self.emit("ADDED", &key.resource, &obj);
        Ok(obj)
    }

    /// Pick a free name for `generateName`.
    pub fn generate_name(
        &mut self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        prefix: &str,
    ) -> String {
        loop {
            let name = format!("{prefix}{}", self.generated_suffix());
            let key = ObjectKey {
                resource: resource.clone(),
                namespace: namespace.map(str::to_string),
                name: name.clone(),
            };
            if !self.objects.contains_key(&key) {
                return name;
            }
        }
    }

    /// Replace the existing object at `key` with `new`.
    ///
    /// If `new` carries a `metadata.resourceVersion` that differs from the
    /// stored one, the write is rejected with 409 Conflict. uid and
    /// creationTimestamp are kept; `generation` is bumped when anything but
    /// metadata/status changed.
    pub fn update(
        &mut self,
        key: &ObjectKey,
        new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.objects.get(key) else {
            return Err(ApiError::not_found(&key.resource.plural, &key.name));
        };
        let current_rv = meta_str(old, "resourceVersion").unwrap_or("").to_string();
        if let Some(sent) = new.get("metadata").and_then(|m| m.get("resourceVersion")) {
            let sent = match sent {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if !sent.is_empty() && sent != current_rv {
                return Err(ApiError::conflict(&key.resource.plural, &key.name));
            }
        }
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let old_generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = spec_part(old) != spec_part(&new);
        let mut new = new;
        if *old == new {
            // No-op writes do not bump the resourceVersion (like the real API).
            return Ok(old.clone());
        }
        let rv = if dry_run { self.rv } else { self.next_rv() };
        let meta = metadata_mut(&mut new);
        meta.insert("name".into(), json!(key.name));
        match &key.namespace {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        for field in ["uid", "creationTimestamp"] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        let generation = old_generation + i64::from(spec_changed);
        meta.insert("generation".into(), json!(generation));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if dry_run {
            return Ok(new);
        }
        self.objects.insert(key.clone(), new.clone());
        self.emit("MODIFIED", &key.resource, &new);
        Ok(new)
    }

    /// Insert or overwrite without any checks (bumps the resourceVersion).
    pub fn upsert(&mut self, obj: Value) -> Result<Value, String> {
        let key = self.key_of(&obj)?;
        let Some(old) = self.objects.get(&key) else {
            let obj = self.prepare_new(obj, &key);
            self.objects.insert(key.clone(), obj.clone());
            self.emit("ADDED", &key.resource, &obj);
            return Ok(obj);
        };
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let mut obj = obj;
        let rv = self.next_rv();
        let meta = metadata_mut(&mut obj);
        for field in ["uid", "creationTimestamp", "generation"] {
            if let (false, Some(v)) = (meta.contains_key(field), old_meta.get(field)) {
                meta.insert(field.into(), v.clone());
            }
        }
        if let Some(ns) = &key.namespace {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects.insert(key.clone(), obj.clone());
        self.emit("MODIFIED", &key.resource, &obj);
        Ok(obj)
    }

    /// Delete the object at `key`, returning it (with the deletion resourceVersion).
    pub fn delete(&mut self, key: &ObjectKey, dry_run: bool) -> Result<Value, ApiError> {
        if !self.objects.contains_key(key) {
            return Err(ApiError::not_found(&key.resource.plural, &key.name));
        }
        if dry_run {
            return Ok(self.objects[key].clone());
        }
        let mut obj = self.objects.remove(key).expect("checked");
        let rv = self.next_rv();
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit("DELETED", &key.resource, &obj);
        Ok(obj)
    }

    /// Subscribe to changes. With `since`, also return the recorded events
    /// after that resourceVersion (`Err(floor)` if they are no longer kept).
    #[allow(clippy::type_complexity)]
    pub fn subscribe(
        &self,
        since: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), u64> {
        let replay = match since {
            None => Vec::new(),
            Some(rv) if rv < self.history_floor => return Err(self.history_floor),
            Some(rv) => self.history.iter().filter(|e| e.rv > rv).cloned().collect(),
        };
        Ok((replay, self.events.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "db", "tier": "x"}}, "status": {"phase": "Running"}});
        let ok = |l: &str, f: &str| Selector::parse(Some(l), Some(f)).unwrap().matches(&obj);
        assert!(ok("app=db", ""));
        assert!(ok("app==db,tier", ""));
        assert!(ok("app!=web,!missing", ""));
        assert!(ok("app in (db, web),tier notin (y)", ""));
        assert!(!ok("app=web", ""));
        assert!(!ok("!tier", ""));
        assert!(ok("", "metadata.name=a,metadata.namespace=ns"));
        assert!(ok("", "status.phase=Running"));
        assert!(!ok("", "metadata.name!=a"));
    }

    #[test]
    fn timestamp_shape() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert!(ts.as_str() > "2024-01-01T00:00:00Z");
    }
}
