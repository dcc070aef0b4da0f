//! Backup → verify → restore round trips with content checksums, and the restore semantics:
//! into the same server after the databases were dropped (no flag), refused over existing
//! databases, replaced with `--force`.

use hasteward_testkit::{MariaDb, Postgres};

use crate::support::*;

#[test]
fn postgres_round_trip_and_restore_semantics() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    pg.psql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
    pg.psql("postgres", "CREATE DATABASE shop OWNER app");
    pg.psql("shop", "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric); INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 5000) g; ALTER TABLE items OWNER TO app");
    pg.psql("postgres", "CREATE DATABASE \"Odd Name\"");
    pg.psql(
        "Odd Name",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('a'), ('b')",
    );
    let before = pg_checksum(&pg, "shop", "items");
    let odd_before = pg_checksum(&pg, "Odd Name", "t");

    let mut args = vec!["backup".to_string(), "-o".into(), "json".into()];
    args.extend(pg_args(&pg, &pw, "pg1"));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "backup failed: {out}\n{err}");
    let env = envelope(&out);
    assert_eq!(env["success"], true);
    let id = env["data"]["snapshotId"].as_str().unwrap().to_string();
    let sha = env["data"]["sha256"].as_str().unwrap().to_string();

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    let tags: Vec<String> = serde_json::from_value(snaps[0]["tags"].clone()).unwrap();
    for t in [
        "engine=standalone",
        "cluster=pg1",
        "namespace=default",
        "type=backup",
        "db-type=postgres",
    ] {
        assert!(tags.contains(&t.to_string()), "{t} missing in {tags:?}");
    }
    assert!(tags.contains(&format!("sha256={sha}")));
    assert_eq!(snaps[0]["hostname"], "hasteward");
    assert_eq!(snaps[0]["paths"][0], "/default/pg1/pg_dumpall.sql");
    assert_eq!(snaps[0]["id"], id.as_str());

    // verify re-reads the stream and compares the recorded checksum.
    let mut v = vec![
        "verify".to_string(),
        "-e".into(),
        "standalone".into(),
        "--db-type".into(),
        "postgres".into(),
        "-c".into(),
        "pg1".into(),
    ];
    v.extend(repo.args());
    let (code, out, err) = run(&v, None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified"), "{out}");

    // Restoring over databases that still exist is refused (exit 3), nothing touched.
    let mut r = vec!["restore".to_string()];
    r.extend(pg_args(&pg, &pw, "pg1"));
    r.extend(repo.args());
    let (code, _out, err) = run(&r, None);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("still exist") && err.contains("--force"),
        "{err}"
    );

    // Dropped databases come back with no extra flag; existing roles are not an error.
    pg.psql("postgres", "DROP DATABASE shop");
    pg.psql("postgres", "DROP DATABASE \"Odd Name\"");
    let (code, out, err) = run(&r, None);
    assert_eq!(code, 0, "restore failed: {out}\n{err}");
    assert_eq!(pg_checksum(&pg, "shop", "items"), before);
    assert_eq!(pg_checksum(&pg, "Odd Name", "t"), odd_before);
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
        ),
        "app"
    );

    // --force replaces databases that exist (changed data is rolled back to the snapshot).
    pg.psql(
        "shop",
        "DELETE FROM items WHERE id > 10; INSERT INTO items VALUES (999999, 'new', 1)",
    );
    let mut f = r.clone();
    f.push("--force".into());
    f.push("--snapshot".into());
    f.push(id[..8].to_string());
    let (code, out, err) = run(&f, None);
    assert_eq!(code, 0, "forced restore failed: {out}\n{err}");
    assert_eq!(pg_checksum(&pg, "shop", "items"), before);
}

#[test]
fn mariadb_round_trip_keeps_live_accounts() {
    let db = MariaDb::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", db.password());
    db.sql(None, "CREATE DATABASE app; CREATE TABLE app.orders (id INT PRIMARY KEY, note VARCHAR(64), amount DECIMAL(10,2))");
    let mut values = Vec::new();
    for i in 1..=3000 {
        values.push(format!("({i}, 'order {i} ''quoted''', {i}.25)"));
    }
    db.sql(
        Some("app"),
        &format!("INSERT INTO orders VALUES {}", values.join(",")),
    );
    db.sql(
        Some("app"),
        "CREATE PROCEDURE total() SELECT SUM(amount) FROM orders",
    );
    let checksum = "SELECT COUNT(*), MD5(GROUP_CONCAT(id, note, amount ORDER BY id SEPARATOR '|')) FROM app.orders";
    db.sql(None, "SET SESSION group_concat_max_len = 100000000");
    let before = db.sql(
        None,
        &format!("SET SESSION group_concat_max_len = 100000000; {checksum}"),
    );

    let mut args = vec!["backup".to_string()];
    args.extend(maria_args(&db, &pw, "maria1"));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "backup failed: {out}\n{err}");
    assert!(out.contains("snapshot"), "{out}");

    // An account created after the backup must survive the restore.
    db.sql(
        None,
        "CREATE USER 'late'@'%' IDENTIFIED BY 'late-pw'; DROP DATABASE app",
    );
    let mut r = vec!["restore".to_string(), "-o".into(), "json".into()];
    r.extend(maria_args(&db, &pw, "maria1"));
    r.extend(repo.args());
    let (code, out, err) = run(&r, None);
    assert_eq!(code, 0, "restore failed: {out}\n{err}");
    assert_eq!(envelope(&out)["data"]["checksumVerified"], true);
    let after = db.sql(
        None,
        &format!("SET SESSION group_concat_max_len = 100000000; {checksum}"),
    );
    assert_eq!(after, before);
    assert_eq!(
        db.sql(None, "SELECT COUNT(*) FROM mysql.user WHERE user = 'late'"),
        "1"
    );
    assert_eq!(
        db.sql(
            None,
            "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = 'app'"
        ),
        "1"
    );

    // Over an existing database: refused without --force.
    let (code, _out, _err) = run(&r, None);
    assert_eq!(code, 3);
}

#[test]
fn failing_restore_client_reports_failure_and_leaves_no_lock() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    // Objects in the `postgres` database are restored in place; one that still exists stops
    // psql at its first error.
    pg.psql(
        "postgres",
        "CREATE TABLE keepme (v int); INSERT INTO keepme VALUES (1)",
    );
    pg.psql(
        "postgres",
        "INSERT INTO keepme SELECT g FROM generate_series(2, 200000) g",
    );
    let mut args = vec!["backup".to_string()];
    args.extend(pg_args(&pg, &pw, "conflict"));
    args.extend(repo.args());
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}{err}");
    let mut r = vec!["restore".to_string(), "-o".into(), "json".into()];
    r.extend(pg_args(&pg, &pw, "conflict"));
    r.extend(repo.args());
    let (code, out, _err) = run(&r, None);
    assert_eq!(code, 1, "{out}");
    let env = envelope(&out);
    assert_eq!(env["success"], false);
    let msg = env["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("psql") && msg.contains("already exists"),
        "{msg}"
    );
    assert_eq!(repo.locks(), 0, "restic dump left a lock behind");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM keepme"), "200000");
}

#[test]
fn per_database_snapshots_restore_one_database_alone() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    for db in ["alpha", "Beta Db"] {
        pg.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        pg.psql(
            db,
            "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 1000)",
        );
    }
    let beta_before = pg_checksum(&pg, "Beta Db", "t");
    let mut args = vec!["backup".to_string(), "-o".into(), "json".into()];
    args.extend(pg_args(&pg, &pw, "perdb"));
    args.extend(repo.args());
    args.extend([
        "--database".into(),
        "alpha".into(),
        "--database".into(),
        "Beta Db".into(),
    ]);
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        envelope(&out)["data"]["backups"].as_array().unwrap().len(),
        2
    );
    let mut paths: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/default/perdb/database-Beta%20Db.pg_dump.sql",
            "/default/perdb/database-alpha.pg_dump.sql"
        ]
    );

    // Change alpha, drop beta; restoring beta alone leaves alpha's change in place.
    pg.psql("alpha", "DELETE FROM t WHERE v > 10");
    pg.psql("postgres", "DROP DATABASE \"Beta Db\"");
    let mut r = vec!["restore".to_string()];
    r.extend(pg_args(&pg, &pw, "perdb"));
    r.extend(repo.args());
    r.extend(["--database".into(), "Beta Db".into()]);
    let (code, out, err) = run(&r, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pg_checksum(&pg, "Beta Db", "t"), beta_before);
    assert_eq!(pg.psql("alpha", "SELECT count(*) FROM t"), "10");

    // verify works per database; a database that does not exist is bad input.
    let mut v: Vec<String> = [
        "verify",
        "-e",
        "standalone",
        "--db-type",
        "postgres",
        "-c",
        "perdb",
        "--database",
        "alpha",
    ]
    .map(String::from)
    .to_vec();
    v.extend(repo.args());
    let (code, out, err) = run(&v, None);
    assert_eq!(code, 0, "{out}{err}");
    let mut bad = vec!["backup".to_string()];
    bad.extend(pg_args(&pg, &pw, "perdb"));
    bad.extend(repo.args());
    bad.extend(["--database".into(), "nope".into()]);
    let (code, _out, err) = run(&bad, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn per_database_mariadb_restore_with_force_replaces_only_that_database() {
    let db = MariaDb::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", db.password());
    db.sql(
        None,
        "CREATE DATABASE one; CREATE TABLE one.t (v INT); INSERT INTO one.t VALUES (1),(2)",
    );
    db.sql(
        None,
        "CREATE DATABASE two; CREATE TABLE two.t (v INT); INSERT INTO two.t VALUES (3)",
    );
    let mut args = vec!["backup".to_string()];
    args.extend(maria_args(&db, &pw, "perdbm"));
    args.extend(repo.args());
    args.extend(["--database".into(), "one".into()]);
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}{err}");
    db.sql(
        None,
        "INSERT INTO one.t VALUES (99); INSERT INTO two.t VALUES (4)",
    );
    let mut r = vec!["restore".to_string()];
    r.extend(maria_args(&db, &pw, "perdbm"));
    r.extend(repo.args());
    r.extend(["--database".into(), "one".into()]);
    let (code, _, _) = run(&r, None);
    assert_eq!(code, 3, "exists: refused without --force");
    r.push("--force".into());
    let (code, out, err) = run(&r, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(db.sql(None, "SELECT SUM(v) FROM one.t"), "3");
    assert_eq!(db.sql(None, "SELECT SUM(v) FROM two.t"), "7");
}
