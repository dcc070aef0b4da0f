//! Engines: what to run to dump and restore each kind of database, and the shared flows that
//! run those commands through the gated stream into and out of restic.
//!
//! Engine modules only build [`hasteward_exec::CommandSpec`]s and stream rules; where the
//! commands run is the runner's business, and the one streaming rule lives in
//! [`hasteward_exec::pump`].

pub mod drill;
pub mod drillpod;
mod error;
pub mod fenced;
pub mod flows;
pub mod heal;
pub mod linefilter;
pub mod pod;
pub mod repair;
pub mod repository;
pub mod scratch;
pub mod secrets;
pub mod standalone;
pub mod target;
pub mod triage;
pub mod vault;
pub mod vmbackup;

pub use error::{Error, Result};
