//! Tolerant types for restic's `--json` output. Unknown fields are ignored and missing ones
//! default, so newer restic releases still parse.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One snapshot as listed by `restic snapshots --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Full id.
    pub id: String,
    /// Short id (first 8 hex digits).
    pub short_id: String,
    /// Snapshot time.
    pub time: Option<DateTime<Utc>>,
    /// Recorded host (`hasteward` for hasteward snapshots).
    pub hostname: String,
    /// Recorded user.
    pub username: String,
    /// Tags (`key=value` by hasteward's convention).
    pub tags: Vec<String>,
    /// Backed-up paths (the stdin filename, with a leading `/`).
    pub paths: Vec<String>,
    /// restic version that wrote it (0.17+).
    pub program_version: Option<String>,
    /// The id of the snapshot this one was copied from (`restic copy`).
    pub original: Option<String>,
}

impl Snapshot {
    /// The value of tag `key=…`, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| {
            let (k, v) = t.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// The short id, computed from `id` when restic did not print one.
    pub fn short(&self) -> &str {
        if self.short_id.is_empty() {
            &self.id[..self.id.len().min(8)]
        } else {
            &self.short_id
        }
    }
}

/// A snapshot reference inside `forget` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotRef {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// Snapshot time.
    pub time: Option<DateTime<Utc>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Paths.
    pub paths: Vec<String>,
}

/// One group of `restic forget --json` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForgetGroup {
    /// Group tags (when grouping by tags).
    pub tags: Option<Vec<String>>,
    /// Group host.
    pub host: String,
    /// Group paths.
    pub paths: Option<Vec<String>>,
    /// Snapshots kept.
    pub keep: Option<Vec<SnapshotRef>>,
    /// Snapshots removed.
    pub remove: Option<Vec<SnapshotRef>>,
}

/// `restic stats --json` (restore-size mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Total size in bytes.
    pub total_size: u64,
    /// Number of files.
    pub total_file_count: u64,
    /// Number of snapshots counted (0.15+).
    pub snapshots_count: Option<u64>,
}

/// A line of `restic backup --json` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub(crate) enum BackupMessage {
    Status {},
    Summary(crate::BackupSummary),
    Error {
        #[serde(default)]
        error: serde_json::Value,
        #[serde(default)]
        item: String,
    },
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_0_14_snapshot_list() {
        let text = r#"[{"time":"2026-11-23T11:28:34.538381599Z","tree":"98ea","paths":["/a/b.sql"],"hostname":"hasteward","username":"root","tags":["x=y","sha256=ab"],"id":"1925c98c71fcf1ef","short_id":"1925c98c"}]"#;
        let snaps: Vec<Snapshot> = serde_json::from_str(text).unwrap();
        assert_eq!(snaps[0].tag("sha256"), Some("ab"));
        assert_eq!(snaps[0].tag("x"), Some("y"));
        assert_eq!(snaps[0].tag("z"), None);
        assert_eq!(snaps[0].short(), "1925c98c");
    }

    #[test]
    fn parses_backup_lines_and_ignores_unknown_ones() {
        let lines = [
            r#"{"message_type":"status","percent_done":0,"total_files":1}"#,
            r#"{"message_type":"verbose_status","action":"new","item":"/a"}"#,
            r#"{"message_type":"summary","files_new":1,"data_added":571,"total_bytes_processed":6,"total_duration":2.3,"snapshot_id":"1925c98c"}"#,
        ];
        let parsed: Vec<BackupMessage> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(matches!(parsed[0], BackupMessage::Status {}));
        assert!(matches!(parsed[1], BackupMessage::Other));
        match &parsed[2] {
            BackupMessage::Summary(s) => assert_eq!(s.snapshot_id, "1925c98c"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_forget_groups_with_null_remove() {
        let text = r#"[{"tags":null,"host":"hasteward","paths":["/ns/c/x.sql"],"keep":[{"id":"aa","short_id":"aa","time":"2026-11-23T11:28:34Z","tags":["type=backup"]}],"remove":null,"reasons":[]}]"#;
        let groups: Vec<ForgetGroup> = serde_json::from_str(text).unwrap();
        assert_eq!(groups[0].keep.as_ref().unwrap().len(), 1);
        assert!(groups[0].remove.is_none());
    }
}
