//! Per node: what runs, and the node's position (seqno and cluster UUID) with where each came
//! from. Authoritative sources and hints are kept apart: only the former can prove anything.
//!
//! Seqno sources, in order: a fresh `--wsrep-recover`, the live `wsrep_last_committed`, then
//! `grastate.dat` — the latter only while `mariadbd` is not serving, because a serving node's
//! file is at best a lower bound. A seqno of `-1` is "unknown" (crashed, or running), never a
//! value. UUID sources: recovered, live `wsrep_cluster_state_uuid`, `grastate.dat`; the empty
//! and the all-zero UUID are ignored.

use serde::Serialize;

use crate::{ordinal_of, parse_df_percent, Observed, Provenance, VolumeState};

use super::input::{ClusterView, NodeInput};
use super::parse::{
    canonical_uuid, galera_recovery_hints, parse_grastate, parse_log_hint,
    parse_recovered_position, parse_wsrep_status, GraState, Position, PositionHint, WsrepStatus,
};

/// Used percentage from which the volume counts as full.
pub(crate) const DISK_FULL_PERCENT: f64 = 99.0;

/// Log lines that mean the data volume ran full.
const DISK_FULL_MESSAGES: [&str; 3] = ["no space left on device", "disk is full", "disk full"];

/// Whether `mariadbd` runs, as far as can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub(crate) enum Liveness {
    /// Its wsrep status was read.
    Live,
    /// The pod runs and is Ready, but its wsrep status could not be read.
    RunningUnread,
    /// The pod runs, is not Ready, has not restarted yet: starting (or receiving an SST).
    Starting,
    /// The pod runs, is not Ready and has restarted.
    CrashLooping {
        /// Restart count.
        restarts: u32,
    },
    /// No pod, or a pod that does not run.
    Down {
        /// `no pod` or the pod phase.
        reason: String,
    },
}

impl Liveness {
    /// `mariadbd` may be serving: its `grastate.dat` is then not a position.
    pub(crate) fn may_be_serving(&self) -> bool {
        matches!(self, Self::Live | Self::RunningUnread)
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) source: String,
}

fn sourced<T>(value: T, source: &str) -> Sourced<T> {
    Sourced {
        value,
        source: source.to_string(),
    }
}

/// One node, derived from its [`NodeInput`]. Serialized into `facts.positions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeFacts {
    pub(crate) name: String,
    pub(crate) ordinal: Option<u32>,
    pub(crate) liveness: Liveness,
    /// The `mariadb` container is Ready (the pod runs).
    pub(crate) container_ready: bool,
    /// False only when the data volume provably does not exist.
    pub(crate) may_hold_data: bool,
    /// The data volume is Bound (a recovery helper pod can mount it).
    pub(crate) volume_bound: bool,
    /// Authoritative seqno (≥ 0).
    pub(crate) seqno: Option<Sourced<i64>>,
    /// Authoritative canonical cluster UUID.
    pub(crate) uuid: Option<Sourced<String>>,
    /// The seqno as far as hints say; never used to prove anything.
    pub(crate) seqno_hint: Option<Sourced<i64>>,
    /// The UUID as far as hints say; consulted only when no node has an authoritative UUID.
    pub(crate) uuid_hint: Option<Sourced<String>>,
    /// Provenance of the position (seqno and UUID together).
    pub(crate) provenance: Provenance,
    pub(crate) safe_to_bootstrap: Option<bool>,
    pub(crate) disk_percent: Option<f64>,
    pub(crate) disk_full: bool,
    pub(crate) grastate: Option<GraState>,
    pub(crate) wsrep: Option<WsrepStatus>,
    pub(crate) recovered: Option<Position>,
    /// Why sources are missing or were not used, one line each.
    pub(crate) notes: Vec<String>,
}

impl NodeFacts {
    /// Derives a node's facts. Pure.
    pub(crate) fn derive(node: &NodeInput, cluster: &ClusterView) -> Self {
        let mut notes = Vec::new();
        let grastate = parse_observed(&node.grastate, "grastate.dat", parse_grastate, &mut notes);
        let wsrep = parse_observed(&node.wsrep, "wsrep status", parse_wsrep_status, &mut notes);
        let recovered = parse_observed(
            &node.recovered,
            "--wsrep-recover",
            parse_recovered_position,
            &mut notes,
        );
        let liveness = liveness_of(node, wsrep.is_some());
        let may_hold_data = node.volume != VolumeState::Missing;
        let sources = Sources {
            grastate: grastate.as_ref(),
            wsrep: wsrep.as_ref(),
            recovered: recovered.as_ref(),
        };
        let seqno = sources.seqno(&liveness, &mut notes);
        let uuid = sources.uuid();
        let hints = hints_of(node, cluster, &sources, &liveness);
        let provenance = provenance_of(&seqno, &uuid, may_hold_data, &notes);
        let disk_percent = node.df.output().and_then(parse_df_percent);
        Self {
            name: node.name.clone(),
            ordinal: ordinal_of(&node.name),
            volume_bound: node.volume == VolumeState::Bound,
            liveness,
            container_ready: node
                .pod
                .as_ref()
                .is_some_and(|pod| pod.is_running() && pod.ready),
            may_hold_data,
            seqno_hint: first_seqno_hint(&hints),
            uuid_hint: first_uuid_hint(&hints),
            seqno,
            uuid,
            provenance,
            safe_to_bootstrap: grastate.as_ref().and_then(|g| g.safe_to_bootstrap),
            disk_percent,
            disk_full: disk_is_full(disk_percent, node.log_hint.as_deref()),
            grastate,
            wsrep,
            recovered,
            notes,
        }
    }

    /// Seqno and UUID both read from authoritative sources.
    pub(crate) fn position(&self) -> Option<(i64, &str)> {
        Some((
            self.seqno.as_ref()?.value,
            self.uuid.as_ref()?.value.as_str(),
        ))
    }

    /// Holds (or may hold) data whose position is not known.
    pub(crate) fn is_unread(&self) -> bool {
        self.may_hold_data && self.position().is_none()
    }

    /// Member of a Primary component, by its own live status.
    pub(crate) fn is_primary_member(&self) -> bool {
        self.wsrep.as_ref().is_some_and(WsrepStatus::is_primary)
    }

    /// Synced, Primary, connected and ready.
    pub(crate) fn is_serving(&self) -> bool {
        self.wsrep.as_ref().is_some_and(WsrepStatus::is_serving)
    }

    /// Live and catching up (or donating) by itself.
    pub(crate) fn is_transitional(&self) -> bool {
        self.wsrep
            .as_ref()
            .is_some_and(WsrepStatus::is_transitional)
    }

    /// Its UUID, authoritative or else hinted, for display.
    pub(crate) fn uuid_for_display(&self) -> Option<&str> {
        self.uuid
            .as_ref()
            .or(self.uuid_hint.as_ref())
            .map(|u| u.value.as_str())
    }

    /// Why the position is unknown, one line.
    pub(crate) fn unread_reason(&self) -> String {
        match &self.provenance {
            Provenance::Unread { reason } | Provenance::Absent { reason } => reason.clone(),
            Provenance::Read { .. } => String::new(),
        }
    }

    /// `hasteward triage --recover-positions` could tell its position: its container runs but
    /// does not serve (starting or crash-looping: the recovery runs there), or it has no running
    /// container and its volume is Bound (the recovery runs in a helper pod on the volume).
    pub(crate) fn recoverable_offline(&self) -> bool {
        match self.liveness {
            Liveness::Starting | Liveness::CrashLooping { .. } => true,
            Liveness::Down { .. } => self.volume_bound,
            Liveness::Live | Liveness::RunningUnread => false,
        }
    }

    /// May be serving in a Primary component as far as can be told: its container is Ready and
    /// its wsrep status was not read as outside one.
    pub(crate) fn may_be_in_a_primary_component(&self) -> bool {
        self.container_ready
            && self
                .wsrep
                .as_ref()
                .is_none_or(|w| w.is_primary() || w.cluster_status.is_none())
    }
}

/// The parsed authoritative sources of one node.
struct Sources<'a> {
    grastate: Option<&'a GraState>,
    wsrep: Option<&'a WsrepStatus>,
    recovered: Option<&'a Position>,
}

impl Sources<'_> {
    fn seqno(&self, liveness: &Liveness, notes: &mut Vec<String>) -> Option<Sourced<i64>> {
        if let Some(p) = self.recovered {
            if p.seqno >= 0 {
                return Some(sourced(p.seqno, "mariadbd --wsrep-recover"));
            }
            notes.push(format!("--wsrep-recover: no committed position ({p})"));
        }
        if let Some(seqno) = self.wsrep.and_then(|w| w.last_committed) {
            if seqno >= 0 {
                return Some(sourced(seqno, "wsrep status (wsrep_last_committed)"));
            }
        }
        let grastate = self.grastate?;
        if grastate.seqno < 0 {
            notes.push("grastate.dat: seqno -1 (crashed, or running): position unknown".into());
            None
        } else if liveness.may_be_serving() {
            notes.push(format!(
                "grastate.dat: seqno {} not used: mariadbd may be serving",
                grastate.seqno
            ));
            None
        } else {
            Some(sourced(grastate.seqno, "grastate.dat"))
        }
    }

    fn uuid(&self) -> Option<Sourced<String>> {
        let candidates = [
            (
                self.recovered.map(|p| p.uuid.as_str()),
                "mariadbd --wsrep-recover",
            ),
            (
                self.wsrep.and_then(|w| w.cluster_state_uuid.as_deref()),
                "wsrep status (wsrep_cluster_state_uuid)",
            ),
            (self.grastate.map(|g| g.uuid.as_str()), "grastate.dat"),
        ];
        candidates
            .into_iter()
            .find_map(|(uuid, source)| canonical_uuid(uuid?).map(|uuid| sourced(uuid, source)))
    }
}

/// Hints in order: the container log, the `grastate.dat` of a node that may be serving (a lower
/// bound), the CR's `status.galeraRecovery`.
fn hints_of(
    node: &NodeInput,
    cluster: &ClusterView,
    sources: &Sources<'_>,
    liveness: &Liveness,
) -> Vec<PositionHint> {
    let log = node.log_hint.as_deref().and_then(parse_log_hint);
    let serving_grastate = sources
        .grastate
        .filter(|_| liveness.may_be_serving())
        .map(|g| PositionHint {
            uuid: Some(g.uuid.clone()),
            seqno: Some(g.seqno),
            source: "grastate.dat of a serving node (lower bound)".to_string(),
        });
    let operator = cluster
        .galera_recovery
        .as_ref()
        .map(|status| galera_recovery_hints(status, &node.name))
        .unwrap_or_default();
    log.into_iter()
        .chain(serving_grastate)
        .chain(operator)
        .collect()
}

fn first_seqno_hint(hints: &[PositionHint]) -> Option<Sourced<i64>> {
    hints.iter().find_map(|h| {
        h.seqno
            .filter(|s| *s >= 0)
            .map(|s| sourced(s, &format!("hint: {}", h.source)))
    })
}

fn first_uuid_hint(hints: &[PositionHint]) -> Option<Sourced<String>> {
    hints.iter().find_map(|h| {
        canonical_uuid(h.uuid.as_deref()?).map(|u| sourced(u, &format!("hint: {}", h.source)))
    })
}

fn provenance_of(
    seqno: &Option<Sourced<i64>>,
    uuid: &Option<Sourced<String>>,
    may_hold_data: bool,
    notes: &[String],
) -> Provenance {
    match (seqno, uuid) {
        (Some(seqno), Some(uuid)) if same_command(&seqno.source, &uuid.source) => {
            Provenance::read(command_of(&seqno.source))
        }
        (Some(seqno), Some(uuid)) => {
            Provenance::read(format!("seqno: {}; uuid: {}", seqno.source, uuid.source))
        }
        _ if !may_hold_data => Provenance::absent("no data volume (PVC not found)"),
        (Some(_), None) => Provenance::unread("cluster UUID unknown (empty or all-zero)"),
        _ if notes.is_empty() => Provenance::unread("no source of a position"),
        _ => Provenance::unread(notes.join("; ")),
    }
}

/// `wsrep status (wsrep_last_committed)` → `wsrep status`.
fn command_of(source: &str) -> String {
    source.split(" (").next().unwrap_or(source).to_string()
}

fn same_command(a: &str, b: &str) -> bool {
    command_of(a) == command_of(b)
}

fn liveness_of(node: &NodeInput, wsrep_read: bool) -> Liveness {
    if wsrep_read {
        return Liveness::Live;
    }
    match &node.pod {
        None => Liveness::Down {
            reason: "no pod".to_string(),
        },
        Some(pod) if !pod.is_running() => Liveness::Down {
            reason: format!("pod {}", pod.phase),
        },
        Some(pod) if pod.ready => Liveness::RunningUnread,
        Some(pod) if pod.restarts == 0 => Liveness::Starting,
        Some(pod) => Liveness::CrashLooping {
            restarts: pod.restarts,
        },
    }
}

fn disk_is_full(percent: Option<f64>, log: Option<&str>) -> bool {
    let log_says_full = log.is_some_and(|log| {
        let log = log.to_ascii_lowercase();
        DISK_FULL_MESSAGES.iter().any(|m| log.contains(m))
    });
    log_says_full || percent.is_some_and(|p| p >= DISK_FULL_PERCENT)
}

/// Parses a command's output; notes why there is nothing when it did not run or did not parse.
fn parse_observed<T>(
    observed: &Observed,
    what: &str,
    parse: fn(&str) -> Result<T, String>,
    notes: &mut Vec<String>,
) -> Option<T> {
    match observed {
        Observed::Output(text) => parse(text)
            .map_err(|e| notes.push(format!("{what}: unparseable: {e}")))
            .ok(),
        Observed::Failed(reason) => {
            notes.push(format!("{what}: failed: {reason}"));
            None
        }
        Observed::NotAttempted(reason) => {
            notes.push(format!("{what}: not attempted: {reason}"));
            None
        }
    }
}
