//! Parsers for the outputs of [`super::commands`]. Each returns `Err(reason)` rather than a
//! default: a field that is missing or malformed makes the whole observation unread.

use serde::Serialize;

use crate::Observed;

/// Parses an LSN `X/Y` (hex) into `X << 32 | Y`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some((u64::from(high) << 32) | u64::from(low))
}

/// Formats an LSN as PostgreSQL prints it: `0/3000060`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Serde helpers: LSNs in the facts read as PostgreSQL prints them, and 64-bit identifiers as
/// strings (JSON numbers lose precision past 2^53).
pub(crate) mod as_text {
    use serde::Serializer;

    /// An LSN as `X/Y`.
    pub fn lsn<S: Serializer>(lsn: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_lsn(*lsn))
    }

    /// An optional LSN as `X/Y` or null.
    pub fn opt_lsn<S: Serializer>(lsn: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match lsn {
            Some(lsn) => s.serialize_str(&super::format_lsn(*lsn)),
            None => s.serialize_none(),
        }
    }

    /// A number as a decimal string.
    pub fn decimal<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }
}

/// The fields of `pg_controldata` triage uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlData {
    /// "Database system identifier": set once by `initdb`; instances of one cluster share it.
    #[serde(serialize_with = "as_text::decimal")]
    pub system_identifier: u64,
    /// "Database cluster state": `in production`, `in archive recovery`, `shut down`, …
    pub cluster_state: String,
    /// "Latest checkpoint's TimeLineID".
    pub timeline: u32,
    /// "Latest checkpoint location".
    #[serde(serialize_with = "as_text::lsn")]
    pub checkpoint_lsn: u64,
    /// "Latest checkpoint's REDO location".
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub redo_lsn: Option<u64>,
    /// "Time of latest checkpoint", as printed.
    pub checkpoint_time: Option<String>,
    /// "Minimum recovery ending location" (`0/0` outside recovery).
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub min_recovery_lsn: Option<u64>,
}

/// Parses `pg_controldata` output (C locale). Requires the system identifier, cluster state,
/// checkpoint location and timeline.
pub fn parse_controldata(output: &str) -> Result<ControlData, String> {
    let field = |label: &str| -> Option<&str> {
        output.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == label).then(|| value.trim())
        })
    };
    let required = |label: &str| field(label).ok_or_else(|| format!("no \"{label}\" line"));
    let system_identifier = required("Database system identifier")?;
    let system_identifier = system_identifier
        .parse()
        .map_err(|_| format!("system identifier {system_identifier:?} is not a number"))?;
    let timeline = required("Latest checkpoint's TimeLineID")?;
    let timeline = timeline
        .parse()
        .ok()
        .filter(|tl| *tl > 0)
        .ok_or_else(|| format!("timeline {timeline:?} is not a positive number"))?;
    let checkpoint = required("Latest checkpoint location")?;
    let checkpoint_lsn =
        parse_lsn(checkpoint).ok_or_else(|| format!("checkpoint {checkpoint:?} is not an LSN"))?;
    Ok(ControlData {
        system_identifier,
        cluster_state: required("Database cluster state")?.to_string(),
        timeline,
        checkpoint_lsn,
        redo_lsn: field("Latest checkpoint's REDO location").and_then(parse_lsn),
        checkpoint_time: field("Time of latest checkpoint").map(str::to_string),
        min_recovery_lsn: field("Minimum recovery ending location").and_then(parse_lsn),
    })
}

/// One line of a timeline history file: the timeline before the switch, and where it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    /// The timeline that was left.
    pub parent_timeline: u32,
    /// The LSN where the parent was left (WAL before it is shared with the parent).
    #[serde(serialize_with = "as_text::lsn")]
    pub lsn: u64,
    /// Why (`no recovery target specified`, `before 2026-11-23 …`), as written.
    pub reason: String,
}

/// Parses a timeline history file (`parentTLI<TAB>switchLSN<TAB>reason`, `#` comments and blank
/// lines ignored). Any other malformed line fails the whole file.
pub fn parse_history(output: &str) -> Result<Vec<Switch>, String> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(parse_history_line)
        .collect()
}

fn parse_history_line(line: &str) -> Result<Switch, String> {
    let mut fields = line.splitn(3, |c: char| c.is_ascii_whitespace());
    let parent = fields.next().unwrap_or_default();
    let lsn = fields.next().unwrap_or_default();
    let parent_timeline = parent
        .parse()
        .ok()
        .filter(|tl| *tl > 0)
        .ok_or_else(|| format!("history line {line:?}: {parent:?} is not a timeline"))?;
    let lsn = parse_lsn(lsn).ok_or_else(|| format!("history line {line:?}: no switch LSN"))?;
    Ok(Switch {
        parent_timeline,
        lsn,
        reason: fields.next().unwrap_or_default().trim().to_string(),
    })
}

/// One walsender, from [`super::STAT_REPLICATION_SQL`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRow {
    /// `application_name`: CloudNativePG sets it to the replica's instance name.
    pub application_name: String,
    /// `state`: `streaming`, `catchup`, `startup`, `backup`, `stopping`.
    pub state: String,
    /// `sent_lsn`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub sent_lsn: Option<u64>,
    /// `write_lsn`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub write_lsn: Option<u64>,
    /// `flush_lsn`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub flush_lsn: Option<u64>,
    /// `replay_lsn`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub replay_lsn: Option<u64>,
    /// `replay_lag` in seconds.
    pub replay_lag_seconds: Option<f64>,
    /// `sync_state`: `async`, `sync`, `quorum`, `potential`.
    pub sync_state: String,
}

/// Parses [`super::STAT_REPLICATION_SQL`] output (no rows is an empty list).
pub fn parse_stat_replication(output: &str) -> Result<Vec<ReplicationRow>, String> {
    rows(output, 8)?
        .into_iter()
        .map(|f| {
            Ok(ReplicationRow {
                application_name: f[0].to_string(),
                state: f[1].to_string(),
                sent_lsn: optional_lsn(f[2])?,
                write_lsn: optional_lsn(f[3])?,
                flush_lsn: optional_lsn(f[4])?,
                replay_lsn: optional_lsn(f[5])?,
                replay_lag_seconds: optional_number(f[6])?,
                sync_state: f[7].to_string(),
            })
        })
        .collect()
}

/// One replication slot, from [`super::SLOTS_SQL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// `slot_name`; CloudNativePG's are `_cnpg_<instance with - as _>`.
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// Whether a walsender uses it now.
    pub active: bool,
    /// Oldest WAL it retains.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub restart_lsn: Option<u64>,
    /// `reserved`, `extended`, `unreserved`, `lost`.
    pub wal_status: Option<String>,
    /// WAL between the current position and `restart_lsn`: what it holds back.
    pub bytes_behind: Option<u64>,
}

impl Slot {
    /// Whether the slot still retains the WAL a replica needs to resume streaming.
    pub fn retains_wal(&self) -> bool {
        self.restart_lsn.is_some() && self.wal_status.as_deref() != Some("lost")
    }
}

/// Parses [`super::SLOTS_SQL`] output.
pub fn parse_slots(output: &str) -> Result<Vec<Slot>, String> {
    rows(output, 6)?
        .into_iter()
        .map(|f| {
            Ok(Slot {
                slot_name: f[0].to_string(),
                slot_type: f[1].to_string(),
                active: parse_bool(f[2])?,
                restart_lsn: optional_lsn(f[3])?,
                wal_status: (!f[4].is_empty()).then(|| f[4].to_string()),
                bytes_behind: optional_number::<i64>(f[5])?.map(|b| b.max(0) as u64),
            })
        })
        .collect()
}

/// The primary's WAL state, from [`super::WAL_SQL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalStatus {
    /// `pg_current_wal_lsn()`.
    #[serde(serialize_with = "as_text::lsn")]
    pub current_lsn: u64,
    /// `pg_walfile_name(pg_current_wal_lsn())`.
    pub walfile: String,
    /// The timeline WAL is written on (the WAL file name's first 8 hex digits).
    pub insert_timeline: u32,
    /// `pg_control_checkpoint().timeline_id`.
    pub checkpoint_timeline: u32,
    /// `wal_keep_size`, as shown (`0`, `512MB`).
    pub wal_keep_size: String,
    /// `max_slot_wal_keep_size`, as shown (`-1` = slots may retain unlimited WAL).
    pub max_slot_wal_keep_size: String,
}

/// Parses [`super::WAL_SQL`] output (exactly one row).
pub fn parse_wal(output: &str) -> Result<WalStatus, String> {
    let f = single_row(output, 5)?;
    let insert_timeline = f[1]
        .get(..8)
        .filter(|_| f[1].len() == 24)
        .and_then(|tl| u32::from_str_radix(tl, 16).ok())
        .ok_or_else(|| format!("{:?} is not a WAL file name", f[1]))?;
    Ok(WalStatus {
        current_lsn: parse_lsn(f[0]).ok_or_else(|| format!("{:?} is not an LSN", f[0]))?,
        walfile: f[1].to_string(),
        insert_timeline,
        checkpoint_timeline: f[2]
            .parse()
            .map_err(|_| format!("{:?} is not a timeline", f[2]))?,
        wal_keep_size: f[3].to_string(),
        max_slot_wal_keep_size: f[4].to_string(),
    })
}

/// Parses [`super::IN_RECOVERY_SQL`] output: `t` → true (replica), `f` → false (primary).
pub fn parse_in_recovery(output: &str) -> Result<bool, String> {
    parse_bool(single_row(output, 1)?[0])
}

/// A replica's own view of replication, from [`super::RECEIVE_SQL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiveStatus {
    /// `pg_last_wal_receive_lsn()`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub receive_lsn: Option<u64>,
    /// `pg_last_wal_replay_lsn()`.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub replay_lsn: Option<u64>,
    /// `pg_stat_wal_receiver.status` (`streaming`, `waiting`, …); `None` without a receiver.
    pub receiver_status: Option<String>,
    /// `pg_stat_wal_receiver.received_tli`.
    pub received_timeline: Option<u32>,
}

/// Parses [`super::RECEIVE_SQL`] output (exactly one row).
pub fn parse_receive(output: &str) -> Result<ReceiveStatus, String> {
    let f = single_row(output, 4)?;
    Ok(ReceiveStatus {
        receive_lsn: optional_lsn(f[0])?,
        replay_lsn: optional_lsn(f[1])?,
        receiver_status: (!f[2].is_empty()).then(|| f[2].to_string()),
        received_timeline: optional_number(f[3])?,
    })
}

/// What a crash log says about the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrashFindings {
    /// Phrases showing a corrupt or foreign data directory.
    pub corruption: Vec<String>,
    /// Phrases showing a full volume.
    pub disk_full: Vec<String>,
}

/// Log phrases of a corrupt (or incompatible) data directory, counted only on FATAL or PANIC
/// lines: at `LOG` level several of them (`invalid record length at …: wanted 24, got 0`, a
/// short read of a log segment) are how PostgreSQL finds the end of WAL on every crash recovery
/// and standby start.
pub const CORRUPTION_PHRASES: &[&str] = &[
    "could not locate a valid checkpoint record",
    "invalid checkpoint record",
    "invalid primary checkpoint record",
    "invalid secondary checkpoint record",
    "incorrect resource manager data checksum",
    "could not read from log segment",
    "database files are incompatible",
];

/// Log phrases of a full volume.
pub const DISK_FULL_PHRASES: &[&str] = &[
    "no space left on device",
    "low-disk space",
    "low disk space",
];

/// Scans a crash log (case-insensitively) for [`CORRUPTION_PHRASES`] on lines of FATAL or PANIC
/// severity, and for [`DISK_FULL_PHRASES`] anywhere.
pub fn scan_crash_log(log: &str) -> CrashFindings {
    let log = log.to_lowercase();
    let severe: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("fatal") || line.contains("panic"))
        .collect();
    let corruption = CORRUPTION_PHRASES
        .iter()
        .filter(|p| severe.iter().any(|line| line.contains(*p)))
        .map(|p| p.to_string())
        .collect();
    let disk_full = DISK_FULL_PHRASES
        .iter()
        .filter(|p| log.contains(*p))
        .map(|p| p.to_string())
        .collect();
    CrashFindings {
        corruption,
        disk_full,
    }
}

/// Applies `parse` to a command's output, or says why there is none.
pub fn parse_observed<T>(
    observed: &Observed,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    match observed {
        Observed::Output(text) => parse(text),
        Observed::Failed(reason) => Err(format!("failed: {reason}")),
        Observed::NotAttempted(reason) => Err(format!("not attempted: {reason}")),
    }
}

fn rows(output: &str, columns: usize) -> Result<Vec<Vec<&str>>, String> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            if fields.len() == columns {
                Ok(fields)
            } else {
                Err(format!(
                    "row {line:?} has {} fields, expected {columns}",
                    fields.len()
                ))
            }
        })
        .collect()
}

fn single_row(output: &str, columns: usize) -> Result<Vec<&str>, String> {
    let mut rows = rows(output, columns)?;
    match rows.len() {
        1 => Ok(rows.remove(0)),
        n => Err(format!("expected one row, got {n}")),
    }
}

fn parse_bool(field: &str) -> Result<bool, String> {
    match field {
        "t" => Ok(true),
        "f" => Ok(false),
        other => Err(format!("{other:?} is not t or f")),
    }
}

fn optional_lsn(field: &str) -> Result<Option<u64>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    parse_lsn(field)
        .map(Some)
        .ok_or_else(|| format!("{field:?} is not an LSN"))
}

fn optional_number<T: std::str::FromStr>(field: &str) -> Result<Option<T>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse()
        .map(Some)
        .map_err(|_| format!("{field:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLDATA_PG15: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7301234567890123456
Database cluster state:               in production
pg_control last modified:             Mon 23 Nov 2026 05:50:01 PM UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:735
Time of latest checkpoint:            Mon 23 Nov 2026 05:50:01 PM UTC
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
Backup start location:                0/0
wal_level setting:                    logical
Data page checksum version:           0
";

    #[test]
    fn lsns_round_trip() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x300_0060));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("A/FF"), Some((10 << 32) | 0xFF));
        assert_eq!(parse_lsn("0-3"), None);
        assert_eq!(parse_lsn("0/xyz"), None);
        assert_eq!(format_lsn(0x300_0060), "0/3000060");
        assert_eq!(format_lsn((10 << 32) | 0xFF), "A/FF");
    }

    #[test]
    fn controldata_pg15() {
        let cd = parse_controldata(CONTROLDATA_PG15).unwrap();
        assert_eq!(cd.system_identifier, 7_301_234_567_890_123_456);
        assert_eq!(cd.cluster_state, "in production");
        assert_eq!(cd.timeline, 1);
        assert_eq!(cd.checkpoint_lsn, 0x300_0060);
        assert_eq!(cd.redo_lsn, Some(0x300_0028));
        assert_eq!(
            cd.checkpoint_time.as_deref(),
            Some("Mon 23 Nov 2026 05:50:01 PM UTC")
        );
        assert_eq!(cd.min_recovery_lsn, Some(0));
    }

    #[test]
    fn controldata_recovery_states() {
        for state in [
            "in archive recovery",
            "shut down",
            "shut down in recovery",
            "in crash recovery",
        ] {
            let text = CONTROLDATA_PG15.replace("in production", state);
            assert_eq!(parse_controldata(&text).unwrap().cluster_state, state);
        }
    }

    #[test]
    fn controldata_missing_fields_fail() {
        let no_tl: String = CONTROLDATA_PG15
            .lines()
            .filter(|l| !l.starts_with("Latest checkpoint's TimeLineID"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_controldata(&no_tl)
            .unwrap_err()
            .contains("TimeLineID"));
        let bad_lsn = CONTROLDATA_PG15.replace(
            "Latest checkpoint location:           0/3000060",
            "Latest checkpoint location:           nope",
        );
        assert!(parse_controldata(&bad_lsn).is_err());
        assert!(parse_controldata("pg_controldata: error: could not open file").is_err());
        let localized = CONTROLDATA_PG15.replace("Database system identifier", "Identifiant");
        assert!(parse_controldata(&localized).is_err());
    }

    #[test]
    fn history_lines() {
        let text = "# comment\n1\t0/3000108\tno recovery target specified\n\n2\t0/5000060\tbefore 2026-11-23 17:00:00+00\n";
        let chain = parse_history(text).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].parent_timeline, 1);
        assert_eq!(chain[0].lsn, 0x300_0108);
        assert_eq!(chain[0].reason, "no recovery target specified");
        assert_eq!(chain[1].reason, "before 2026-11-23 17:00:00+00");
        assert_eq!(parse_history("").unwrap(), vec![]);
        assert!(parse_history("1\tgarbage\tx").is_err());
        assert!(parse_history("0\t0/1\tx").is_err());
        assert!(parse_history("cat: can't open '/x': No such file or directory").is_err());
    }

    #[test]
    fn stat_replication_rows() {
        let text = "pg-2|streaming|0/5000148|0/5000148|0/5000148|0/5000148|0.000843|async\n\
                    pg-3|catchup|0/5000148|0/4000000|0/4000000|0/3000000||async\n";
        let rows = parse_stat_replication(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].application_name, "pg-2");
        assert_eq!(rows[0].state, "streaming");
        assert_eq!(rows[0].replay_lsn, Some(0x500_0148));
        assert_eq!(rows[0].replay_lag_seconds, Some(0.000843));
        assert_eq!(rows[1].replay_lag_seconds, None);
        assert_eq!(parse_stat_replication("").unwrap(), vec![]);
        assert!(parse_stat_replication("pg-2|streaming").is_err());
    }

    #[test]
    fn slot_rows() {
        let text = "_cnpg_pg_2|physical|t|0/5000148|reserved|0\n\
                    _cnpg_pg_3|physical|f|0/1000000|extended|67108864\n\
                    _cnpg_pg_4|physical|f|||\n";
        let slots = parse_slots(text).unwrap();
        assert!(slots[0].active && slots[0].retains_wal());
        assert_eq!(slots[1].bytes_behind, Some(67_108_864));
        assert!(!slots[1].active);
        assert_eq!(slots[2].restart_lsn, None);
        assert!(!slots[2].retains_wal());
        assert!(parse_slots("_cnpg_pg_2|physical|yes|0/1|reserved|0").is_err());
    }

    #[test]
    fn wal_row() {
        let wal = parse_wal("0/5000148|000000020000000000000005|2|512MB|-1\n").unwrap();
        assert_eq!(wal.current_lsn, 0x500_0148);
        assert_eq!(wal.insert_timeline, 2);
        assert_eq!(wal.checkpoint_timeline, 2);
        assert_eq!(wal.wal_keep_size, "512MB");
        assert_eq!(wal.max_slot_wal_keep_size, "-1");
        assert!(parse_wal("0/5000148|bogus|2|0|-1").is_err());
        assert!(parse_wal("").is_err());
    }

    #[test]
    fn in_recovery_values() {
        assert_eq!(parse_in_recovery("t\n"), Ok(true));
        assert_eq!(parse_in_recovery("f"), Ok(false));
        assert!(parse_in_recovery("").is_err());
        assert!(parse_in_recovery("t\nf\n").is_err());
    }

    #[test]
    fn receive_row() {
        let r = parse_receive("0/5000148|0/5000100|streaming|2\n").unwrap();
        assert_eq!(r.receive_lsn, Some(0x500_0148));
        assert_eq!(r.replay_lsn, Some(0x500_0100));
        assert_eq!(r.receiver_status.as_deref(), Some("streaming"));
        assert_eq!(r.received_timeline, Some(2));
        let idle = parse_receive("|0/3000060||\n").unwrap();
        assert_eq!(idle.receive_lsn, None);
        assert_eq!(idle.receiver_status, None);
        assert_eq!(idle.received_timeline, None);
    }

    #[test]
    fn crash_logs() {
        let log = r#"{"level":"info","msg":"record","record":{"error_severity":"PANIC","message":"could not locate a valid checkpoint record"}}
{"level":"info","msg":"record","record":{"message":"could not write to file \"pg_wal/xlogtemp.42\": No space left on device"}}"#;
        let found = scan_crash_log(log);
        assert_eq!(
            found.corruption,
            vec!["could not locate a valid checkpoint record"]
        );
        assert_eq!(found.disk_full, vec!["no space left on device"]);
        assert_eq!(scan_crash_log("all fine"), CrashFindings::default());
    }

    #[test]
    fn end_of_wal_at_log_level_is_not_corruption() {
        // What every crash recovery and standby start logs when it reaches the end of WAL.
        let log = r#"LOG:  database system was interrupted; last known up at 2026-11-23 17:00:01 UTC
LOG:  redo starts at 0/3000028
LOG:  invalid record length at 0/3000148: wanted 24, got 0
LOG:  could not read from log segment 000000010000000000000003, offset 0: read 0 of 8192
LOG:  redo done at 0/3000110
{"level":"info","record":{"error_severity":"LOG","message":"invalid record length at 0/5000148: wanted 24, got 0"}}"#;
        assert_eq!(scan_crash_log(log), CrashFindings::default());
        // The same read failure at FATAL is reported.
        let fatal = "FATAL:  could not read from log segment 000000010000000000000003, offset 0: read 0 of 8192";
        assert_eq!(
            scan_crash_log(fatal).corruption,
            vec!["could not read from log segment"]
        );
        // "invalid record length" is never corruption by itself.
        assert!(scan_crash_log("PANIC:  invalid record length at 0/3000148")
            .corruption
            .is_empty());
    }

    #[test]
    fn observed_reasons() {
        let failed = Observed::Failed("container not running".into());
        assert_eq!(
            parse_observed(&failed, parse_in_recovery).unwrap_err(),
            "failed: container not running"
        );
        assert_eq!(
            parse_observed(&Observed::Output("f".into()), parse_in_recovery),
            Ok(false)
        );
    }
}
