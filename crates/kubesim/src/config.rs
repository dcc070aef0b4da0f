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
    /// Name of the pod.
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
        self.namespace == namespace
            && self.pod == pod
            && match &self.container {
                None => true,
                Some(c) => container == Some(c.as_str()),
            }
    }
}

/// Everything the simulator starts with: seed objects and exec configurations.
#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// Kubernetes objects to seed the store with.
    pub objects: Vec<Value>,
    /// Exec configurations (later entries for the same pod/container win).
    pub exec: Vec<PodExec>,
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
            if kind != "PodExec" {
                return Err(Error::Fixture(format!(
                    "{what}: unknown simulator kind {kind:?} (only PodExec exists)"
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
