//! Repository operations against real restic: `sync` (restic copy into a repository with its
//! own password, created with the source's chunker parameters, idempotent, retention on the
//! destination), `check` (healthy, then a deleted pack), and a prune that waits for running
//! backups instead of failing or breaking them.

use std::time::{Duration, Instant};

use hasteward_testkit::Postgres;
use serde_json::Value;

use crate::support::*;

fn backup(pg: &Postgres, repo: &Repo, pw: &std::path::Path, cluster: &str) {
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(pg, pw, cluster));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
}

fn json_run(args: &[String]) -> (i32, Value, String) {
    let mut a = args.to_vec();
    a.extend(["-o".to_string(), "json".to_string()]);
    let (code, out, err) = run(&a, None);
    (code, envelope(&out), err)
}

fn chunker_polynomial(repo: &Repo) -> String {
    let out = repo.restic(&["cat", "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    config["chunker_polynomial"].as_str().unwrap().to_string()
}

#[test]
fn sync_creates_the_copy_with_the_same_chunker_copies_once_and_applies_retention_there() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g",
    );
    let source = Repo::new();
    let dest = Repo::new();
    // The destination has its own password (`dest.password_file` holds the source's).
    let dest_pw = secret_file(dest.dir.path(), "dest.pw", "another-Secret-77c2");
    let pw = secret_file(source.dir.path(), "db.pw", pg.password());
    backup(&pg, &source, &pw, "main");
    backup(&pg, &source, &pw, "main");
    backup(&pg, &source, &pw, "other");
    let sync = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["sync".to_string(), "-c".into(), "main".into()];
        a.extend(source.args());
        a.extend([
            "--to-repo".to_string(),
            dest.path.display().to_string(),
            "--to-password-file".to_string(),
            dest_pw.display().to_string(),
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Dry run: says what it would do, creates nothing.
    let (code, env, err) = json_run(&sync(&["--dry-run"]));
    assert_eq!(code, 0, "{env}\n{err}");
    assert_eq!(env["data"]["sync"]["created"], true);
    assert_eq!(env["data"]["sync"]["copied"].as_array().unwrap().len(), 2);
    assert!(!dest.path.exists(), "a dry run created the destination");

    let started = Instant::now();
    let (code, env, err) = json_run(&sync(&[]));
    let took = started.elapsed();
    assert_eq!(code, 0, "{env}\n{err}");
    let s = &env["data"]["sync"];
    assert_eq!(s["created"], true, "{env}");
    assert_eq!(s["copied"].as_array().unwrap().len(), 2, "{env}");
    let added = s["bytesAdded"].as_u64().unwrap();
    assert!(added > 0, "{env}");
    eprintln!("sync: 2 snapshots, {added} bytes added in {took:?}");
    // Only cluster `main` went over, with its tags; the destination opens with its own
    // password only.
    let mut dest_with_own = Repo::new();
    dest_with_own.path = dest.path.clone();
    dest_with_own.password_file = dest_pw.clone();
    assert_eq!(
        chunker_polynomial(&source),
        chunker_polynomial(&dest_with_own)
    );
    let copied = dest_with_own.snapshots();
    assert_eq!(copied.len(), 2);
    assert!(copied.iter().all(|s| s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "cluster=main")));
    let wrong = dest.restic(&["snapshots"]);
    assert!(
        !wrong.status.success(),
        "the source's password opened the copy"
    );

    // Again: nothing new.
    let (code, env, _) = json_run(&sync(&[]));
    assert_eq!(code, 0, "{env}");
    assert_eq!(env["data"]["sync"]["copied"].as_array().unwrap().len(), 0);
    assert_eq!(env["data"]["sync"]["alreadyThere"], 2);
    assert_eq!(dest_with_own.snapshots().len(), 2);

    // A new backup, then a sync with retention on the destination: one copied, one kept.
    backup(&pg, &source, &pw, "main");
    let (code, env, err) = json_run(&sync(&["--keep-last", "1"]));
    assert_eq!(code, 0, "{env}\n{err}");
    assert_eq!(env["data"]["sync"]["copied"].as_array().unwrap().len(), 1);
    assert_eq!(
        env["data"]["retention"]["removed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(dest_with_own.snapshots().len(), 1);
    assert_eq!(source.snapshots().len(), 4, "the source is never pruned");
    // A source snapshot re-tagged after it was copied is not "already there": its new tags go
    // over too.
    let tagged = source.restic(&["tag", "--add", "reviewed=yes", "latest"]);
    assert!(
        tagged.status.success(),
        "{}",
        String::from_utf8_lossy(&tagged.stderr)
    );
    let latest = source.snapshots().last().unwrap()["short_id"].clone();
    // (Without retention: the copies the last retention removed come back too, and the old and
    // the re-tagged copy share their time, so keep-last would pick either.)
    let (code, env, err) = json_run(&sync(&[]));
    assert_eq!(code, 0, "{env}\n{err}");
    assert!(
        env["data"]["sync"]["copied"]
            .as_array()
            .unwrap()
            .contains(&latest),
        "{env}"
    );
    assert!(dest_with_own.snapshots().iter().any(|s| s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "reviewed=yes")));
    // The copy is usable: verify re-reads it against its recorded checksum.
    let mut verify: Vec<String> = [
        "verify",
        "-e",
        "standalone",
        "--db-type",
        "postgres",
        "-c",
        "main",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    verify.extend(dest_with_own.args());
    let (code, out, err) = run(&verify, None);
    assert_eq!(code, 0, "{out}\n{err}");

    // Bad input: the same repository on both ends.
    let mut same = vec!["sync".to_string()];
    same.extend(source.args());
    same.extend([
        "--to-repo".to_string(),
        source.path.display().to_string(),
        "--to-password-file".to_string(),
        source.password_file.display().to_string(),
    ]);
    let (code, env, _) = json_run(&same);
    assert_eq!(code, 2, "{env}");
}

#[test]
fn check_passes_on_a_healthy_repository_and_names_a_deleted_pack() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    backup(&pg, &repo, &pw, "main");
    let check = |extra: &[&str]| {
        let mut a = vec!["check".to_string()];
        a.extend(repo.args());
        a.extend(extra.iter().map(|s| s.to_string()));
        json_run(&a)
    };
    for extra in [&[][..], &["--read-data-subset", "100%"], &["--rotate", "7"]] {
        let t = Instant::now();
        let (code, env, err) = check(extra);
        eprintln!("check {extra:?}: {:?}", t.elapsed());
        assert_eq!(code, 0, "{extra:?}: {env}\n{err}");
    }
    let (code, env, _) = check(&["--read-data-subset", "0/7"]);
    assert_eq!(code, 2, "{env}");
    assert!(env["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("n/t"));

    // A pack file disappears (a storage fault, a partial upload): the largest, which holds the
    // dump's data (a missing tree pack makes restic 0.14 retry reading it for 90 s).
    let data = repo.path.join("data");
    let pack = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|d| d.ok())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().filter_map(|f| f.ok()))
        .max_by_key(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .map(|f| f.path())
        .expect("a pack file");
    std::fs::remove_file(&pack).unwrap();
    let t = Instant::now();
    let (code, env, err) = check(&[]);
    eprintln!("check of the damaged repository: {:?}", t.elapsed());
    assert_eq!(code, 1, "{env}\n{err}");
    assert_eq!(env["errors"][0]["code"], "repository.damaged", "{env}");
    let message = env["errors"][0]["message"].as_str().unwrap();
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        message.contains(&name[..8]) || message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn a_prune_waits_for_running_backups_and_the_repository_stays_whole() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    backup(&pg, &repo, &pw, "main");
    // A backup whose dump lingers (restic holds its shared lock meanwhile), then succeeds.
    let bin = shim(
        repo.dir.path(),
        "pg_dumpall",
        &format!("{REAL_PG_DUMPALL} \"$@\"; sleep 63 || true; exit 0"),
    );
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "main"));
    args.extend(repo.args());
    let lingering = spawn(&args, &bin);
    wait_for("the lingering dump", Duration::from_secs(30), || {
        !pids_with("sleep 63").is_empty()
    });
    // A second backup runs alongside it: its snapshot is committed while the first still runs
    // (shared locks); only its checksum tags wait for the exclusive lock.
    let plain = tempfile::tempdir().unwrap();
    let second = spawn(&args, plain.path());
    wait_for("the concurrent snapshot", Duration::from_secs(60), || {
        repo.snapshots().len() == 2
    });
    assert!(
        !pids_with("sleep 63").is_empty(),
        "the first backup ended early"
    );
    // A prune needs the exclusive lock: it waits, saying so.
    let mut prune = vec![
        "prune".to_string(),
        "-c".into(),
        "main".into(),
        "--keep-last".into(),
        "2".into(),
        "--lock-wait".into(),
        "120".into(),
    ];
    prune.extend(repo.args());
    let pruner = spawn(&prune, plain.path());
    std::thread::sleep(Duration::from_secs(4));
    assert!(pids_with("sleep 63").len() == 1, "still lingering");
    for pid in pids_with("sleep 63") {
        kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    for (what, child) in [("first backup", lingering), ("second backup", second)] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pruned = pruner.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&pruned.stderr);
    assert_eq!(pruned.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("repository busy"), "{stderr}");
    // Three backups, the oldest pruned; every kept one carries its checksum; nothing broken.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps.iter().all(|s| s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t.as_str().unwrap().starts_with("sha256="))));
    assert_eq!(repo.locks(), 0);
    let out = repo.restic(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn restore_drills_restore_into_a_throwaway_server_check_it_and_leave_nothing_behind() {
    use hasteward_testkit::MariaDb;
    // PostgreSQL.
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1234) g; CREATE TABLE empty_one (x int)",
    );
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    backup(&pg, &repo, &pw, "main");
    let drill = |set: &[&str], extra: &[&str]| {
        let mut a: Vec<String> = ["verify", "--restore-test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(set.iter().map(|s| s.to_string()));
        a.extend(repo.args());
        a.extend(extra.iter().map(|s| s.to_string()));
        json_run(&a)
    };
    let pg_set = ["-e", "standalone", "--db-type", "postgres", "-c", "main"];
    let (code, env, err) = drill(
        &pg_set,
        &[
            "--assert-database",
            "shop",
            "--assert-sql",
            "SELECT count(*) = 1234 FROM orders",
        ],
    );
    assert_eq!(code, 0, "{env}\n{err}");
    let shop = drilled_database(&env, "shop");
    assert_eq!(shop["tables"], 2);
    assert_eq!(shop["rows"], 1234);
    assert!(env["data"]["restoreSeconds"].as_f64().unwrap() > 0.0);
    eprintln!("postgres drill: {} s", env["data"]["restoreSeconds"]);
    // A false assertion fails the drill, with its answer.
    let (code, env, _) = drill(
        &pg_set,
        &[
            "--assert-database",
            "shop",
            "--assert-sql",
            "SELECT count(*) = 1 FROM orders",
        ],
    );
    assert_eq!(code, 1, "{env}");
    assert_eq!(env["errors"][0]["code"], "drill.failed");
    assert!(env["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("returned `f`"));
    // The source server was never touched, and no drill server is left running.
    assert_eq!(pg.psql("shop", "SELECT count(*) FROM orders"), "1234");
    // (The server's children exit just after it: a loaded machine may need a moment.)
    wait_for(
        "no drill server left running",
        Duration::from_secs(15),
        || pids_with("hasteward-drill-").is_empty(),
    );

    // MariaDB.
    let maria = MariaDb::start();
    maria.sql(
        None,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY); INSERT INTO shop.orders VALUES (1), (2), (3)",
    );
    let mpw = secret_file(repo.dir.path(), "maria.pw", maria.password());
    let mut args = vec!["backup".to_string()];
    args.extend(maria_args(&maria, &mpw, "maria"));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, env, err) = drill(
        &["-e", "standalone", "--db-type", "mariadb", "-c", "maria"],
        &["--assert-sql", "SELECT COUNT(*) = 3 FROM orders"],
    );
    assert_eq!(code, 0, "{env}\n{err}");
    let shop = &env["data"]["databases"][0];
    assert_eq!(shop["name"], "shop", "{env}");
    assert_eq!(shop["rows"], 3);
    eprintln!("mariadb drill: {} s", env["data"]["restoreSeconds"]);
    // (The server's children exit just after it: a loaded machine may need a moment.)
    wait_for(
        "no drill server left running",
        Duration::from_secs(15),
        || pids_with("hasteward-drill-").is_empty(),
    );
}
