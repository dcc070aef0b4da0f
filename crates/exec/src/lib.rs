//! Where commands run and how bytes move between them.
//!
//! Engines describe commands as [`CommandSpec`]s; a [`Runner`] decides where they run (a local
//! process here, a pod exec elsewhere) and hands back a [`Proc`]. The [`pump`] module moves a
//! producer's stdout into a consumer's stdin under the commit gate: the consumer's stdin is closed
//! only after the producer has exited successfully, so a failed or truncated dump can never reach
//! restic as a clean end of stream.

mod error;
mod local;
pub mod pump;
mod runner;
pub mod scratch;
mod spec;
mod tail;

pub use error::{Error, Result};
pub use local::LocalRunner;
pub use pump::{
    gated, gated_filtered, hash_output, Progress, ProgressFn, PumpError, PumpOptions, PumpReport,
    StreamFilter,
};
pub use runner::{capture, BoxFuture, Captured, ExitOutcome, Proc, ProcControl, Runner, Signal};
pub use spec::{CommandSpec, StdinMode, StdoutMode};
pub use tail::Tail;
pub use tokio_util::sync::CancellationToken;
