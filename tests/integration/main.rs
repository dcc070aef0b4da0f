//! Integration tests: the real `hasteward` binary against real restic, PostgreSQL and MariaDB
//! servers started on loopback by `hasteward-testkit`. A missing component fails the test; nothing
//! is skipped.

mod support;

mod deploy;
mod environment;
mod failures;
mod immutable;
mod kube;
mod operator;
mod repair;
mod repository;
mod retention;
mod round_trip;
mod triage;
mod vault;
mod victoria;
