//! Parsers for what a Galera node prints: `grastate.dat`, the wsrep status variables, the
//! `--wsrep-recover` error log, and the hints scraped from container logs and the CR.
//!
//! Each parser either returns every field it promises or an error saying what was wrong: a
//! half-read position is worse than an unread one.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The Galera saved state file in the `mariadb` container (and on the data volume).
pub const GRASTATE_PATH: &str = "/var/lib/mysql/grastate.dat";

/// The data directory (`df` target, the volume's mount point).
pub const DATA_DIR: &str = "/var/lib/mysql";

/// Reads [`GRASTATE_PATH`]; its output is what [`parse_grastate`] expects.
pub const GRASTATE_COMMAND: [&str; 2] = ["cat", GRASTATE_PATH];

/// Disk usage of [`DATA_DIR`] in POSIX format; its output goes to [`crate::parse_df_percent`].
pub const DF_COMMAND: [&str; 3] = ["df", "-kP", DATA_DIR];

/// The wsrep status variables, one `NAME\tvalue` per line when run with
/// `mariadb --batch --skip-column-names -e`. [`parse_wsrep_status`] reads the output.
pub const WSREP_STATUS_SQL: &str = "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM \
information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME LIKE 'wsrep\\_%' ORDER BY VARIABLE_NAME";

/// The line `mariadbd --wsrep-recover` writes to its error log.
const RECOVERED_MARKER: &str = "WSREP: Recovered position:";

/// The gcache scan line: `… found gapless sequence <first>-<last>`.
const GAPLESS_MARKER: &str = "found gapless sequence";

/// A Galera position: the history (cluster state UUID) and the last transaction in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Cluster state UUID, lower case.
    pub uuid: String,
    /// Sequence number; `-1` means unknown.
    pub seqno: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.seqno)
    }
}

/// `grastate.dat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraState {
    /// `version` (`2.1`), when present.
    pub version: Option<String>,
    /// `uuid`, lower case (may be the all-zero UUID of a node that never joined).
    pub uuid: String,
    /// `seqno`: `-1` while the server runs and after a crash (position unknown).
    pub seqno: i64,
    /// `safe_to_bootstrap` (absent before version 2.1).
    pub safe_to_bootstrap: Option<bool>,
}

/// The wsrep status variables triage uses. A variable the server did not print is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsrepStatus {
    /// `wsrep_local_state`: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced (0: not joined).
    pub local_state: Option<u32>,
    /// `wsrep_local_state_comment` (`Synced`, `Donor/Desynced`, `Initialized`, …).
    pub local_state_comment: Option<String>,
    /// `wsrep_cluster_status`: `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: Option<String>,
    /// `wsrep_cluster_size`: members of this node's component.
    pub cluster_size: Option<u32>,
    /// `wsrep_connected`.
    pub connected: Option<bool>,
    /// `wsrep_ready`: accepts queries.
    pub ready: Option<bool>,
    /// `wsrep_cluster_state_uuid`, lower case.
    pub cluster_state_uuid: Option<String>,
    /// `wsrep_last_committed`.
    pub last_committed: Option<i64>,
    /// `wsrep_flow_control_paused`: fraction of time paused by flow control.
    pub flow_control_paused: Option<f64>,
    /// `wsrep_local_recv_queue`.
    pub local_recv_queue: Option<u64>,
}

/// `wsrep_local_state` of a Synced node.
pub const STATE_SYNCED: u32 = 4;

impl WsrepStatus {
    /// Member of a Primary component (`wsrep_cluster_status = Primary`).
    pub fn is_primary(&self) -> bool {
        self.cluster_status.as_deref() == Some("Primary")
    }

    /// Joining, Donor/Desynced or Joined: catching up (or serving a donor) by itself.
    pub fn is_transitional(&self) -> bool {
        matches!(self.local_state, Some(1..=3))
    }

    /// Synced, in the Primary component, connected and ready: serving.
    pub fn is_serving(&self) -> bool {
        self.is_primary()
            && self.local_state == Some(STATE_SYNCED)
            && self.connected == Some(true)
            && self.ready == Some(true)
    }

    /// `wsrep_local_state_comment`, or the number when there is no comment.
    pub fn state_text(&self) -> String {
        match (&self.local_state_comment, self.local_state) {
            (Some(comment), _) => comment.clone(),
            (None, Some(state)) => format!("state {state}"),
            (None, None) => "state unknown".to_string(),
        }
    }
}

/// A position (or part of one) from a source that is only a hint: a log scrape, the CR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionHint {
    /// Cluster state UUID, when the source names one.
    pub uuid: Option<String>,
    /// Sequence number, when the source names one.
    pub seqno: Option<i64>,
    /// Where it came from (`container log`, `CR status.galeraRecovery.recovered`, …).
    pub source: String,
}

/// Parses `grastate.dat`:
/// ```text
/// # GALERA saved state
/// version: 2.1
/// uuid:    6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11
/// seqno:   -1
/// safe_to_bootstrap: 0
/// ```
/// `uuid` and `seqno` are required.
pub fn parse_grastate(text: &str) -> Result<GraState, String> {
    let fields = key_values(text, ':');
    let uuid = fields.get("uuid").ok_or("no `uuid:` line")?;
    let seqno = fields.get("seqno").ok_or("no `seqno:` line")?;
    let safe_to_bootstrap = match fields.get("safe_to_bootstrap").map(String::as_str) {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(other) => return Err(format!("safe_to_bootstrap: not 0 or 1: {other:?}")),
    };
    Ok(GraState {
        version: fields.get("version").cloned(),
        uuid: uuid.to_ascii_lowercase(),
        seqno: parse_number("seqno", seqno)?,
        safe_to_bootstrap,
    })
}

/// Parses the output of [`WSREP_STATUS_SQL`]: one `NAME<TAB>value` per line. MariaDB 10.11
/// prints the names upper case; they are matched case-insensitively. Errors when no `wsrep_`
/// variable is there (wsrep off) or a used variable has a malformed value.
pub fn parse_wsrep_status(text: &str) -> Result<WsrepStatus, String> {
    let vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let (name, value) = line
                .split_once('\t')
                .or_else(|| line.trim().split_once(char::is_whitespace))?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .filter(|(name, _)| name.starts_with("wsrep_"))
        .collect();
    if vars.is_empty() {
        return Err("no wsrep_ status variables (wsrep off, or not a Galera node)".to_string());
    }
    let text_of = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
    let on_off_of = |name: &str| text_of(name).map(|v| parse_on_off(name, &v)).transpose();
    Ok(WsrepStatus {
        local_state: number_of(&vars, "wsrep_local_state")?,
        local_state_comment: text_of("wsrep_local_state_comment"),
        cluster_status: text_of("wsrep_cluster_status"),
        cluster_size: number_of(&vars, "wsrep_cluster_size")?,
        connected: on_off_of("wsrep_connected")?,
        ready: on_off_of("wsrep_ready")?,
        cluster_state_uuid: text_of("wsrep_cluster_state_uuid").map(|u| u.to_ascii_lowercase()),
        last_committed: number_of(&vars, "wsrep_last_committed")?,
        flow_control_paused: number_of(&vars, "wsrep_flow_control_paused")?,
        local_recv_queue: number_of(&vars, "wsrep_local_recv_queue")?,
    })
}

/// Parses the error log of `mariadbd --wsrep-recover`: the last
/// `… [Note] WSREP: Recovered position: <uuid>:<seqno>` line.
pub fn parse_recovered_position(log: &str) -> Result<Position, String> {
    let line = log
        .lines()
        .rev()
        .find_map(|line| line.split_once(RECOVERED_MARKER).map(|(_, rest)| rest))
        .ok_or_else(|| format!("no {RECOVERED_MARKER:?} line"))?;
    parse_position(line)
}

/// Parses `<uuid>:<seqno>` (trailing text after the seqno, such as `,gtid`, is ignored).
pub fn parse_position(text: &str) -> Result<Position, String> {
    let text = text.trim();
    let (uuid, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("not <uuid>:<seqno>: {text:?}"))?;
    let seqno = leading_number(rest).ok_or_else(|| format!("no seqno in {text:?}"))?;
    Ok(Position {
        uuid: uuid.trim().to_ascii_lowercase(),
        seqno,
    })
}

/// Scrapes a container log for a position hint: the highest seqno among
/// `WSREP: Recovered position: <uuid>:<seqno>` and `found gapless sequence <a>-<b>` (its `b`),
/// with the UUID of the last recovered-position line. `None` when neither is there.
pub fn parse_log_hint(log: &str) -> Option<PositionHint> {
    let recovered: Vec<Position> = log
        .lines()
        .filter_map(|line| line.split_once(RECOVERED_MARKER))
        .filter_map(|(_, rest)| parse_position(rest).ok())
        .collect();
    let gapless = log.lines().filter_map(|line| {
        let (_, rest) = line.split_once(GAPLESS_MARKER)?;
        let (_, last) = rest.trim().split_once('-')?;
        leading_number(last)
    });
    let seqno = recovered.iter().map(|p| p.seqno).chain(gapless).max()?;
    Some(PositionHint {
        uuid: recovered.last().map(|p| p.uuid.clone()),
        seqno: Some(seqno),
        source: "container log".to_string(),
    })
}

/// The CR's `status.galeraRecovery` entries for one node: `recovered.<node>` first, then
/// `state.<node>` (each `{uuid, seqno}`), as written by mariadb-operator.
pub fn galera_recovery_hints(status: &serde_json::Value, node: &str) -> Vec<PositionHint> {
    ["recovered", "state"]
        .into_iter()
        .filter_map(|section| {
            let entry = status.get(section)?.get(node)?;
            let uuid = entry.get("uuid").and_then(|u| u.as_str());
            let seqno = entry.get("seqno").and_then(|s| {
                s.as_i64()
                    .or_else(|| s.as_str().and_then(|t| t.trim().parse().ok()))
            });
            Some(PositionHint {
                uuid: uuid.map(str::to_ascii_lowercase),
                seqno,
                source: format!("CR status.galeraRecovery.{section}"),
            })
        })
        .collect()
}

/// A cluster UUID worth comparing: 36 characters of hex digits and dashes, not all zero.
/// Returns it lower case.
pub fn canonical_uuid(uuid: &str) -> Option<String> {
    let uuid = uuid.trim().to_ascii_lowercase();
    let well_formed = uuid.len() == 36 && uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
    let all_zero = uuid.chars().all(|c| c == '-' || c == '0');
    (well_formed && !all_zero).then_some(uuid)
}

/// `key<sep> value` lines, comments and blank lines skipped, keys trimmed.
fn key_values(text: &str, separator: char) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(separator))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// A numeric variable: `None` when absent or empty, an error when malformed.
fn number_of<T: std::str::FromStr>(
    vars: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, String> {
    vars.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| parse_number(name, v))
        .transpose()
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}: not a number: {value:?}"))
}

fn parse_on_off(name: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_uppercase().as_str() {
        "ON" => Ok(true),
        "OFF" => Ok(false),
        _ => Err(format!("{name}: not ON or OFF: {value:?}")),
    }
}

/// The optionally negative integer at the start of `text`.
fn leading_number(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let sign = usize::from(text.starts_with('-'));
    let digits = text[sign..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    text[..sign + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11";

    const GRASTATE_CRASHED: &str = "# GALERA saved state\nversion: 2.1\n\
        uuid:    6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11\nseqno:   -1\nsafe_to_bootstrap: 0\n";

    /// A Synced node of a 3-node cluster, MariaDB 10.11 / galera-4 26.4 (trimmed).
    const WSREP_SYNCED: &str = "WSREP_APPLIER_THREAD_COUNT\t1\n\
        WSREP_APPLY_OOOE\t0.000000\n\
        WSREP_CLUSTER_CONF_ID\t3\n\
        WSREP_CLUSTER_SIZE\t3\n\
        WSREP_CLUSTER_STATE_UUID\t6C0A1E3C-2A11-11EF-8B2A-1A3F5E0C9D11\n\
        WSREP_CLUSTER_STATUS\tPrimary\n\
        WSREP_CONNECTED\tON\n\
        WSREP_EVS_REPL_LATENCY\t0/0/0/0/0\n\
        WSREP_FLOW_CONTROL_PAUSED\t0.00184\n\
        WSREP_INCOMING_ADDRESSES\t10.42.0.7:3306,10.42.1.9:3306,10.42.2.4:3306\n\
        WSREP_LAST_COMMITTED\t1742\n\
        WSREP_LAST_ERROR\t\n\
        WSREP_LOCAL_RECV_QUEUE\t0\n\
        WSREP_LOCAL_STATE\t4\n\
        WSREP_LOCAL_STATE_COMMENT\tSynced\n\
        WSREP_PROVIDER_NAME\tGalera\n\
        WSREP_PROVIDER_VERSION\t26.4.23(r1234)\n\
        WSREP_READY\tON\n";

    #[test]
    fn grastate_after_a_crash() {
        let g = parse_grastate(GRASTATE_CRASHED).unwrap();
        assert_eq!(g.version.as_deref(), Some("2.1"));
        assert_eq!(g.uuid, UUID);
        assert_eq!(g.seqno, -1);
        assert_eq!(g.safe_to_bootstrap, Some(false));
    }

    #[test]
    fn grastate_after_a_clean_shutdown_and_old_format() {
        let clean = GRASTATE_CRASHED
            .replace("seqno:   -1", "seqno:   15")
            .replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1");
        let g = parse_grastate(&clean).unwrap();
        assert_eq!((g.seqno, g.safe_to_bootstrap), (15, Some(true)));
        let v20 = "# GALERA saved state\nversion: 2.0\nuuid: 6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11\nseqno: 7\ncert_index:\n";
        assert_eq!(parse_grastate(v20).unwrap().safe_to_bootstrap, None);
    }

    #[test]
    fn grastate_rejects_garbage() {
        assert!(parse_grastate("").is_err());
        assert!(parse_grastate("cat: can't open '/var/lib/mysql/grastate.dat'").is_err());
        assert!(parse_grastate(&GRASTATE_CRASHED.replace("-1", "x")).is_err());
        assert!(parse_grastate(&GRASTATE_CRASHED.replace("bootstrap: 0", "bootstrap: 2")).is_err());
    }

    #[test]
    fn wsrep_status_of_a_synced_node() {
        let w = parse_wsrep_status(WSREP_SYNCED).unwrap();
        assert_eq!(w.local_state, Some(4));
        assert_eq!(w.local_state_comment.as_deref(), Some("Synced"));
        assert_eq!(w.cluster_status.as_deref(), Some("Primary"));
        assert_eq!(w.cluster_size, Some(3));
        assert_eq!((w.connected, w.ready), (Some(true), Some(true)));
        assert_eq!(w.cluster_state_uuid.as_deref(), Some(UUID));
        assert_eq!(w.last_committed, Some(1742));
        assert_eq!(w.flow_control_paused, Some(0.00184));
        assert_eq!(w.local_recv_queue, Some(0));
        assert!(w.is_serving());
    }

    #[test]
    fn wsrep_status_of_a_non_primary_survivor() {
        let text = "wsrep_cluster_size\t1\nwsrep_cluster_state_uuid\t6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11\n\
            wsrep_cluster_status\tnon-Primary\nwsrep_connected\tON\nwsrep_last_committed\t57\n\
            wsrep_local_state\t0\nwsrep_local_state_comment\tInitialized\nwsrep_ready\tOFF\n";
        let w = parse_wsrep_status(text).unwrap();
        assert!(!w.is_primary());
        assert!(!w.is_serving());
        assert!(!w.is_transitional());
        assert_eq!(w.ready, Some(false));
        assert_eq!(w.state_text(), "Initialized");
    }

    #[test]
    fn wsrep_status_rejects_garbage() {
        assert!(parse_wsrep_status("").is_err());
        assert!(parse_wsrep_status("ERROR 2002 (HY000): Can't connect").is_err());
        assert!(parse_wsrep_status("WSREP_LAST_COMMITTED\tlots\n").is_err());
        assert!(parse_wsrep_status("WSREP_READY\tmaybe\n").is_err());
    }

    #[test]
    fn recovered_position_takes_the_last_line() {
        let log = "2024-06-12 10:01:02 0 [Note] Starting MariaDB 10.11.19-MariaDB-deb12 source revision  as process 1\n\
            2024-06-12 10:01:02 0 [Note] InnoDB: Starting crash recovery from checkpoint LSN=46846\n\
            2024-06-12 10:01:03 0 [Note] WSREP: Recovered position: 00000000-0000-0000-0000-000000000000:-1\n\
            2024-06-12 10:01:03 0 [Note] WSREP: Recovered position: 6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11:42\n\
            2024-06-12 10:01:03 0 [Note] InnoDB: Buffer pool(s) dump completed\n";
        let p = parse_recovered_position(log).unwrap();
        assert_eq!(p.uuid, UUID);
        assert_eq!(p.seqno, 42);
        assert_eq!(p.to_string(), format!("{UUID}:42"));
        assert!(parse_recovered_position("[Note] InnoDB: Shutdown completed").is_err());
    }

    #[test]
    fn positions() {
        assert_eq!(parse_position(&format!(" {UUID}:-1 ")).unwrap().seqno, -1);
        assert_eq!(
            parse_position(&format!("{UUID}:17,0-1-17")).unwrap().seqno,
            17
        );
        assert!(parse_position(UUID).is_err());
        assert!(parse_position(&format!("{UUID}:")).is_err());
    }

    #[test]
    fn log_hint_takes_the_highest_seqno() {
        let log = "2024-06-12 10:01:03 0 [Note] WSREP: Recovered position: 6c0a1e3c-2a11-11ef-8b2a-1a3f5e0c9d11:40\n\
            2024-06-12 10:01:04 0 [Note] WSREP: Recovering GCache ring buffer: found gapless sequence 12-44\n";
        let hint = parse_log_hint(log).unwrap();
        assert_eq!(hint.seqno, Some(44));
        assert_eq!(hint.uuid.as_deref(), Some(UUID));
        assert_eq!(
            parse_log_hint("[Note] mariadbd: ready for connections."),
            None
        );
        let gapless_only = parse_log_hint("found gapless sequence 3-9").unwrap();
        assert_eq!((gapless_only.uuid, gapless_only.seqno), (None, Some(9)));
    }

    #[test]
    fn galera_recovery_status_hints() {
        let status = serde_json::json!({
            "recovered": { "db-0": { "uuid": UUID, "seqno": 42 } },
            "state": {
                "db-0": { "version": "2.1", "uuid": UUID, "seqno": -1, "safeToBootstrap": false },
                "db-1": { "version": "2.1", "uuid": UUID, "seqno": 40, "safeToBootstrap": false }
            }
        });
        let hints = galera_recovery_hints(&status, "db-0");
        assert_eq!(hints.len(), 2);
        assert_eq!(hints[0].seqno, Some(42));
        assert_eq!(hints[0].source, "CR status.galeraRecovery.recovered");
        assert_eq!(hints[1].seqno, Some(-1));
        assert_eq!(galera_recovery_hints(&status, "db-1")[0].seqno, Some(40));
        assert!(galera_recovery_hints(&status, "db-2").is_empty());
        assert!(galera_recovery_hints(&serde_json::json!({}), "db-0").is_empty());
    }

    #[test]
    fn canonical_uuids() {
        assert_eq!(canonical_uuid(&UUID.to_uppercase()).as_deref(), Some(UUID));
        assert_eq!(canonical_uuid("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(canonical_uuid(""), None);
        assert_eq!(canonical_uuid("unknown"), None);
    }

    #[test]
    fn sql_escapes_the_underscore() {
        assert!(WSREP_STATUS_SQL.contains(r"LIKE 'wsrep\_%'"));
        assert!(WSREP_STATUS_SQL.contains("information_schema.GLOBAL_STATUS WHERE"));
    }
}
