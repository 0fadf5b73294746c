//! `muster push` and `muster_collect::push` against a real Prometheus Pushgateway
//! (Debian's `prometheus-pushgateway`, started on a free loopback port and killed at
//! the end): what is pushed reads back the same through its /metrics and
//! /api/v1/metrics, PUT and POST keep their API semantics, grouping keys with `/` and
//! empty values round-trip through `@base64`, and a refused push is a clear error.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_same, http_get, muster, python_collect, python_parse, python_write, run_ok,
    run_with_input, start_pushgateway, Samples,
};
use muster_collect::push::{PushError, PushMethod, Pushgateway};
use muster_collect::{Labels, MetricFamily, MetricKind, MetricSet, Sample};
use serde_json::Value;

/// The groups the gateway holds: (grouping labels, group object).
fn groups(addr: SocketAddr) -> Vec<(BTreeMap<String, String>, Value)> {
    let a = http_get(addr, "/api/v1/metrics");
    assert_eq!(a.status, 200, "{}", a.text());
    let v: Value = serde_json::from_slice(&a.body).expect("JSON from /api/v1/metrics");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|g| {
            let labels = g["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (labels, g.clone())
        })
        .collect()
}

fn group(addr: SocketAddr, labels: &[(&str, &str)]) -> Option<Value> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    groups(addr)
        .into_iter()
        .find(|(l, _)| *l == want)
        .map(|(_, g)| g)
}

/// Metric names in a group, without the gateway's own push_*_seconds.
fn names(group: &Value) -> Vec<String> {
    let mut v: Vec<String> = group
        .as_object()
        .expect("group")
        .keys()
        .filter(|k| {
            !matches!(
                k.as_str(),
                "labels"
                    | "push_time_seconds"
                    | "push_failure_time_seconds"
                    | "last_push_successful"
            )
        })
        .cloned()
        .collect();
    v.sort();
    v
}

/// The value of an unlabelled (but for the grouping key) gauge or counter in a group.
fn value(group: &Value, name: &str) -> f64 {
    group[name]["metrics"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {group}"))
        .parse()
        .expect("number")
}

fn simple_set(metrics: &[(&str, MetricKind, f64)]) -> MetricSet {
    let mut set = MetricSet::default();
    for (name, kind, v) in metrics {
        let sample = if *kind == MetricKind::Counter {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        set.push_simple(name, "A test metric.", *kind, &sample, *v);
    }
    set
}

const GAUGE: MetricKind = MetricKind::Gauge(muster_store::GaugeMode::All);

#[test]
fn cli_push_reads_back_like_python_multiprocess_collector() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_gw, addr) = start_pushgateway(tmp.path());
    let dir = tmp.path().join("mp");
    python_write(&dir, &["types", "realistic"]);
    let gateway = format!("http://{addr}");
    run_ok(
        muster().args(["push", "--dir"]).arg(&dir).args([
            "--gateway",
            &gateway,
            "--job",
            "nightly",
            "--label",
            "instance=batch-1",
            "--label",
            "path=/var/lib/x",
            "--label",
            "empty=",
        ]),
        b"",
    );
    let grouping = [
        ("job", "nightly"),
        ("instance", "batch-1"),
        ("path", "/var/lib/x"),
        ("empty", ""),
    ];
    let g = group(addr, &grouping).expect("the group of the push, '/' and '' values intact");
    assert!(names(&g).len() > 5, "{}", names(&g).join(", "));
    assert_eq!(
        g["push_failure_time_seconds"]["metrics"][0]["value"], "0",
        "the gateway saw no failed push"
    );

    // The gateway's /metrics, less its own metrics and the grouping labels, is what
    // Python's MultiProcessCollector merges from the directory.
    let exposition = http_get(addr, "/metrics");
    assert_eq!(exposition.status, 200);
    // The gateway's own Go runtime metrics are not ours (and `go_memstats_alloc_bytes`
    // next to `go_memstats_alloc_bytes_total` is one family twice for Python's parser).
    let ours: String = exposition
        .text()
        .lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            !name.starts_with("go_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // The gateway writes bounds as Go does (`le="1"`); compare them as Python writes them.
    let all = python_parse("text", ours.as_bytes(), &["--canonical-le"]);
    let mut got: Samples = Vec::new();
    for line in all {
        let v: Value = serde_json::from_str(&line).expect("canonical sample");
        let name = v[0].as_str().expect("name");
        let mut labels = v[1].as_object().expect("labels").clone();
        if labels.get("job").and_then(Value::as_str) != Some("nightly") || name.starts_with("push_")
        {
            continue;
        }
        for (k, _) in grouping {
            labels.remove(k);
        }
        got.push(serde_json::json!([name, labels, v[2]]).to_string());
    }
    got.sort();
    assert_same(&python_collect(&dir), &got, "pushed and read back");
}

#[test]
fn put_replaces_the_group_and_post_replaces_same_name_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_gw, addr) = start_pushgateway(tmp.path());
    let gw = Pushgateway::new(&addr.to_string())
        .expect("gateway")
        .timeout(Duration::from_secs(20));
    let key = [("instance", "i1")];
    let labels = [("job", "semantics"), ("instance", "i1")];

    gw.push(
        &simple_set(&[("alpha", GAUGE, 1.0), ("beta", MetricKind::Counter, 2.0)]),
        "semantics",
        &key,
        PushMethod::Put,
    )
    .expect("PUT");
    let g = group(addr, &labels).expect("group after PUT");
    assert_eq!(names(&g), ["alpha", "beta_total"]);
    assert_eq!(value(&g, "alpha"), 1.0);
    assert_eq!(value(&g, "beta_total"), 2.0);

    // POST: beta is replaced, gamma added, alpha (not in the push) kept.
    gw.push(
        &simple_set(&[("beta", MetricKind::Counter, 20.0), ("gamma", GAUGE, 3.0)]),
        "semantics",
        &key,
        PushMethod::Post,
    )
    .expect("POST");
    let g = group(addr, &labels).expect("group after POST");
    assert_eq!(names(&g), ["alpha", "beta_total", "gamma"]);
    assert_eq!(value(&g, "alpha"), 1.0);
    assert_eq!(value(&g, "beta_total"), 20.0);
    assert_eq!(value(&g, "gamma"), 3.0);

    // PUT again: only what this push has is left.
    gw.push(
        &simple_set(&[("gamma", GAUGE, 30.0)]),
        "semantics",
        &key,
        PushMethod::Put,
    )
    .expect("PUT");
    let g = group(addr, &labels).expect("group after second PUT");
    assert_eq!(names(&g), ["gamma"]);
    assert_eq!(value(&g, "gamma"), 30.0);

    // Another grouping key is another group; the first is untouched.
    gw.push(
        &simple_set(&[("gamma", GAUGE, 5.0)]),
        "semantics",
        &[("instance", "i2")],
        PushMethod::Put,
    )
    .expect("PUT other group");
    assert_eq!(value(&group(addr, &labels).expect("group"), "gamma"), 30.0);

    // DELETE removes the group.
    gw.delete("semantics", &key).expect("DELETE");
    assert!(group(addr, &labels).is_none(), "group deleted");
    assert!(group(addr, &[("job", "semantics"), ("instance", "i2")]).is_some());
}

#[test]
fn grouping_values_with_slashes_and_odd_characters_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_gw, addr) = start_pushgateway(tmp.path());
    let gw = Pushgateway::new(&format!("http://{addr}/")).expect("gateway");
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("job/with/slashes", &[("path", "/a/b/")]),
        ("plain", &[("empty", ""), ("slash", "/")]),
        ("spaces and %", &[("v", "a b?c#d&e=f+g%h \u{e9}\u{1F600}")]),
        ("b64-alphabet", &[("v", "/??>~~~")]),
    ];
    for (job, grouping) in cases {
        gw.push(
            &simple_set(&[("roundtrip", GAUGE, 7.0)]),
            job,
            grouping,
            PushMethod::Put,
        )
        .unwrap_or_else(|e| panic!("push {job:?} {grouping:?}: {e}"));
        let mut labels = vec![("job", job)];
        labels.extend_from_slice(grouping);
        let g = group(addr, &labels).unwrap_or_else(|| {
            panic!(
                "no group {labels:?}; the gateway has {:?}",
                groups(addr).into_iter().map(|(l, _)| l).collect::<Vec<_>>()
            )
        });
        assert_eq!(value(&g, "roundtrip"), 7.0);
    }
}

#[test]
fn a_refused_push_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_gw, addr) = start_pushgateway(tmp.path());
    let gw = Pushgateway::new(&addr.to_string()).expect("gateway");
    gw.push(
        &simple_set(&[("clash", GAUGE, 1.0)]),
        "a",
        &[],
        PushMethod::Put,
    )
    .expect("first push");
    // The same name as a counter in another group is inconsistent: 400.
    let mut set = MetricSet::default();
    set.families.push(MetricFamily {
        name: "clash".into(),
        help: "A test metric.".into(),
        kind: MetricKind::Counter,
        samples: vec![Sample {
            name: "clash".into(),
            labels: Arc::new(Labels::empty()),
            value: 1.0,
            exemplar: None,
            native: None,
        }],
        utf8_names: None,
    });
    let e = gw
        .push(&set, "b", &[], PushMethod::Put)
        .expect_err("the gateway refuses an inconsistent push");
    match &e {
        PushError::Status { status, body, .. } => {
            assert_eq!(*status, 400, "{e}");
            assert!(body.contains("inconsistent"), "{e}");
        }
        other => panic!("expected a status error, got {other}"),
    }
    let message = e.to_string();
    assert!(
        message.contains("400") && message.contains("/metrics/job/b"),
        "{message}"
    );

    // The CLI: exit 1 and the gateway's message.
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("x.txt"), b"").expect("write");
    let out = run_with_input(
        muster().args(["push", "--dir"]).arg(&dir).args([
            "--gateway",
            &format!("http://{addr}/not-a-gateway-path"),
            "--job",
            "j",
        ]),
        b"",
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("404") || stderr.contains("405"), "{stderr}");

    // Usage errors: exit 2 before anything is sent.
    for args in [
        vec!["--job", "", "--gateway", "127.0.0.1:1"],
        vec![
            "--job",
            "j",
            "--gateway",
            "127.0.0.1:1",
            "--label",
            "novalue",
        ],
        vec!["--job", "j", "--gateway", "127.0.0.1:1", "--label", "job=x"],
        vec!["--job", "j", "--gateway", "ftp://x"],
    ] {
        let out = run_with_input(
            muster().args(["push", "--dir"]).arg(&dir).args(&args),
            b"",
            Duration::from_secs(30),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A missing directory: exit 2.
    let out = run_with_input(
        muster()
            .args(["push", "--dir"])
            .arg(tmp.path().join("missing"))
            .args(["--job", "j", "--gateway", &addr.to_string()]),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}
