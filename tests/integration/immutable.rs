//! Immutable repositories on a real S3 server with Object Lock (SeaweedFS on loopback): a
//! compromised backup writer cannot destroy history, and retention runs only with the
//! maintenance credential.

use std::path::Path;
use std::process::{Command, Output};

use hasteward_testkit::{Postgres, SeaweedS3, S3_MAINTENANCE, S3_WRITER};
use serde_json::Value;

use crate::support::{hasteward, pg_args, secret_file};

const BUCKET: &str = "vault";

/// `hasteward ARGS` with `env` (the S3 credential) in its environment.
fn run_as(args: &[String], env: &[(String, String)]) -> (i32, String, String) {
    let out = hasteward()
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Plain restic as `env`'s identity: what a compromised writer could run.
fn restic_as(repo: &str, password_file: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", password_file)
        .env_remove("RESTIC_PASSWORD")
        .envs(env.iter().cloned())
        .output()
        .expect("restic is installed (scripts/install-deps.sh)")
}

fn snapshot_ids(repo: &str, password_file: &Path, env: &[(String, String)]) -> Vec<String> {
    let out = restic_as(repo, password_file, env, &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_object_locked_repository_keeps_its_history_from_its_own_writer() {
    let s3 = SeaweedS3::start();
    s3.create_locked_bucket(BUCKET, 1);
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE ledger AS SELECT g AS id, 'entry-' || g AS note FROM generate_series(1, 300) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let db_pw = secret_file(dir.path(), "db-pw", pg.password());
    let repo_pw = secret_file(dir.path(), "repo-pw", "locked-repo-pass-41");
    let repo = s3.repository(BUCKET, "pg");
    let writer = SeaweedS3::env(S3_WRITER);
    let repo_args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--repo".to_string(),
            repo.clone(),
            "--password-file".into(),
            repo_pw.display().to_string(),
        ]);
        a
    };

    // Two nightly backups with the writer credential (the first creates the repository).
    for round in 0..2 {
        let mut args = repo_args(&["backup"]);
        args.extend(pg_args(&pg, &db_pw, "pg"));
        let (code, out, err) = run_as(&args, &writer);
        assert_eq!(code, 0, "backup {round}: {out}\n{err}");
        pg.psql(
            "postgres",
            "INSERT INTO ledger VALUES (1000, 'second night')",
        );
    }
    let first = snapshot_ids(&repo, &repo_pw, &writer);
    assert_eq!(first.len(), 2, "{first:?}");
    // Deletes so far only added markers (restic's lock files, and each snapshot hasteward
    // re-tagged with its checksum): every version is kept.
    let (versions_before, markers_before) = s3.versions(BUCKET, "pg/");
    let compromised_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;

    // The writer is compromised: it forgets and prunes everything but the last snapshot.
    let rogue = restic_as(
        &repo,
        &repo_pw,
        &writer,
        &["forget", "--keep-last", "1", "--prune"],
    );
    eprintln!(
        "rogue prune: {:?}\n{}",
        rogue.status,
        String::from_utf8_lossy(&rogue.stderr)
    );
    assert_eq!(snapshot_ids(&repo, &repo_pw, &writer).len(), 1);
    // Nothing was destroyed: every object version is still stored (deletes only added markers),
    // and the writer cannot delete a version for good, not even with the GOVERNANCE bypass.
    let (versions_after, markers_after) = s3.versions(BUCKET, "pg/");
    assert!(
        versions_after >= versions_before,
        "{versions_after} < {versions_before}"
    );
    assert!(
        markers_after > markers_before,
        "the prune deleted something"
    );
    assert!(!s3.delete_version_as(S3_WRITER, BUCKET, "pg/snapshots/"));
    assert!(!s3.delete_version_as(S3_WRITER, BUCKET, "pg/data/"));
    assert_eq!(s3.versions(BUCKET, "pg/").0, versions_after);

    // Recovery with the maintenance credential: the delete markers made since the compromise go,
    // and both snapshots are back, whole: the repository checks clean and the first one
    // verifies against its checksum.
    assert!(s3.remove_delete_markers_since(BUCKET, compromised_at) > 0);
    let maintenance = SeaweedS3::env(S3_MAINTENANCE);
    let mut recovered = snapshot_ids(&repo, &repo_pw, &maintenance);
    recovered.sort();
    let mut expected = first.clone();
    expected.sort();
    assert_eq!(recovered, expected);
    let (code, out, err) = run_as(
        &repo_args(&["check", "--read-data-subset", "100%"]),
        &writer,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let mut verify = repo_args(&["verify", "--snapshot", &first[0]]);
    verify.extend(pg_args(&pg, &db_pw, "pg")[..6].iter().cloned());
    let (code, out, err) = run_as(&verify, &writer);
    assert_eq!(code, 0, "{out}\n{err}");

    // hasteward's own retention on an immutable repository: refused with the writer's
    // credential, before anything is touched...
    let prune = repo_args(&[
        "prune",
        "-e",
        "standalone",
        "-c",
        "pg",
        "--keep-last",
        "1",
        "--immutable",
    ]);
    let (code, out, err) = run_as(&prune, &writer);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("--maintenance-env-file"), "{err}");
    assert_eq!(snapshot_ids(&repo, &repo_pw, &writer).len(), 2);
    // ...and applied with the maintenance credential (from a file, never argv). The forgotten
    // snapshot's objects stay stored as locked versions until their retention ends.
    let env_file = secret_file(
        dir.path(),
        "maintenance.env",
        &format!(
            "# the maintenance identity\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
            S3_MAINTENANCE.0, S3_MAINTENANCE.1
        ),
    );
    let versions_kept = s3.versions(BUCKET, "pg/").0;
    let mut with_maintenance = prune.clone();
    with_maintenance.extend([
        "--maintenance-env-file".to_string(),
        env_file.display().to_string(),
        "-o".into(),
        "json".into(),
    ]);
    let (code, out, err) = run_as(&with_maintenance, &writer);
    assert_eq!(code, 0, "{out}\n{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        result["data"]["removed"].as_array().map(Vec::len),
        Some(1),
        "{result:#}"
    );
    assert_eq!(snapshot_ids(&repo, &repo_pw, &writer).len(), 1);
    assert!(s3.versions(BUCKET, "pg/").0 >= versions_kept);
    // Space comes back only through the maintenance credential: under GOVERNANCE it may remove a
    // locked version for good (here an old lock file's), which the writer could not.
    let locks_before = s3.versions(BUCKET, "pg/locks/").0;
    assert!(s3.delete_version_as(S3_MAINTENANCE, BUCKET, "pg/locks/"));
    assert_eq!(s3.versions(BUCKET, "pg/locks/").0, locks_before - 1);
    // No secret reached an argv: the maintenance key is only in the file.
    assert!(!with_maintenance
        .iter()
        .any(|a| a.contains(S3_MAINTENANCE.1)));
}
