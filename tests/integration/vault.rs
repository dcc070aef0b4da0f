//! `-e vault` against a real OpenBao server with raft storage (HashiCorp Vault itself cannot be
//! installed on these machines; OpenBao is its API- and CLI-compatible fork): a KV value backed
//! up, changed, and read back as it was after the restore; a sealed server and a snapshot that
//! fails half way never become a restic snapshot.

use std::path::{Path, PathBuf};

use hasteward_testkit::OpenBao;

use crate::support::*;

fn bin_dir(bao: &OpenBao) -> PathBuf {
    bao.bao().parent().unwrap().to_path_buf()
}

fn target(bao: &OpenBao, cluster: &str) -> Vec<String> {
    vec![
        "-e".into(),
        "vault".into(),
        "-c".into(),
        cluster.into(),
        "--vault-addr".into(),
        bao.addr(),
        "--vault-token-file".into(),
        bao.token_file().display().to_string(),
    ]
}

fn cmd(sub: &str, bao: &OpenBao, repo: &Repo, extra: &[&str]) -> Vec<String> {
    let mut args = vec![sub.to_string(), "-o".into(), "json".into()];
    args.extend(target(bao, "bao1"));
    args.extend(repo.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_in(args: &[String], bin: &Path) -> (i32, String, String) {
    run(args, Some(bin))
}

#[test]
fn a_raft_snapshot_round_trips_and_restores_the_old_value() {
    let bao = OpenBao::start();
    let bin = bin_dir(&bao);
    let repo = Repo::new();
    bao.kv_put("app", "pw", "one");

    let (code, out, err) = run_in(&cmd("backup", &bao, &repo, &[]), &bin);
    assert_eq!(code, 0, "backup failed: {out}\n{err}");
    let env = envelope(&out);
    let sha = env["data"]["sha256"].as_str().unwrap().to_string();
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"][0], "/default/bao1/raft.snap");
    let tags: Vec<String> = serde_json::from_value(snaps[0]["tags"].clone()).unwrap();
    assert!(tags.contains(&"engine=vault".to_string()), "{tags:?}");
    assert!(tags.contains(&format!("sha256={sha}")), "{tags:?}");
    assert!(!tags.iter().any(|t| t.starts_with("db-type=")), "{tags:?}");
    // The stored stream is the raft snapshot itself (gzip), byte for byte.
    let dumped = repo.restic(&["dump", "latest", "/default/bao1/raft.snap"]);
    assert!(dumped.status.success());
    assert_eq!(
        &dumped.stdout[..2],
        &[0x1f, 0x8b],
        "not a gzip raft snapshot"
    );
    assert_eq!(
        dumped.stdout.len() as u64,
        env["data"]["bytes"].as_u64().unwrap()
    );

    let mut v: Vec<String> = ["verify", "-e", "vault", "-c", "bao1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(repo.args());
    let (code, out, err) = run_in(&v, &bin);
    assert_eq!(code, 0, "verify failed: {out}\n{err}");

    bao.kv_put("app", "pw", "two");
    assert_eq!(bao.kv_get("app", "pw"), "two");

    // A restore replaces everything: refused without --force, nothing touched.
    let (code, out, _err) = run_in(&cmd("restore", &bao, &repo, &[]), &bin);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("--force") && out.contains("replaces all"),
        "{out}"
    );
    assert_eq!(bao.kv_get("app", "pw"), "two");

    // The dry run names the snapshot and the command, and changes nothing.
    let (code, out, err) = run_in(
        &cmd("restore", &bao, &repo, &["--force", "--dry-run"]),
        &bin,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let plan = envelope(&out);
    assert!(
        plan["data"]["steps"][0]
            .as_str()
            .unwrap()
            .contains("operator raft snapshot restore /dev/stdin"),
        "{plan}"
    );
    assert_eq!(bao.kv_get("app", "pw"), "two");

    let (code, out, err) = run_in(&cmd("restore", &bao, &repo, &["--force"]), &bin);
    assert_eq!(code, 0, "restore failed: {out}\n{err}");
    assert_eq!(envelope(&out)["data"]["checksumVerified"], true);
    bao.wait_unsealed_leader();
    assert_eq!(bao.kv_get("app", "pw"), "one");

    // Triage reads the same server: unsealed, one voter leading, autopilot healthy.
    let mut t = vec!["triage".to_string(), "-o".into(), "json".into()];
    t.extend(target(&bao, "bao1"));
    let (code, out, err) = run_in(&t, &bin);
    assert_eq!(code, 0, "{out}\n{err}");
    let report = envelope(&out)["data"].clone();
    assert_eq!(report["engine"], "vault");
    assert_eq!(report["verdict"], "healthy", "{report}");
    assert_eq!(report["authority"]["outcome"], "provable");
    assert_eq!(report["instances"][0]["role"], "primary");
    assert_eq!(report["facts"]["status"]["storageType"], "raft");
}

#[test]
fn a_sealed_server_or_a_failed_snapshot_never_becomes_a_snapshot() {
    let bao = OpenBao::start();
    let bin = bin_dir(&bao);
    let repo = Repo::new();
    bao.kv_put("app", "pw", "one");

    // One good snapshot first, so the repository exists and counts are meaningful.
    let (code, out, err) = run_in(&cmd("backup", &bao, &repo, &[]), &bin);
    assert_eq!(code, 0, "{out}\n{err}");

    bao.seal();
    let (code, out, _err) = run_in(&cmd("backup", &bao, &repo, &[]), &bin);
    assert_ne!(code, 0, "a sealed server was backed up: {out}");
    assert!(out.contains("is sealed"), "{out}");
    assert_eq!(repo.snapshots().len(), 1);

    // Triage says what is wrong and what to do.
    let mut t = vec!["triage".to_string(), "-o".into(), "json".into()];
    t.extend(target(&bao, "bao1"));
    t.extend(["--fail-on".to_string(), "unhealthy".into()]);
    let (code, out, _err) = run_in(&t, &bin);
    assert_eq!(code, 1, "{out}");
    let report = envelope(&out)["data"].clone();
    assert_eq!(report["verdict"], "unhealthy");
    assert_eq!(report["diagnoses"][0]["code"], "vault-sealed");
    assert!(report["nextCommand"].as_str().unwrap().contains("unseal"));
    bao.unseal();

    // A snapshot that dies half way (here: a `bao` that streams part of a real snapshot, then
    // fails) is held at the gate: restic is stopped before it sees the end of its input.
    let real = bao.bao().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let shim_bin = shim(
        dir.path(),
        "bao",
        &format!(
            r#"case "$*" in
  *"snapshot save"*) "{real}" "$@" | head -c 3000; echo "Error taking the snapshot: connection reset" >&2; exit 2 ;;
  *) exec "{real}" "$@" ;;
esac"#
        ),
    );
    let (code, out, _err) = run_in(&cmd("backup", &bao, &repo, &[]), &shim_bin);
    assert_ne!(code, 0, "a failed snapshot was committed: {out}");
    assert!(out.contains("connection reset"), "{out}");
    assert_eq!(
        repo.snapshots().len(),
        1,
        "a partial raft snapshot was saved"
    );
    assert_eq!(repo.locks(), 0);
}

#[test]
fn bad_vault_input_is_a_clear_usage_error() {
    let repo = Repo::new();
    let mut drill: Vec<String> = ["verify", "-e", "vault", "-c", "v", "--restore-test"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    drill.extend(repo.args());
    let (code, _out, err) = run(&drill, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--restore-test restores SQL dumps"), "{err}");
    let cases: [(&[&str], &str); 4] = [
        (&["-e", "vault", "-c", "v"], "--vault-addr"),
        (
            &["-e", "vault", "-c", "v", "--vault-addr", "vault:8200"],
            "invalid --vault-addr",
        ),
        (
            &[
                "-e",
                "vault",
                "-c",
                "v",
                "--vault-addr",
                "http://127.0.0.1:1",
                "--database",
                "x",
            ],
            "--database does not apply",
        ),
        (
            &[
                "-e",
                "standalone",
                "--db-type",
                "postgres",
                "-c",
                "p",
                "--host",
                "h",
                "--vault-addr",
                "http://x:1",
            ],
            "apply to -e vault only",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["backup".to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.extend(repo.args());
        let (code, _out, err) = run(&args, None);
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
    }
    assert!(!repo.path.exists(), "a repository was created by bad input");
}
