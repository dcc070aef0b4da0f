//! The engine-neutral result of a triage: verdict, authority, instances, diagnoses.

use serde::Serialize;

/// Where a fact came from. Every position in the facts carries one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Provenance {
    /// Read from the member itself (`source` says how: `exec pg_controldata`, `wsrep status`, …).
    Read {
        /// How it was read.
        source: String,
    },
    /// There is (or may be) data, but it could not be read. Blocks any authority decision.
    Unread {
        /// Why not.
        reason: String,
    },
    /// Provably no data (no volume, or an empty data directory).
    Absent {
        /// How that is known.
        reason: String,
    },
}

impl Provenance {
    /// `Read { source }`.
    pub fn read(source: impl Into<String>) -> Self {
        Self::Read {
            source: source.into(),
        }
    }

    /// `Unread { reason }`.
    pub fn unread(reason: impl Into<String>) -> Self {
        Self::Unread {
            reason: reason.into(),
        }
    }

    /// `Absent { reason }`.
    pub fn absent(reason: impl Into<String>) -> Self {
        Self::Absent {
            reason: reason.into(),
        }
    }

    /// Whether the fact was read.
    pub fn is_read(&self) -> bool {
        matches!(self, Self::Read { .. })
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every instance is healthy.
    Healthy,
    /// Something is wrong, the authority is provable, and the remedies are safe.
    Unhealthy,
    /// The authority cannot be decided from what could be read: nothing destructive is safe.
    Undeterminable,
    /// Members hold diverged histories (split brain): nothing destructive is safe until a person
    /// decides.
    Diverged,
}

impl Verdict {
    /// Lowercase name, as in `--fail-on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Undeterminable => "undeterminable",
            Self::Diverged => "diverged",
        }
    }
}

/// Who holds the authoritative data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Authority {
    /// Provably this instance (for CNPG: the current primary; for Galera: the most advanced
    /// member of the primary component, or the most advanced node when all are down).
    Provable {
        /// The authoritative instance.
        leader: String,
    },
    /// CNPG: the data says `leader`, but the operator's primary is `primary`.
    LeaderNotPrimary {
        /// The instance holding the most advanced, non-diverged history.
        leader: String,
        /// `status.currentPrimary`.
        primary: String,
    },
    /// Histories diverged; each reason names both sides.
    Diverged {
        /// One line per divergence.
        reasons: Vec<String>,
    },
    /// Cannot be decided: one blocker per unread member (or other missing evidence).
    Undeterminable {
        /// One line per blocker.
        blockers: Vec<String>,
    },
}

/// The state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Serving and current.
    Healthy,
    /// Behind, but catching up by itself (streaming, or a Galera joiner/donor).
    Lagging,
    /// Its data is fine; the process or pod needs a restart.
    NeedsRestart,
    /// Its data must be replaced from the authority (wrong timeline, corrupt, no slot left).
    NeedsReseed,
    /// Holds writes the authority does not have.
    Diverged,
    /// Cannot be assessed (unread, or the authority is not provable).
    Unknown,
}

/// The role an instance plays (as far as it could be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// CNPG primary.
    Primary,
    /// CNPG replica.
    Replica,
    /// Galera node (multi-primary).
    Node,
}

/// One instance, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceAssessment {
    /// Pod / instance name, e.g. `pg-2` or `galera-1`.
    pub name: String,
    /// The ordinal parsed from the name (`pg-2` → 2, `galera-1` → 1), when it has one.
    pub ordinal: Option<u32>,
    /// Role.
    pub role: Role,
    /// Position, for the table: `TL 2 0/3000060` or `seqno 42 8f1c…`; `unread: …` when unread.
    pub position: String,
    /// Lag behind the authority, when known (`12 MB`, `3 trx`).
    pub lag: Option<String>,
    /// Used percentage of the data volume, when known.
    pub disk_percent: Option<f64>,
    /// State.
    pub state: InstanceState,
    /// One sentence: what is wrong or why it is fine.
    pub advice: String,
    /// The command to run for this instance, if any.
    pub remedy: Option<String>,
    /// Galera: the node's authoritative cluster UUID (its history's lineage), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// Galera: the node's authoritative seqno, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqno: Option<i64>,
}

/// How bad a diagnosis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// A named finding with a concrete remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// Stable code, e.g. `cnpg-replica-old-timeline`, `galera-split-brain`.
    pub code: String,
    /// Severity.
    pub severity: Severity,
    /// One line.
    pub summary: String,
    /// Evidence, one line each.
    pub details: Vec<String>,
    /// The command to run (a hasteward command line), if any.
    pub remedy: Option<String>,
    /// The instance it is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// What a triage concludes. `facts` is the engine's facts struct, serialized in full.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `cnpg` or `galera`.
    pub engine: String,
    /// Namespace.
    pub namespace: String,
    /// Cluster name.
    pub cluster: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Authority.
    pub authority: Authority,
    /// Whether destructive remedies (reseed, restart) are safe: only with a provable authority.
    pub safe_to_heal: bool,
    /// The instance the operator treats as primary (CNPG `status.currentPrimary`); Galera has
    /// none. Repair never rebuilds it.
    pub operator_primary: Option<String>,
    /// Instances, in ordinal order.
    pub instances: Vec<InstanceAssessment>,
    /// Findings, most severe first.
    pub diagnoses: Vec<Diagnosis>,
    /// The one command to run next, if any.
    pub next_command: Option<String>,
    /// Everything that was read, with provenance.
    pub facts: serde_json::Value,
}

/// The ordinal at the end of an instance name: `pg-2` → 2, `galera-10` → 10.
pub fn ordinal_of(name: &str) -> Option<u32> {
    let (_, tail) = name.rsplit_once('-')?;
    if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// Bytes as `512 B`, `12.0 KB`, `3.4 MB`, `1.2 GB` (decimal, for lag and WAL volumes).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parses a `df -k` / `df -P` data line's use percentage (`…  45% /var/lib/…`).
pub fn parse_df_percent(output: &str) -> Option<f64> {
    output.lines().skip(1).find_map(|line| {
        line.split_whitespace()
            .find_map(|field| field.strip_suffix('%')?.parse::<f64>().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("pg-2"), Some(2));
        assert_eq!(ordinal_of("my-galera-10"), Some(10));
        assert_eq!(ordinal_of("galera"), None);
        assert_eq!(ordinal_of("pg-x"), None);
        assert_eq!(ordinal_of("pg-"), None);
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_000), "12.0 KB");
        assert_eq!(human_bytes(3_400_000), "3.4 MB");
    }

    #[test]
    fn df() {
        let out = "Filesystem     1K-blocks    Used Available Use% Mounted on\n/dev/sda1       10255636 4613656   5101308  48% /var/lib/postgresql/data\n";
        assert_eq!(parse_df_percent(out), Some(48.0));
        assert_eq!(parse_df_percent("garbage"), None);
    }
}
