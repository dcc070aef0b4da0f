//! Vault / OpenBao (integrated raft storage) triage: is the server initialized and unsealed,
//! who leads the raft cluster, and is every peer healthy by autopilot's account.
//!
//! The collector runs three read-only commands (`status -format=json`,
//! `operator raft list-peers -format=json`, `operator raft autopilot state -format=json`) and
//! hands the raw outputs over as a [`VaultInput`]; [`analyze`] turns them into a [`Report`].
//!
//! # Why it is built this way
//! * **Sealed is not unknown.** A sealed server still answers `status` (exit 2 with JSON); the
//!   raft configuration is then unreadable, so the leader is not provable, but the verdict says
//!   what is wrong (sealed) rather than "undeterminable".
//! * **Autopilot is the health authority.** It knows each peer's last contact, term and index;
//!   the peer list alone says only who is configured. When autopilot cannot be read (a token
//!   without `sys/storage/raft/autopilot/state`), the peers are shown without a health claim.
//! * **Nothing here is repaired.** Unsealing needs key holders and a reseed is raft's own job;
//!   the remedies name the commands a person runs. A snapshot restore (`hasteward restore -e
//!   vault --force`) is the remedy only for lost data, never suggested for a health problem.

use serde::Serialize;
use serde_json::Value;

use crate::{
    Authority, Diagnosis, InstanceAssessment, InstanceState, Report, Role, Severity, Verdict,
};

/// One command's output: its stdout, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The command ran (exit 0, or `status`'s exit 2 for sealed) and printed this.
    Read(String),
    /// The command failed: the server's or the client's message.
    Failed(String),
}

/// What the collector read from one server.
#[derive(Debug, Clone)]
pub struct VaultInput {
    /// Namespace (a free label for host targets).
    pub namespace: String,
    /// The name of the backup set (`-c`).
    pub cluster: String,
    /// Where it was read (`http://127.0.0.1:8200`, `pod ns/vault-0 container vault`).
    pub location: String,
    /// `status -format=json`.
    pub status: Output,
    /// `operator raft list-peers -format=json`; `None` when not attempted (sealed).
    pub peers: Option<Output>,
    /// `operator raft autopilot state -format=json`; `None` when not attempted.
    pub autopilot: Option<Output>,
}

/// The server's seal status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealStatus {
    /// Initialized.
    pub initialized: bool,
    /// Sealed.
    pub sealed: bool,
    /// Server version.
    pub version: String,
    /// Storage backend (`raft` for integrated storage).
    pub storage_type: String,
    /// HA enabled.
    pub ha_enabled: bool,
    /// Cluster name, once unsealed.
    pub cluster_name: Option<String>,
    /// The active node's API address, once unsealed.
    pub leader_address: Option<String>,
    /// Raft committed index of this server.
    pub raft_committed_index: Option<u64>,
    /// Raft applied index of this server.
    pub raft_applied_index: Option<u64>,
}

/// One configured raft peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Node id.
    pub node_id: String,
    /// Cluster address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
}

/// Autopilot's view of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotServer {
    /// Node id.
    pub id: String,
    /// `alive`, `left`, `failed`, …
    pub node_status: String,
    /// Autopilot's health verdict.
    pub healthy: bool,
    /// `leader`, `voter`, `non-voter`, `staging`, …
    pub status: String,
    /// Time since the leader last heard from it.
    pub last_contact: String,
    /// Its last raft index.
    pub last_index: u64,
}

/// Autopilot's cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotState {
    /// Every server healthy.
    pub healthy: bool,
    /// Voters that may fail without losing quorum.
    pub failure_tolerance: u64,
    /// Leader node id.
    pub leader: String,
    /// Servers, by id.
    pub servers: Vec<AutopilotServer>,
}

/// Everything read, with what could not be.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultFacts {
    /// Where it was read.
    pub location: String,
    /// Seal status, when read.
    pub status: Option<SealStatus>,
    /// Raft peers, when read.
    pub peers: Option<Vec<Peer>>,
    /// Autopilot state, when read.
    pub autopilot: Option<AutopilotState>,
    /// One line per command that could not be read.
    pub unread: Vec<String>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn json(output: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(output).map_err(|e| format!("{what}: not JSON ({e})"))
}

/// Parses `status -format=json`.
pub fn parse_status(output: &str) -> Result<SealStatus, String> {
    let v = json(output, "status")?;
    if v.get("sealed").and_then(Value::as_bool).is_none() {
        return Err("status: no `sealed` field".into());
    }
    Ok(SealStatus {
        initialized: flag(&v, "initialized"),
        sealed: flag(&v, "sealed"),
        version: text(&v, "version"),
        storage_type: text(&v, "storage_type"),
        ha_enabled: flag(&v, "ha_enabled"),
        cluster_name: opt_text(&v, "cluster_name"),
        leader_address: opt_text(&v, "leader_address"),
        raft_committed_index: v.get("raft_committed_index").and_then(Value::as_u64),
        raft_applied_index: v.get("raft_applied_index").and_then(Value::as_u64),
    })
}

/// Parses `operator raft list-peers -format=json` (`data.config.servers`).
pub fn parse_peers(output: &str) -> Result<Vec<Peer>, String> {
    let v = json(output, "list-peers")?;
    let servers = v
        .pointer("/data/config/servers")
        .and_then(Value::as_array)
        .ok_or("list-peers: no data.config.servers")?;
    Ok(servers
        .iter()
        .map(|s| Peer {
            node_id: text(s, "node_id"),
            address: text(s, "address"),
            leader: flag(s, "leader"),
            voter: flag(s, "voter"),
        })
        .collect())
}

/// Parses `operator raft autopilot state -format=json`.
pub fn parse_autopilot(output: &str) -> Result<AutopilotState, String> {
    let v = json(output, "autopilot state")?;
    let healthy = v
        .get("Healthy")
        .and_then(Value::as_bool)
        .ok_or("autopilot state: no `Healthy` field")?;
    let mut servers: Vec<AutopilotServer> = v
        .get("Servers")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .map(|s| AutopilotServer {
                    id: text(s, "ID"),
                    node_status: text(s, "NodeStatus"),
                    healthy: flag(s, "Healthy"),
                    status: text(s, "Status"),
                    last_contact: text(s, "LastContact"),
                    last_index: s.get("LastIndex").and_then(Value::as_u64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    servers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(AutopilotState {
        healthy,
        failure_tolerance: v
            .get("FailureTolerance")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        leader: text(&v, "Leader"),
        servers,
    })
}

fn read<T>(
    out: Option<&Output>,
    what: &str,
    parse: fn(&str) -> Result<T, String>,
    unread: &mut Vec<String>,
) -> Option<T> {
    match out? {
        Output::Read(s) => match parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                unread.push(e);
                None
            }
        },
        Output::Failed(e) => {
            unread.push(format!("{what}: {}", first_line(e)));
            None
        }
    }
}

/// The most telling line of a CLI error (`* Vault is sealed`, `permission denied`), else its
/// first line.
fn first_line(e: &str) -> String {
    e.lines()
        .map(str::trim)
        .find(|l| l.starts_with("* "))
        .map(|l| l.trim_start_matches("* ").to_string())
        .or_else(|| {
            e.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(String::from)
        })
        .unwrap_or_else(|| "no output".into())
}

/// Turns what was read into facts (no judgement yet).
pub fn facts(input: &VaultInput) -> VaultFacts {
    let mut unread = Vec::new();
    let status = read(Some(&input.status), "status", parse_status, &mut unread);
    let peers = read(
        input.peers.as_ref(),
        "raft list-peers",
        parse_peers,
        &mut unread,
    );
    let autopilot = read(
        input.autopilot.as_ref(),
        "raft autopilot state",
        parse_autopilot,
        &mut unread,
    );
    VaultFacts {
        location: input.location.clone(),
        status,
        peers,
        autopilot,
        unread,
    }
}

fn diag(code: &str, severity: Severity, summary: String, details: Vec<String>) -> Diagnosis {
    Diagnosis {
        code: code.into(),
        severity,
        summary,
        details,
        remedy: None,
        instance: None,
    }
}

/// Analyzes one server's view of its raft cluster.
pub fn analyze(input: &VaultInput) -> Report {
    let facts = facts(input);
    let mut diagnoses = Vec::new();
    let mut instances = Vec::new();
    let mut blockers = Vec::new();
    let at = &input.location;

    match &facts.status {
        None => {
            blockers.push(format!("{at}: status unreadable"));
            let mut d = diag(
                "vault-unreachable",
                Severity::Critical,
                format!("the server at {at} could not be read"),
                facts.unread.clone(),
            );
            d.remedy = Some("check that the server runs and the address (--vault-addr) and CA certificate are right".into());
            diagnoses.push(d);
        }
        Some(s) if !s.initialized => {
            blockers.push(format!("{at}: not initialized"));
            let mut d = diag(
                "vault-not-initialized",
                Severity::Critical,
                format!("the server at {at} is not initialized: it holds no data"),
                vec![format!("version {}, storage {}", s.version, s.storage_type)],
            );
            d.remedy = Some("initialize it (`bao operator init` / `vault operator init`), unseal it, then `hasteward restore -e vault --force` if its data must come back".into());
            diagnoses.push(d);
        }
        Some(s) if s.sealed => {
            blockers.push(format!(
                "{at}: sealed, so the raft configuration cannot be read"
            ));
            let mut d = diag(
                "vault-sealed",
                Severity::Critical,
                format!("the server at {at} is sealed: it serves nothing and cannot be backed up"),
                vec![format!("version {}, storage {}", s.version, s.storage_type)],
            );
            d.remedy = Some("unseal it with the key holders (`bao operator unseal` / `vault operator unseal`), or fix its auto-unseal".into());
            diagnoses.push(d);
        }
        Some(s) => {
            if s.storage_type != "raft" {
                let mut d = diag(
                    "vault-not-raft",
                    Severity::Warning,
                    format!(
                        "storage is `{}`, not integrated raft: raft snapshots do not cover it",
                        s.storage_type
                    ),
                    Vec::new(),
                );
                d.remedy = Some("back up the storage backend with its own tools".into());
                diagnoses.push(d);
            }
        }
    }

    if let Some(peers) = &facts.peers {
        let ap = facts.autopilot.as_ref();
        let leader = peers.iter().find(|p| p.leader).map(|p| p.node_id.clone());
        for p in peers {
            let seen = ap.and_then(|a| a.servers.iter().find(|s| s.id == p.node_id));
            let (state, advice) = match seen {
                None if ap.is_some() => (
                    InstanceState::Unknown,
                    "configured, but autopilot does not know it".to_string(),
                ),
                None => (
                    InstanceState::Unknown,
                    "configured; its health was not readable (autopilot state)".to_string(),
                ),
                Some(s) if s.healthy => (
                    InstanceState::Healthy,
                    format!("{}, last contact {}", s.status, s.last_contact),
                ),
                Some(s) if s.node_status == "alive" => (
                    InstanceState::Lagging,
                    format!(
                        "alive but unhealthy ({}, last contact {}): it is behind the leader or not yet stable",
                        s.status, s.last_contact
                    ),
                ),
                Some(s) => (
                    InstanceState::NeedsRestart,
                    format!(
                        "{} (last contact {}): restart its pod, or remove it with `operator raft remove-peer` if it is gone for good",
                        s.node_status, s.last_contact
                    ),
                ),
            };
            instances.push(InstanceAssessment {
                name: p.node_id.clone(),
                ordinal: crate::ordinal_of(&p.node_id),
                role: if p.leader {
                    Role::Primary
                } else {
                    Role::Replica
                },
                position: seen
                    .map(|s| format!("index {}", s.last_index))
                    .unwrap_or_else(|| "unread: autopilot state".into()),
                lag: None,
                disk_percent: None,
                state,
                advice: if p.voter {
                    advice
                } else {
                    format!("non-voter; {advice}")
                },
                remedy: None,
                lineage: None,
                seqno: None,
            });
        }
        instances.sort_by(|a, b| (a.ordinal, &a.name).cmp(&(b.ordinal, &b.name)));
        if leader.is_none() {
            blockers.push("no raft peer is leader".into());
            diagnoses.push(diag(
                "vault-no-leader",
                Severity::Critical,
                "no raft peer is leader: the cluster has lost quorum or is electing".into(),
                peers
                    .iter()
                    .map(|p| format!("{} at {}", p.node_id, p.address))
                    .collect(),
            ));
        }
        if let Some(a) = ap {
            let voters = peers.iter().filter(|p| p.voter).count();
            if !a.healthy {
                let sick: Vec<String> = a
                    .servers
                    .iter()
                    .filter(|s| !s.healthy)
                    .map(|s| {
                        format!(
                            "{}: {} ({}, last contact {})",
                            s.id, s.node_status, s.status, s.last_contact
                        )
                    })
                    .collect();
                diagnoses.push(diag(
                    "vault-autopilot-unhealthy",
                    Severity::Critical,
                    format!("autopilot reports {} unhealthy server(s)", sick.len()),
                    sick,
                ));
            } else if voters > 1 && a.failure_tolerance == 0 {
                diagnoses.push(diag(
                    "vault-no-failure-tolerance",
                    Severity::Warning,
                    format!(
                        "{voters} voters but a failure tolerance of 0: losing one loses quorum"
                    ),
                    Vec::new(),
                ));
            }
        }
        if peers.len() == 1 {
            diagnoses.push(diag(
                "vault-single-node",
                Severity::Info,
                "one raft peer: no failure tolerance; the raft snapshot backup is the only copy"
                    .into(),
                Vec::new(),
            ));
        }
    }
    if facts
        .status
        .as_ref()
        .is_some_and(|s| s.initialized && !s.sealed)
    {
        if facts.peers.is_none() {
            blockers.push("raft configuration unreadable".into());
        }
        if facts.peers.is_none() || facts.autopilot.is_none() {
            diagnoses.push(diag(
                "vault-raft-unread",
                Severity::Info,
                "part of the raft state could not be read (the token may lack sys/storage/raft read)".into(),
                facts.unread.clone(),
            ));
        }
    }

    diagnoses.sort_by_key(|d| std::cmp::Reverse(d.severity));
    let leader = facts
        .peers
        .as_ref()
        .and_then(|p| p.iter().find(|p| p.leader))
        .map(|p| p.node_id.clone());
    let authority = match (&leader, blockers.is_empty()) {
        (Some(l), true) => Authority::Provable { leader: l.clone() },
        _ => Authority::Undeterminable { blockers },
    };
    let wrong = diagnoses.iter().any(|d| d.severity > Severity::Info)
        || instances
            .iter()
            .any(|i| !matches!(i.state, InstanceState::Healthy | InstanceState::Unknown));
    let unknown = instances.iter().any(|i| i.state == InstanceState::Unknown);
    let verdict = if facts.status.is_none() {
        Verdict::Undeterminable
    } else if wrong {
        Verdict::Unhealthy
    } else if unknown || !matches!(authority, Authority::Provable { .. }) {
        Verdict::Undeterminable
    } else {
        Verdict::Healthy
    };
    let safe = matches!(authority, Authority::Provable { .. });
    let next_command = diagnoses
        .iter()
        .find(|d| d.severity > Severity::Info)
        .and_then(|d| d.remedy.clone());
    Report {
        engine: "vault".into(),
        namespace: input.namespace.clone(),
        cluster: input.cluster.clone(),
        verdict,
        authority,
        // Nothing here is repaired by hasteward, but restarting a failed follower is safe
        // exactly when the leader is provable.
        safe_to_heal: safe,
        operator_primary: None,
        instances,
        diagnoses,
        next_command,
        facts: serde_json::to_value(&facts).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = include_str!("../testdata/vault/status.json");
    const STATUS_SEALED: &str = include_str!("../testdata/vault/status-sealed.json");
    const STATUS_UNINIT: &str = include_str!("../testdata/vault/status-uninit.json");
    const PEERS: &str = include_str!("../testdata/vault/peers.json");
    const AUTOPILOT: &str = include_str!("../testdata/vault/autopilot.json");

    fn input(status: Output, peers: Option<Output>, autopilot: Option<Output>) -> VaultInput {
        VaultInput {
            namespace: "default".into(),
            cluster: "vault".into(),
            location: "http://127.0.0.1:8200".into(),
            status,
            peers,
            autopilot,
        }
    }

    fn read(s: &str) -> Option<Output> {
        Some(Output::Read(s.into()))
    }

    fn codes(r: &Report) -> Vec<&str> {
        r.diagnoses.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn parses_real_openbao_outputs() {
        let s = parse_status(STATUS).unwrap();
        assert!(s.initialized && !s.sealed);
        assert_eq!(s.storage_type, "raft");
        assert_eq!(s.raft_applied_index, Some(29));
        let p = parse_peers(PEERS).unwrap();
        assert_eq!(
            p,
            vec![Peer {
                node_id: "n1".into(),
                address: "127.0.0.1:28201".into(),
                leader: true,
                voter: true
            }]
        );
        let a = parse_autopilot(AUTOPILOT).unwrap();
        assert!(a.healthy);
        assert_eq!(a.leader, "n1");
        assert_eq!(a.servers[0].status, "leader");
        assert_eq!(a.servers[0].last_index, 29);
    }

    #[test]
    fn healthy_single_node() {
        let r = analyze(&input(
            Output::Read(STATUS.into()),
            read(PEERS),
            read(AUTOPILOT),
        ));
        assert_eq!(r.verdict, Verdict::Healthy);
        assert_eq!(
            r.authority,
            Authority::Provable {
                leader: "n1".into()
            }
        );
        assert_eq!(r.instances.len(), 1);
        assert_eq!(r.instances[0].role, Role::Primary);
        assert_eq!(r.instances[0].position, "index 29");
        assert_eq!(codes(&r), vec!["vault-single-node"]);
        assert_eq!(r.next_command, None);
    }

    #[test]
    fn sealed_is_unhealthy_with_an_unseal_remedy() {
        let r = analyze(&input(Output::Read(STATUS_SEALED.into()), None, None));
        assert_eq!(r.verdict, Verdict::Unhealthy);
        assert!(matches!(r.authority, Authority::Undeterminable { .. }));
        assert_eq!(codes(&r), vec!["vault-sealed"]);
        assert!(r.next_command.unwrap().contains("unseal"));
    }

    #[test]
    fn uninitialized_names_init_and_restore() {
        let r = analyze(&input(Output::Read(STATUS_UNINIT.into()), None, None));
        assert_eq!(r.verdict, Verdict::Unhealthy);
        assert_eq!(codes(&r), vec!["vault-not-initialized"]);
        assert!(r.next_command.unwrap().contains("--force"));
    }

    #[test]
    fn unreachable_is_undeterminable() {
        let r = analyze(&input(
            Output::Failed(
                "Error checking seal status: dial tcp 127.0.0.1:1: connect: connection refused"
                    .into(),
            ),
            None,
            None,
        ));
        assert_eq!(r.verdict, Verdict::Undeterminable);
        assert_eq!(codes(&r), vec!["vault-unreachable"]);
        assert!(r.diagnoses[0].details[0].contains("connection refused"));
    }

    #[test]
    fn an_unhealthy_follower_is_named() {
        let peers = r#"{"data":{"config":{"servers":[
            {"node_id":"vault-0","address":"a:8201","leader":true,"voter":true},
            {"node_id":"vault-1","address":"b:8201","leader":false,"voter":true},
            {"node_id":"vault-2","address":"c:8201","leader":false,"voter":true}]}}}"#;
        let autopilot = r#"{"Healthy":false,"FailureTolerance":0,"Leader":"vault-0","Servers":{
            "vault-0":{"ID":"vault-0","NodeStatus":"alive","Healthy":true,"Status":"leader","LastContact":"0s","LastIndex":90},
            "vault-1":{"ID":"vault-1","NodeStatus":"alive","Healthy":true,"Status":"voter","LastContact":"1s","LastIndex":90},
            "vault-2":{"ID":"vault-2","NodeStatus":"failed","Healthy":false,"Status":"voter","LastContact":"2m","LastIndex":12}}}"#;
        let r = analyze(&input(
            Output::Read(STATUS.into()),
            read(peers),
            read(autopilot),
        ));
        assert_eq!(r.verdict, Verdict::Unhealthy);
        assert_eq!(
            r.authority,
            Authority::Provable {
                leader: "vault-0".into()
            }
        );
        assert_eq!(codes(&r), vec!["vault-autopilot-unhealthy"]);
        assert_eq!(
            r.diagnoses[0].details,
            vec!["vault-2: failed (voter, last contact 2m)"]
        );
        let states: Vec<_> = r
            .instances
            .iter()
            .map(|i| (i.name.as_str(), i.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("vault-0", InstanceState::Healthy),
                ("vault-1", InstanceState::Healthy),
                ("vault-2", InstanceState::NeedsRestart)
            ]
        );
    }

    #[test]
    fn no_leader_is_critical() {
        let peers = r#"{"data":{"config":{"servers":[
            {"node_id":"a","address":"a:8201","leader":false,"voter":true},
            {"node_id":"b","address":"b:8201","leader":false,"voter":true}]}}}"#;
        let r = analyze(&input(Output::Read(STATUS.into()), read(peers), None));
        assert!(codes(&r).contains(&"vault-no-leader"));
        assert!(matches!(r.authority, Authority::Undeterminable { .. }));
        assert_eq!(r.verdict, Verdict::Unhealthy);
    }

    #[test]
    fn unreadable_autopilot_makes_no_health_claim() {
        let r = analyze(&input(
            Output::Read(STATUS.into()),
            read(PEERS),
            Some(Output::Failed(
                "Error checking autopilot state: Code: 403. Errors:\n\n* permission denied".into(),
            )),
        ));
        assert_eq!(r.instances[0].state, InstanceState::Unknown);
        assert_eq!(r.verdict, Verdict::Undeterminable);
        let unread = r
            .diagnoses
            .iter()
            .find(|d| d.code == "vault-raft-unread")
            .unwrap();
        assert_eq!(
            unread.details,
            vec!["raft autopilot state: permission denied"]
        );
    }
}
