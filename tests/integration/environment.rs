//! Configuration from the environment: restic's own variables, `HASTEWARD_*` variables, a
//! machine without a writable home or temp dir, and the JSONL event stream.

use hasteward_testkit::{MariaDb, Postgres};
use nix::sys::signal::Signal;

use crate::support::*;

#[test]
fn restic_and_hasteward_env_vars_replace_flags() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    // Everything through HASTEWARD_* and RESTIC_* variables, no flags but the command.
    let out = hasteward()
        .arg("backup")
        .env("HASTEWARD_ENGINE", "standalone")
        .env("HASTEWARD_DB_TYPE", "postgres")
        .env("HASTEWARD_CLUSTER", "envset")
        .env("HASTEWARD_HOST", pg.host())
        .env("HASTEWARD_PORT", pg.port().to_string())
        .env("HASTEWARD_DB_USER", pg.user())
        .env("HASTEWARD_DB_PASSWORD_FILE", &pw)
        .env("HASTEWARD_OUTPUT", "json")
        .env("RESTIC_REPOSITORY", &repo.path)
        .env("RESTIC_PASSWORD", "repo-Secret-8b1f")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        envelope(&stdout)["data"]["path"],
        "/default/envset/pg_dumpall.sql"
    );
    // RESTIC_PASSWORD_COMMAND works too (and never puts the password in our argv).
    let out = hasteward()
        .args(["snapshots", "-o", "json", "-c", "envset"])
        .env("HASTEWARD_REPO", &repo.path)
        .env(
            "RESTIC_PASSWORD_COMMAND",
            format!("cat {}", repo.password_file.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        envelope(&stdout)["data"]["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // No password source at all: a usage error naming the options.
    let out = hasteward()
        .args(["snapshots"])
        .env("RESTIC_REPOSITORY", &repo.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-file"));
}

#[test]
fn backup_works_without_a_writable_home_or_temp_dir() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "scratch"));
    args.extend(repo.args());
    let out = hasteward()
        .args(&args)
        .env("HOME", "/dev/null/no-home")
        .env("TMPDIR", "/dev/null/no-tmp")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(repo.snapshots().len(), 1);
}

#[test]
fn jsonl_streams_events_then_the_envelope() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let mut args = vec!["backup".to_string(), "-o".into(), "jsonl".into()];
    args.extend(pg_args(&pg, &pw, "events"));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["type"].as_str().unwrap_or("envelope"))
        .collect();
    assert_eq!(
        kinds,
        [
            "run.started",
            "step.started",
            "step.completed",
            "envelope",
            "run.completed"
        ]
    );
    assert_eq!(lines[3]["success"], true);
    assert_eq!(lines[3]["schemaVersion"], "hasteward/v1");
    let run_id = lines[0]["runId"].as_str().unwrap();
    assert!(lines.iter().all(|l| l["runId"] == run_id));
}

#[test]
fn sigterm_during_backup_leaves_no_snapshot_and_no_lock() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let child = lingering_backup(&pg, &repo, &pw, "terminated", 62);
    kill(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.snapshots().is_empty());
    assert_eq!(repo.locks(), 0);
    assert!(pids_with("sleep 62").is_empty());
}

#[test]
fn mysql_flavour_uses_mysqldump_naming() {
    let db = MariaDb::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", db.password());
    db.sql(None, "CREATE DATABASE legacy; CREATE TABLE legacy.t (v INT); INSERT INTO legacy.t VALUES (1),(2),(3)");
    let mut args = maria_args(&db, &pw, "my1");
    let pos = args.iter().position(|a| a == "mariadb").unwrap();
    args[pos] = "mysql".into();
    let mut backup = vec!["backup".to_string()];
    backup.extend(args.clone());
    backup.extend(repo.args());
    let (code, out, err) = run(&backup, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        repo.snapshots()[0]["paths"][0],
        "/default/my1/mysqldump.sql"
    );
    db.sql(None, "DROP DATABASE legacy");
    let mut restore = vec!["restore".to_string()];
    restore.extend(args);
    restore.extend(repo.args());
    let (code, out, err) = run(&restore, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(db.sql(None, "SELECT SUM(v) FROM legacy.t"), "6");
}
