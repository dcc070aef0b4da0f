//! `hasteward serve`: the operator.
//!
//! It watches `StandaloneDatabase`s, opted-in CNPG `Cluster`s and `MariaDB`s, `BackupPolicy`s
//! and `BackupRepository`s; every change re-plans at once. Planning is pure ([`config`],
//! [`schedule`], [`scheduler`]); runs are tracked tokio tasks that call the same engine flows
//! as the CLI (so a run gets the same commit gate), and their outcome is written back as
//! status, annotations, Events and metrics. Only the replica holding the leader Lease runs
//! anything.

pub mod cache;
pub mod clock;
pub mod config;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod repair;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod serve;
pub mod status;
