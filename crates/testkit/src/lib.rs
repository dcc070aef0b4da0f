//! Real-component test harness for hasteward.
//!
//! Starts throwaway database servers for integration tests: each server lives
//! in a private temporary directory, listens on `127.0.0.1` on a free port,
//! and is stopped (and its directory removed) when the handle is dropped, even
//! if the test panicked. A small detached watchdog also stops the server if
//! the test process is killed before it could run `Drop`.
//!
//! Everything is synchronous and panics with a clear message on failure: this
//! is test infrastructure, and a missing component must fail a test, never
//! skip it. Run `scripts/install-deps.sh` to install the components.
//!
//! - [`Postgres`]: a PostgreSQL 15 cluster with scram-sha-256 over TCP, and
//!   streaming replicas of it ([`Postgres::start_replica`]).
//! - [`MariaDb`]: a single MariaDB server (wsrep off) with a TCP admin user.
//! - [`Galera`]: an N-node MariaDB Galera cluster with a TCP `root` login.
//! - [`SeaweedS3`]: a SeaweedFS S3 endpoint with Object Lock and a writer and a maintenance
//!   identity.
//! - [`OpenBao`]: an OpenBao server with raft storage, initialized, unsealed and with kv-v2 at
//!   `secret/`.
//! - [`VictoriaMetrics`]: a single-node VictoriaMetrics that can be stopped and started again on
//!   its data dir.

mod galera;
mod mariadb;
mod openbao;
mod postgres;
mod seaweed;
mod util;
mod victoria;
mod watchdog;

pub use galera::Galera;
pub use mariadb::MariaDb;
pub use openbao::OpenBao;
pub use postgres::Postgres;
pub use seaweed::SeaweedS3;
pub use seaweed::{MAINTENANCE as S3_MAINTENANCE, WRITER as S3_WRITER};
pub use victoria::VictoriaMetrics;

use std::net::TcpListener;

/// Returns a TCP port on `127.0.0.1` that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel chose and releases it. The
/// port may be taken again by someone else before it is used, so the servers
/// in this crate retry with a new port when their bind fails.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|e| panic!("testkit: cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("testkit: cannot read the bound address: {e}"))
        .port()
}
