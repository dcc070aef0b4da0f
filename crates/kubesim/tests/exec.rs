//! Pod exec tests: kube-rs' real websocket client against local processes.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hasteward_kubesim::PodExec;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

fn pods(sim: &hasteward_kubesim::Simulator) -> Api<Pod> {
    Api::namespaced(common::client(sim), "db")
}

fn params() -> AttachParams {
    AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(1 << 20)
}

async fn read_all(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    r.expect("stream requested")
        .read_to_end(&mut buf)
        .await
        .unwrap();
    buf
}

/// Run to completion, returning (stdout, stderr, status).
async fn run(
    mut p: AttachedProcess,
) -> (
    String,
    String,
    Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
) {
    let status = p.take_status().unwrap();
    let (out, err) = tokio::join!(read_all(p.stdout()), read_all(p.stderr()));
    let status = status.await;
    p.join().await.unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        status,
    )
}

/// Alive = exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

async fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still alive after client drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn nonzero_exit_stdout_stderr_and_status() {
    let sim = common::start();
    let p = pods(&sim)
        .exec(
            "pg-0",
            ["sh", "-c", "printf hello; printf err >&2; exit 3"],
            &AttachParams::default(),
        )
        .await
        .unwrap();
    let (out, err, status) = run(p).await;
    assert_eq!((out.as_str(), err.as_str()), ("hello", "err"));
    let status = status.expect("status frame");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(
        status.message.as_deref(),
        Some("command terminated with non-zero exit code: exit status 3")
    );
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // Success, the container's env, and the recorded command.
    let p = pods(&sim)
        .exec(
            "pg-0",
            ["sh", "-c", "printf %s \"$KUBESIM_TEST_VAR\""],
            &AttachParams::default().container("postgres"),
        )
        .await
        .unwrap();
    let (out, _, status) = run(p).await;
    assert_eq!(out, "from-podexec");
    assert_eq!(status.unwrap().status.as_deref(), Some("Success"));
    let exec_req = sim
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/exec"))
        .unwrap();
    assert_eq!(exec_req.status, 101);
    assert!(!exec_req.is_mutation());
    assert_eq!(
        exec_req.exec_command.unwrap(),
        ["sh", "-c", "printf %s \"$KUBESIM_TEST_VAR\""]
    );

    // Killed by a signal: 128 + signal number.
    let p = pods(&sim)
        .exec("pg-0", ["sh", "-c", "kill -9 $$"], &AttachParams::default())
        .await
        .unwrap();
    let (_, _, status) = run(p).await;
    let causes = status.unwrap().details.unwrap().causes.unwrap();
    assert_eq!(causes[0].message.as_deref(), Some("137"));
}

#[tokio::test]
async fn stdin_is_streamed_and_closed() {
    let sim = common::start();
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut expected = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    expected.stdin.take().unwrap().write_all_sync(&data);
    let expected = String::from_utf8(expected.wait_with_output().unwrap().stdout).unwrap();

    let mut p = pods(&sim)
        .exec("pg-0", ["sha256sum"], &params())
        .await
        .unwrap();
    let mut stdin = p.stdin().unwrap();
    let writer = async {
        stdin.write_all(&data).await.unwrap();
        // Shutting down stdin sends the v5 CLOSE frame; without it sha256sum never ends.
        stdin.shutdown().await.unwrap();
    };
    let ((), (out, _, status)) = tokio::join!(writer, run(p));
    assert_eq!(out, expected);
    assert_eq!(status.unwrap().status.as_deref(), Some("Success"));

    // Both directions at once: cat echoes 5 MiB back.
    let mut p = pods(&sim).exec("pg-0", ["cat"], &params()).await.unwrap();
    let mut stdin = p.stdin().unwrap();
    let writer = async {
        stdin.write_all(&data).await.unwrap();
        stdin.shutdown().await.unwrap();
    };
    let stdout = p.stdout();
    let status = p.take_status().unwrap();
    let ((), echoed, status) = tokio::join!(writer, read_all(stdout), status);
    assert!(echoed == data, "echoed {} bytes", echoed.len());
    assert_eq!(status.unwrap().status.as_deref(), Some("Success"));
}

trait WriteAllSync {
    fn write_all_sync(self, data: &[u8]);
}

impl WriteAllSync for std::process::ChildStdin {
    fn write_all_sync(mut self, data: &[u8]) {
        std::io::Write::write_all(&mut self, data).unwrap();
    }
}

#[tokio::test]
async fn large_stdout_is_fully_relayed() {
    let sim = common::start();
    const N: usize = 50_000_000;
    let mut p = pods(&sim)
        .exec(
            "pg-0",
            ["head", "-c", &N.to_string(), "/dev/zero"],
            &params().stdin(false),
        )
        .await
        .unwrap();
    let status = p.take_status().unwrap();
    let mut stdout = p.stdout().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0));
        total += n;
    }
    assert_eq!(total, N);
    assert_eq!(status.await.unwrap().status.as_deref(), Some("Success"));
}

#[tokio::test]
async fn drop_after_bytes_cuts_the_connection() {
    let sim = common::start();
    sim.set_exec(PodExec {
        namespace: "db".into(),
        pod: "pg-1".into(),
        container: Some("postgres".into()),
        drop_after_bytes: Some(100_000),
        ..Default::default()
    });
    let mut p = pods(&sim)
        .exec(
            "pg-1",
            ["sh", "-c", "echo $$ >&2; exec head -c 10000000 /dev/zero"],
            &params().stdin(false).container("postgres"),
        )
        .await
        .unwrap();
    let status = p.take_status().unwrap();
    let mut stdout = p.stdout().unwrap();
    let mut stderr = BufReader::new(p.stderr().unwrap());
    let mut pid = String::new();
    stderr.read_line(&mut pid).await.unwrap();
    let pid: u32 = pid.trim().parse().unwrap();
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        // kube drops (does not shut down) the stdout pipe on a connection
        // error, so stop reading when nothing more arrives.
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), stdout.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    assert!(
        status.await.is_none(),
        "an abruptly dropped connection has no status"
    );
    assert!(p.join().await.is_err(), "the connection error surfaces");
    let total = counter.await.unwrap();
    assert!(total <= 100_000, "relayed {total} bytes");
    wait_dead(pid).await;
}

#[tokio::test]
async fn client_drop_kills_the_process_group() {
    let sim = common::start();
    let mut p = pods(&sim)
        .exec(
            "pg-0",
            ["sh", "-c", "sleep 30 & echo $!; echo $$; exec sleep 30"],
            &params(),
        )
        .await
        .unwrap();
    let mut lines = BufReader::new(p.stdout().unwrap()).lines();
    let background: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    let main: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    assert!(alive(main) && alive(background));
    drop(lines);
    drop(p);
    wait_dead(main).await;
    wait_dead(background).await;
}

#[tokio::test]
async fn exec_errors() {
    let sim = common::start();
    let api = pods(&sim);
    let ap = AttachParams::default;

    // Pod not running.
    let (code, _, message) = common::api_code(api.exec("pg-2", ["true"], &ap()).await);
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("container not found"), "{message}");

    // No exec configuration (pg-1 has none until set_exec).
    let (code, _, message) =
        common::api_code(api.exec("pg-1", ["true"], &ap().container("sidecar")).await);
    assert_eq!(code, 500);
    assert!(message.contains("no exec configuration"), "{message}");

    // Multi-container pod without a container name.
    let (code, _, message) = common::api_code(api.exec("pg-1", ["true"], &ap()).await);
    assert_eq!(code, 400);
    assert!(message.contains("choose one of"), "{message}");

    // Unknown container.
    let (code, _, message) =
        common::api_code(api.exec("pg-0", ["true"], &ap().container("nope")).await);
    assert_eq!(code, 400);
    assert_eq!(message, "container nope is not valid for pod pg-0");

    // Missing pod.
    let (code, reason, _) = common::api_code(api.exec("ghost", ["true"], &ap()).await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    // Unreachable pod.
    sim.set_exec(PodExec {
        namespace: "db".into(),
        pod: "pg-0".into(),
        unreachable: true,
        ..Default::default()
    });
    let (code, _, _) = common::api_code(api.exec("pg-0", ["true"], &ap()).await);
    assert_eq!(code, 500);
    sim.set_exec(PodExec {
        namespace: "db".into(),
        pod: "pg-0".into(),
        ..Default::default()
    });

    // Program not found: upgrade succeeds, status frame carries the error.
    let p = api
        .exec("pg-0", ["definitely-not-a-command-kubesim"], &ap())
        .await
        .unwrap();
    let (_, _, status) = run(p).await;
    let status = status.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(
        status.message.as_deref(),
        Some("exec: \"definitely-not-a-command-kubesim\": executable file not found in $PATH")
    );
}

#[tokio::test]
async fn cwd_and_path_prepend() {
    let sim = common::start();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("standin-tool");
    std::fs::write(&tool, "#!/bin/sh\necho \"standin $*\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    sim.set_exec(PodExec {
        namespace: "db".into(),
        pod: "pg-0".into(),
        cwd: Some(dir.path().to_path_buf()),
        path_prepend: vec![bin.clone()],
        ..Default::default()
    });
    let p = pods(&sim)
        .exec(
            "pg-0",
            ["sh", "-c", "pwd; standin-tool a b"],
            &AttachParams::default(),
        )
        .await
        .unwrap();
    let (out, err, status) = run(p).await;
    assert_eq!(status.unwrap().status.as_deref(), Some("Success"), "{err}");
    let real = std::fs::canonicalize(dir.path()).unwrap();
    let mut lines = out.lines();
    assert_eq!(
        std::fs::canonicalize(PathBuf::from(lines.next().unwrap())).unwrap(),
        real
    );
    assert_eq!(lines.next(), Some("standin a b"));
    // The direct program lookup uses the prepended PATH as well.
    let p = pods(&sim)
        .exec("pg-0", ["standin-tool", "x"], &AttachParams::default())
        .await
        .unwrap();
    assert_eq!(run(p).await.0, "standin x\n");
}

#[tokio::test]
async fn dropping_the_simulator_kills_running_commands() {
    let sim = common::start();
    let mut p = pods(&sim)
        .exec("pg-0", ["sh", "-c", "echo $$; exec sleep 30"], &params())
        .await
        .unwrap();
    let mut lines = BufReader::new(p.stdout().unwrap()).lines();
    let pid: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    assert!(alive(pid));
    drop(sim);
    wait_dead(pid).await;
    drop(p);
}

#[tokio::test]
async fn tty_merges_stderr_into_stdout() {
    let sim = common::start();
    let ap = AttachParams::default().stderr(false).tty(true);
    let mut p = pods(&sim)
        .exec(
            "pg-0",
            ["sh", "-c", "printf out; sleep 0.05; printf err >&2"],
            &ap,
        )
        .await
        .unwrap();
    let status = p.take_status().unwrap();
    let out = read_all(p.stdout()).await;
    assert_eq!(String::from_utf8(out).unwrap(), "outerr");
    assert_eq!(status.await.unwrap().status.as_deref(), Some("Success"));
}

#[tokio::test]
async fn exec_upgrade_also_accepts_post() {
    let sim = common::start();
    let client = common::client(&sim);
    let req = axum::http::Request::post(
        "/api/v1/namespaces/db/pods/pg-0/exec?command=echo&command=hi&stdout=true",
    )
    .body(Vec::new())
    .unwrap();
    let connection = client.connect(req).await.unwrap();
    assert!(connection.supports_stream_close(), "v5 negotiated");
    let frames: Vec<_> = connection
        .into_stream()
        .filter_map(|m| async move {
            let m = m.ok()?;
            (m.is_binary() && m.len() > 1).then(|| m.into_data().to_vec())
        })
        .collect()
        .await;
    assert_eq!(frames[0], b"\x01hi\n");
    assert_eq!(frames.last().unwrap()[0], 3, "status frame last");
    let log = sim.requests();
    assert_eq!(log[0].method, "POST");
    assert_eq!(
        log[0].exec_command.as_deref(),
        Some(&["echo".to_string(), "hi".to_string()][..])
    );
}
