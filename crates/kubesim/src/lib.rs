//! A small, stateful Kubernetes API simulator for hasteward's tests.
//!
//! Real clusters are slow and heavy to stand up in CI, and mocking kube-rs at
//! the type level would skip the HTTP/websocket layer where many bugs live.
//! kubesim instead serves the subset of the Kubernetes REST API that hasteward
//! uses from an in-memory store seeded from YAML fixtures, records every
//! request so tests can assert on what was (not) written, and implements pod
//! `exec` over the Kubernetes websocket channel protocol by running the
//! command as a *local* process — so a "pod" can be a real local PostgreSQL or
//! Galera node. Pods created through the API can also be *run* as local
//! processes ([`PodRun`]), for helper pods. See `docs/kubesim.md` for the
//! fixture format and limits.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod config;
mod discovery;
mod exec;
mod kinds;
mod patch;
mod podrun;
mod rest;
mod scale;
mod status;
mod store;
mod volume;
mod watch;

pub use config::{Error, PodExec, PodRun, SimConfig, SIM_API_VERSION};
pub use kinds::plural_of;

/// One request as the simulator saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/api/v1/namespaces/db/pods/pg-0/exec`.
    pub path: String,
    /// Raw query string, percent-encoded as received (empty if none).
    pub query: String,
    /// Request body as lossy UTF-8 (`None` for empty bodies and exec requests).
    pub body: Option<String>,
    /// The decoded `command` parameters of exec requests.
    pub exec_command: Option<Vec<String>>,
    /// HTTP status code of the response (101 for a successful exec upgrade).
    pub status: u16,
}

impl RecordedRequest {
    /// Whether this request (tried to) change state: POST/PUT/PATCH/DELETE,
    /// except pod exec/attach (which are POST-able but do not write objects).
    pub fn is_mutation(&self) -> bool {
        let method_writes = matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        method_writes
            && self.exec_command.is_none()
            && !self.path.ends_with("/exec")
            && !self.path.ends_with("/attach")
    }
}

/// Fault injection: the `nth` (0-based) request with this method and exact path (counted from
/// when the fault is set) is answered with HTTP `status` instead of being served. One-shot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFault {
    /// HTTP method (`PATCH`, `DELETE`, …).
    pub method: String,
    /// Exact request path (`/api/v1/namespaces/db/pods/pg-2`), or a prefix ending in `*`
    /// (`/api/v1/namespaces/db/pods/pg-2-reseed-*`, for generated names).
    pub path: String,
    /// Which matching request fails (0 = the next one).
    pub nth: usize,
    /// The status it gets (e.g. 500).
    pub status: u16,
}

/// Lock a mutex, ignoring poisoning (a panicked handler must not wedge the simulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by all request handlers.
pub(crate) struct Shared {
    pub(crate) store: Mutex<store::Store>,
    pub(crate) exec: Mutex<Vec<PodExec>>,
    /// Which created pods are run as local processes.
    pub(crate) pod_runs: Mutex<Vec<PodRun>>,
    /// Captured stdout+stderr of run pods, by pod uid.
    pub(crate) pod_logs: Mutex<HashMap<String, Vec<u8>>>,
    requests: Mutex<Vec<RecordedRequest>>,
    record_file: Option<Mutex<std::fs::File>>,
    /// Process groups of exec sessions that are still running.
    pub(crate) groups: Mutex<HashSet<i32>>,
    pub(crate) addr: SocketAddr,
    /// Pending faults, with how many matching requests each has seen.
    pub(crate) faults: Mutex<Vec<(RequestFault, usize)>>,
    /// The `df` stand-in that makes mounts look like volumes of their own.
    pub(crate) volume_tools: volume::VolumeTools,
}

impl Shared {
    pub(crate) fn record(&self, request: RecordedRequest) {
        if let Some(file) = &self.record_file {
            if let Ok(mut line) = serde_json::to_vec(&request) {
                line.push(b'\n');
                let _ = lock(file).write_all(&line);
            }
        }
        lock(&self.requests).push(request);
    }

    /// The status to answer `method path` with, when a pending fault hits it (and drops it).
    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<u16> {
        let mut faults = lock(&self.faults);
        let i = faults.iter_mut().position(|(f, seen)| {
            let hit = match f.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => f.path == path,
            };
            if f.method != method || !hit {
                return false;
            }
            *seen += 1;
            *seen > f.nth
        })?;
        Some(faults.remove(i).0.status)
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    fn kill_all_groups(&self) {
        for pgid in lock(&self.groups).drain() {
            exec::kill_group(pgid);
        }
    }
}

/// Options for [`Simulator::start_with`].
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Address to listen on; must be a loopback address (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Append every recorded request as a JSON line to this file.
    pub record_file: Option<PathBuf>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            record_file: None,
        }
    }
}

/// A running simulator. It serves from its own thread and tokio runtime, so
/// it can be used from plain `#[test]` functions; dropping it stops the
/// server and kills every exec and pod process that is still running.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Start on `127.0.0.1` with an ephemeral port.
    pub fn start(config: SimConfig) -> Result<Simulator, Error> {
        Self::start_with(config, StartOptions::default())
    }

    /// Start with explicit options (listen address, request log file).
    pub fn start_with(config: SimConfig, options: StartOptions) -> Result<Simulator, Error> {
        if !options.listen.ip().is_loopback() {
            return Err(Error::NotLoopback(options.listen));
        }
        let pod_runs = config.pod_runs()?;
        let objects = config
            .objects
            .into_iter()
            .filter(|o| !config::is_pod_run_document(o))
            .collect();
        let store = store::Store::new(objects)?;
        let record_file = match &options.record_file {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
            )),
            None => None,
        };
        let listener = std::net::TcpListener::bind(options.listen)
            .map_err(|e| Error::io(format!("binding {}", options.listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configuring listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading listener address", e))?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            exec: Mutex::new(config.exec),
            pod_runs: Mutex::new(pod_runs),
            pod_logs: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            record_file,
            groups: Mutex::new(HashSet::new()),
            faults: Mutex::new(Vec::new()),
            addr,
            volume_tools: volume::VolumeTools::create()?,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubesim")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting tokio runtime", e))?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let app = rest::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("kubesim-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("kubesim: listener: {e}");
                            return;
                        }
                    };
                    use axum::serve::ListenerExt;
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    let serve = axum::serve(listener, app);
                    tokio::select! {
                        res = serve => if let Err(e) = res { eprintln!("kubesim: server: {e}") },
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task; exec
                // sessions kill their process groups when dropped.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| Error::io("spawning server thread", e))?;
        Ok(Simulator {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Write a kubeconfig with one cluster/user/context named `kubesim`
    /// (current context) pointing at this simulator, without credentials.
    pub fn write_kubeconfig(&self, path: &Path, namespace: Option<&str>) -> std::io::Result<()> {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let ns_line = match namespace {
            Some(ns) => format!("\n    namespace: {}", q(ns)),
            None => String::new(),
        };
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {server}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim{ns_line}
current-context: kubesim
users:
- name: kubesim
  user: {{}}
preferences: {{}}
",
            server = q(&self.url()),
        );
        std::fs::write(path, text)
    }

    /// Every request so far (excluding `/__sim/*`), in order of completion.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Read an object straight from the store, e.g.
    /// `get("apps/v1", "statefulsets", Some("db"), "pg")`.
    pub fn get(
        &self,
        api_version: &str,
        kind_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = store::ObjectKey {
            resource: store::ResourceKey::new(api_version, kind_plural),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        lock(&self.shared.store).get(&key).cloned()
    }

    /// Insert or overwrite an object directly (bumps its resourceVersion and
    /// notifies watchers), e.g. to simulate a concurrent writer or a controller.
    ///
    /// # Panics
    /// If the object lacks apiVersion, kind or metadata.name.
    pub fn put(&self, obj: Value) {
        if let Err(e) = lock(&self.shared.store).upsert(obj) {
            panic!("Simulator::put: {e}");
        }
    }

    /// Add an exec configuration, replacing one for the same namespace/pod/container.
    pub fn set_exec(&self, exec: PodExec) {
        let mut configs = lock(&self.shared.exec);
        configs.retain(|c| {
            !(c.namespace == exec.namespace && c.pod == exec.pod && c.container == exec.container)
        });
        configs.push(exec);
    }

    /// Makes one future request fail (see [`RequestFault`]); faults already pending stay.
    pub fn fail_request(&self, fault: RequestFault) {
        lock(&self.shared.faults).push((fault, 0));
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Add a pod run configuration, replacing one with the same namespace, name prefix and
    /// labels. It applies to pods created from now on.
    pub fn set_pod_run(&self, run: PodRun) {
        let mut configs = lock(&self.shared.pod_runs);
        configs.retain(|c| {
            !(c.namespace == run.namespace
                && c.name_prefix == run.name_prefix
                && c.labels == run.labels)
        });
        configs.push(run);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.kill_all_groups();
    }
}
