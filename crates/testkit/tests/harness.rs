//! Smoke tests for the real-component harness: each starts a throwaway server,
//! writes a table and reads it back over TCP.

use std::process::{Command, Stdio};
use std::time::Instant;

use hasteward_testkit::{Galera, MariaDb, Postgres};

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

#[test]
fn postgres_streaming_replica() {
    let primary = Postgres::start();
    primary.psql(
        "postgres",
        "CREATE TABLE t(id int primary key);\n\
         INSERT INTO t SELECT generate_series(1, 10);",
    );
    let t0 = Instant::now();
    let replica = primary.start_replica();
    eprintln!(
        "replica started in {:?} on port {} (primary {})",
        t0.elapsed(),
        replica.port(),
        primary.port()
    );
    assert_ne!(replica.port(), primary.port());
    assert_ne!(replica.data_dir(), primary.data_dir());
    assert_eq!(replica.user(), primary.user());
    assert_eq!(replica.password(), primary.password());
    assert_eq!(replica.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(primary.psql("postgres", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(replica.psql("postgres", "SELECT count(*) FROM t"), "10");
    assert_eq!(
        primary.psql("postgres", "SELECT state FROM pg_stat_replication"),
        "streaming"
    );

    primary.psql("postgres", "INSERT INTO t SELECT generate_series(11, 1000)");
    primary.wait_replica_caught_up(&replica);
    assert_eq!(replica.psql("postgres", "SELECT count(*) FROM t"), "1000");
    assert_eq!(replica.psql("postgres", "SELECT max(id) FROM t"), "1000");

    let replica_dir = replica.data_dir().to_path_buf();
    drop(replica);
    assert!(!replica_dir.exists(), "replica temp dir not removed");
}

#[test]
fn galera_three_nodes_replicate() {
    let t0 = Instant::now();
    let mut g = Galera::start(3);
    eprintln!(
        "galera (3 nodes) started in {:?} on ports {}, {}, {}",
        t0.elapsed(),
        g.port(0),
        g.port(1),
        g.port(2)
    );
    assert_eq!(g.node_count(), 3);
    assert_eq!(g.host(), "127.0.0.1");
    assert_eq!(g.user(), "root");
    assert!(g.password().chars().all(|c| c.is_ascii_alphanumeric()));
    for i in 0..3 {
        assert_eq!(g.wsrep_state(i), "Synced", "node {i}");
        assert_eq!(g.status(i, "wsrep_cluster_size"), "3", "node {i}");
        assert!(g.socket(i).exists(), "node {i} socket");
    }
    let ports: std::collections::HashSet<u16> = (0..3).map(|i| g.port(i)).collect();
    assert_eq!(ports.len(), 3, "distinct mysqld ports");

    g.sql(0, None, "CREATE DATABASE app");
    g.sql(
        0,
        Some("app"),
        "CREATE TABLE t(id int primary key, name varchar(40)) ENGINE=InnoDB;\n\
         INSERT INTO t SELECT seq, concat('row ', seq) FROM seq_1_to_100;",
    );
    // Galera replication is virtually synchronous, but applying on the other
    // nodes is asynchronous: wait_for causality checks make the read see it.
    let read = "SET SESSION wsrep_sync_wait = 1; SELECT count(*) FROM t";
    assert_eq!(g.sql(2, Some("app"), read), "100");
    assert_eq!(g.sql(1, Some("app"), read), "100");

    // root logs in with the password over TCP (g.sql), from any host, and a
    // wrong password is rejected.
    assert_eq!(
        g.sql(
            2,
            None,
            "SELECT group_concat(host ORDER BY host) FROM mysql.user WHERE user = 'root'"
        ),
        "%,127.0.0.1,localhost"
    );
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", g.host()])
        .args([
            "-P",
            &g.port(1).to_string(),
            "-u",
            g.user(),
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

    // A node leaves gracefully and rejoins (IST), catching up on a write.
    g.stop_node(2);
    g.wait_cluster_size(0, 2);
    g.wait_cluster_size(1, 2);
    assert_eq!(g.status(0, "wsrep_cluster_status"), "Primary");
    g.sql(
        1,
        Some("app"),
        "INSERT INTO t VALUES (101, 'while n2 was down')",
    );
    let t1 = Instant::now();
    g.start_node(2);
    eprintln!("node 2 rejoined in {:?}", t1.elapsed());
    assert_eq!(g.wsrep_state(2), "Synced");
    assert_eq!(g.status(0, "wsrep_cluster_size"), "3");
    assert_eq!(g.sql(2, Some("app"), read), "101");

    let data = g.data_dir(0);
    let t2 = Instant::now();
    g.stop();
    eprintln!("galera stopped in {:?}", t2.elapsed());
    g.stop(); // idempotent
    assert!(!data.exists(), "temp dir not removed");
}
