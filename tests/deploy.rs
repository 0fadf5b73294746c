//! The shipped deployment files are valid and consistent:
//!
//! - `deploy/prometheus/*.yml` pass `promtool check config`; the Kubernetes one's
//!   relabel rules are run by a real Prometheus (Debian builds it without
//!   Kubernetes discovery, so its `kubernetes_sd_configs` are swapped for
//!   `file_sd_configs` whose targets carry the same `__meta_kubernetes_*` labels);
//! - the core kinds in `deploy/kubernetes/` pass `kubernetes-validate --strict`;
//! - ServiceMonitor and PodMonitor pass the Prometheus Operator's API schemas (from
//!   the npm package `@kubernetes-models/prometheus-operator`, tests/node/);
//! - the Deployment's pieces agree with each other and with muster (the
//!   multiprocess directory is a subdirectory of the in-memory emptyDir, the grace
//!   period covers preStop + --graceful-timeout, ports and names line up), and
//!   muster really refuses the emptyDir's 0777 mount itself but starts in the
//!   subdirectory.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    debian_tool, http_get, muster, output_text, promtool_check_config, python, python_write, root,
    run_with_input, Proc,
};
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

/// Every YAML document of `files`, as JSON (PyYAML, which kubernetes-validate uses).
fn yaml_docs(files: &[PathBuf]) -> Vec<Value> {
    let out = run_with_input(
        Command::new(python())
            .args([
                "-c",
                "import json, sys, yaml\n\
                 docs = []\n\
                 for f in sys.argv[1:]:\n\
                 \x20   with open(f) as fh:\n\
                 \x20       docs += [d for d in yaml.safe_load_all(fh) if d]\n\
                 json.dump(docs, sys.stdout)",
            ])
            .args(files),
        b"",
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "cannot read YAML (PyYAML comes with kubernetes-validate; run scripts/test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON documents")
}

fn k8s_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "deploy/kubernetes has {files:?}");
    files
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in deploy/kubernetes"))
}

// --- Prometheus configs ---------------------------------------------------------

/// deploy/prometheus/kubernetes.yml with each `kubernetes_sd_configs` (role R)
/// replaced by `file_sd_configs` reading `<dir>/R.json`, and the password file
/// moved to `password`.
fn kubernetes_config_for_file_sd(dir: &Path, password: &Path) -> String {
    let text = std::fs::read_to_string(deploy("prometheus/kubernetes.yml")).expect("read");
    let mut out = String::new();
    let mut roles = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "kubernetes_sd_configs:" {
            let indent = &line[..line.len() - line.trim_start().len()];
            let role_line = lines.next().expect("a role line");
            let role = role_line
                .trim()
                .strip_prefix("- role:")
                .expect("`- role: R` right after kubernetes_sd_configs")
                .trim()
                .to_owned();
            out.push_str(&format!(
                "{indent}file_sd_configs:\n{indent}  - files: [\"{}\"]\n{indent}    refresh_interval: 1s\n",
                dir.join(format!("{role}.json")).display()
            ));
            roles.push(role);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(
        roles,
        ["endpoints", "pod"],
        "the two roles of kubernetes.yml"
    );
    out.replace(
        "/etc/prometheus/secrets/muster-scrape-auth/password",
        &password.display().to_string(),
    )
    .replace("scrape_interval: 15s", "scrape_interval: 1s")
    .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
}

#[test]
fn prometheus_configs_pass_promtool() {
    let (ok, text) = promtool_check_config(&deploy("prometheus/local.yml"));
    assert!(
        ok,
        "promtool check config deploy/prometheus/local.yml:\n{text}"
    );

    // Debian's promtool has no Kubernetes discovery: then the only complaint
    // allowed is about kubernetes_sd_configs itself.
    let (ok, text) = promtool_check_config(&deploy("prometheus/kubernetes.yml"));
    if !ok {
        let other: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FAILED") || l.contains("line "))
            .filter(|l| !l.contains("field kubernetes_sd_configs not found"))
            .filter(|l| !l.contains("unmarshal errors"))
            .collect();
        assert!(
            other.is_empty(),
            "promtool check config deploy/prometheus/kubernetes.yml:\n{text}"
        );
    }
    // Everything else in it (relabel regexes, basic auth, ...) is checked with the
    // discovery swapped.
    let tmp = tempfile::tempdir().expect("tempdir");
    let password = tmp.path().join("password");
    std::fs::write(&password, "test-password\n").expect("write");
    let config = tmp.path().join("kubernetes-file-sd.yml");
    std::fs::write(
        &config,
        kubernetes_config_for_file_sd(tmp.path(), &password),
    )
    .expect("write");
    let (ok, text) = promtool_check_config(&config);
    assert!(ok, "promtool check config (file_sd variant):\n{text}");
}

/// Active targets of `job`: (labels, health, scrapeUrl).
fn active_targets(
    prom: std::net::SocketAddr,
    job: &str,
) -> Vec<(BTreeMap<String, String>, String, String)> {
    let a = http_get(prom, "/api/v1/targets?state=active");
    let v: Value = serde_json::from_slice(&a.body).expect("targets JSON");
    v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["labels"]["job"] == job)
        .map(|t| {
            let labels = t["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                labels,
                t["health"].as_str().unwrap_or_default().to_owned(),
                t["scrapeUrl"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn kubernetes_relabel_rules_work_in_a_real_prometheus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    // A muster exporter stands in for the annotated pods and services.
    let mp = t.join("mp");
    python_write(&mp, &["realistic"]);
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&mp);
    let mut exporter = Proc::start("muster exporter", &mut cmd, &t.join("exporter.log"));
    let exp = exporter.wait_addr("listening addr=", Duration::from_secs(30));
    let port = exp.port().to_string();

    let sd = t.join("sd");
    std::fs::create_dir(&sd).expect("mkdir");
    let pod = |name: &str, scrape: &str, phase: &str| {
        serde_json::json!({
            // The pod's own address and declared port: the annotation moves the port.
            "targets": ["127.0.0.1:8000"],
            "labels": {
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
                "__meta_kubernetes_pod_annotation_prometheus_io_port": port,
                "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
                "__meta_kubernetes_pod_phase": phase,
                "__meta_kubernetes_namespace": "muster",
                "__meta_kubernetes_pod_name": name,
                "__meta_kubernetes_pod_container_name": "metrics",
                "__meta_kubernetes_pod_label_app_kubernetes_io_name": "shop",
            }
        })
    };
    let pods = serde_json::json!([
        pod("shop-1", "true", "Running"),
        pod("shop-unannotated", "false", "Running"),
        pod("shop-done", "true", "Succeeded"),
    ]);
    let endpoints = serde_json::json!([{
        "targets": ["127.0.0.1:80"],
        "labels": {
            "__meta_kubernetes_service_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_service_annotation_prometheus_io_port": port,
            "__meta_kubernetes_service_annotation_prometheus_io_path": "/metrics",
            "__meta_kubernetes_endpoint_port_number": "80",
            "__meta_kubernetes_namespace": "muster",
            "__meta_kubernetes_service_name": "muster-demo",
            "__meta_kubernetes_service_label_app_kubernetes_io_name": "muster-demo",
            "__meta_kubernetes_pod_name": "muster-demo-abc",
        }
    }, {
        "targets": ["127.0.0.1:81"],
        "labels": {
            "__meta_kubernetes_service_annotation_prometheus_io_scrape": "false",
            "__meta_kubernetes_service_name": "other",
        }
    }]);
    std::fs::write(sd.join("pod.json"), pods.to_string()).expect("write");
    std::fs::write(sd.join("endpoints.json"), endpoints.to_string()).expect("write");
    let password = t.join("password");
    std::fs::write(&password, "test-password\n").expect("write");
    let config = t.join("prometheus.yml");
    std::fs::write(&config, kubernetes_config_for_file_sd(&sd, &password)).expect("write");

    let (mut prometheus, prom) = common::start_prometheus(t, &config);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (pods, services) = loop {
        let pods = active_targets(prom, "kubernetes-pods");
        let services = active_targets(prom, "kubernetes-service-endpoints");
        let healthy = |ts: &[(BTreeMap<String, String>, String, String)]| {
            !ts.is_empty() && ts.iter().all(|(_, h, _)| h == "up")
        };
        if healthy(&pods) && healthy(&services) {
            break (pods, services);
        }
        assert!(
            Instant::now() < deadline,
            "targets not up in time: pods {pods:?}, services {services:?}\n{}",
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Only the annotated, running pod; its address moved to the annotated port.
    assert_eq!(pods.len(), 1, "{pods:?}");
    let (labels, _, url) = &pods[0];
    assert_eq!(url, &format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(labels["pod"], "shop-1");
    assert_eq!(labels["namespace"], "muster");
    assert_eq!(labels["container"], "metrics");
    assert_eq!(labels["app_kubernetes_io_name"], "shop");
    assert_eq!(services.len(), 1, "{services:?}");
    let (labels, _, url) = &services[0];
    assert_eq!(url, &format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(labels["service"], "muster-demo");
    assert_eq!(labels["pod"], "muster-demo-abc");
    assert_eq!(labels["app_kubernetes_io_name"], "muster-demo");
    exporter.assert_running();
    prometheus.assert_running();
}

// --- Kubernetes manifests ---------------------------------------------------------

fn kubernetes_validate() -> PathBuf {
    let bin = python()
        .parent()
        .expect("venv bin")
        .join("kubernetes-validate");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test (it installs tests/python/requirements.txt)",
        bin.display()
    );
    bin
}

#[test]
fn core_kinds_pass_kubernetes_validate_strict() {
    let core: Vec<PathBuf> = k8s_files()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.contains("monitor")
        })
        .collect();
    let out = run_with_input(
        Command::new(kubernetes_validate())
            .arg("--strict")
            .args(&core),
        b"",
        Duration::from_secs(120),
    );
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict:\n{text}"
    );
    let docs = yaml_docs(&core);
    for d in &docs {
        let kind = d["kind"].as_str().expect("kind").to_ascii_lowercase();
        let name = d["metadata"]["name"].as_str().expect("name");
        assert!(
            text.contains(&format!("passed for resource {kind}/{name}")),
            "{kind}/{name} was not validated:\n{text}"
        );
    }
    for kind in [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "Secret",
        "Namespace",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "no {kind}");
    }

    // The validator is strict for real: a misspelt field fails.
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken.yaml");
    let text = std::fs::read_to_string(deploy("kubernetes/deployment.yaml")).expect("read");
    std::fs::write(
        &broken,
        text.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:"),
    )
    .expect("write");
    let out = run_with_input(
        Command::new(kubernetes_validate())
            .arg("--strict")
            .arg(&broken),
        b"",
        Duration::from_secs(120),
    );
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted a misspelt field: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn node() -> PathBuf {
    let node = debian_tool("node", "MUSTER_NODE", "nodejs");
    let modules = root().join("tests/node/node_modules/@kubernetes-models/prometheus-operator");
    assert!(
        modules.is_dir(),
        "{} is missing: run scripts/test (it runs `npm ci` in tests/node)",
        modules.display()
    );
    node
}

/// Runs tests/node/validate-monitors.mjs on `docs`: (success, output).
fn validate_monitors(docs: &[Value]) -> (bool, String) {
    let input = serde_json::to_vec(docs).expect("json");
    let out = run_with_input(
        Command::new(node())
            .current_dir(root().join("tests/node"))
            .arg("validate-monitors.mjs"),
        &input,
        Duration::from_secs(60),
    );
    (out.status.success(), output_text(&out))
}

#[test]
fn monitors_pass_the_prometheus_operator_schemas() {
    let files: Vec<PathBuf> = k8s_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("monitor"))
        .collect();
    let docs = yaml_docs(&files);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"ServiceMonitor") && kinds.contains(&"PodMonitor"));
    let (ok, text) = validate_monitors(&docs);
    assert!(ok, "Prometheus Operator schema validation:\n{text}");
    assert_eq!(text.matches("OK ").count(), 2, "{text}");

    // The schemas are enforced: a bad scheme and a missing selector fail.
    let mut bad = docs.clone();
    for d in &mut bad {
        if d["kind"] == "ServiceMonitor" {
            d["spec"]["endpoints"][0]["scheme"] = Value::from("ftp");
        } else {
            d["spec"].as_object_mut().expect("spec").remove("selector");
        }
    }
    let (ok, text) = validate_monitors(&bad);
    assert!(!ok, "invalid monitors passed:\n{text}");
    assert_eq!(text.matches("FAIL ").count(), 2, "{text}");
}

// --- Consistency ------------------------------------------------------------------

fn arg_value<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    args.iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

#[test]
fn deployment_pieces_agree_with_each_other_and_with_muster() {
    let docs = yaml_docs(&k8s_files());
    let deployment = find(&docs, "Deployment", "muster-demo");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = container["args"].as_array().expect("args");
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();

    // The multiprocess directory: a strict subdirectory of an in-memory emptyDir
    // with a size limit.
    let mp = env["PROMETHEUS_MULTIPROC_DIR"];
    let mount = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| {
            let p = m["mountPath"].as_str().unwrap_or("");
            mp.starts_with(&format!("{p}/"))
        })
        .expect("a mount above PROMETHEUS_MULTIPROC_DIR");
    assert_ne!(
        mount["mountPath"].as_str(),
        Some(mp),
        "must be a subdirectory"
    );
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the volume");
    assert_eq!(volume["emptyDir"]["medium"], "Memory");
    assert!(volume["emptyDir"]["sizeLimit"].is_string());

    // Probes on muster's health endpoints.
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");

    // Shutdown: preStop + --graceful-timeout fit in the grace period with room.
    let graceful: u64 = arg_value(args, "--graceful-timeout")
        .expect("--graceful-timeout")
        .parse()
        .expect("number");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        grace >= pre_stop + graceful + 5,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} + graceful {graceful} + 5"
    );

    // Hardening and resources.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // Ports: the metrics port is --metrics-bind's, named `metrics`, used by the
    // Service, both monitors and the NetworkPolicy (monitoring namespace only).
    let metrics_bind = arg_value(args, "--metrics-bind").expect("--metrics-bind");
    let ports = container["ports"].as_array().expect("ports");
    let metrics_port = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert!(metrics_bind.ends_with(&format!(":{}", metrics_port["containerPort"])));
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics_port["containerPort"].to_string()
    );
    let service = find(&docs, "Service", "muster-demo");
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["name"] == "metrics" && p["targetPort"] == "metrics"));
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (kind, key) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let m = find(&docs, kind, "muster-demo");
        assert_eq!(m["spec"][key][0]["port"], "metrics", "{kind}");
        for (k, v) in m["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector")
        {
            let source = if kind == "ServiceMonitor" {
                &service["metadata"]["labels"]
            } else {
                labels
            };
            assert_eq!(&source[k], v, "{kind} selector {k}");
        }
    }
    let policy = find(&docs, "NetworkPolicy", "muster-demo");
    let rules = policy["spec"]["ingress"].as_array().expect("ingress");
    let metrics_rules: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["port"] == "metrics"))
        })
        .collect();
    assert_eq!(metrics_rules.len(), 1, "one rule for the metrics port");
    assert_eq!(
        metrics_rules[0]["from"],
        serde_json::json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    assert!(
        rules.iter().all(|r| r["from"].is_array()
            || !r["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["port"] == "metrics"))),
        "no rule opens the metrics port to everyone"
    );

    // Why the subdirectory: muster refuses the emptyDir's 0777 mount itself, and
    // starts in a subdirectory of it.
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = tmp.path().join("run-muster");
    std::fs::create_dir(&mount).expect("mkdir");
    std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = run_with_input(
        muster()
            .env("PROMETHEUS_MULTIPROC_DIR", &mount)
            .env("MUSTER_DEMO_DB", tmp.path().join("walks.sqlite3"))
            .args(["demo", "-w", "1", "-b", "127.0.0.1:0"]),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(
        refused.status.code(),
        Some(2),
        "muster must refuse a 0777 directory: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut cmd = muster();
    cmd.env("PROMETHEUS_MULTIPROC_DIR", mount.join("metrics"))
        .env("MUSTER_DEMO_DB", tmp.path().join("walks.sqlite3"))
        .env("MUSTER_LOG", "info")
        .args(["demo", "-w", "1", "-b", "127.0.0.1:0"]);
    let mut demo = Proc::start("muster demo", &mut cmd, &tmp.path().join("demo.log"));
    let addr = demo.wait_addr("listening addr=", Duration::from_secs(30));
    demo.wait_ready(addr, Duration::from_secs(30));
    let mode = std::fs::metadata(mount.join("metrics"))
        .expect("created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the subdirectory is private");
}

#[test]
fn python_app_runs_gunicorn_under_muster_run() {
    let docs = yaml_docs(&k8s_files());
    let deployment = find(&docs, "Deployment", "python-app");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["muster"]));
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run");
    let split = args
        .iter()
        .position(|a| *a == "--")
        .expect("-- before the command");
    let (flags, command) = (&args[1..split], &args[split + 1..]);
    assert_eq!(command[0], "gunicorn");
    assert!(command.contains(&"--bind=fd://3") && command.contains(&"--workers=1"));
    // muster's probes are on the metrics port (the app port is the app's), which
    // is --metrics-bind's.
    let metrics_bind = flags
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-bind="))
        .expect("--metrics-bind");
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a metrics port");
    assert!(metrics_bind.ends_with(&format!(":{}", port["containerPort"])));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let graceful: u64 = flags
        .iter()
        .find_map(|a| a.strip_prefix("--graceful-timeout="))
        .expect("--graceful-timeout")
        .parse()
        .expect("seconds");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop");
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace")
            >= pre_stop + graceful + 5
    );
    // The flags are muster run's: the real binary accepts them (the web config
    // file exists only in the cluster).
    let out = run_with_input(
        muster()
            .arg("run")
            .args(flags.iter().filter(|f| !f.starts_with("--web-config-file")))
            .args(["--check-config", "--", "true"]),
        b"",
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "muster run {flags:?}: {}",
        output_text(&out)
    );
}
