//! Smoke tests for the real-component harness: each starts a throwaway server,
//! writes a table and reads it back over TCP.

use std::process::{Command, Stdio};
use std::time::Instant;

use hasteward_testkit::{MariaDb, Postgres};

#[test]
fn postgres_round_trip_and_scram_auth() {
    let t0 = Instant::now();
    let mut pg = Postgres::start();
    eprintln!(
        "postgres started in {:?} on port {}",
        t0.elapsed(),
        pg.port()
    );
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.user(), "postgres");
    assert!(pg.password().chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(pg.data_dir().join("PG_VERSION").is_file());

    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE t(id int primary key, name text);\n\
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;",
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM t"), "100");
    assert_eq!(pg.psql("app", "SHOW password_encryption"), "scram-sha-256");

    // A wrong password over TCP must be rejected: scram auth is on.
    let out = Command::new(pg.bin_dir().join("psql"))
        .args(["-X", "-At", "-h", pg.host(), "-p", &pg.port().to_string()])
        .args(["-U", pg.user(), "-d", "postgres", "-c", "select 1"])
        .env("PGPASSWORD", "definitely-wrong")
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(
        !out.status.success(),
        "login with a wrong password succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );

    let data = pg.data_dir().to_path_buf();
    pg.stop();
    pg.stop(); // idempotent
    assert!(!data.exists(), "temp dir not removed");
}

#[test]
fn mariadb_round_trip() {
    let t0 = Instant::now();
    let mut db = MariaDb::start();
    eprintln!(
        "mariadb started in {:?} on port {}",
        t0.elapsed(),
        db.port()
    );
    assert_eq!(db.host(), "127.0.0.1");
    assert_eq!(db.user(), "hwadmin");

    db.sql(None, "CREATE DATABASE app");
    db.sql(
        Some("app"),
        "CREATE TABLE t(id int primary key, name varchar(40)) ENGINE=InnoDB;\n\
         INSERT INTO t SELECT seq, concat('row ', seq) FROM seq_1_to_100;",
    );
    assert_eq!(db.sql(Some("app"), "SELECT count(*) FROM t"), "100");
    assert_eq!(db.sql(None, "SELECT @@wsrep_on"), "0");
    let grants = db.sql(None, "SHOW GRANTS FOR CURRENT_USER");
    assert!(grants.contains("WITH GRANT OPTION"), "{grants}");

    // A wrong password over TCP must be rejected.
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", db.host()])
        .args([
            "-P",
            &db.port().to_string(),
            "-u",
            db.user(),
            "-e",
            "select 1",
        ])
        .env("MYSQL_PWD", "definitely-wrong")
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb");
    assert!(
        !out.status.success(),
        "login with a wrong password succeeded"
    );

    db.stop();
    db.stop(); // idempotent
}
