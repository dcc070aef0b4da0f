//! WAL relief for a disk-full CloudNativePG instance whose server cannot start: which `pg_wal`
//! segments may be removed, decided from what a read-only helper saw on the volume.
//!
//! Only whole segments that sort before the segment of the last checkpoint's REDO point go:
//! crash recovery starts at REDO, so the instance's own data never needs them. What else might:
//! - a replica still replaying from before REDO would need them to stream (it would have to be
//!   reseeded): refused unless `--force`;
//! - segments not yet archived would leave a hole in the WAL archive, so point-in-time recovery
//!   past it is lost: refused unless `--force`. When archiving is in use (any status file in
//!   `archive_status`), a segment counts as archived only with its `.done` file.
//!
//! Refused outright: a `backup_label` in the data directory (the instance is still in its first
//! recovery after a base backup, which starts at that label's checkpoint, not `pg_control`'s),
//! and `pg_wal` on a separate volume (CloudNativePG `walStorage`), which the helper does not
//! mount.
//!
//! History files, `.partial` and `.backup` files are kept, and so is everything from REDO on.

use std::collections::BTreeSet;

use serde::Serialize;

use super::parse::{parse_controldata, parse_lsn};

/// The read-only helper's script: `pg_controldata`, the `pg_wal` and `archive_status` listings,
/// and the volume's free space, in marked sections.
pub const LISTING_SCRIPT: &str = r#"set -eu
d=/var/lib/postgresql/data/pgdata
LC_ALL=C pg_controldata -D "$d"
echo "--- pg_wal_link"
if [ -L "$d/pg_wal" ]; then readlink "$d/pg_wal"; fi
echo "--- backup_label"
if [ -f "$d/backup_label" ]; then head -n 5 "$d/backup_label"; fi
echo "--- pg_wal"
for f in "$d"/pg_wal/*; do [ -f "$f" ] && echo "${f##*/}"; done
echo "--- archive_status"
if [ -d "$d/pg_wal/archive_status" ]; then
  for f in "$d"/pg_wal/archive_status/*; do [ -f "$f" ] && echo "${f##*/}"; done
fi
echo "--- df"
df -kP "$d" | tail -n 1"#;

/// The removing helper's script: every segment that sorts before `$CUTOFF` (a 24-digit segment
/// name, checked here again) and its archive status files, with a server alive on the directory
/// refused.
pub const PRUNE_SCRIPT: &str = r#"set -eu
d=/var/lib/postgresql/data/pgdata
case "$CUTOFF" in
  ????????????????????????) ;;
  *) echo "hasteward: bad cutoff" >&2; exit 2 ;;
esac
case "$CUTOFF" in *[!0-9A-F]*) echo "hasteward: bad cutoff" >&2; exit 2 ;; esac
if [ -f "$d/postmaster.pid" ]; then
  pid=$(head -n 1 "$d/postmaster.pid")
  if [ -n "$pid" ] && [ "$pid" != "$$" ] && grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then
    echo "hasteward: a server still runs on $d; not touching it" >&2; exit 1
  fi
fi
cd "$d/pg_wal"
before=$(df -kP . | tail -n 1 | awk '{print $4}')
n=0
for f in ????????????????????????; do
  [ -f "$f" ] || continue
  case "$f" in *[!0-9A-F]*) continue ;; esac
  first=$(printf '%s\n%s\n' "$f" "$CUTOFF" | LC_ALL=C sort | head -n 1)
  if [ "$first" = "$f" ] && [ "$f" != "$CUTOFF" ]; then
    rm -f -- "$f" "archive_status/$f.ready" "archive_status/$f.done"
    n=$((n + 1))
  fi
done
after=$(df -kP . | tail -n 1 | awk '{print $4}')
echo "hasteward: removed $n segments before $CUTOFF; free space ${before} KiB -> ${after} KiB""#;

/// What the read-only helper saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalListing {
    /// "Database cluster state".
    pub cluster_state: String,
    /// "Latest checkpoint's REDO location".
    pub redo_lsn: u64,
    /// "Latest checkpoint's REDO WAL file".
    pub redo_file: String,
    /// Whole segment files in `pg_wal` (24 hex digits), sorted.
    pub segments: Vec<String>,
    /// Segments not archived yet (archiving in use and no `.done` status file).
    pub not_archived: BTreeSet<String>,
    /// Where `pg_wal` points when it is a symlink (a separate WAL volume).
    pub separate_wal: Option<String>,
    /// Whether a `backup_label` is in the data directory.
    pub backup_label: bool,
    /// Free space on the volume, KiB.
    pub free_kib: Option<u64>,
}

/// Whether `name` is a whole WAL segment file name (24 upper-case hex digits).
pub fn is_segment(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// Parses the output of [`LISTING_SCRIPT`].
pub fn parse_listing(output: &str) -> Result<WalListing, String> {
    let mut sections = output.split("--- ");
    let control = sections.next().unwrap_or_default();
    let data = parse_controldata(control)?;
    let redo_lsn = data
        .redo_lsn
        .ok_or("pg_controldata printed no REDO location")?;
    let redo_file = control
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "Latest checkpoint's REDO WAL file").then(|| v.trim().to_string())
        })
        .filter(|f| is_segment(f))
        .ok_or("pg_controldata printed no REDO WAL file")?;
    let mut segments = Vec::new();
    let mut ready = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut separate_wal = None;
    let mut backup_label = false;
    let mut free_kib = None;
    let mut saw_listing = false;
    for section in sections {
        let (title, body) = section.split_once('\n').unwrap_or((section, ""));
        match title.trim() {
            "pg_wal" => {
                saw_listing = true;
                segments.extend(
                    body.lines()
                        .map(str::trim)
                        .filter(|l| is_segment(l))
                        .map(String::from),
                );
            }
            "archive_status" => {
                for l in body.lines().map(str::trim) {
                    if let Some(seg) = l.strip_suffix(".ready").filter(|s| is_segment(s)) {
                        ready.insert(seg.to_string());
                    }
                    if let Some(seg) = l.strip_suffix(".done").filter(|s| is_segment(s)) {
                        done.insert(seg.to_string());
                    }
                }
            }
            "pg_wal_link" => {
                separate_wal = body
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(String::from)
            }
            "backup_label" => backup_label = body.lines().any(|l| !l.trim().is_empty()),
            "df" => {
                free_kib = body
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    if !saw_listing {
        return Err("the helper printed no pg_wal listing".into());
    }
    segments.sort();
    let archiving = !ready.is_empty() || !done.is_empty();
    let not_archived = if archiving {
        segments
            .iter()
            .filter(|s| !done.contains(*s))
            .cloned()
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(WalListing {
        cluster_state: data.cluster_state,
        redo_lsn,
        redo_file,
        segments,
        not_archived,
        separate_wal,
        backup_label,
        free_kib,
    })
}

/// A replica still running, and the WAL position it has replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaPosition {
    /// Instance name.
    pub name: String,
    /// `pg_last_wal_replay_lsn()` as printed (`0/3000060`).
    pub replay_lsn: String,
}

/// What WAL relief removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalSelection {
    /// Segments removed (all sort before `cutoff`).
    pub remove: Vec<String>,
    /// The first segment kept: the REDO point's.
    pub cutoff: String,
    /// Bytes freed (16 MiB segments).
    pub bytes: u64,
    /// Removed segments that were not archived yet (only with `--force`).
    pub not_archived: Vec<String>,
    /// Replicas behind the REDO point (only with `--force`; they need a reseed afterwards).
    pub replicas_behind: Vec<String>,
}

/// Why WAL relief refused at execution time (nothing was removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRefusal {
    /// Gate name.
    pub gate: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// The segment size CloudNativePG uses unless told otherwise.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Decides which segments go (module docs), or refuses.
pub fn select(
    listing: &WalListing,
    replicas: &[ReplicaPosition],
    force: bool,
) -> Result<WalSelection, WalRefusal> {
    if let Some(target) = &listing.separate_wal {
        return Err(WalRefusal {
            gate: "wal-relief-separate-wal-volume",
            message: format!(
                "pg_wal is on a separate volume ({target}, CloudNativePG walStorage), which WAL relief does not mount: grow that volume instead"
            ),
        });
    }
    if listing.backup_label {
        return Err(WalRefusal {
            gate: "wal-relief-backup-label",
            message: "the data directory has a backup_label: the instance is still in its first recovery after a base backup, which needs WAL from that backup's checkpoint on. Grow the volume, or reseed the instance".into(),
        });
    }
    let remove: Vec<String> = listing
        .segments
        .iter()
        .filter(|s| s.as_str() < listing.redo_file.as_str())
        .cloned()
        .collect();
    if remove.is_empty() {
        return Err(WalRefusal {
            gate: "wal-relief-nothing-to-remove",
            message: format!(
                "no WAL segment precedes the last checkpoint's REDO point ({}): the space is not held by old WAL. Look at what else fills the volume, or grow it",
                listing.redo_file
            ),
        });
    }
    let not_archived: Vec<String> = remove
        .iter()
        .filter(|s| listing.not_archived.contains(*s))
        .cloned()
        .collect();
    let mut replicas_behind = Vec::new();
    for r in replicas {
        match parse_lsn(&r.replay_lsn) {
            Some(lsn) if lsn >= listing.redo_lsn => {}
            Some(_) => replicas_behind.push(format!("{} (replayed {})", r.name, r.replay_lsn)),
            None => replicas_behind.push(format!("{} (position unknown)", r.name)),
        }
    }
    if !force && !not_archived.is_empty() {
        return Err(WalRefusal {
            gate: "wal-relief-not-archived",
            message: format!(
                "{} of the {} segments before the REDO point are not archived yet (first {}): removing them leaves a hole in the WAL archive, and point-in-time recovery past it is lost. Fix archiving if you can; pass --force to remove them anyway (take a new base backup afterwards)",
                not_archived.len(),
                remove.len(),
                not_archived[0]
            ),
        });
    }
    if !force && !replicas_behind.is_empty() {
        return Err(WalRefusal {
            gate: "wal-relief-replicas-behind",
            message: format!(
                "replicas still need WAL from before the REDO point: {}. Let them catch up, or pass --force (they will need a reseed)",
                replicas_behind.join(", ")
            ),
        });
    }
    Ok(WalSelection {
        bytes: remove.len() as u64 * SEGMENT_BYTES,
        remove,
        cutoff: listing.redo_file.clone(),
        not_archived,
        replicas_behind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "pg_control version number:            1300
Catalog version number:               202307071
Database system identifier:           7300000000000000001
Database cluster state:               shut down
pg_control last modified:             Mon Nov 23 20:00:00 2026
Latest checkpoint location:           0/9000028
Latest checkpoint's REDO location:    0/9000028
Latest checkpoint's REDO WAL file:    000000010000000000000009
Latest checkpoint's TimeLineID:       1
--- pg_wal
000000010000000000000006
000000010000000000000007
000000010000000000000008
000000010000000000000009
00000001000000000000000A
00000002.history
000000010000000000000007.00000028.backup
--- archive_status
000000010000000000000006.done
000000010000000000000008.ready
--- df
/dev/sda1 1000000 999000 1000 100% /var/lib/postgresql/data
";

    #[test]
    fn parses_the_helpers_listing() {
        let l = parse_listing(LISTING).unwrap();
        assert_eq!(l.cluster_state, "shut down");
        assert_eq!(l.redo_file, "000000010000000000000009");
        assert_eq!(l.redo_lsn, 0x9000028);
        assert_eq!(
            l.segments.len(),
            5,
            "history and backup files are not segments"
        );
        // Archiving is in use (status files exist): only 06 has its `.done`.
        assert_eq!(
            l.not_archived.iter().collect::<Vec<_>>(),
            vec![
                "000000010000000000000007",
                "000000010000000000000008",
                "000000010000000000000009",
                "00000001000000000000000A"
            ]
        );
        assert_eq!(l.separate_wal, None);
        assert!(!l.backup_label);
        assert_eq!(l.free_kib, Some(1000));
    }

    #[test]
    fn removes_only_segments_before_redo() {
        let mut l = parse_listing(LISTING).unwrap();
        l.not_archived.clear();
        let s = select(&l, &[], false).unwrap();
        assert_eq!(
            s.remove,
            vec![
                "000000010000000000000006",
                "000000010000000000000007",
                "000000010000000000000008"
            ]
        );
        assert_eq!(s.cutoff, "000000010000000000000009");
        assert_eq!(s.bytes, 3 * SEGMENT_BYTES);
    }

    #[test]
    fn unarchived_segments_and_lagging_replicas_need_force() {
        let l = parse_listing(LISTING).unwrap();
        let e = select(&l, &[], false).unwrap_err();
        assert_eq!(e.gate, "wal-relief-not-archived");
        let mut archived = l.clone();
        archived.not_archived.clear();
        let behind = [ReplicaPosition {
            name: "pg-2".into(),
            replay_lsn: "0/8FFFFFF".into(),
        }];
        let e = select(&archived, &behind, false).unwrap_err();
        assert_eq!(e.gate, "wal-relief-replicas-behind");
        assert!(e.message.contains("pg-2"));
        let caught_up = [ReplicaPosition {
            name: "pg-2".into(),
            replay_lsn: "0/9000028".into(),
        }];
        assert!(select(&archived, &caught_up, false).is_ok());
        let forced = select(&l, &behind, true).unwrap();
        assert_eq!(
            forced.not_archived,
            vec!["000000010000000000000007", "000000010000000000000008"]
        );
        assert_eq!(forced.replicas_behind.len(), 1);
    }

    #[test]
    fn without_archiving_nothing_counts_as_unarchived() {
        let no_status = LISTING.replace(
            "000000010000000000000006.done\n000000010000000000000008.ready\n",
            "",
        );
        let l = parse_listing(&no_status).unwrap();
        assert!(l.not_archived.is_empty());
        assert!(select(&l, &[], false).is_ok());
    }

    #[test]
    fn a_backup_label_or_a_separate_wal_volume_is_refused() {
        let labelled = LISTING.replace(
            "--- pg_wal\n",
            "--- backup_label\nSTART WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n--- pg_wal\n",
        );
        let l = parse_listing(&labelled).unwrap();
        assert!(l.backup_label);
        assert_eq!(
            select(&l, &[], true).unwrap_err().gate,
            "wal-relief-backup-label"
        );
        let linked = LISTING.replace(
            "--- pg_wal\n",
            "--- pg_wal_link\n/var/lib/postgresql/wal/pg_wal\n--- pg_wal\n",
        );
        let l = parse_listing(&linked).unwrap();
        assert_eq!(
            select(&l, &[], true).unwrap_err().gate,
            "wal-relief-separate-wal-volume"
        );
    }

    #[test]
    fn nothing_before_redo_is_a_refusal() {
        let mut l = parse_listing(LISTING).unwrap();
        l.segments
            .retain(|s| s.as_str() >= "000000010000000000000009");
        assert_eq!(
            select(&l, &[], true).unwrap_err().gate,
            "wal-relief-nothing-to-remove"
        );
    }

    #[test]
    fn a_listing_without_redo_or_pg_wal_is_an_error() {
        assert!(parse_listing("Database cluster state: shut down\n").is_err());
        let no_wal = LISTING.split("--- pg_wal").next().unwrap();
        assert!(parse_listing(no_wal).is_err());
    }
}
