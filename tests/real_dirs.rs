//! `muster scrape`, `muster exporter` and `muster push` on the directory of a
//! running `muster demo` — the most natural deployment of a sidecar exporter —
//! alone and with files of Python processes added: every output parses with
//! promtool and Python's parsers, has each family once (muster's own
//! `muster_scrape_errors_total` included, which the server's files already
//! hold), and its totals equal the server's own `/metrics`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    assert_same, http, http_get, muster, muster_scrape, output_text, promtool, python_collect,
    python_parse, python_write, run_ok, run_with_input, start_pushgateway, Proc, Samples,
};

const START: Duration = Duration::from_secs(30);

/// Families whose totals must agree: the demo's request metrics and whatever
/// Python scenario files were added (their names start with `py_`).
fn comparable(samples: &Samples) -> Samples {
    samples
        .iter()
        .filter(|s| {
            [
                "\"http_requests_total\"",
                "\"http_request_duration_seconds_",
                "\"py_",
            ]
            .iter()
            .any(|p| s.starts_with(&format!("[{p}")))
        })
        .cloned()
        .collect()
}

/// promtool must parse `exposition` (exit 0, or 3 for lint findings only) and
/// must not find a family twice.
fn promtool_parses(exposition: &[u8], context: &str) {
    let out = run_with_input(
        Command::new(promtool()).args(["check", "metrics"]),
        exposition,
        Duration::from_secs(60),
    );
    let findings = output_text(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{context}: promtool could not parse it:\n{findings}\n--- exposition ---\n{}",
        String::from_utf8_lossy(exposition)
    );
}

/// `muster_scrape_errors_total` appears exactly once, as one family.
fn scrape_errors_once(exposition: &[u8], format: &str, context: &str) {
    let text = String::from_utf8_lossy(exposition);
    let family = if format == "text" {
        "muster_scrape_errors_total"
    } else {
        "muster_scrape_errors"
    };
    let help = format!("# HELP {family} ");
    assert_eq!(
        text.lines().filter(|l| l.starts_with(&help)).count(),
        1,
        "{context}: one HELP line for {family}:\n{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("muster_scrape_errors_total"))
            .count(),
        1,
        "{context}: one muster_scrape_errors_total sample:\n{text}"
    );
}

/// Every check on one exposition; its comparable samples.
fn check_exposition(body: &[u8], format: &str, context: &str) -> Samples {
    promtool_parses(body, context);
    scrape_errors_once(body, format, context);
    comparable(&python_parse(format, body, &[]))
}

fn start_demo(dir: &Path, tmp: &Path) -> (Proc, SocketAddr) {
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .env("MUSTER_DEMO_DB", tmp.join("walks.sqlite3"))
        .args(["demo", "-w", "2", "-b", "127.0.0.1:0", "--multiproc-dir"])
        .arg(dir);
    let mut p = Proc::start("muster demo", &mut cmd, &tmp.join("demo.log"));
    let addr = p.wait_addr("listening addr=", START);
    p.wait_ready(addr, START);
    (p, addr)
}

/// Requests on every route of the demo, with several statuses.
fn traffic(addr: SocketAddr) {
    for i in 0..12 {
        let a = http(
            addr,
            "POST",
            "/walks",
            &[("Content-Type", "application/json")],
            format!(r#"{{"dog":"Rex{i}","walker":"Ann"}}"#).as_bytes(),
        )
        .expect("POST /walks");
        assert!(a.status < 500, "POST /walks: {} {}", a.status, a.text());
    }
    for path in ["/", "/walks/1", "/walks/999999", "/walks/abc", "/nowhere"] {
        http_get(addr, path);
    }
}

/// What the server itself serves (text), parsed by Python.
fn server_samples(addr: SocketAddr) -> Samples {
    let a = http_get(addr, "/metrics");
    assert_eq!(a.status, 200, "{}", a.text());
    let samples = check_exposition(&a.body, "text", "the server's own /metrics");
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("[\"http_requests_total\"")),
        "the demo counted no requests: {samples:?}"
    );
    samples
}

fn scrape_cli(dir: &Path, want: &Samples, context: &str) {
    for format in ["text", "openmetrics"] {
        let body = muster_scrape(dir, format);
        let got = check_exposition(&body, format, &format!("{context}: muster scrape {format}"));
        assert_same(want, &got, &format!("{context}: muster scrape {format}"));
    }
}

fn exporter(dir: &Path, tmp: &Path, want: &Samples, context: &str) {
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(dir);
    let mut p = Proc::start(
        "muster exporter",
        &mut cmd,
        &tmp.join(format!("exporter-{}.log", want.len())),
    );
    let addr = p.wait_addr("listening addr=", START);
    for (format, accept) in [
        ("text", None),
        (
            "openmetrics",
            Some("application/openmetrics-text;version=1.0.0"),
        ),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let a = http(addr, "GET", "/metrics", &headers, b"").expect("GET /metrics");
        assert_eq!(a.status, 200, "{}", a.text());
        let got = check_exposition(&a.body, format, &format!("{context}: exporter {format}"));
        assert_same(want, &got, &format!("{context}: exporter {format}"));
    }
}

fn push(dir: &Path, tmp: &Path, want: &Samples, context: &str) {
    let (_gw, gateway) = start_pushgateway(tmp);
    run_ok(
        muster().args(["push", "--dir"]).arg(dir).args([
            "--gateway",
            &format!("http://{gateway}"),
            "--job",
            "demo",
        ]),
        b"",
    );
    let a = http_get(gateway, "/metrics");
    assert_eq!(a.status, 200);
    // The gateway's metrics: those of our group, without the `job` and
    // `instance` labels it adds, and with bounds as Python writes them.
    let ours: String = a
        .text()
        .lines()
        .filter(|l| !l.contains("go_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut got: Samples = python_parse("text", ours.as_bytes(), &["--canonical-le"])
        .into_iter()
        .filter_map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(&line).expect("canonical sample");
            let labels = v[1].as_object_mut().expect("labels");
            if labels.remove("job")? != "demo" {
                return None;
            }
            labels.remove("instance");
            Some(v.to_string())
        })
        .collect();
    got.sort();
    assert_same(want, &comparable(&got), &format!("{context}: pushed"));
}

/// `muster scrape`, `muster exporter` and `muster push` on `dir` all show `want`.
fn every_command(dir: &Path, tmp: &Path, want: &Samples, context: &str) {
    scrape_cli(dir, want, context);
    exporter(dir, tmp, want, context);
    push(dir, tmp, want, context);
}

#[test]
fn scrape_exporter_and_push_read_a_running_demo_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    let (mut demo, addr) = start_demo(&dir, tmp.path());
    traffic(addr);
    let want = server_samples(addr);
    every_command(&dir, tmp.path(), &want, "demo directory");
    demo.assert_running();
}

/// Python processes write into the directory of the running demo: the
/// server, `muster scrape`, the exporter and a push all show the same merge,
/// and for the Python families it is what Python's collector shows.
#[test]
fn scrape_exporter_and_push_read_a_mixed_muster_and_python_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    let (mut demo, addr) = start_demo(&dir, tmp.path());
    traffic(addr);
    python_write(&dir, &["types", "hostile_labels"]);
    let want = server_samples(addr);
    let python: Samples = comparable(&python_collect(&dir))
        .into_iter()
        .filter(|s| s.starts_with("[\"py_"))
        .collect();
    let served: Samples = want
        .iter()
        .filter(|s| s.starts_with("[\"py_"))
        .cloned()
        .collect();
    assert!(python.len() > 50, "{python:?}");
    assert_same(&python, &served, "the server's merge of the Python files");
    every_command(&dir, tmp.path(), &want, "mixed directory");
    demo.assert_running();
}
