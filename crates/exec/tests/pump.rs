//! The commit gate against real local processes: a consumer may see EOF only after the producer
//! succeeded. The consumer here writes `<out>.eof` only when its stdin reached a clean EOF, which
//! is exactly the moment restic would commit a snapshot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hasteward_exec::{gated, CommandSpec, LocalRunner, PumpError, PumpOptions, Runner, Signal};

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("sh").arg("-c").arg(script)
}

/// A consumer that copies stdin into `out` and marks a clean EOF in `out.eof`.
fn committing_consumer(out: &Path) -> CommandSpec {
    CommandSpec::new("sh")
        .arg("-c")
        .arg(r#"cat > "$1" && touch "$1.eof""#)
        .arg("sh")
        .arg(out)
        .stdin_piped()
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn committed(out: &Path) -> bool {
    let mut eof = out.as_os_str().to_owned();
    eof.push(".eof");
    Path::new(&eof).exists()
}

fn fast_opts() -> PumpOptions {
    PumpOptions {
        abort_grace: Duration::from_secs(5),
        producer_grace: Duration::from_secs(1),
        ..PumpOptions::default()
    }
}

async fn run(
    producer: CommandSpec,
    consumer: CommandSpec,
    opts: &PumpOptions,
) -> Result<hasteward_exec::PumpReport, PumpError> {
    let mut c = LocalRunner.spawn(&consumer).await.unwrap();
    let mut p = LocalRunner.spawn(&producer).await.unwrap();
    gated(&mut p, &mut c, opts).await
}

#[tokio::test]
async fn success_commits_and_hashes_the_exact_stream() {
    let (_d, out) = tmp("out");
    let report = run(sh("printf hello"), committing_consumer(&out), &fast_opts())
        .await
        .unwrap();
    assert_eq!(report.bytes, 5);
    assert_eq!(
        report.sha256,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"hello");
    assert!(committed(&out));
}

#[tokio::test]
async fn large_stream_passes_intact() {
    let (_d, out) = tmp("out");
    let report = run(
        sh("head -c 50000000 /dev/zero"),
        committing_consumer(&out),
        &fast_opts(),
    )
    .await
    .unwrap();
    assert_eq!(report.bytes, 50_000_000);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 50_000_000);
    assert!(committed(&out));
}

#[tokio::test]
async fn failed_producer_never_reaches_eof() {
    let (_d, out) = tmp("out");
    let err = run(
        sh("printf partial; exit 3"),
        committing_consumer(&out),
        &fast_opts(),
    )
    .await
    .unwrap_err();
    match &err {
        PumpError::ProducerFailed { outcome, bytes, .. } => {
            assert_eq!(outcome.code, Some(3));
            assert_eq!(*bytes, 7);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        !committed(&out),
        "consumer saw a clean EOF after a failed producer"
    );
}

#[tokio::test]
async fn producer_killed_mid_stream_is_a_failure() {
    let (_d, out) = tmp("out");
    let mut c = LocalRunner.spawn(&committing_consumer(&out)).await.unwrap();
    let mut p = LocalRunner
        .spawn(&sh("printf some-bytes; exec sleep 30"))
        .await
        .unwrap();
    let pid = p.control.id().unwrap();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let err = gated(&mut p, &mut c, &fast_opts()).await.unwrap_err();
    killer.await.unwrap();
    match &err {
        PumpError::ProducerFailed { outcome, .. } => assert_eq!(outcome.signal, Some(9)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!committed(&out));
}

#[tokio::test]
async fn consumer_failure_stops_an_endless_producer_promptly() {
    let started = Instant::now();
    let consumer = sh("head -c 100000 >/dev/null; exit 7").stdin_piped();
    let mut c = LocalRunner.spawn(&consumer).await.unwrap();
    let mut p = LocalRunner.spawn(&CommandSpec::new("yes")).await.unwrap();
    let pid = p.control.id().unwrap();
    let err = gated(&mut p, &mut c, &fast_opts()).await.unwrap_err();
    match &err {
        PumpError::ConsumerFailed { outcome, .. } => assert_eq!(outcome.code, Some(7)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The producer was reaped: no such process any more.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "producer still running"
    );
}

#[tokio::test]
async fn stalled_producer_is_aborted() {
    let (_d, out) = tmp("out");
    let opts = PumpOptions {
        stall_timeout: Some(Duration::from_millis(300)),
        ..fast_opts()
    };
    let err = run(
        sh("printf a; exec sleep 30"),
        committing_consumer(&out),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PumpError::ProducerStalled { bytes: 1, .. }),
        "{err:?}"
    );
    assert!(!committed(&out));
}

#[tokio::test]
async fn cancel_interrupts_the_consumer_before_eof() {
    let (_d, out) = tmp("out");
    let opts = fast_opts();
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let err = run(
        sh("printf a; exec sleep 30"),
        committing_consumer(&out),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!committed(&out));
}

#[tokio::test]
async fn missing_completion_marker_blocks_the_commit() {
    let (_d, out) = tmp("out");
    let opts = PumpOptions {
        completion_marker: Some(b"-- dump complete".to_vec()),
        ..fast_opts()
    };
    let err = run(
        sh("printf 'CREATE TABLE t'"),
        committing_consumer(&out),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PumpError::Incomplete { .. }), "{err:?}");
    assert!(!committed(&out));
    let (_d2, out2) = tmp("out");
    run(
        sh("printf 'data\\n-- dump complete\\n\\n'"),
        committing_consumer(&out2),
        &opts,
    )
    .await
    .unwrap();
    assert!(committed(&out2));
}

#[tokio::test]
async fn stderr_flood_does_not_deadlock_and_keeps_a_tail() {
    let (_d, out) = tmp("out");
    let producer = sh("i=0; while [ $i -lt 20000 ]; do echo \"warning line $i\" >&2; i=$((i+1)); done; printf ok; exit 2");
    let err = run(producer, committing_consumer(&out), &fast_opts())
        .await
        .unwrap_err();
    match err {
        PumpError::ProducerFailed { outcome, .. } => {
            assert!(
                outcome.stderr_tail.ends_with("warning line 19999"),
                "{}",
                outcome.stderr_tail
            );
            assert!(outcome.stderr_tail.len() <= 64 * 1024);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn consumer_abort_signal_is_configurable() {
    // A consumer that ignores SIGINT is killed after the grace period.
    let (_d, out) = tmp("out");
    let consumer = CommandSpec::new("sh")
        .arg("-c")
        .arg(r#"trap '' INT; cat > "$1" && touch "$1.eof""#)
        .arg("sh")
        .arg(&out)
        .stdin_piped();
    let opts = PumpOptions {
        abort_grace: Duration::from_millis(500),
        consumer_abort: Signal::Interrupt,
        ..fast_opts()
    };
    let err = run(sh("printf x; exit 1"), consumer, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, PumpError::ProducerFailed { .. }));
    assert!(!committed(&out));
}
