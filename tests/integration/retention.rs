//! Retention keeps and removes exactly the right snapshots, per backup set.

use hasteward_testkit::Postgres;

use crate::support::*;

#[test]
fn prune_keeps_the_newest_per_backup_set() {
    let pg = Postgres::start();
    let repo = Repo::new();
    let pw = secret_file(repo.dir.path(), "db.pw", pg.password());
    let mut ids = Vec::new();
    for cluster in ["a", "a", "a", "b"] {
        let mut args = vec!["backup".to_string(), "-o".into(), "json".into()];
        args.extend(pg_args(&pg, &pw, cluster));
        args.extend(repo.args());
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{out}{err}");
        ids.push(
            envelope(&out)["data"]["snapshotId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        // restic orders by time with second precision in --time.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let mut dry = vec![
        "prune".to_string(),
        "-o".into(),
        "json".into(),
        "--keep-last".into(),
        "1".into(),
        "--dry-run".into(),
    ];
    dry.extend(repo.args());
    let (code, out, err) = run(&dry, None);
    assert_eq!(code, 0, "{out}{err}");
    let env = envelope(&out);
    assert_eq!(env["data"]["removed"].as_array().unwrap().len(), 2);
    assert_eq!(repo.snapshots().len(), 4, "dry run changed the repository");

    let mut prune = vec![
        "prune".to_string(),
        "-o".into(),
        "json".into(),
        "--keep-last".into(),
        "1".into(),
    ];
    prune.extend(repo.args());
    let (code, out, err) = run(&prune, None);
    assert_eq!(code, 0, "{out}{err}");
    let mut left: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    let mut expected = vec![ids[2].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(left, expected, "newest of set a and the only one of set b");

    // No rule at all is bad input.
    let mut none = vec!["prune".to_string()];
    none.extend(repo.args());
    let (code, _, err) = run(&none, None);
    assert_eq!(code, 2, "{err}");
}
