//! A real Prometheus (Debian's `prometheus`, on loopback, with a temporary TSDB and
//! the shipped `deploy/prometheus/local.yml` pointed at the test's processes)
//! scrapes `muster demo` (static target), a `muster exporter` discovered through
//! `file_sd_configs` written while Prometheus runs, and a real Pushgateway. Through
//! its HTTP API: every target is `up`, the demo's request counter equals the
//! requests the test sent, `resets()` stays 0 while demo workers are SIGKILLed, and
//! a pushed batch job's metrics arrive with their own `job` label (`honor_labels`).
//! With `--enable-feature=native-histograms` Prometheus asks for protobuf first:
//! it scrapes `muster exporter` in protobuf and stores what Python's merge has.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    http, http_get, muster, python_collect, python_write, run_ok, start_pushgateway, wait_until,
    Proc,
};
use serde_json::Value;

const SCRAPE: &str = "1s";

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs an instant query; the result vector as (labels, value).
fn query(prom: SocketAddr, q: &str) -> Vec<(serde_json::Map<String, Value>, f64)> {
    let a = http_get(prom, &format!("/api/v1/query?query={}", percent_encode(q)));
    assert_eq!(a.status, 200, "query {q}: {}", a.text());
    let v: Value = serde_json::from_slice(&a.body).expect("query JSON");
    assert_eq!(v["status"], "success", "query {q}: {v}");
    v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            let labels = r["metric"].as_object().cloned().unwrap_or_default();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect()
}

/// The single value of `q`, if it has exactly one.
fn scalar(prom: SocketAddr, q: &str) -> Option<f64> {
    let r = query(prom, q);
    (r.len() == 1).then(|| r[0].1)
}

/// Waits until `q` has the single value `want`; panics with the last seen value.
fn wait_value(prom: SocketAddr, q: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        last = scalar(prom, q);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{q}: wanted {want} within {limit:?}, last value {last:?}");
}

/// Live (non-zombie) children of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let state = it.next().unwrap_or("");
        let ppid: i32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && state != "Z" && state != "X" {
            out.push(child);
        }
    }
    out
}

/// Sends `n` GET / requests to the demo; all must succeed.
fn send(demo: SocketAddr, n: u32) {
    for i in 0..n {
        let a = http(demo, "GET", "/", &[], b"")
            .unwrap_or_else(|e| panic!("request {i} to the demo: {e}"));
        assert_eq!(a.status, 200, "GET /: {}", a.text());
    }
}

/// Prometheus with `config` (written to `tmp`, and checked by promtool
/// first) and extra command-line arguments; the process and its address.
fn start_prometheus(tmp: &Path, config: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let config_path = tmp.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write config");
    let (ok, text) = common::promtool_check_config(&config_path);
    assert!(ok, "promtool check config: {text}");
    common::start_prometheus_with(tmp, &config_path, extra)
}

/// `muster demo` with 2 workers and its multiprocess directory in `tmp`,
/// logging at `log`; the process and its address, once both workers run.
fn start_demo(tmp: &Path, log: &str) -> (Proc, SocketAddr) {
    let mut demo_cmd = muster();
    demo_cmd
        .env("MUSTER_LOG", log)
        .env("MUSTER_DEMO_DB", tmp.join("walks.sqlite3"))
        .args(["demo", "-w", "2", "-b", "127.0.0.1:0", "--multiproc-dir"])
        .arg(tmp.join("demo-mp"));
    let mut demo_proc = Proc::start("muster demo", &mut demo_cmd, &tmp.join("demo.log"));
    let demo = demo_proc.wait_addr("listening addr=", Duration::from_secs(30));
    wait_until("2 demo workers", Duration::from_secs(30), || {
        (children_of(demo_proc.pid()).len() == 2).then_some(())
    });
    (demo_proc, demo)
}

/// `muster exporter` over `dir`, logging at `log`; the process and its address.
fn start_exporter(tmp: &Path, dir: &Path, log: &str) -> (Proc, SocketAddr) {
    let mut exp_cmd = muster();
    exp_cmd
        .env("MUSTER_LOG", log)
        .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(dir);
    let mut exp_proc = Proc::start("muster exporter", &mut exp_cmd, &tmp.join("exporter.log"));
    let exporter = exp_proc.wait_addr("listening addr=", Duration::from_secs(30));
    (exp_proc, exporter)
}

/// The first `name` sample Python's MultiProcessCollector merges from `dir`, as an
/// instant query that selects it by `job_labels` and its own labels, and its value.
fn python_sample_query(dir: &Path, name: &str, job_labels: &str) -> (String, f64) {
    let prefix = format!("[\"{name}\"");
    let expected = python_collect(dir);
    let sample = expected
        .iter()
        .find(|s| s.starts_with(&prefix))
        .unwrap_or_else(|| panic!("a python {name} sample"));
    let v: Value = serde_json::from_str(sample).expect("sample");
    let labels = v[1]
        .as_object()
        .expect("labels")
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).expect("label")));
    let selector: Vec<String> = std::iter::once(job_labels.to_owned())
        .chain(labels)
        .collect();
    let want: f64 = v[2].as_str().expect("value").parse().expect("number");
    (format!("{name}{{{}}}", selector.join(",")), want)
}

/// Writes a file_sd target file atomically (Prometheus watches the directory).
fn write_targets(dir: &Path, name: &str, target: SocketAddr) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let json = serde_json::json!([{ "targets": [target.to_string()], "labels": { "service": "python-app" } }]);
    std::fs::write(&tmp, json.to_string()).expect("write targets");
    std::fs::rename(&tmp, dir.join(name)).expect("rename targets");
}

#[test]
fn prometheus_scrapes_demo_exporter_and_pushgateway() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();

    // The demo: 2 workers.
    let (mut demo_proc, demo) = start_demo(t, "info");

    // The exporter over a directory written by Python processes.
    let py_dir = t.join("python-mp");
    python_write(&py_dir, &["realistic"]);
    let (mut exp_proc, exporter) = start_exporter(t, &py_dir, "info");

    // The Pushgateway, and a batch job's push.
    let (_gw, gateway) = start_pushgateway(t);
    let batch_dir = t.join("batch-mp");
    python_write(&batch_dir, &["types"]);
    run_ok(
        muster().args(["push", "--dir"]).arg(&batch_dir).args([
            "--gateway",
            &format!("http://{gateway}"),
            "--job",
            "batch_nightly",
            "--label",
            "instance=b1",
        ]),
        b"",
    );

    // Prometheus with the shipped single-host config, pointed at these processes.
    let targets = t.join("targets");
    std::fs::create_dir(&targets).expect("mkdir targets");
    let shipped = std::fs::read_to_string(common::root().join("deploy/prometheus/local.yml"))
        .expect("deploy/prometheus/local.yml");
    let config = shipped
        .replace(
            "scrape_interval: 15s",
            &format!("scrape_interval: {SCRAPE}"),
        )
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("refresh_interval: 30s", "refresh_interval: 1s")
        .replace("127.0.0.1:8000", &demo.to_string())
        .replace("127.0.0.1:9091", &gateway.to_string())
        .replace(
            "/etc/prometheus/muster-targets/",
            &format!("{}/", targets.display()),
        );
    assert!(config.contains(&demo.to_string()) && config.contains(&gateway.to_string()));
    let (mut prom_proc, prom) = start_prometheus(t, &config, &[]);

    // The static targets come up; the exporter is not known yet.
    let limit = Duration::from_secs(60);
    wait_value(prom, r#"up{job="muster"}"#, 1.0, limit);
    wait_value(prom, r#"up{job="pushgateway"}"#, 1.0, limit);
    assert!(query(prom, r#"up{job="muster-exporter"}"#).is_empty());
    // Discovered while Prometheus runs.
    write_targets(&targets, "python-app.json", exporter);
    wait_value(
        prom,
        r#"up{job="muster-exporter",service="python-app"}"#,
        1.0,
        limit,
    );

    // The exporter's series are Python's merged values.
    let (q, want) = python_sample_query(&py_dir, "http_requests_total", r#"job="muster-exporter""#);
    wait_value(prom, &q, want, limit);

    // The pushed batch job keeps its own job and instance labels.
    let (q, want) = python_sample_query(
        &batch_dir,
        "py_requests_total",
        r#"job="batch_nightly",instance="b1""#,
    );
    wait_value(prom, &q, want, limit);
    assert!(
        scalar(
            prom,
            r#"push_time_seconds{job="batch_nightly",instance="b1"}"#
        )
        .is_some_and(|t| t > 1e9),
        "push_time_seconds of the batch job"
    );

    // Requests to the demo, with workers SIGKILLed between batches: the counter
    // equals what was sent and never resets.
    let counter = r#"sum(http_requests_total{job="muster",route="/",method="GET"})"#;
    let mut sent = 0;
    send(demo, 40);
    sent += 40;
    wait_value(prom, counter, f64::from(sent), limit);
    for round in 0..3 {
        let workers = children_of(demo_proc.pid());
        assert_eq!(workers.len(), 2, "round {round}: workers {workers:?}");
        let victim = workers[round % workers.len()];
        // SAFETY: kill(2) on a worker of the demo this test started.
        unsafe {
            libc::kill(victim, libc::SIGKILL);
        }
        wait_until(
            "the killed worker's replacement",
            Duration::from_secs(30),
            || {
                let now = children_of(demo_proc.pid());
                (now.len() == 2 && !now.contains(&victim)).then_some(())
            },
        );
        // Ready again: the replacement answers.
        demo_proc.wait_ready(demo, Duration::from_secs(30));
        send(demo, 25);
        sent += 25;
        // Let Prometheus scrape between kills.
        wait_value(prom, counter, f64::from(sent), limit);
    }
    let resets = query(prom, r#"resets(http_requests_total{job="muster"}[5m])"#);
    assert!(!resets.is_empty(), "no demo series to check resets on");
    for (labels, n) in &resets {
        assert_eq!(*n, 0.0, "resets() of {labels:?}");
    }
    let bucket_resets = query(
        prom,
        r#"max(resets(http_request_duration_seconds_bucket{job="muster"}[5m]))"#,
    );
    assert_eq!(bucket_resets.len(), 1);
    assert_eq!(bucket_resets[0].1, 0.0, "a histogram bucket reset");

    // Every target is still up, and none of the processes died.
    for job in ["muster", "muster-exporter", "pushgateway"] {
        wait_value(prom, &format!("min(up{{job=\"{job}\"}})"), 1.0, limit);
    }
    demo_proc.assert_running();
    exp_proc.assert_running();
    prom_proc.assert_running();

    // A target whose file goes away is dropped.
    std::fs::remove_file(targets.join("python-app.json")).expect("rm targets");
    wait_until(
        "the exporter target to be dropped",
        Duration::from_secs(60),
        || {
            let a = http_get(prom, "/api/v1/targets?state=active");
            let v: Value = serde_json::from_slice(&a.body).ok()?;
            let active = v["data"]["activeTargets"].as_array()?;
            (!active
                .iter()
                .any(|t| t["labels"]["job"] == "muster-exporter"))
            .then_some(())
        },
    );
}

/// A W3C `traceparent` header for request `n`, and its trace id.
fn traceparent(n: u32) -> (String, String) {
    let id = format!("4bf92f3577b34da6{n:016x}");
    (format!("00-{id}-00f067aa0ba902b7-01"), id)
}

/// Debian's Prometheus 2.42 with native histograms and exemplar storage
/// scrapes `muster demo -w 2` (protobuf, as it asks for it with the
/// feature) while its workers are SIGKILLed: the duration histogram arrives
/// as a native histogram whose count follows the requests sent,
/// `histogram_count(rate(..))` equals the request counter's rate,
/// `histogram_quantile` answers, and the exemplar API returns trace ids of
/// the `traceparent` headers sent (and no others).
#[test]
fn prometheus_ingests_native_histograms_and_exemplars_across_worker_kills() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (mut demo_proc, demo) = start_demo(t, "info");
    let config = format!(
        "global:\n  scrape_interval: {SCRAPE}\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: muster\n    static_configs:\n      - targets: ['{demo}']\n"
    );
    let (mut prom_proc, prom) = start_prometheus(
        t,
        &config,
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let limit = Duration::from_secs(60);
    wait_value(prom, r#"up{job="muster"}"#, 1.0, limit);

    let mut sent_ids = std::collections::BTreeSet::new();
    let mut sent = 0u32;
    let mut send_traced = |n: u32, sent: &mut u32| {
        for _ in 0..n {
            *sent += 1;
            let (header, id) = traceparent(*sent);
            let a = http(demo, "GET", "/", &[("traceparent", &header)], b"")
                .unwrap_or_else(|e| panic!("request {sent} to the demo: {e}"));
            assert_eq!(a.status, 200, "GET /: {}", a.text());
            sent_ids.insert(id);
        }
    };
    let native_count = r#"sum(histogram_count(http_request_duration_seconds{job="muster",route="/",method="GET"}))"#;
    send_traced(40, &mut sent);
    wait_value(prom, native_count, f64::from(sent), limit);
    for round in 0..3 {
        let workers = children_of(demo_proc.pid());
        assert_eq!(workers.len(), 2, "round {round}: workers {workers:?}");
        let victim = workers[round % workers.len()];
        // SAFETY: kill(2) on a worker of the demo this test started.
        unsafe {
            libc::kill(victim, libc::SIGKILL);
        }
        wait_until("the killed worker's replacement", limit, || {
            let now = children_of(demo_proc.pid());
            (now.len() == 2 && !now.contains(&victim)).then_some(())
        });
        demo_proc.wait_ready(demo, Duration::from_secs(30));
        send_traced(25, &mut sent);
        // The native count never falls back: it reaches what was sent.
        wait_value(prom, native_count, f64::from(sent), limit);
    }

    // The native histogram's rate is the request counter's rate.
    let by_native = query(
        prom,
        r#"sum(histogram_count(rate(http_request_duration_seconds{job="muster",route="/"}[1m])))"#,
    );
    let by_counter = query(
        prom,
        r#"sum(rate(http_requests_total{job="muster",route="/"}[1m]))"#,
    );
    assert_eq!(by_native.len(), 1, "histogram_count(rate(..)) is empty");
    assert_eq!(by_counter.len(), 1);
    let (native, counter) = (by_native[0].1, by_counter[0].1);
    assert!(native > 0.0, "native rate {native}");
    // Prometheus 2.42 keeps only the native part of a histogram that has
    // both (`scrape_classic_histograms` came in 2.45), so the classic
    // `_count` is compared through the request counter, which counts the
    // same requests in the same scrapes. The two rates differ only by
    // rate()'s extrapolation at a series' start, which 2.42 limits for
    // counters (to their zero point) and not for native histograms.
    assert!(
        (native - counter).abs() <= 0.01 * counter,
        "native count rate {native} against request rate {counter}"
    );
    let quantile = query(
        prom,
        r#"histogram_quantile(0.9, sum(rate(http_request_duration_seconds{job="muster",route="/"}[1m])))"#,
    );
    assert_eq!(quantile.len(), 1, "histogram_quantile on the native series");
    assert!(
        quantile[0].1.is_finite() && quantile[0].1 > 0.0,
        "p90 {}",
        quantile[0].1
    );
    let resets = query(
        prom,
        r#"resets(http_request_duration_seconds{job="muster",route="/"}[5m])"#,
    );
    assert!(!resets.is_empty());
    for (labels, n) in &resets {
        assert_eq!(*n, 0.0, "resets() of the native histogram {labels:?}");
    }

    // Exemplars: the trace ids Prometheus stored are ones that were sent,
    // and the last request's (whose exemplar stays the latest) is among them.
    let (_, last_id) = traceparent(sent);
    let exemplar_ids = |metric: &str| -> Vec<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let a = http_get(
            prom,
            &format!(
                "/api/v1/query_exemplars?query={}&start={}&end={}",
                percent_encode(&format!("{metric}{{job=\"muster\"}}")),
                now - 600,
                now + 60
            ),
        );
        assert_eq!(a.status, 200, "query_exemplars: {}", a.text());
        let v: Value = serde_json::from_slice(&a.body).expect("exemplars JSON");
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect()
    };
    let found = wait_until("the last trace id in the exemplar store", limit, || {
        let mut ids = exemplar_ids("http_requests_total");
        ids.extend(exemplar_ids("http_request_duration_seconds_bucket"));
        ids.extend(exemplar_ids("http_request_duration_seconds"));
        ids.contains(&last_id).then_some(ids)
    });
    for id in &found {
        assert!(
            sent_ids.contains(id),
            "exemplar trace id {id} was never sent"
        );
    }
    demo_proc.assert_running();
    prom_proc.assert_running();
}

/// `value` as text for comparing (NaN equals NaN).
fn value_text(v: f64) -> String {
    muster_store::float_to_go_string(v)
}

/// A bucket bound or quantile as text for comparing (`1`, `1.0` and `1e0`
/// are the same bound).
fn bound_text(name: &str, value: &str) -> String {
    match name {
        "le" | "quantile" => value
            .parse::<f64>()
            .map(value_text)
            .unwrap_or_else(|_| value.to_owned()),
        _ => value.to_owned(),
    }
}

/// Prometheus 2.42 with native histograms enabled asks for protobuf first
/// (its `Accept` starts with the delimited MetricFamily type); the exporter
/// answers in protobuf, and every series Prometheus then stores has the value
/// of Python's merge of the same directory: counters, gauges, histogram
/// buckets, counts and sums, summaries. A muster server's workers (`muster
/// demo`) answer in protobuf as well.
#[test]
fn prometheus_scrapes_the_exporter_in_protobuf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let py_dir = t.join("python-mp");
    python_write(&py_dir, &["types", "realistic"]);
    let (exp_proc, exporter) = start_exporter(t, &py_dir, "debug");
    // And a worker's own /metrics: the demo, 2 workers.
    let (demo_proc, demo) = start_demo(t, "info,muster_server::http=debug");
    send(demo, 25);

    let config = format!(
        "global:\n  scrape_interval: {SCRAPE}\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: proto\n    static_configs:\n      - targets: ['{exporter}']\n\
         \x20 - job_name: demo\n    static_configs:\n      - targets: ['{demo}']\n"
    );
    let (_prom_proc, prom) = start_prometheus(t, &config, &["--enable-feature=native-histograms"]);
    let limit = Duration::from_secs(60);
    wait_value(prom, r#"up{job="proto"}"#, 1.0, limit);

    // What Python's merge has, as series: name and labels, value.
    let mut expected = std::collections::BTreeMap::new();
    for line in python_collect(&py_dir) {
        let v: Value = serde_json::from_str(&line).expect("a canonical sample");
        let name = v[0].as_str().expect("name").to_owned();
        let labels: std::collections::BTreeMap<String, String> = v[1]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, x)| (k.clone(), bound_text(k, x.as_str().expect("label value"))))
            .collect();
        let value: f64 = v[2].as_str().expect("value").parse().expect("a number");
        expected.insert((name, labels), value_text(value));
    }
    // What Prometheus stored from the exporter (its own families aside).
    let stored = || {
        let mut got = std::collections::BTreeMap::new();
        for (mut labels, value) in query(prom, r#"{job="proto"}"#) {
            let name = labels
                .remove("__name__")
                .and_then(|n| n.as_str().map(str::to_owned))
                .unwrap_or_default();
            labels.remove("job");
            labels.remove("instance");
            if name.starts_with("muster_") || name == "up" || name.starts_with("scrape_") {
                continue;
            }
            let labels: std::collections::BTreeMap<String, String> = labels
                .iter()
                .map(|(k, x)| (k.clone(), bound_text(k, x.as_str().unwrap_or(""))))
                .collect();
            got.insert((name, labels), value_text(value));
        }
        got
    };
    let deadline = Instant::now() + limit;
    let mut got = stored();
    while got != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = stored();
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Prometheus' series differ from Python's merge:\nmissing or different: {missing:#?}\nextra: {extra:#?}"
    );
    assert!(expected.len() > 50, "{} series", expected.len());

    // The demo's workers answer in protobuf too: the requests sent.
    wait_value(
        prom,
        r#"sum(http_requests_total{job="demo",route="/",method="GET"})"#,
        25.0,
        limit,
    );

    // And it was protobuf that Prometheus got, from both.
    for (what, log) in [
        ("exporter", exp_proc.log_text()),
        ("demo", demo_proc.log_text()),
    ] {
        assert!(
            log.contains("encoding=delimited"),
            "the {what} never answered in protobuf:\n{log}"
        );
    }
}
