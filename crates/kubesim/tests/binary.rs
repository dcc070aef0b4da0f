//! The `hasteward-kubesim` binary: fixtures dir, kubeconfig, request log, signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hasteward_kubesim::RecordedRequest;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

const BIN: &str = env!("CARGO_BIN_EXE_hasteward-kubesim");

/// Kills the simulator process if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_fixtures_until_sigterm() {
    common::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    std::fs::write(fixtures.join("cluster.yaml"), common::FIXTURES).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let record = dir.path().join("requests.jsonl");

    let child = Command::new(BIN)
        .arg("--fixtures")
        .arg(&fixtures)
        .args(["--listen", "127.0.0.1:0", "--namespace", "db"])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .arg(format!("--record={}", record.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");

    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        line["listening on ".len()..].trim().to_string() + "/"
    );
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    let pod = pods.get("pg-0").await.unwrap();
    assert_eq!(pod.metadata.labels.unwrap()["role"], "primary");

    let log = std::fs::read_to_string(&record).unwrap();
    let first: RecordedRequest = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first.path, "/api/v1/namespaces/db/pods/pg-0");
    assert_eq!(first.status, 200);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "simulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn rejects_bad_arguments() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--fixtures", "/nonexistent", "--listen", "0.0.0.0:1234"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("only loopback"), "{err}");
    let (code, err) = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--fixtures DIR is required"), "{err}");
    let (code, err) = run(&["--bogus"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown argument"), "{err}");
    let (code, err) = run(&["--fixtures", "/nonexistent-kubesim-dir"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("reading fixture directory"), "{err}");
}
