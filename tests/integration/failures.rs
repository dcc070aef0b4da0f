//! Failure paths: nothing partial is ever committed, children never outlive a run, secrets never
//! appear in argv, and bad input gets the documented exit code.

use std::time::{Duration, Instant};

use hasteward_testkit::Postgres;
use nix::sys::signal::Signal;

use crate::support::*;

#[test]
fn producer_killed_mid_stream_leaves_no_snapshot() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    // The real dump runs, then the producer lingers; it is killed before it can exit 0.
    // After `exec`, the producer process itself is `sleep 60`.
    let child = lingering_backup(&pg, &repo, &pw, "killed", 60);
    std::thread::sleep(Duration::from_millis(300));
    for pid in pids_with("sleep 60") {
        kill(pid, Signal::SIGKILL);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pg_dumpall") && stderr.contains("failed"),
        "{stderr}"
    );
    assert!(
        repo.snapshots().is_empty(),
        "a killed dump became a snapshot"
    );
    assert_eq!(repo.locks(), 0, "stale lock left behind");
}

#[test]
fn failed_dump_exit_status_blocks_the_snapshot() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    // A complete, valid dump followed by a non-zero exit: still no snapshot.
    let bin = shim(
        repo.dir.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\"; echo 'pg_dump: error: simulated' >&2; exit 1"),
    );
    let mut args = vec!["backup".to_string(), "-o".into(), "json".into()];
    args.extend(pg_args(&pg, &pw, "failing"));
    args.extend(repo.args());
    let (code, out, _err) = run(&args, Some(&bin));
    assert_eq!(code, 1);
    let env = envelope(&out);
    assert_eq!(env["success"], false);
    assert!(
        env["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("simulated"),
        "{out}"
    );
    assert!(repo.snapshots().is_empty());
    assert_eq!(repo.locks(), 0);
}

#[test]
fn restic_killed_mid_stream_stops_the_dump_promptly() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let marker = format!("endless-producer-{}", std::process::id());
    // An endless producer: only a consumer failure can end it.
    let bin = shim(repo.dir.path(), "pg_dumpall", &format!("exec yes {marker}"));
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "resticdies"));
    args.extend(repo.args());
    let child = spawn(&args, &bin);
    wait_for("the producer", Duration::from_secs(30), || {
        !pids_with(&marker).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let restic: Vec<u32> = pids_with("backup --stdin");
    assert!(!restic.is_empty());
    for pid in restic {
        kill(pid, Signal::SIGKILL);
    }
    let killed_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "hasteward took {:?} to stop",
        killed_at.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("restic"));
    assert!(pids_with(&marker).is_empty(), "the dump outlived the run");
}

#[test]
fn ctrl_c_during_backup_leaves_no_snapshot_and_no_lock() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let child = lingering_backup(&pg, &repo, &pw, "interrupted", 61);
    std::thread::sleep(Duration::from_millis(300));
    kill(child.id(), Signal::SIGINT);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(
        repo.snapshots().is_empty(),
        "an interrupted dump became a snapshot"
    );
    assert_eq!(repo.locks(), 0, "stale lock left behind");
    assert!(
        pids_with("sleep 61").is_empty(),
        "the producer outlived the run"
    );
}

#[test]
fn no_secret_in_any_argv_during_a_backup() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let repo_pw = std::fs::read_to_string(&repo.password_file)
        .unwrap()
        .trim()
        .to_string();
    // Slow the producer down so the scan sees every child alive.
    let bin = shim(
        repo.dir.path(),
        "pg_dumpall",
        &format!("sleep 1; {REAL_PG_DUMPALL} \"$@\"; st=$?; sleep 1; exit $st"),
    );
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "secrets"));
    args.extend(repo.args());
    let mut child = spawn(&args, &bin);
    let mut scans = 0;
    let mut saw_restic = false;
    while child.try_wait().unwrap().is_none() {
        for secret in [pg.password(), repo_pw.as_str()] {
            let hits = pids_with(secret);
            assert!(hits.is_empty(), "a secret is in the argv of pids {hits:?}");
        }
        saw_restic |= !pids_with("backup --stdin").is_empty();
        scans += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scans > 10 && saw_restic,
        "the scan did not watch the backup ({scans} scans)"
    );
}

#[test]
fn wrong_repository_password_is_a_clear_error() {
    let repo = Repo::new();
    assert!(repo.restic(&["init"]).status.success());
    let bad = secret_file(repo.dir.path(), "bad.pw", "not-the-password");
    let args: Vec<String> = vec![
        "snapshots".into(),
        "--repo".into(),
        repo.path.display().to_string(),
        "--password-file".into(),
        bad.display().to_string(),
    ];
    let (code, _out, err) = run(&args, None);
    assert_eq!(code, 1);
    assert!(err.contains("wrong password"), "{err}");
}

#[test]
fn unknown_db_type_is_usage_error_with_envelope() {
    let repo = Repo::new();
    let mut args: Vec<String> = [
        "backup",
        "-o",
        "json",
        "-e",
        "standalone",
        "--db-type",
        "oracle",
        "-c",
        "x",
        "--host",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(repo.args());
    let (code, out, _err) = run(&args, None);
    assert_eq!(code, 2);
    let env = envelope(&out);
    assert_eq!(env["exitCode"], 2);
    assert_eq!(env["errors"][0]["code"], "usage");
    assert!(env["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("oracle"));

    // clap-level errors get an envelope too.
    let (code, out, _) = run(
        &[
            "backup".into(),
            "-o".into(),
            "json".into(),
            "--bogus".into(),
        ],
        None,
    );
    assert_eq!(code, 2);
    assert_eq!(envelope(&out)["errors"][0]["code"], "usage");
}

#[test]
fn restic_not_on_path_is_exit_4_naming_restic() {
    let repo = Repo::new();
    let empty = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "backup",
        "-e",
        "standalone",
        "--db-type",
        "postgres",
        "-c",
        "x",
        "--host",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(repo.args());
    let out = hasteward()
        .args(&args)
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("restic not found"), "{stderr}");
}

#[test]
fn unreachable_database_is_exit_4_and_no_snapshot() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "db.pw", "x");
    let port = hasteward_testkit::free_port();
    let mut args: Vec<String> = vec![
        "backup".into(),
        "-e".into(),
        "standalone".into(),
        "--db-type".into(),
        "postgres".into(),
        "-c".into(),
        "x".into(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--db-password-file".into(),
        pw.display().to_string(),
    ];
    args.extend(repo.args());
    let (code, _out, err) = run(&args, None);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(repo.snapshots().is_empty());
}
