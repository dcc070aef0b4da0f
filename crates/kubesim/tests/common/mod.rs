//! Shared fixtures for the integration tests: a small "db" namespace with
//! three pods and a statefulset, and a kube client pointed at the simulator.
#![allow(dead_code)]

use hasteward_kubesim::{SimConfig, Simulator};

/// The default fixture set.
pub const FIXTURES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: db}
---
apiVersion: v1
kind: Pod
metadata:
  name: pg-0
  namespace: db
  labels: {app: pg, role: primary}
spec:
  containers: [{name: postgres, image: postgres:17}]
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: pg-1
  namespace: db
  labels: {app: pg, role: replica}
spec:
  containers: [{name: postgres, image: postgres:17}, {name: sidecar, image: busybox}]
  # two containers: exec must name one
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: pg-2
  namespace: db
  labels: {app: pg}
spec:
  containers: [{name: postgres, image: postgres:17}]
status: {phase: Pending}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pg, namespace: db, labels: {app: pg}}
spec:
  replicas: 3
  selector: {matchLabels: {app: pg}}
status: {replicas: 3, readyReplicas: 2}
---
apiVersion: kubesim.hasteward.dev/v1
kind: PodExec
namespace: db
pod: pg-0
env: {KUBESIM_TEST_VAR: from-podexec}
"#;

/// Start a simulator with [`FIXTURES`].
pub fn start() -> Simulator {
    Simulator::start(SimConfig::from_yaml(FIXTURES).expect("fixtures parse")).expect("start")
}

/// A kube client for `sim` with default namespace `db`.
pub fn client(sim: &Simulator) -> kube::Client {
    install_crypto_provider();
    let mut config = kube::Config::new(sim.url().parse().expect("url"));
    config.default_namespace = "db".into();
    kube::Client::try_from(config).expect("client")
}

/// kube's rustls needs a process-level crypto provider even for plain http.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `code` of a `kube::Error::Api`, panicking on other errors.
pub fn api_code<T>(result: Result<T, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(_) => panic!("expected an API error, got success"),
    }
}
