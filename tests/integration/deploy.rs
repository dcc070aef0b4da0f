//! The deployment files: copies stay equal to their sources, kustomize and the Helm chart render
//! the operator install under the restricted pod security profile with the same RBAC, RBAC has
//! no wildcards, the alert rules
//! pass promtool's checks and unit tests, and the rules and dashboard only name metrics the
//! operator exports.

use std::path::{Path, PathBuf};
use std::process::Command;

use hasteward_kubesim::SimConfig;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of the first `rules:` block of the document of `kind` in a multi-document file.
fn rules_block(text: &str, kind: &str) -> String {
    let doc = text
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .unwrap_or_else(|| panic!("no {kind} in\n{text}"));
    let start = doc.find("rules:\n").expect("a rules block");
    doc[start..].trim_end().to_string()
}

#[test]
fn copies_stay_equal_to_their_sources() {
    let fix = "run `just crds` / copy the source over the copy";
    assert!(
        read("deploy/helm/hasteward/crds/hasteward.yaml") == read("deploy/crds/hasteward.yaml"),
        "the chart's CRDs are stale: {fix}"
    );
    assert!(
        read("deploy/helm/hasteward/files/hasteward-rules.yaml")
            == read("deploy/prometheus/hasteward-rules.yaml"),
        "the chart's alert rules are stale: {fix}"
    );
    assert!(
        read("deploy/operator/rbac.yaml") == read("rbac/hasteward-operator.yaml"),
        "deploy/operator/rbac.yaml differs from rbac/hasteward-operator.yaml: {fix}"
    );
    let source = read("rbac/hasteward-operator.yaml");
    let chart = read("deploy/helm/hasteward/templates/rbac.yaml");
    for kind in ["ClusterRole", "Role"] {
        assert_eq!(
            rules_block(&chart, kind),
            rules_block(&source, kind),
            "the chart's {kind} rules differ from rbac/hasteward-operator.yaml"
        );
    }
    // The repair and drill roles (the chart's end in their bindings' loops).
    for role in ["repair", "drill"] {
        let rules_of = |text: &str| {
            let doc = text
                .split("\n---\n")
                .find(|d| d.contains(&format!("-{role}\n")) && d.contains("kind: ClusterRole\n"))
                .unwrap_or_else(|| panic!("a {role} ClusterRole"));
            let start = doc.find("rules:\n").expect("a rules block");
            let end = doc[start..].find("{{-").map_or(doc.len(), |e| start + e);
            doc[start..end].trim_end().to_string()
        };
        assert_eq!(
            rules_of(&chart),
            rules_of(&source),
            "the chart's {role} rules differ from rbac/hasteward-operator.yaml"
        );
    }
}

#[test]
fn rbac_names_every_resource_and_verb_without_wildcards() {
    for file in ["rbac/hasteward-operator.yaml", "rbac/hasteward-cli.yaml"] {
        let objects = SimConfig::from_yaml(&read(file)).unwrap().objects;
        let mut rules = 0;
        for o in &objects {
            for rule in o["rules"].as_array().into_iter().flatten() {
                rules += 1;
                for field in ["apiGroups", "resources", "verbs"] {
                    let list = rule[field]
                        .as_array()
                        .unwrap_or_else(|| panic!("{file}: {rule}"));
                    assert!(!list.is_empty(), "{file}: empty {field} in {rule}");
                    assert!(
                        list.iter()
                            .all(|v| v.as_str().is_some_and(|s| !s.contains('*'))),
                        "{file}: wildcard in {rule}"
                    );
                }
            }
        }
        assert!(rules > 0, "{file} has no rules");
    }
}

#[test]
fn kustomize_renders_a_restricted_operator_install() {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join("deploy").display().to_string()])
        .output()
        .expect("kubectl is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = SimConfig::from_yaml(&String::from_utf8_lossy(&out.stdout))
        .unwrap()
        .objects;
    let mut kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            // The repair and drill roles: defined, bound only by deploy/operator/*-binding.yaml.
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for o in &objects {
        let namespaced = !matches!(
            o["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition" | "Namespace")
        );
        if namespaced {
            assert_eq!(
                o["metadata"]["namespace"], "hasteward-system",
                "{}",
                o["kind"]
            );
        }
    }
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_restricted_operator(deployment);
    let binding = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "hasteward-system");
}

/// The operator's Deployment runs under the restricted profile, with a writable /tmp for restic,
/// real probes, and a shutdown grace that ends before the kubelet's.
fn assert_restricted_operator(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "serve");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(mounts.contains(&"/tmp"), "restic needs a writable temp dir");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown: u64 = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--shutdown-grace=")?.parse().ok())
        .unwrap();
    assert!(
        shutdown < grace,
        "--shutdown-grace must end before the kubelet kills the pod"
    );
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(crate::support::pypi_tool("helm"))
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn objects_of(yaml: &str) -> Vec<Value> {
    SimConfig::from_yaml(yaml).unwrap().objects
}

fn rules_named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))["rules"]
}

#[test]
fn the_helm_chart_lints_and_renders_the_same_install() {
    let chart = root().join("deploy/helm/hasteward").display().to_string();
    helm(&["lint", "--strict", &chart]);
    let rendered = objects_of(&helm(&[
        "template",
        "hw",
        &chart,
        "-n",
        "hasteward-system",
        "--include-crds",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "operator.repair.namespaces={db,shop}",
        "--set",
        "operator.drill.namespaces={db}",
    ]));
    let mut kinds: Vec<&str> = rendered.iter().filter_map(|o| o["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    let deployment = rendered.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_restricted_operator(deployment);
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();

    // The same rules as rbac/hasteward-operator.yaml, role for role.
    let source = objects_of(&read("rbac/hasteward-operator.yaml"));
    for (kind, ours, theirs) in [
        ("ClusterRole", "hasteward-operator", sa.to_string()),
        ("Role", "hasteward-operator-leader", format!("{sa}-leader")),
        (
            "ClusterRole",
            "hasteward-operator-repair",
            format!("{sa}-repair"),
        ),
        (
            "ClusterRole",
            "hasteward-operator-drill",
            format!("{sa}-drill"),
        ),
    ] {
        assert_eq!(
            rules_named(&rendered, kind, &theirs),
            rules_named(&source, kind, ours),
            "the chart's {theirs} differs from {ours}"
        );
    }
    // Repair rights only in the namespaces named, for the operator's ServiceAccount.
    let mut repair_bindings: Vec<(&str, &str, &str)> = rendered
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["roleRef"]["name"] == format!("{sa}-repair"))
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap(),
                o["subjects"][0]["name"].as_str().unwrap(),
                o["subjects"][0]["namespace"].as_str().unwrap(),
            )
        })
        .collect();
    repair_bindings.sort();
    assert_eq!(
        repair_bindings,
        [
            ("db", sa, "hasteward-system"),
            ("shop", sa, "hasteward-system")
        ]
    );
    // CRDs and alert rules are the generated ones.
    let crds: Vec<&Value> = rendered
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let generated = objects_of(&read("deploy/crds/hasteward.yaml"));
    assert_eq!(crds, generated.iter().collect::<Vec<_>>());
    let rule = rendered
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap();
    let groups: Value =
        serde_saphyr::from_str::<Value>(&read("deploy/prometheus/hasteward-rules.yaml")).unwrap()
            ["groups"]
            .clone();
    assert_eq!(rule["spec"]["groups"], groups);
    // The ServiceMonitor scrapes the Service's metrics port.
    let service = rendered.iter().find(|o| o["kind"] == "Service").unwrap();
    let monitor = rendered
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .unwrap();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "label {k}");
    }
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port),
        "{service}"
    );

    // By default: no repair rights at all, no ServiceMonitor, no PrometheusRule.
    let plain = objects_of(&helm(&["template", "hw", &chart, "-n", "hasteward-system"]));
    assert!(
        !plain.iter().any(|o| o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-repair"))),
        "repair rights granted by default"
    );
    assert!(!plain
        .iter()
        .any(|o| o["kind"] == "ServiceMonitor" || o["kind"] == "PrometheusRule"));
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let dir = root().join("deploy/prometheus");
    promtool(&["check", "rules", "hasteward-rules.yaml"], &dir);
    promtool(&["test", "rules", "hasteward-rules_test.yaml"], &dir);
}

/// Every `hasteward_*` name in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("hasteward_") {
        let start = i + pos;
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        if !preceded_by_word {
            let name = &text[start..end];
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|n| n.ends_with("_seconds")))
                .unwrap_or(name);
            out.push(name.to_string());
        }
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let exported = read("crates/operator/src/metrics.rs");
    let exported: Vec<String> = metric_names(&exported)
        .into_iter()
        .filter(|n| exported.contains(&format!("\"{n}\"")))
        .collect();
    assert!(exported.len() > 20, "{exported:?}");
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/hasteward-dashboard.json")).expect("valid JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    for file in [
        "deploy/prometheus/hasteward-rules.yaml",
        "deploy/grafana/hasteward-dashboard.json",
    ] {
        let used = metric_names(&read(file));
        assert!(!used.is_empty(), "{file} names no metric");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which the operator does not export"
            );
        }
    }
}

#[test]
fn every_plain_yaml_file_under_deploy_parses() {
    let mut checked = 0;
    let mut stack = vec![root().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Helm templates are Go templates, not YAML.
                if !path.ends_with("templates") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!docs.is_empty(), "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn example_standalone_databases_are_valid_and_schedule_without_problems() {
    use hasteward_operator::config::{resolve, Inputs, StandaloneInput};
    let mut inputs = Inputs::default();
    inputs
        .repositories
        .insert("offsite".into(), (Default::default(), None));
    inputs.policies.insert(
        "nightly".into(),
        serde_json::from_value(serde_json::json!({
            "backupSchedule": "0 2 * * *", "repositories": ["offsite"]
        }))
        .unwrap(),
    );
    let mut seen = Vec::new();
    for file in ["standalone-database.yaml", "vault-and-victoriametrics.yaml"] {
        let text = read(&format!("deploy/examples/{file}"));
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            let sdb: hasteward_api::StandaloneDatabase = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{file}: not a StandaloneDatabase: {e}"));
            seen.push(format!("{:?}", sdb.spec.db_type).to_lowercase());
            inputs.standalone.push(StandaloneInput {
                namespace: sdb.metadata.namespace.clone().unwrap(),
                name: sdb.metadata.name.clone().unwrap(),
                generation: Some(1),
                spec: sdb.spec,
                last_backup: None,
                last_drill: None,
                last_triage: None,
            });
        }
    }
    assert_eq!(seen, ["postgres", "mariadb", "vault", "victoriametrics"]);
    for t in resolve(&inputs).databases {
        assert!(t.problems.is_empty(), "{}: {:?}", t.name, t.problems);
        assert!(t.backup.is_some(), "{} is not scheduled", t.name);
    }
}
