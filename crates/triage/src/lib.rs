//! Triage analysis, with no I/O: what a cluster's members report (command outputs, Kubernetes
//! objects) goes in as plain data, and a [`Report`] comes out: the facts with their provenance,
//! who holds the authoritative data, a per-instance assessment with advice, and diagnoses whose
//! remedies name hasteward commands.
//!
//! Collection (exec into pods, reading CRs) lives in `hasteward-engines`; everything here is a
//! plain function over plain data, tested with outputs captured from real servers.
//!
//! # Fail closed
//! A position that could not be read is [`Provenance::Unread`], never a default value. The
//! authority decision refuses to name a leader while any member with data is unread, and never
//! calls a cluster provable from hints (operator status snapshots, log scrapes) alone.

pub mod cnpg;
pub mod galera;
mod input;
pub mod plan;
mod report;
mod text;
pub mod vault;

pub use input::*;
pub use report::*;
pub use text::render_text;
