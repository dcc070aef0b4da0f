//! Plain data shared across hasteward: what a snapshot is called and tagged, the JSON output
//! envelope, and the documented exit codes. No I/O here.

mod envelope;
mod exit;
mod snapshot;

pub use envelope::{Envelope, ErrorEntry, Event, SCHEMA_VERSION};
pub use exit::ExitCode;
pub use snapshot::{
    decode_list, encode_list, validate_name, DbType, Engine, SnapshotKind, SnapshotLabels,
    SNAPSHOT_HOST,
};
