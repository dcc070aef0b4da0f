//! The exact commands the collector runs, next to the parsers that read their output, so the
//! two cannot drift apart. SQL runs through [`PSQL_ARGV`] (unaligned, tuples only, `|`
//! separated, NULL printed as an empty field); scripts run through `sh -c` in the `postgres`
//! container (or a read-only probe pod mounting the PVC at the same path).

/// The data directory CloudNativePG uses inside an instance pod.
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

/// `psql` argv prefix for every SQL constant here; append the SQL as the last argument.
/// `-X` skips psqlrc, `-A -t -F |` prints bare pipe-separated rows, `ON_ERROR_STOP` makes a
/// failed query a failed command (not an empty output).
pub const PSQL_ARGV: &[&str] = &[
    "psql",
    "-X",
    "-A",
    "-t",
    "-F",
    "|",
    "-v",
    "ON_ERROR_STOP=1",
    "-U",
    "postgres",
    "-d",
    "postgres",
    "-c",
];

/// `pg_controldata` of [`PGDATA`], in the C locale so the labels are the English ones
/// [`super::parse_controldata`] reads.
pub const CONTROLDATA_SCRIPT: &str = "LC_ALL=C exec pg_controldata /var/lib/postgresql/data/pgdata";

/// `df -kP` of [`PGDATA`] (POSIX format: one header line, one data line with `Capacity` as `NN%`).
pub const DF_SCRIPT: &str = "exec df -kP /var/lib/postgresql/data/pgdata";

/// On the primary: one row per walsender.
/// Columns: `application_name|state|sent_lsn|write_lsn|flush_lsn|replay_lsn|replay_lag_seconds|sync_state`
/// (read by [`super::parse_stat_replication`]).
pub const STAT_REPLICATION_SQL: &str = "SELECT application_name, state, sent_lsn, write_lsn, \
     flush_lsn, replay_lsn, extract(epoch FROM replay_lag), sync_state \
     FROM pg_stat_replication ORDER BY application_name";

/// On the primary: one row per replication slot.
/// Columns: `slot_name|slot_type|active (t/f)|restart_lsn|wal_status|bytes_behind` where
/// `bytes_behind` is `pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)`, empty without a
/// `restart_lsn` (read by [`super::parse_slots`]).
pub const SLOTS_SQL: &str = "SELECT slot_name, slot_type, active, restart_lsn, wal_status, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
     FROM pg_replication_slots ORDER BY slot_name";

/// On the primary: one row.
/// Columns: `current_lsn|walfile_name|checkpoint_timeline|wal_keep_size|max_slot_wal_keep_size`
/// (read by [`super::parse_wal`]). The WAL file name's first 8 hex digits are the timeline WAL
/// is being written on; the checkpoint's may still be the previous one right after a promotion.
pub const WAL_SQL: &str = "SELECT pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn()), \
     (SELECT timeline_id FROM pg_control_checkpoint()), current_setting('wal_keep_size'), \
     current_setting('max_slot_wal_keep_size')";

/// On every instance: `t` (replica, in recovery) or `f` (primary) (read by
/// [`super::parse_in_recovery`]).
pub const IN_RECOVERY_SQL: &str = "SELECT pg_is_in_recovery()";

/// On a replica: one row.
/// Columns: `receive_lsn|replay_lsn|receiver_status|received_tli`; the last two are empty when no
/// WAL receiver runs (read by [`super::parse_receive`]).
pub const RECEIVE_SQL: &str = "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     (SELECT status FROM pg_stat_wal_receiver), (SELECT received_tli FROM pg_stat_wal_receiver)";

/// The history file of `timeline` in `pg_wal`: `00000002.history` for timeline 2.
pub fn history_file_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// The `sh -c` script printing the history file of `timeline` (the one `pg_controldata`
/// reported as "Latest checkpoint's TimeLineID"). Only meaningful for timeline 2 and up:
/// timeline 1 has no history file, and its `history` observation is ignored.
pub fn history_script(timeline: u32) -> String {
    format!("exec cat {PGDATA}/pg_wal/{}", history_file_name(timeline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_names_are_eight_uppercase_hex_digits() {
        assert_eq!(history_file_name(2), "00000002.history");
        assert_eq!(history_file_name(26), "0000001A.history");
        assert_eq!(
            history_script(3),
            "exec cat /var/lib/postgresql/data/pgdata/pg_wal/00000003.history"
        );
    }

    #[test]
    fn scripts_use_the_data_directory() {
        assert!(CONTROLDATA_SCRIPT.ends_with(PGDATA));
        assert!(DF_SCRIPT.ends_with(PGDATA));
    }
}
