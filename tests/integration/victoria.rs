//! `-e vmbackup` against a real VictoriaMetrics (Debian's victoria-metrics: the server,
//! vmbackup and vmrestore): samples ingested, backed up into generations, wiped, restored and
//! queried back; retention of generations on a local destination and on S3 (SeaweedFS);
//! vmbackup's own failure message; restores refused while the server runs.

use std::path::Path;

use hasteward_testkit::{SeaweedS3, VictoriaMetrics, S3_WRITER};
use serde_json::Value;

use crate::support::*;

/// `series` series with `points` samples each, one a minute, ending ten minutes ago.
fn samples(series: usize, points: usize) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let end = now_ms - 600_000;
    let mut out = String::new();
    for s in 0..series {
        for p in 0..points {
            let ts = end - (points - 1 - p) as u64 * 60_000;
            out.push_str(&format!(
                "probe_metric{{job=\"j{s}\",instance=\"i{}\"}} {} {ts}\n",
                s % 7,
                (s * 1000 + p) as f64 / 3.0
            ));
        }
    }
    out
}

fn sorted_export(vm: &VictoriaMetrics) -> Vec<String> {
    let mut lines: Vec<String> = vm
        .export("probe_metric")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn vm_args(sub: &str, vm: &VictoriaMetrics, dst: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        sub,
        "-o",
        "json",
        "-e",
        "vmbackup",
        "-c",
        "vm1",
        "--vm-url",
        &vm.url(),
        "--storage-data-path",
        &vm.data_path().display().to_string(),
        "--dst",
        dst,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn generations(dst: &str, env: &[(String, String)], extra: &[&str]) -> Vec<(String, bool)> {
    let mut cmd = hasteward();
    cmd.args(["snapshots", "-o", "json", "-e", "vmbackup", "--dst", dst])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "snapshots failed: {text}");
    envelope(&text)["data"]["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["complete"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// An old, complete generation as vmbackup would have left it.
fn fake_generation(root: &Path, name: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("backup_complete.ignore"), "").unwrap();
}

fn names(gens: &[(String, bool)]) -> Vec<String> {
    gens.iter().map(|(n, _)| n.clone()).collect()
}

#[test]
fn samples_come_back_after_backup_wipe_and_restore_with_retention_of_generations() {
    let mut vm = VictoriaMetrics::start();
    vm.import_prometheus(&samples(50, 120));
    let before = sorted_export(&vm);
    assert_eq!(before.len(), 50);

    let root = vm.dir().join("backups");
    let dst = format!("fs://{}", root.display());
    for old in ["daily/2020-01-01", "daily/2020-01-02", "daily/2020-01-03"] {
        fake_generation(&root, old);
    }
    std::fs::create_dir_all(root.join("daily/not-a-generation")).unwrap();

    // The dry run prints the vmbackup commands and what retention would delete; nothing runs.
    let (code, out, err) = run(
        &vm_args("backup", &vm, &dst, &["--keep-daily", "2", "--dry-run"]),
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let plan = envelope(&out)["data"].clone();
    assert_eq!(plan["commands"].as_array().unwrap().len(), 2, "{plan}");
    assert!(
        plan["commands"][0]
            .as_str()
            .unwrap()
            .starts_with("vmbackup -storageDataPath="),
        "{plan}"
    );
    assert!(
        plan["commands"][1].as_str().unwrap().contains("-origin="),
        "{plan}"
    );
    assert_eq!(
        plan["wouldDelete"],
        serde_json::json!(["daily/2020-01-02", "daily/2020-01-01"])
    );
    assert!(!root.join("latest").exists());

    let (code, out, err) = run(&vm_args("backup", &vm, &dst, &["--keep-daily", "2"]), None);
    assert_eq!(code, 0, "backup failed: {out}\n{err}");
    let result = envelope(&out)["data"].clone();
    let today = chrono::Utc::now().format("daily/%Y-%m-%d").to_string();
    let written: Vec<&str> = result["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(written, vec!["latest", today.as_str()]);
    assert_eq!(
        result["expired"],
        serde_json::json!(["daily/2020-01-02", "daily/2020-01-01"])
    );
    let gens = generations(&dst, &[], &[]);
    assert_eq!(
        gens,
        vec![
            ("latest".to_string(), true),
            (today.clone(), true),
            ("daily/2020-01-03".to_string(), true)
        ]
    );
    assert!(
        root.join("daily/not-a-generation").exists(),
        "retention deleted a stranger"
    );

    // Restoring while the server runs is refused, and so is replacing data without --force.
    let (code, out, _) = run(&vm_args("restore", &vm, &dst, &["--force"]), None);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("running") && out.contains("stop"), "{out}");

    vm.stop();
    let (code, out, _) = run(&vm_args("restore", &vm, &dst, &[]), None);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("--force"), "{out}");

    // Wipe, restore the daily generation, start again: the same series and samples.
    std::fs::remove_dir_all(vm.data_path()).unwrap();
    std::fs::create_dir_all(vm.data_path()).unwrap();
    let (code, out, err) = run(
        &vm_args("restore", &vm, &dst, &["--snapshot", &today]),
        None,
    );
    assert_eq!(code, 0, "restore failed: {out}\n{err}");
    vm.start_again();
    assert_eq!(sorted_export(&vm), before);

    // More samples, a second run: `latest` is updated incrementally and restores the new state.
    vm.import_prometheus(&samples(60, 120));
    let after = sorted_export(&vm);
    assert_eq!(after.len(), 60);
    let (code, out, err) = run(&vm_args("backup", &vm, &dst, &[]), None);
    assert_eq!(code, 0, "{out}\n{err}");
    vm.stop();
    std::fs::remove_dir_all(vm.data_path()).unwrap();
    let (code, out, err) = run(&vm_args("restore", &vm, &dst, &[]), None);
    assert_eq!(code, 0, "{out}\n{err}");
    vm.start_again();
    assert_eq!(sorted_export(&vm), after);

    // `prune -e vmbackup` applies the same retention on its own.
    let mut prune: Vec<String> = [
        "prune",
        "-o",
        "json",
        "-e",
        "vmbackup",
        "--dst",
        &dst,
        "--keep-daily",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run(&prune, None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        envelope(&out)["data"]["removed"],
        serde_json::json!(["daily/2020-01-03"])
    );
    prune.push("--dry-run".into());
    let (code, out, _) = run(&prune, None);
    assert_eq!(code, 0);
    assert_eq!(envelope(&out)["data"]["removed"], serde_json::json!([]));
}

#[test]
fn a_failed_vmbackup_exits_nonzero_with_its_own_message() {
    let vm = VictoriaMetrics::start();
    vm.import_prometheus(&samples(2, 3));
    let root = vm.dir().join("backups");
    let dst = format!("fs://{}", root.display());
    // Nothing listens on this address: vmbackup cannot create its snapshot.
    let closed = format!("http://127.0.0.1:{}", hasteward_testkit::free_port());
    let mut args = vm_args("backup", &vm, &dst, &["--keep-daily", "3"]);
    let i = args.iter().position(|a| a == "--vm-url").unwrap();
    args[i + 1] = closed;
    let (code, out, _err) = run(&args, None);
    assert_eq!(code, 1, "{out}");
    let env: Value = envelope(&out);
    let message = env["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("vmbackup") && message.contains("cannot create snapshot"),
        "{env}"
    );
    assert!(message.contains("latest"), "{env}");
    // No periodic generation was started.
    assert!(!root.join("daily").exists());

    // Bad input is a usage error naming the flag.
    for (flag, value, expected) in [
        ("--dst", "/not/a/url", "invalid --dst"),
        (
            "--storage-data-path",
            "relative",
            "invalid --storage-data-path",
        ),
    ] {
        let mut a = vm_args("backup", &vm, &dst, &[]);
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.into();
        let (code, out, _) = run(&a, None);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(expected), "{out}");
    }
}

#[test]
fn generations_on_s3_are_backed_up_listed_pruned_and_restored() {
    let s3 = SeaweedS3::start();
    s3.create_bucket("vmbk");
    let mut vm = VictoriaMetrics::start();
    vm.import_prometheus(&samples(20, 60));
    let before = sorted_export(&vm);
    let dst = "s3://vmbk/prod/vm";
    let env = SeaweedS3::env(S3_WRITER);
    let endpoint = s3.endpoint();
    let with_env = |args: &[String]| {
        let mut cmd = hasteward();
        cmd.args(args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // An old generation, written by vmbackup itself, for retention to find.
    let old = format!("{dst}/daily/2020-01-01");
    let status = std::process::Command::new("vmbackup")
        .args([
            format!("-storageDataPath={}", vm.data_path().display()),
            format!("-snapshot.createURL={}/snapshot/create", vm.url()),
            format!("-dst={old}"),
            format!("-customS3Endpoint={endpoint}"),
            "-httpListenAddr=127.0.0.1:0".into(),
        ])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let (code, out) = with_env(&vm_args(
        "backup",
        &vm,
        dst,
        &[
            "--vm-s3-endpoint",
            &endpoint,
            "--keep-daily",
            "1",
            "--keep-weekly",
            "2",
        ],
    ));
    assert_eq!(code, 0, "{out}");
    let result = envelope(&out)["data"].clone();
    assert_eq!(
        result["expired"],
        serde_json::json!(["daily/2020-01-01"]),
        "{result}"
    );
    let today = chrono::Utc::now();
    assert_eq!(s3.versions("vmbk", "prod/vm/daily/2020-01-01/"), (0, 0));
    let gens = generations(dst, &env, &["--vm-s3-endpoint", &endpoint]);
    assert_eq!(
        names(&gens),
        vec![
            "latest".to_string(),
            today.format("daily/%Y-%m-%d").to_string(),
            format!(
                "weekly/{}",
                hasteward_engines::vmbackup::Period::Weekly.name_at(today)
            ),
        ]
    );
    assert!(gens.iter().all(|(_, complete)| *complete), "{gens:?}");

    // Restore the weekly generation from S3 into a wiped server.
    vm.stop();
    std::fs::remove_dir_all(vm.data_path()).unwrap();
    let weekly = gens[2].0.clone();
    let (code, out) = with_env(&vm_args(
        "restore",
        &vm,
        dst,
        &["--vm-s3-endpoint", &endpoint, "--snapshot", &weekly],
    ));
    assert_eq!(code, 0, "{out}");
    vm.start_again();
    assert_eq!(sorted_export(&vm), before);

    // Without credentials, listing says what is missing.
    let mut cmd = hasteward();
    cmd.args([
        "snapshots",
        "-e",
        "vmbackup",
        "--dst",
        dst,
        "--vm-s3-endpoint",
        &endpoint,
    ])
    .env_remove("AWS_ACCESS_KEY_ID")
    .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no S3 credentials"));
}
