//! `hasteward demo`: the embedded default. A throwaway PostgreSQL and restic repository under a
//! temp dir, seeded data, then backup → snapshots → verify → drop → restore → compare, and
//! everything removed again. It uses the same flows as the real commands.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use hasteward_engines::flows::{self, SnapshotSelector, StreamSettings};
use hasteward_engines::standalone::HostTarget;
use hasteward_engines::Error;
use hasteward_exec::CancellationToken;
use hasteward_model::{DbType, Engine, ExitCode, SnapshotKind, SnapshotLabels};
use hasteward_restic::{Credentials, Restic};
use hasteward_testkit::Postgres;
use serde_json::json;

use crate::cli::{Cli, DemoArgs};
use crate::output::{human_bytes, Reporter};

/// Runs a blocking harness call; a panic (missing PostgreSQL, failed query) becomes an error.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || std::panic::catch_unwind(AssertUnwindSafe(f)))
        .await
        .map_err(|e| Error::Database {
            detail: format!("{what}: {e}"),
        })?
        .map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Error::Database {
                detail: format!("{what}: {msg}"),
            }
        })
}

fn private_file(path: &Path, content: &str) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(content.as_bytes())
        .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))
}

const CHECKSUM_SQL: &str = "SELECT count(*) || ' rows, md5 ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items";

/// Runs the demo.
pub async fn run(
    cli: &Cli,
    a: &DemoArgs,
    rep: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<ExitCode, Error> {
    let work = tempfile::Builder::new()
        .prefix("hasteward-demo-")
        .tempdir()
        .map_err(|e| Error::Usage(format!("cannot create a temp dir: {e}")))?;
    rep.human(&format!("demo workspace: {}", work.path().display()));

    let pg = rep
        .step(
            "start-postgres",
            blocking("starting PostgreSQL", Postgres::start),
        )
        .await?;
    let pg = std::sync::Arc::new(pg);
    rep.human(&format!(
        "1. started a throwaway PostgreSQL on {}:{}",
        pg.host(),
        pg.port()
    ));

    let rows = a.rows;
    let seeded = {
        let pg = pg.clone();
        blocking("seeding", move || {
            pg.psql("postgres", "CREATE DATABASE shop");
            pg.psql(
                "shop",
                &format!("CREATE TABLE items (id int PRIMARY KEY, payload text NOT NULL); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"),
            );
            pg.psql("shop", CHECKSUM_SQL)
        })
        .await?
    };
    rep.human(&format!("2. seeded database `shop`: {seeded}"));

    let repo_dir = work.path().join("repo");
    let repo_pw = work.path().join("repo.password");
    let db_pw = work.path().join("db.password");
    private_file(&repo_pw, "demo-repository-password\n")?;
    private_file(&db_pw, &format!("{}\n", pg.password()))?;
    let restic = Restic::open(
        &cli.restic_bin,
        &Credentials {
            repo: Some(repo_dir.display().to_string()),
            password_file: Some(repo_pw),
            env: Vec::new(),
        },
    )
    .await?;
    let target = HostTarget {
        db_type: DbType::Postgres,
        host: pg.host().to_string(),
        port: pg.port(),
        user: pg.user().to_string(),
        password_file: Some(db_pw),
    };
    let target = hasteward_engines::standalone::HostEndpoint::prepare(&target)?;
    let labels = SnapshotLabels {
        engine: Engine::Standalone,
        cluster: "demo".into(),
        namespace: "default".into(),
        kind: SnapshotKind::Backup,
        db_type: Some(DbType::Postgres),
        file: DbType::Postgres.dump_file().into(),
        database: None,
        job: None,
    };
    let settings = StreamSettings {
        stall_timeout: None,
        progress: None,
        cancel: cancel.clone(),
    };

    let backup = rep
        .step(
            "backup",
            flows::backup(&restic, &target, &labels, &settings),
        )
        .await?;
    rep.human(&format!(
        "3. backup: snapshot {} of {} ({}), sha256 {}",
        backup.short_id,
        backup.path,
        human_bytes(backup.bytes),
        &backup.sha256[..16]
    ));

    let listed = flows::list(&restic, labels.tags()).await?;
    rep.human(&format!(
        "4. snapshots: {} in {}",
        listed.len(),
        restic.repo()
    ));

    let verified = rep
        .step(
            "verify",
            flows::verify(&restic, &labels, &SnapshotSelector::Latest, cancel),
        )
        .await?;
    rep.human(&format!(
        "5. verify: read back {} bytes, checksum matches",
        verified.bytes
    ));

    {
        let pg = pg.clone();
        blocking("dropping the database", move || {
            pg.psql("postgres", "DROP DATABASE shop")
        })
        .await?;
    }
    rep.human("6. dropped database `shop`");

    let restored = rep
        .step(
            "restore",
            flows::restore(
                &restic,
                &target,
                &labels,
                &SnapshotSelector::Latest,
                &flows::RestoreOptions::default(),
                &settings,
            ),
        )
        .await?;
    let after = {
        let pg = pg.clone();
        blocking("reading back", move || pg.psql("shop", CHECKSUM_SQL)).await?
    };
    rep.human(&format!(
        "7. restore: {} streamed back; `shop` now has {after}",
        human_bytes(restored.bytes)
    ));
    let same = after == seeded;
    drop(pg);
    drop(work);
    let data = json!({
        "seeded": seeded,
        "restored": after,
        "identical": same,
        "backup": backup,
        "verify": verified,
        "restore": restored,
    });
    if !same {
        return Ok(rep.fail(
            ExitCode::Failed,
            "demo.mismatch",
            &format!("restored data differs: before {seeded}, after {after}"),
            false,
            data,
        ));
    }
    Ok(rep.succeed(
        data,
        "8. identical before and after; throwaway database and repository removed. demo OK",
    ))
}
