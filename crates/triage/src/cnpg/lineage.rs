//! Lineage: where each instance's WAL history stands, and how two histories relate.
//!
//! A lineage is the instance's timeline, the chain of timeline switches that led to it (from the
//! current timeline's history file), and its best-known WAL position. Two lineages are compared
//! on their switch chains, never on timeline numbers alone: a higher timeline is not "newer data"
//! when it was forked off before the other side's writes.

use serde::Serialize;

use super::input::{CnpgInput, InstanceInput};
use super::parse::{
    as_text, format_lsn, parse_controldata, parse_history, parse_in_recovery, parse_observed,
    parse_receive, parse_wal, ControlData, Switch,
};
use crate::{Provenance, VolumeState};

/// Which WAL position stands for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionSource {
    /// `pg_current_wal_lsn()` on the live primary.
    CurrentWal,
    /// `pg_last_wal_replay_lsn()` on a live replica receiving the same timeline.
    ReplayLsn,
    /// `pg_controldata`'s latest checkpoint: a lower bound of what the instance holds.
    Checkpoint,
}

/// A readable instance's history and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineageData {
    /// `pg_controldata`'s system identifier.
    #[serde(serialize_with = "as_text::decimal")]
    pub system_identifier: u64,
    /// `pg_controldata`'s cluster state.
    pub cluster_state: String,
    /// Latest checkpoint's timeline.
    pub timeline: u32,
    /// The switches that led to `timeline` (empty on timeline 1).
    pub switches: Vec<Switch>,
    /// Latest checkpoint location.
    #[serde(serialize_with = "as_text::lsn")]
    pub checkpoint: u64,
    /// The best-known position (see `position_source`).
    #[serde(serialize_with = "as_text::lsn")]
    pub position: u64,
    /// Where `position` came from.
    pub position_source: PositionSource,
    /// Why that source (and not a better one) was used.
    pub position_note: String,
    /// A live standby (it answered `pg_is_in_recovery() = t`) whose WAL receiver is on another
    /// timeline than its checkpoint: PostgreSQL follows a timeline only from at or before the
    /// point it branched off, so the standby holds nothing of its own past that point.
    pub follows_timeline: Option<u32>,
    /// A live standby's `pg_last_wal_replay_lsn()` when no WAL receiver pins its timeline. At or
    /// below a fork every timeline of the chain agrees, so there it bounds what it holds.
    #[serde(serialize_with = "as_text::opt_lsn")]
    pub unpinned_replay: Option<u64>,
}

/// Cluster states whose checkpoint is the last record the instance wrote (a clean shutdown).
pub const CLEAN_SHUTDOWN_STATES: &[&str] = &["shut down", "shut down in recovery"];

impl LineageData {
    /// Whether `position` is a live one (exact) rather than a checkpoint (a lower bound).
    pub fn position_is_live(&self) -> bool {
        self.position_source != PositionSource::Checkpoint
    }

    /// Whether `position` is exact: a live position, or the checkpoint of a clean shutdown.
    /// Otherwise (a crash, or a running instance) it is only a lower bound.
    pub fn position_is_exact(&self) -> bool {
        self.position_is_live() || CLEAN_SHUTDOWN_STATES.contains(&self.cluster_state.as_str())
    }

    /// Whether the instance holds WAL past `fork`: `Some(true)` when its position is past it,
    /// `Some(false)` when it provably holds nothing past it, `None` when its position is only a
    /// lower bound at or below it (a crashed instance may have written past its last
    /// checkpoint).
    pub fn wrote_past(&self, fork: u64) -> Option<bool> {
        if self.position > fork {
            Some(true)
        } else if self.position_is_exact()
            || self.follows_timeline.is_some()
            || self.unpinned_replay.is_some_and(|replay| replay <= fork)
        {
            Some(false)
        } else {
            None
        }
    }

    /// `TL 2 0/3000060`.
    pub fn describe(&self) -> String {
        format!("TL {} {}", self.timeline, format_lsn(self.position))
    }
}

/// Whether an instance's lineage could be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Evidence {
    /// Timeline known, and its history read when the timeline is above 1.
    Read {
        /// The lineage.
        lineage: LineageData,
        /// What it was read from.
        source: String,
    },
    /// There may be data, but its lineage could not be read: blocks the authority decision.
    Unread {
        /// Why.
        reason: String,
    },
    /// Provably no data (the PVC does not exist).
    Absent {
        /// How that is known.
        reason: String,
    },
}

/// One instance's lineage, as recorded in the report's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// Instance name.
    pub name: String,
    /// What is known of it.
    pub evidence: Evidence,
}

impl Lineage {
    /// The lineage, when read.
    pub fn data(&self) -> Option<&LineageData> {
        match &self.evidence {
            Evidence::Read { lineage, .. } => Some(lineage),
            _ => None,
        }
    }

    /// The evidence as an engine-neutral [`Provenance`].
    pub fn provenance(&self) -> Provenance {
        match &self.evidence {
            Evidence::Read { source, .. } => Provenance::read(source.clone()),
            Evidence::Unread { reason } => Provenance::unread(reason.clone()),
            Evidence::Absent { reason } => Provenance::absent(reason.clone()),
        }
    }
}

/// Builds every instance's lineage.
pub fn build_lineages(input: &CnpgInput) -> Vec<Lineage> {
    input
        .instances
        .iter()
        .map(|instance| Lineage {
            name: instance.name.clone(),
            evidence: evidence_of(instance, input),
        })
        .collect()
}

fn evidence_of(instance: &InstanceInput, input: &CnpgInput) -> Evidence {
    let control = match parse_observed(&instance.controldata, parse_controldata) {
        Ok(control) => control,
        Err(reason) => return evidence_without_controldata(&instance.volume, &reason),
    };
    let (switches, source) = match switches_of(instance, control.timeline) {
        Ok(read) => read,
        Err(reason) => return Evidence::Unread { reason },
    };
    let (position, position_source, position_note) = best_position(instance, &control, input);
    let (follows_timeline, unpinned_replay) = standby_replay(instance, &control, input);
    Evidence::Read {
        lineage: LineageData {
            system_identifier: control.system_identifier,
            cluster_state: control.cluster_state,
            timeline: control.timeline,
            switches,
            checkpoint: control.checkpoint_lsn,
            position,
            position_source,
            position_note,
            follows_timeline,
            unpinned_replay,
        },
        source,
    }
}

fn evidence_without_controldata(volume: &VolumeState, reason: &str) -> Evidence {
    match volume {
        VolumeState::Missing => Evidence::Absent {
            reason: "its PVC does not exist".into(),
        },
        VolumeState::Bound => Evidence::Unread {
            reason: format!("Bound volume, pg_controldata {reason}"),
        },
        VolumeState::Other(phase) => Evidence::Unread {
            reason: format!("volume is {phase}, pg_controldata {reason}"),
        },
        VolumeState::Unknown(why) => Evidence::Unread {
            reason: format!("volume could not be read ({why}), pg_controldata {reason}"),
        },
    }
}

/// The switch chain for `timeline`, validated against it, and the source description.
fn switches_of(instance: &InstanceInput, timeline: u32) -> Result<(Vec<Switch>, String), String> {
    if timeline == 1 {
        return Ok((Vec::new(), "pg_controldata (timeline 1, no history)".into()));
    }
    let file = super::history_file_name(timeline);
    let switches = parse_observed(&instance.history, parse_history)
        .map_err(|reason| format!("on TL {timeline} but {file} {reason}"))?;
    check_chain(&switches, timeline).map_err(|why| format!("{file}: {why}"))?;
    Ok((switches, format!("pg_controldata + {file}")))
}

/// A history for timeline N lists at least one switch, with parents rising and below N.
fn check_chain(switches: &[Switch], timeline: u32) -> Result<(), String> {
    let Some(last) = switches.last() else {
        return Err("no switch lines".into());
    };
    if last.parent_timeline >= timeline {
        return Err(format!(
            "last parent TL {} is not below TL {timeline}: not this timeline's history",
            last.parent_timeline
        ));
    }
    if switches
        .windows(2)
        .any(|w| w[0].parent_timeline >= w[1].parent_timeline)
    {
        return Err("parent timelines do not rise".into());
    }
    Ok(())
}

/// The live primary's current WAL, a live replica's replay position, else the checkpoint. A live
/// position is used only when it is provably on the checkpoint's timeline, since the switch chain
/// describes that timeline.
fn best_position(
    instance: &InstanceInput,
    control: &ControlData,
    input: &CnpgInput,
) -> (u64, PositionSource, String) {
    let checkpoint = |why: String| (control.checkpoint_lsn, PositionSource::Checkpoint, why);
    if let Some(primary) = input
        .primary
        .as_ref()
        .filter(|p| p.instance == instance.name)
    {
        return match parse_observed(&primary.wal, parse_wal) {
            Ok(wal) if wal.insert_timeline == control.timeline => (
                wal.current_lsn.max(control.checkpoint_lsn),
                PositionSource::CurrentWal,
                "pg_current_wal_lsn() on the primary".into(),
            ),
            Ok(wal) => checkpoint(format!(
                "checkpoint: the primary writes TL {} but its checkpoint is on TL {}",
                wal.insert_timeline, control.timeline
            )),
            Err(reason) => checkpoint(format!("checkpoint: WAL query {reason}")),
        };
    }
    match parse_observed(&instance.receive_lsn, parse_receive) {
        Ok(receive) => match (receive.replay_lsn, receive.received_timeline) {
            (Some(replay), Some(tl)) if tl == control.timeline => (
                replay.max(control.checkpoint_lsn),
                PositionSource::ReplayLsn,
                "pg_last_wal_replay_lsn() on the replica".into(),
            ),
            (Some(_), Some(tl)) => checkpoint(format!(
                "checkpoint: the replica receives TL {tl} but its checkpoint is on TL {}",
                control.timeline
            )),
            _ => checkpoint("checkpoint: no WAL receiver to pin the replay timeline".into()),
        },
        Err(reason) => checkpoint(format!("checkpoint: receive query {reason}")),
    }
}

/// What a live standby's receiver says beyond its position: the timeline it follows when that
/// is not its checkpoint's, and its replay LSN when no receiver pins the timeline. Only for an
/// instance that answered `pg_is_in_recovery() = t` (a promoted one still reports the replay LSN
/// of its recovery) and is not the queried primary.
fn standby_replay(
    instance: &InstanceInput,
    control: &ControlData,
    input: &CnpgInput,
) -> (Option<u32>, Option<u64>) {
    let is_queried_primary = input
        .primary
        .as_ref()
        .is_some_and(|p| p.instance == instance.name);
    if is_queried_primary || parse_observed(&instance.in_recovery, parse_in_recovery) != Ok(true) {
        return (None, None);
    }
    match parse_observed(&instance.receive_lsn, parse_receive) {
        Ok(receive) => match (receive.replay_lsn, receive.received_timeline) {
            (_, Some(tl)) if tl != control.timeline => (Some(tl), None),
            (Some(replay), None) => (None, Some(replay)),
            _ => (None, None),
        },
        Err(_) => (None, None),
    }
}

/// How two lineages relate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// Same history, same position.
    Equal,
    /// The first holds everything the second does, and more.
    FirstDominates,
    /// The second holds everything the first does, and more.
    SecondDominates,
    /// Each holds writes the other lacks (or they are not the same database at all).
    Diverged(Fork),
    /// Cannot be told: a side's position is only a lower bound (a checkpoint of an instance
    /// that did not shut down cleanly) at or below the fork, so whether it wrote past the fork
    /// is unknown.
    Undecided {
        /// The fork LSN.
        lsn: u64,
        /// Whether the first side's writes past the fork are unknown.
        first: bool,
        /// Whether the second side's writes past the fork are unknown.
        second: bool,
    },
}

/// Where two histories parted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fork {
    /// Different system identifiers: different `initdb`s, WAL cannot relate them.
    ForeignSystem,
    /// Both wrote past `lsn`, the last point they share (on timeline `timeline`, when known).
    At {
        /// The fork LSN.
        lsn: u64,
        /// The timeline both were on at the fork.
        timeline: Option<u32>,
    },
}

/// Relates two lineages by their switch chains (see the module docs of `cnpg`).
pub fn relate(a: &LineageData, b: &LineageData) -> Relation {
    if a.system_identifier != b.system_identifier {
        return Relation::Diverged(Fork::ForeignSystem);
    }
    let shared = shared_prefix(&a.switches, &b.switches);
    let (a_len, b_len) = (a.switches.len(), b.switches.len());
    if shared == a_len && shared == b_len {
        return relate_same_chain(a, b);
    }
    if shared == a_len {
        return relate_extension(a, b, shared);
    }
    if shared == b_len {
        return flip(relate_extension(b, a, shared));
    }
    relate_fork(a, b, shared)
}

fn shared_prefix(a: &[Switch], b: &[Switch]) -> usize {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| x.parent_timeline == y.parent_timeline && x.lsn == y.lsn)
        .count()
}

/// Identical chains: the same timeline compares positions; siblings (same chain, different
/// timelines) each started a timeline of their own at the same point: diverged.
///
/// On one timeline, a checkpoint is only a lower bound (the instance may hold WAL past it), so
/// being ahead of a checkpoint proves nothing: only an instance ahead of a *live* position
/// dominates. Otherwise they are equal as far as the data shows, and the leader's tie-break
/// (the current primary first) decides.
fn relate_same_chain(a: &LineageData, b: &LineageData) -> Relation {
    if a.timeline != b.timeline {
        let last = a.switches.last();
        return Relation::Diverged(Fork::At {
            lsn: last.map_or(0, |s| s.lsn),
            timeline: last.map(|s| s.parent_timeline),
        });
    }
    match a.position.cmp(&b.position) {
        std::cmp::Ordering::Greater if b.position_is_live() => Relation::FirstDominates,
        std::cmp::Ordering::Less if a.position_is_live() => Relation::SecondDominates,
        _ => Relation::Equal,
    }
}

/// `extender` went on from `ancestor`'s chain. The ancestor's timeline must be the one the
/// extender left; then whoever alone wrote past the fork holds more. The fork is the lowest switch
/// from there on, not the first: a later switch below it (a point-in-time restore) means the
/// extender's history left the ancestor's WAL there.
fn relate_extension(ancestor: &LineageData, extender: &LineageData, shared: usize) -> Relation {
    let switch = &extender.switches[shared];
    if switch.parent_timeline != ancestor.timeline {
        let last_shared = shared.checked_sub(1).map(|i| &extender.switches[i]);
        return Relation::Diverged(Fork::At {
            lsn: last_shared.map_or(0, |s| s.lsn),
            timeline: last_shared.map(|s| s.parent_timeline),
        });
    }
    let fork = lowest_switch(&extender.switches[shared..]).unwrap_or(switch.lsn);
    match (ancestor.wrote_past(fork), extender.wrote_past(fork)) {
        (Some(false), _) => Relation::SecondDominates,
        (Some(true), Some(false)) => Relation::FirstDominates,
        (Some(true), Some(true)) => Relation::Diverged(Fork::At {
            lsn: fork,
            timeline: Some(ancestor.timeline),
        }),
        (a, e) => Relation::Undecided {
            lsn: fork,
            first: a.is_none(),
            second: e.is_none(),
        },
    }
}

/// Both chains go on past the shared prefix: a real fork. When both left the same parent, they
/// share it up to the earlier switch; otherwise up to the last shared switch. Either way, a
/// lower switch later in either chain (a point-in-time restore) lowers the fork to it.
fn relate_fork(a: &LineageData, b: &LineageData, shared: usize) -> Relation {
    let (next_a, next_b) = (&a.switches[shared], &b.switches[shared]);
    let (branch, timeline) = if next_a.parent_timeline == next_b.parent_timeline {
        (next_a.lsn.min(next_b.lsn), Some(next_a.parent_timeline))
    } else {
        let last_shared = shared.checked_sub(1).map(|i| &a.switches[i]);
        (
            last_shared.map_or(0, |s| s.lsn),
            last_shared.map(|s| s.parent_timeline),
        )
    };
    let lsn = [
        Some(branch),
        lowest_switch(&a.switches[shared..]),
        lowest_switch(&b.switches[shared..]),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(branch);
    match (a.wrote_past(lsn), b.wrote_past(lsn)) {
        (Some(true), Some(true)) => Relation::Diverged(Fork::At { lsn, timeline }),
        (Some(true), Some(false)) => Relation::FirstDominates,
        (Some(false), Some(true)) => Relation::SecondDominates,
        (Some(false), Some(false)) => Relation::Equal,
        (x, y) => Relation::Undecided {
            lsn,
            first: x.is_none(),
            second: y.is_none(),
        },
    }
}

fn lowest_switch(switches: &[Switch]) -> Option<u64> {
    switches.iter().map(|s| s.lsn).min()
}

fn flip(relation: Relation) -> Relation {
    match relation {
        Relation::FirstDominates => Relation::SecondDominates,
        Relation::SecondDominates => Relation::FirstDominates,
        Relation::Undecided { lsn, first, second } => Relation::Undecided {
            lsn,
            first: second,
            second: first,
        },
        other => other,
    }
}

/// The first switch whose LSN is below an earlier one (the lowest such), with the switch it went
/// below: the fingerprint of a point-in-time restore onto an older position.
pub fn deepest_rewind(switches: &[Switch]) -> Option<(&Switch, &Switch)> {
    let mut highest: Option<&Switch> = None;
    let mut deepest: Option<(&Switch, &Switch)> = None;
    for switch in switches {
        if let Some(high) = highest.filter(|h| switch.lsn < h.lsn) {
            if deepest.is_none_or(|(low, _)| switch.lsn < low.lsn) {
                deepest = Some((switch, high));
            }
        }
        if highest.is_none_or(|h| switch.lsn > h.lsn) {
            highest = Some(switch);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: u64 = 7_301_234_567_890_123_456;

    fn switch(parent: u32, lsn: u64) -> Switch {
        Switch {
            parent_timeline: parent,
            lsn,
            reason: "no recovery target specified".into(),
        }
    }

    fn lineage(timeline: u32, switches: Vec<Switch>, position: u64) -> LineageData {
        LineageData {
            system_identifier: SYSTEM,
            cluster_state: "in production".into(),
            timeline,
            switches,
            checkpoint: position,
            position,
            position_source: PositionSource::Checkpoint,
            position_note: String::new(),
            follows_timeline: None,
            unpinned_replay: None,
        }
    }

    fn shut_down(mut l: LineageData) -> LineageData {
        l.cluster_state = "shut down".into();
        l
    }

    const FORK: u64 = 0x300_0108;

    fn live(mut l: LineageData) -> LineageData {
        l.position_source = PositionSource::ReplayLsn;
        l
    }

    #[test]
    fn same_timeline_compares_live_positions() {
        let a = live(lineage(1, vec![], 0x500_0000));
        let b = live(lineage(1, vec![], 0x400_0000));
        assert_eq!(relate(&a, &b), Relation::FirstDominates);
        assert_eq!(relate(&b, &a), Relation::SecondDominates);
        assert_eq!(relate(&a, &a.clone()), Relation::Equal);
    }

    #[test]
    fn being_ahead_of_a_checkpoint_proves_nothing_on_one_timeline() {
        let replaying = live(lineage(1, vec![], 0x500_0000));
        let checkpoint = lineage(1, vec![], 0x400_0000);
        assert_eq!(relate(&replaying, &checkpoint), Relation::Equal);
        assert_eq!(relate(&checkpoint, &replaying), Relation::Equal);
        let behind = live(lineage(1, vec![], 0x300_0000));
        assert_eq!(relate(&checkpoint, &behind), Relation::FirstDominates);
    }

    #[test]
    fn extension_dominates_a_quiet_ancestor() {
        let old = shut_down(lineage(1, vec![], FORK - 0x100));
        let promoted = lineage(2, vec![switch(1, FORK)], 0x500_0000);
        assert_eq!(relate(&old, &promoted), Relation::SecondDominates);
        assert_eq!(relate(&promoted, &old), Relation::FirstDominates);
        let at_fork = live(lineage(1, vec![], FORK));
        assert_eq!(relate(&at_fork, &promoted), Relation::SecondDominates);
    }

    #[test]
    fn ancestor_dominates_an_unwritten_restore() {
        let old = lineage(1, vec![], 0x600_0000);
        let restored = shut_down(lineage(2, vec![switch(1, FORK)], FORK));
        assert_eq!(relate(&old, &restored), Relation::FirstDominates);
        // Still running, its checkpoint at the switch: whether it wrote since is unknown.
        let running = lineage(2, vec![switch(1, FORK)], FORK);
        assert_eq!(
            relate(&old, &running),
            Relation::Undecided {
                lsn: FORK,
                first: false,
                second: true
            }
        );
    }

    #[test]
    fn a_crashed_ancestor_checkpointed_before_the_fork_is_undecided() {
        // Crashed (in production) with its last checkpoint before the switch: it may hold
        // unreplicated writes past it, so the promoted side does not provably dominate.
        let crashed = lineage(1, vec![], FORK - 0x100);
        let promoted = live(lineage(2, vec![switch(1, FORK)], 0x500_0000));
        let undecided = Relation::Undecided {
            lsn: FORK,
            first: true,
            second: false,
        };
        assert_eq!(relate(&crashed, &promoted), undecided);
        assert_eq!(relate(&promoted, &crashed), flip(undecided.clone()));
        // A clean shutdown's checkpoint is its last record: exact.
        let clean = shut_down(crashed.clone());
        assert_eq!(relate(&clean, &promoted), Relation::SecondDominates);
        let mut clean_standby = crashed.clone();
        clean_standby.cluster_state = "shut down in recovery".into();
        assert_eq!(relate(&clean_standby, &promoted), Relation::SecondDominates);
        // A live standby replaying at or below the fork, or following another timeline, holds
        // nothing past it.
        let mut replaying = crashed.clone();
        replaying.unpinned_replay = Some(FORK - 0x8);
        assert_eq!(relate(&replaying, &promoted), Relation::SecondDominates);
        replaying.unpinned_replay = Some(FORK + 0x8);
        assert_eq!(relate(&replaying, &promoted), undecided);
        let mut following = crashed;
        following.follows_timeline = Some(2);
        assert_eq!(relate(&following, &promoted), Relation::SecondDominates);
    }

    #[test]
    fn a_restored_history_forks_at_its_lowest_switch() {
        // Z on TL 1 at 8/0; Y on TL 3 whose history went back from 9/0 to 7/0 (a PITR): Y's
        // history left TL 1's WAL at 7/0, and both wrote past it.
        let z = live(lineage(1, vec![], 8 << 32));
        let y = live(lineage(
            3,
            vec![switch(1, 9 << 32), switch(2, 7 << 32)],
            8 << 32,
        ));
        let fork = Relation::Diverged(Fork::At {
            lsn: 7 << 32,
            timeline: Some(1),
        });
        assert_eq!(relate(&z, &y), fork);
        assert_eq!(relate(&y, &z), fork);
        // Below the restore point, Z holds nothing Y lacks.
        let quiet = live(lineage(1, vec![], 6 << 32));
        assert_eq!(relate(&quiet, &y), Relation::SecondDominates);
        // The same in a real fork: W left TL 1 at 8/0, Y (restored) effectively at 7/0.
        let w = live(lineage(4, vec![switch(1, 8 << 32)], 0xA << 32));
        assert_eq!(
            relate(&w, &y),
            Relation::Diverged(Fork::At {
                lsn: 7 << 32,
                timeline: Some(1)
            })
        );
    }

    #[test]
    fn both_past_the_switch_diverge() {
        let old = lineage(1, vec![], 0x600_0000);
        let promoted = lineage(2, vec![switch(1, FORK)], 0x500_0000);
        assert_eq!(
            relate(&old, &promoted),
            Relation::Diverged(Fork::At {
                lsn: FORK,
                timeline: Some(1)
            })
        );
    }

    #[test]
    fn siblings_diverge() {
        let two = lineage(2, vec![switch(1, FORK)], 0x500_0000);
        let three = lineage(3, vec![switch(1, FORK)], 0x500_0000);
        assert!(matches!(relate(&two, &three), Relation::Diverged(_)));
        // TL 3 forked off TL 1 while TL 4 went through TL 2: not an extension.
        let four = lineage(4, vec![switch(1, FORK), switch(2, 0x400_0000)], 0x500_0000);
        assert!(matches!(relate(&three, &four), Relation::Diverged(_)));
    }

    #[test]
    fn real_fork_shares_the_parent_up_to_the_earlier_switch() {
        let a = lineage(2, vec![switch(1, 0x300_0000)], 0x500_0000);
        let b = lineage(3, vec![switch(1, 0x400_0000)], 0x600_0000);
        assert_eq!(
            relate(&a, &b),
            Relation::Diverged(Fork::At {
                lsn: 0x300_0000,
                timeline: Some(1)
            })
        );
    }

    #[test]
    fn different_systems_never_relate() {
        let a = lineage(1, vec![], 0x500_0000);
        let mut b = a.clone();
        b.system_identifier = SYSTEM + 1;
        assert_eq!(relate(&a, &b), Relation::Diverged(Fork::ForeignSystem));
    }

    #[test]
    fn rewinds_are_found() {
        assert_eq!(
            deepest_rewind(&[switch(1, FORK), switch(2, 0x500_0000)]),
            None
        );
        let chain = [
            switch(1, 0x900_0000),
            switch(2, 0x700_0000),
            switch(3, 0x500_0000),
        ];
        let (low, high) = deepest_rewind(&chain).unwrap();
        assert_eq!((low.parent_timeline, low.lsn), (3, 0x500_0000));
        assert_eq!(high.lsn, 0x900_0000);
    }

    #[test]
    fn chains_are_checked_against_their_timeline() {
        assert!(check_chain(&[switch(1, FORK)], 2).is_ok());
        assert!(check_chain(&[], 2).is_err());
        assert!(check_chain(&[switch(2, FORK)], 2).is_err());
        assert!(check_chain(&[switch(2, FORK), switch(1, FORK)], 3).is_err());
    }
}
