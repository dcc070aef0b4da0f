//! Fixture loading: turns multi-document YAML into seed objects and exec
//! configurations, so tests describe a cluster the same way they would write
//! manifests for a real one.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of simulator-only documents (they are never served as resources).
pub const SIM_API_VERSION: &str = "kubesim.hasteward.dev/v1";

/// Errors from loading fixtures or starting the simulator.
#[derive(Debug)]
pub enum Error {
    /// Reading a fixture file or binding the listener failed.
    Io {
        /// What was being done, e.g. the file name.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A fixture document is not valid YAML or not a valid object.
    Fixture(String),
    /// The listen address is not a loopback address.
    NotLoopback(std::net::SocketAddr),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Fixture(msg) => write!(f, "invalid fixture: {msg}"),
            Error::NotLoopback(addr) => write!(
                f,
                "refusing to listen on {addr}: kubesim only binds loopback addresses"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How `pods/exec` is simulated for one pod (or one container of a pod): the
/// requested command is run as a local process with this environment.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodExec {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod, or a prefix ending in `*` (helper pods with generated names).
    pub pod: String,
    /// Container this applies to; `None` matches any container of the pod.
    pub container: Option<String>,
    /// Working directory of the local process (default: the simulator's cwd).
    pub cwd: Option<PathBuf>,
    /// Variables added to the local process environment ("the container's own env").
    pub env: BTreeMap<String, String>,
    /// Directories put in front of `PATH` (e.g. stand-in tools).
    pub path_prepend: Vec<PathBuf>,
    /// Container paths mapped to local directories (`/var/lib/mysql` → a Galera node's data
    /// dir): every argv element mentioning a container path is rewritten before the command
    /// runs, a textual stand-in for a volume mount.
    pub mounts: BTreeMap<String, PathBuf>,
    /// Size of each mounted volume as `df` in the pod reports it, KiB (default 8 GiB): see
    /// `docs/kubesim.md`, "Volumes".
    pub volume_size_kib: Option<u64>,
    /// Fault injection: after relaying this many stdout bytes, kill the process
    /// and drop the websocket abruptly (no status frame, no close frame).
    pub drop_after_bytes: Option<u64>,
    /// Fault injection: exec requests for this pod fail with HTTP 500.
    pub unreachable: bool,
}

impl PodExec {
    /// Whether this configuration applies to an exec into `namespace/pod`,
    /// container `container` (the resolved container name, if known).
    pub(crate) fn matches(&self, namespace: &str, pod: &str, container: Option<&str>) -> bool {
        let pod_matches = match self.pod.strip_suffix('*') {
            Some(prefix) => pod.starts_with(prefix),
            None => self.pod == pod,
        };
        self.namespace == namespace
            && pod_matches
            && match &self.container {
                None => true,
                Some(c) => container == Some(c.as_str()),
            }
    }
}

/// Which pods created through the API are *run* as a local process (the first container's
/// `command` + `args`), and with which environment. See `docs/kubesim.md` ("PodRun").
///
/// A pod matches when it is in `namespace`, its name starts with `name_prefix` (if set) and it
/// carries every label of `labels`; with neither set, every pod created in the namespace
/// matches. Of several matching configurations the last one wins.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodRun {
    /// Namespace of the pods.
    pub namespace: String,
    /// Matches pods whose name starts with this (e.g. the `generateName` of a helper pod).
    pub name_prefix: Option<String>,
    /// Matches pods carrying all of these labels.
    pub labels: BTreeMap<String, String>,
    /// Working directory of the local process (default: the simulator's cwd).
    pub cwd: Option<PathBuf>,
    /// Variables added to the local process environment; they win over the container's
    /// `env` from the pod spec.
    pub env: BTreeMap<String, String>,
    /// Directories put in front of `PATH` (e.g. stand-in tools).
    pub path_prepend: Vec<PathBuf>,
    /// Container paths mapped to local directories, applied to argv (and to the values of the
    /// container's own `env`) exactly like [`PodExec::mounts`].
    pub mounts: BTreeMap<String, PathBuf>,
    /// Size of each mounted volume as `df` reports it, KiB, as [`PodExec::volume_size_kib`].
    pub volume_size_kib: Option<u64>,
}

impl PodRun {
    /// Whether a pod `namespace/name` with `labels` is run by this configuration.
    pub fn matches(&self, namespace: &str, name: &str, labels: Option<&Value>) -> bool {
        self.namespace == namespace
            && self
                .name_prefix
                .as_deref()
                .is_none_or(|prefix| name.starts_with(prefix))
            && self.labels.iter().all(|(k, v)| {
                labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v.as_str())
            })
    }

    /// The simulator document for this configuration (`apiVersion: kubesim.hasteward.dev/v1`,
    /// `kind: PodRun`), as kept in [`SimConfig::objects`].
    pub fn to_document(&self) -> Value {
        let mut doc = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut doc {
            map.retain(|_, v| !v.is_null());
            map.insert("apiVersion".into(), Value::from(SIM_API_VERSION));
            map.insert("kind".into(), Value::from("PodRun"));
        }
        doc
    }

    /// Parse a `kind: PodRun` document (apiVersion and kind included or not).
    pub(crate) fn from_document(doc: &Value) -> Result<PodRun, String> {
        let mut map = doc.as_object().cloned().unwrap_or_default();
        map.remove("apiVersion");
        map.remove("kind");
        let run: PodRun =
            serde_json::from_value(Value::Object(map)).map_err(|e| format!("PodRun: {e}"))?;
        if run.namespace.is_empty() {
            return Err("PodRun needs namespace".into());
        }
        Ok(run)
    }
}

/// Everything the simulator starts with: seed objects and exec configurations.
#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// Kubernetes objects to seed the store with. [`PodRun`] documents
    /// (`apiVersion: kubesim.hasteward.dev/v1`, `kind: PodRun`, see [`PodRun::to_document`]) are
    /// kept here too (so that `SimConfig { objects, exec }` literals stay valid); the simulator
    /// takes them out at start and never serves them.
    pub objects: Vec<Value>,
    /// Exec configurations (later entries for the same pod/container win).
    pub exec: Vec<PodExec>,
}

/// Whether `obj` is a `kubesim.hasteward.dev/v1` `PodRun` document.
pub(crate) fn is_pod_run_document(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some(SIM_API_VERSION)
        && obj.get("kind").and_then(Value::as_str) == Some("PodRun")
}

/// YAML 1.2 scalars: `no`, `on`, `y`, `0755` stay strings, as in Kubernetes manifests
/// where such values are usually meant literally (label values, modes as strings).
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    }
}

impl SimConfig {
    /// Load every `*.yaml` / `*.yml` file in `dir` (sorted by file name, not
    /// recursive); each file may hold several `---`-separated documents.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("reading fixture directory {}", dir.display()), e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            );
            if is_yaml && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut config = SimConfig::default();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            let part = Self::parse(&text, &file.display().to_string())?;
            config.objects.extend(part.objects);
            config.exec.extend(part.exec);
        }
        Ok(config)
    }

    /// The [`PodRun`] configurations among [`SimConfig::objects`], in order.
    pub fn pod_runs(&self) -> Result<Vec<PodRun>, Error> {
        self.objects
            .iter()
            .filter(|o| is_pod_run_document(o))
            .map(|o| PodRun::from_document(o).map_err(Error::Fixture))
            .collect()
    }

    /// Add a [`PodRun`] configuration (as a document in [`SimConfig::objects`]).
    pub fn add_pod_run(&mut self, run: &PodRun) {
        self.objects.push(run.to_document());
    }

    /// Parse multi-document YAML (or JSON) text.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        Self::parse(text, "<yaml>")
    }

    fn parse(text: &str, source: &str) -> Result<Self, Error> {
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
            .map_err(|e| Error::Fixture(format!("{source}: {e}")))?;
        let mut config = SimConfig::default();
        for (index, doc) in docs.into_iter().enumerate() {
            let what = format!("{source}: document {}", index + 1);
            config.add_document(doc, &what)?;
        }
        Ok(config)
    }

    fn add_document(&mut self, doc: Value, what: &str) -> Result<(), Error> {
        let Value::Object(mut map) = doc else {
            if doc.is_null() {
                return Ok(());
            }
            return Err(Error::Fixture(format!("{what}: expected a mapping")));
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return Err(Error::Fixture(format!(
                "{what}: apiVersion and kind are required"
            )));
        }
        if api_version == SIM_API_VERSION {
            if kind == "PodRun" {
                let doc = Value::Object(map);
                PodRun::from_document(&doc).map_err(|e| Error::Fixture(format!("{what}: {e}")))?;
                self.objects.push(doc);
                return Ok(());
            }
            if kind != "PodExec" {
                return Err(Error::Fixture(format!(
                    "{what}: unknown simulator kind {kind:?} (only PodExec and PodRun exist)"
                )));
            }
            map.remove("apiVersion");
            map.remove("kind");
            let exec: PodExec = serde_json::from_value(Value::Object(map))
                .map_err(|e| Error::Fixture(format!("{what}: PodExec: {e}")))?;
            if exec.namespace.is_empty() || exec.pod.is_empty() {
                return Err(Error::Fixture(format!(
                    "{what}: PodExec needs namespace and pod"
                )));
            }
            self.exec.push(exec);
            return Ok(());
        }
        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                _ => return Err(Error::Fixture(format!("{what}: List without items"))),
            };
            for (i, item) in items.into_iter().enumerate() {
                self.add_document(item, &format!("{what} item {}", i + 1))?;
            }
            return Ok(());
        }
        let has_name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            return Err(Error::Fixture(format!(
                "{what}: {kind} needs metadata.name"
            )));
        }
        self.objects.push(Value::Object(map));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_and_exec() {
        let cfg = SimConfig::from_yaml(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
status: {phase: Running}
---
apiVersion: kubesim.hasteward.dev/v1
kind: PodExec
namespace: ns
pod: p
env: {A: "1"}
pathPrepend: [/tmp/bin]
dropAfterBytes: 10
---
"#,
        )
        .unwrap();
        assert_eq!(cfg.objects.len(), 1);
        assert_eq!(cfg.exec.len(), 1);
        assert_eq!(cfg.exec[0].env["A"], "1");
        assert_eq!(cfg.exec[0].drop_after_bytes, Some(10));
        assert_eq!(cfg.exec[0].path_prepend, vec![PathBuf::from("/tmp/bin")]);
    }

    #[test]
    fn parses_pod_runs() {
        let cfg = SimConfig::from_yaml(
            r#"
apiVersion: kubesim.hasteward.dev/v1
kind: PodRun
namespace: db
namePrefix: basebackup-
labels: {app: hasteward}
mounts: {/data: /tmp/x}
"#,
        )
        .unwrap();
        let runs = cfg.pod_runs().unwrap();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.name_prefix.as_deref(), Some("basebackup-"));
        let labels = serde_json::json!({"app": "hasteward", "x": "y"});
        assert!(run.matches("db", "basebackup-abc", Some(&labels)));
        assert!(!run.matches("db", "other", Some(&labels)));
        assert!(!run.matches("db", "basebackup-abc", None));
        assert!(!run.matches("ns", "basebackup-abc", Some(&labels)));
        assert_eq!(PodRun::from_document(&run.to_document()).unwrap(), *run);
        let err = SimConfig::from_yaml(
            "apiVersion: kubesim.hasteward.dev/v1\nkind: PodRun\nnamespace: a\nnamePrefx: b\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("namePrefx"), "{err}");
        let err = SimConfig::from_yaml("apiVersion: kubesim.hasteward.dev/v1\nkind: PodRun\n")
            .unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
    }

    #[test]
    fn rejects_typos_and_missing_names() {
        let err = SimConfig::from_yaml(
            "apiVersion: kubesim.hasteward.dev/v1\nkind: PodExec\nnamespace: a\npod: b\ndropAfter: 3\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("dropAfter"), "{err}");
        let err = SimConfig::from_yaml("apiVersion: v1\nkind: Pod\nmetadata: {}\n").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
