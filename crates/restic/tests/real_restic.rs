//! The wrapper against the real restic binary: every command the foundation offers, on
//! throwaway local repositories.

use std::path::Path;

use hasteward_exec::{gated, CommandSpec, LocalRunner, PumpOptions, Runner};
use hasteward_restic::{BackupRequest, Credentials, Error, KeepPolicy, Restic, SnapshotFilter};

fn creds(dir: &Path, name: &str, password: &str) -> Credentials {
    let pw = dir.join(format!("{name}.pw"));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    Credentials {
        repo: Some(dir.join(name).display().to_string()),
        password_file: Some(pw),
        env: Vec::new(),
    }
}

async fn backup(restic: &Restic, data: &str, tags: &[(&str, &str)]) -> String {
    let req = BackupRequest {
        filename: "ns/c/dump.sql".into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        host: "hasteward".into(),
        time: None,
    };
    let mut run = restic.backup(&req).await.unwrap();
    run.ready().await.unwrap();
    let mut producer = LocalRunner
        .spawn(&CommandSpec::new("printf").arg("%s").arg(data))
        .await
        .unwrap();
    gated(&mut producer, &mut run.proc, &PumpOptions::default())
        .await
        .unwrap();
    run.finish().await.unwrap().snapshot_id
}

#[tokio::test]
async fn every_command_against_real_restic() {
    let dir = tempfile::tempdir().unwrap();
    let restic = Restic::open("restic", &creds(dir.path(), "a", "pw-a"))
        .await
        .unwrap();
    assert!(restic.capabilities().version.minor >= 14);
    assert!(restic.init().await.unwrap(), "first init creates");
    assert!(!restic.init().await.unwrap(), "second init is a no-op");

    let first = backup(&restic, "one", &[("type", "backup"), ("cluster", "c")]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = backup(&restic, "two", &[("type", "backup"), ("cluster", "c")]).await;
    let snaps = restic
        .snapshots(&SnapshotFilter {
            tags: vec![("cluster".into(), "c".into())],
            path: Some("/ns/c/dump.sql".into()),
            host: Some("hasteward".into()),
        })
        .await
        .unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1].short(), second, "oldest first");

    // dump reads the stream back.
    let mut dump = LocalRunner
        .spawn(&restic.dump_command(&second, "/ns/c/dump.sql"))
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(dump.stdout.as_mut().unwrap(), &mut out)
        .await
        .unwrap();
    assert!(dump.wait().await.unwrap().success());
    assert_eq!(out, b"two");

    // tag rewrites the snapshot and finds it again.
    let tagged = restic
        .add_tags(&first, &[("sha256".into(), "abc".into())], "/ns/c/dump.sql")
        .await
        .unwrap();
    let tagged = restic.snapshot(&tagged).await.unwrap();
    assert_eq!(tagged.tag("sha256"), Some("abc"));
    assert_eq!(tagged.tag("cluster"), Some("c"));
    assert!(matches!(
        restic.snapshot("deadbeef").await.unwrap_err(),
        Error::SnapshotNotFound { .. } | Error::Failed { .. }
    ));

    let stats = restic.stats().await.unwrap();
    assert!(stats.total_size > 0);
    let report = restic.check(Some("100%")).await.unwrap();
    assert!(report.contains("no errors were found"), "{report}");

    // copy into a second repository created with the same chunker parameters.
    let b = Restic::open("restic", &creds(dir.path(), "b", "pw-b"))
        .await
        .unwrap();
    assert!(b.init_from(&restic).await.unwrap());
    b.copy_from(&restic, &SnapshotFilter::default())
        .await
        .unwrap();
    assert_eq!(
        b.snapshots(&SnapshotFilter::default()).await.unwrap().len(),
        2
    );
    b.copy_from(&restic, &SnapshotFilter::default())
        .await
        .unwrap();
    assert_eq!(
        b.snapshots(&SnapshotFilter::default()).await.unwrap().len(),
        2,
        "copy is idempotent"
    );

    // retention: keep the newest one.
    let policy = KeepPolicy {
        keep_last: Some(1),
        ..KeepPolicy::default()
    };
    let groups = restic
        .forget(&SnapshotFilter::default(), &policy, true)
        .await
        .unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g.remove.as_ref().map_or(0, Vec::len))
            .sum::<usize>(),
        1
    );
    assert_eq!(
        restic
            .snapshots(&SnapshotFilter::default())
            .await
            .unwrap()
            .len(),
        2,
        "dry run"
    );
    restic
        .forget(&SnapshotFilter::default(), &policy, false)
        .await
        .unwrap();
    restic.prune().await.unwrap();
    let left = restic.snapshots(&SnapshotFilter::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].short(), second);

    restic.unlock(false).await.unwrap();
    assert!(restic.locks().await.unwrap().is_empty());

    // A wrong password is typed.
    let wrong = Credentials {
        password_file: Some({
            let p = dir.path().join("wrong.pw");
            std::fs::write(&p, "nope\n").unwrap();
            p
        }),
        ..creds(dir.path(), "a2", "x")
    };
    let wrong = Credentials {
        repo: Some(dir.path().join("a").display().to_string()),
        ..wrong
    };
    let r = Restic::open("restic", &wrong).await.unwrap();
    assert!(matches!(
        r.snapshots(&SnapshotFilter::default()).await.unwrap_err(),
        Error::WrongPassword { .. }
    ));

    // A missing repository is typed.
    let missing = Restic::open("restic", &creds(dir.path(), "none", "x"))
        .await
        .unwrap();
    assert!(matches!(
        missing
            .snapshots(&SnapshotFilter::default())
            .await
            .unwrap_err(),
        Error::RepositoryMissing { .. }
    ));

    // A missing binary is typed.
    assert!(matches!(
        Restic::open("/nonexistent/restic", &creds(dir.path(), "z", "x"))
            .await
            .unwrap_err(),
        Error::NotInstalled { .. }
    ));
}
