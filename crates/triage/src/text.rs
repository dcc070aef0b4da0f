//! The human report: a header with the verdict and the authority, one table row per instance,
//! the findings with their remedies, and the one command to run next. Meant to be read in ten
//! seconds; the JSON envelope carries everything else.

use std::fmt::Write;

use crate::{Authority, InstanceState, Report, Role, Severity};

/// Renders `report` as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}/{}: {}",
        engine_title(&report.engine),
        report.namespace,
        report.cluster,
        report.verdict.as_str().to_uppercase()
    );
    let _ = writeln!(out, "authority: {}", authority_line(&report.authority));
    let _ = writeln!(
        out,
        "safe to heal: {}",
        if report.safe_to_heal {
            "yes"
        } else {
            "no (nothing destructive until the authority is clear)"
        }
    );
    out.push('\n');
    out.push_str(&instance_table(report));
    if !report.diagnoses.is_empty() {
        out.push_str("\nfindings:\n");
        for d in &report.diagnoses {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                severity_name(d.severity),
                d.code,
                d.summary
            );
            for line in &d.details {
                let _ = writeln!(out, "      {line}");
            }
            if let Some(remedy) = &d.remedy {
                let _ = writeln!(out, "      remedy: {remedy}");
            }
        }
    }
    match &report.next_command {
        Some(cmd) => {
            let _ = write!(out, "\nnext: {cmd}");
        }
        None => out.push_str("\nnext: nothing to do"),
    }
    out
}

fn engine_title(engine: &str) -> &str {
    match engine {
        "cnpg" => "CNPG cluster",
        "galera" => "Galera cluster",
        "vault" => "Vault raft cluster",
        other => other,
    }
}

fn authority_line(a: &Authority) -> String {
    match a {
        Authority::Provable { leader } => format!("{leader} (provable)"),
        Authority::LeaderNotPrimary { leader, primary } => format!(
            "{leader} holds the most advanced data, but the operator's primary is {primary}"
        ),
        Authority::Diverged { reasons } => {
            format!("none: histories diverged ({})", reasons.join("; "))
        }
        Authority::Undeterminable { blockers } => {
            format!("cannot be decided ({})", blockers.join("; "))
        }
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn state_name(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Healthy => "healthy",
        InstanceState::Lagging => "lagging",
        InstanceState::NeedsRestart => "needs restart",
        InstanceState::NeedsReseed => "needs reseed",
        InstanceState::Diverged => "diverged",
        InstanceState::Unknown => "unknown",
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Node => "node",
    }
}

fn instance_table(report: &Report) -> String {
    let header = [
        "INSTANCE", "ROLE", "POSITION", "LAG", "DISK", "STATE", "ADVICE",
    ];
    let rows: Vec<[String; 7]> = report
        .instances
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                role_name(i.role).to_string(),
                i.position.clone(),
                i.lag.clone().unwrap_or_else(|| "-".into()),
                i.disk_percent
                    .map(|p| format!("{p:.0}%"))
                    .unwrap_or_else(|| "-".into()),
                state_name(i.state).to_string(),
                i.advice.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Diagnosis, InstanceAssessment, Verdict};

    #[test]
    fn a_report_reads_as_header_table_findings_next() {
        let report = Report {
            engine: "cnpg".into(),
            namespace: "db".into(),
            cluster: "pg".into(),
            verdict: Verdict::Unhealthy,
            authority: Authority::Provable {
                leader: "pg-1".into(),
            },
            safe_to_heal: true,
            operator_primary: None,
            instances: vec![InstanceAssessment {
                name: "pg-2".into(),
                ordinal: Some(2),
                role: Role::Replica,
                position: "TL 1 0/3000000".into(),
                lag: None,
                disk_percent: Some(47.0),
                state: InstanceState::NeedsReseed,
                advice: "on an old timeline".into(),
                remedy: Some("hasteward repair …".into()),
                lineage: None,
                seqno: None,
            }],
            diagnoses: vec![Diagnosis {
                code: "cnpg-replica-old-timeline".into(),
                severity: Severity::Critical,
                summary: "pg-2 is on timeline 1".into(),
                details: vec!["the primary is on timeline 2".into()],
                remedy: Some("hasteward repair …".into()),
                instance: Some("pg-2".into()),
            }],
            next_command: Some("hasteward repair …".into()),
            facts: serde_json::Value::Null,
        };
        let text = render_text(&report);
        assert!(text.starts_with("CNPG cluster db/pg: UNHEALTHY\nauthority: pg-1 (provable)"));
        assert!(
            text.contains(
                "pg-2      replica  TL 1 0/3000000  -    47%   needs reseed  on an old timeline"
            ),
            "{text}"
        );
        assert!(text.contains("[critical] cnpg-replica-old-timeline"));
        assert!(text.ends_with("next: hasteward repair …"));
    }
}
