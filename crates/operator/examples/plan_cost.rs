//! Times one planning pass over N targets (resolve, then the schedule book), the part of
//! `hasteward serve`'s loop that runs on every event; `scripts/bench-operator.sh` measures the
//! whole process. Run: cargo run --release -p hasteward-operator --example plan_cost [N]
use std::time::Instant;

use hasteward_api::{
    BackupPolicySpec, BackupRepositorySpec, DatabaseTarget, PodTargetSpec, Retention,
    StandaloneDatabaseSpec, StandaloneDbType,
};
use hasteward_operator::config::{resolve, Inputs, StandaloneInput};
use hasteward_operator::scheduler::Scheduler;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut inputs = Inputs::default();
    inputs.policies.insert(
        "nightly".into(),
        BackupPolicySpec {
            backup_schedule: Some("0 3 1 1 *".into()),
            jitter_seconds: Some(3600),
            repositories: vec!["local".into()],
            retention: Some(Retention {
                keep_daily: Some(7),
                ..Retention::default()
            }),
            ..BackupPolicySpec::default()
        },
    );
    inputs
        .repositories
        .insert("local".into(), (BackupRepositorySpec::default(), None));
    for i in 0..n {
        inputs.standalone.push(StandaloneInput {
            namespace: format!("apps-{}", i % 10),
            name: format!("db-{i}"),
            generation: Some(1),
            spec: StandaloneDatabaseSpec {
                db_type: StandaloneDbType::Postgres,
                target: DatabaseTarget {
                    pod: Some(PodTargetSpec {
                        name: format!("db-{i}-0"),
                        container: None,
                    }),
                    ..DatabaseTarget::default()
                },
                credentials: None,
                policy: Some("nightly".into()),
                schedule: None,
                retention: None,
                repositories: vec![],
                suspend: None,
                drill: None,
                vault: None,
                vmbackup: None,
            },
            last_backup: None,
            last_drill: None,
            last_triage: None,
        });
    }
    let now = chrono::Utc::now();
    let mut book = Scheduler::new(4);
    for pass in 0..5 {
        let t0 = Instant::now();
        let desired = resolve(&inputs);
        let t1 = Instant::now();
        book.update(desired.jobs(), now);
        let t2 = Instant::now();
        let due = book.take_due(now);
        let t3 = Instant::now();
        println!(
            "pass {pass}: resolve {:.2} ms, update {:.2} ms, due {:.2} ms ({} due)",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            due.start.len()
        );
    }
}
