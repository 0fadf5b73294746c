//! `muster exporter` as a real long-lived process: what it serves for a directory
//! written by the real Python prometheus_client equals Python's
//! MultiProcessCollector, while files appear, grow and disappear between scrapes;
//! content negotiation, gzip, health endpoints, clean stop, and clear errors.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    assert_same, http, http_get, muster, python, python_collect, python_collect_meta, python_parse,
    python_write, run_ok, run_with_input, Proc, Samples,
};

const START: Duration = Duration::from_secs(30);

/// The exporter's own families, which Python's collector does not have.
const OWN_PREFIXES: [&str; 1] = ["[\"muster_exporter_"];

fn start_exporter(dir: &Path, tmp: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(extra);
    let mut p = Proc::start("muster exporter", &mut cmd, &tmp.join("exporter.log"));
    let addr = p.wait_addr("listening addr=", START);
    (p, addr)
}

fn without_own(samples: Samples) -> Samples {
    samples
        .into_iter()
        .filter(|s| !OWN_PREFIXES.iter().any(|p| s.starts_with(p)))
        .collect()
}

/// GET /metrics with `accept`; the body (gunzipped when the exporter compressed it).
fn scrape(addr: SocketAddr, accept: Option<&str>, gzip: bool) -> (String, Vec<u8>) {
    let mut headers = Vec::new();
    if let Some(a) = accept {
        headers.push(("Accept", a));
    }
    if gzip {
        headers.push(("Accept-Encoding", "gzip"));
    }
    let a = http(addr, "GET", "/metrics", &headers, b"").expect("GET /metrics");
    assert_eq!(a.status, 200, "/metrics: {}", a.text());
    let content_type = a.header("content-type").unwrap_or("").to_owned();
    let body = if a.header("content-encoding") == Some("gzip") {
        assert!(gzip, "gzip without Accept-Encoding: gzip");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a.body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        assert!(!gzip, "asked for gzip, got {:?}", a.headers);
        a.body
    };
    (content_type, body)
}

/// Asserts the exporter serves what Python's MultiProcessCollector sees in `dir`, in
/// both formats, samples and families.
fn assert_exporter_matches_python(addr: SocketAddr, dir: &Path, context: &str) {
    let expected = python_collect(dir);
    let expected_meta = python_collect_meta(dir);
    for (format, accept, gzip) in [
        ("text", None, false),
        (
            "openmetrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            true,
        ),
    ] {
        let (content_type, body) = scrape(addr, accept, gzip);
        if format == "text" {
            assert!(
                content_type.starts_with("text/plain; version=0.0.4"),
                "{content_type}"
            );
        } else {
            assert!(
                content_type.starts_with("application/openmetrics-text; version=1.0.0"),
                "{content_type}"
            );
        }
        let got = without_own(python_parse(format, &body, &[]));
        assert_same(&expected, &got, &format!("{context}, {format} samples"));
        let got_meta = without_own(python_parse(format, &body, &["--meta"]));
        assert_same(
            &expected_meta,
            &got_meta,
            &format!("{context}, {format} families"),
        );
    }
}

/// The value of an unlabelled sample in a text exposition.
fn sample_value(body: &[u8], name: &str) -> Option<f64> {
    String::from_utf8_lossy(body).lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

#[test]
fn exporter_serves_a_python_directory_like_multiprocess_collector() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    python_write(&dir, &["types", "hostile", "realistic"]);
    let (mut p, addr) = start_exporter(&dir, tmp.path(), &[]);
    assert_exporter_matches_python(addr, &dir, "python types+hostile+realistic");
    // The second scrape is incremental (nothing re-parsed) and still the same.
    assert_exporter_matches_python(addr, &dir, "second scrape");

    let (_, body) = scrape(addr, None, false);
    assert_eq!(
        sample_value(&body, "muster_scrape_errors_total"),
        Some(0.0),
        "no bad files here"
    );
    let files = std::fs::read_dir(&dir).expect("dir").count() as f64;
    assert_eq!(sample_value(&body, "muster_exporter_files"), Some(files));
    // Every merged sample but a histogram's `_count` is a series kept.
    let series = sample_value(&body, "muster_exporter_series").expect("muster_exporter_series");
    let merged = python_collect(&dir);
    let counts = merged
        .iter()
        .filter(|s| s.split('"').nth(1).is_some_and(|n| n.ends_with("_count")))
        .count();
    assert!(
        series >= (merged.len() - counts) as f64,
        "{series} series kept for {} merged samples",
        merged.len()
    );
    let scrapes = sample_value(&body, "muster_exporter_scrape_duration_seconds_count")
        .expect("scrape duration histogram");
    assert!(scrapes >= 5.0, "5 scrapes so far, histogram says {scrapes}");
    // promtool parses the exposition (exit 3 = only naming lints about the test's
    // own metric names, 1 = cannot parse).
    let out = run_with_input(
        Command::new(common::promtool()).args(["check", "metrics"]),
        &body,
        Duration::from_secs(60),
    );
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool check metrics could not parse the exporter's output ({code:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Health endpoints, unknown paths and methods.
    assert_eq!(http_get(addr, "/-/healthy").status, 200);
    assert_eq!(http_get(addr, "/-/ready").status, 200);
    assert_eq!(http_get(addr, "/nope").status, 404);
    let post = http(addr, "POST", "/metrics", &[], b"x").expect("POST");
    assert_eq!(post.status, 405);

    // SIGTERM: a clean exit 0.
    p.signal(libc::SIGTERM);
    let status = p
        .wait_exit(Duration::from_secs(20))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// Python writes with a fixed process id (so a second run grows the same file).
const GROW: &str = r#"
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from prometheus_client import values
values.ValueClass = values.MultiProcessValue(lambda: "grower")
from prometheus_client import Counter, Histogram
c = Counter("grow_events", "Events of the growing file.", ["n"])
h = Histogram("grow_seconds", "Durations of the growing file.", ["n"], buckets=[0.5, 1.0])
for i in range(int(sys.argv[2])):
    c.labels(str(i)).inc()
    h.labels(str(i % 7)).observe(0.25 * (i % 5))
"#;

fn python_grow(dir: &Path, series: u32) {
    run_ok(
        Command::new(python())
            .arg("-c")
            .arg(GROW)
            .arg(dir)
            .arg(series.to_string()),
        b"",
    );
}

/// What Prometheus asks for: its `Accept` header, the exact `Content-Type`
/// the exporter must answer with.
const NEGOTIATED: [(&str, &str); 5] = [
    // Prometheus 2.42 with --enable-feature=native-histograms.
    (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; escaping=underscores",
    ),
    // Prometheus 3, default scrape_protocols.
    (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    ),
    // Prometheus 3, scrape_protocols: [PrometheusText1.0.0].
    (
        "text/plain;version=1.0.0;escaping=allow-utf-8",
        "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    ),
    ("text/plain", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"),
    ("application/json", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"),
];

/// Protobuf, negotiated as Prometheus asks for it, carries the samples the
/// text exposition shows (gzipped or not), and every answer has its exact
/// Content-Type.
#[test]
fn exporter_negotiates_protobuf_and_exact_content_types() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    python_write(&dir, &["types", "hostile", "realistic"]);
    let (p, addr) = start_exporter(&dir, tmp.path(), &[]);
    for (accept, want) in NEGOTIATED {
        for gzip in [false, true] {
            let (content_type, body) = scrape(addr, Some(accept), gzip);
            assert_eq!(content_type, want, "Accept: {accept}");
            assert!(!body.is_empty(), "Accept: {accept}");
        }
    }
    // The exporter's own metrics change from one scrape to the next.
    let stable = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("muster_exporter_"))
            .collect()
    };
    let (_, text) = scrape(addr, Some("text/plain;version=0.0.4"), false);
    let expected = stable(common::text_sample_lines(&text));
    assert!(expected.len() > 50, "{} samples", expected.len());
    for gzip in [false, true] {
        let (_, body) = scrape(addr, Some(NEGOTIATED[0].0), gzip);
        let got = stable(common::protobuf_sample_lines(&body));
        assert_same(
            &expected,
            &got,
            &format!("protobuf (gzip {gzip}) against text"),
        );
    }
    drop(p);
}

#[test]
fn exporter_follows_files_appearing_growing_and_disappearing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    let (_p, addr) = start_exporter(&dir, tmp.path(), &[]);

    // Empty directory: only the exporter's own metrics.
    let (_, body) = scrape(addr, None, false);
    assert_eq!(sample_value(&body, "muster_exporter_files"), Some(0.0));
    assert!(without_own(python_parse("text", &body, &[])).is_empty());

    // Files appear.
    python_write(&dir, &["realistic"]);
    assert_exporter_matches_python(addr, &dir, "after the first writers");

    // A file grows past its first 64 KiB (new entries and larger values).
    python_grow(&dir, 20);
    assert_exporter_matches_python(addr, &dir, "small growing file");
    let before = std::fs::metadata(dir.join("counter_grower.db"))
        .expect("file")
        .len();
    python_grow(&dir, 2000);
    let after = std::fs::metadata(dir.join("counter_grower.db"))
        .expect("file")
        .len();
    assert!(after > before, "the file grew ({before} -> {after} bytes)");
    assert_exporter_matches_python(addr, &dir, "after the file grew");

    // More processes' files appear.
    python_write(&dir, &["types"]);
    assert_exporter_matches_python(addr, &dir, "after more writers");

    // Files disappear (as when live gauges' processes die, or a cleanup runs).
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("gauge_live") || name.starts_with("histogram_") {
            std::fs::remove_file(entry.path()).expect("rm");
            removed += 1;
        }
    }
    assert!(removed > 0);
    assert_exporter_matches_python(addr, &dir, "after files were removed");

    // A file replaced by a different one with the same name.
    std::fs::remove_file(dir.join("counter_grower.db")).expect("rm");
    python_grow(&dir, 3);
    assert_exporter_matches_python(addr, &dir, "after a file was replaced");

    // A bad file is skipped and counted, not a failed scrape.
    std::fs::write(dir.join("counter_999999.db"), b"garbage").expect("write");
    let (_, body) = scrape(addr, None, false);
    let errors = sample_value(&body, "muster_scrape_errors_total").expect("errors");
    assert!(errors >= 1.0, "the bad file is counted: {errors}");
    std::fs::remove_file(dir.join("counter_999999.db")).expect("rm");
    assert_exporter_matches_python(addr, &dir, "after the bad file went");

    // The directory itself disappears: not ready, /metrics says why; back when it
    // returns.
    let moved = tmp.path().join("moved");
    std::fs::rename(&dir, &moved).expect("mv");
    assert_eq!(http_get(addr, "/-/ready").status, 503);
    let failed = http_get(addr, "/metrics");
    assert_eq!(failed.status, 500);
    assert!(failed.text().contains("mp"), "{}", failed.text());
    assert_eq!(http_get(addr, "/-/healthy").status, 200);
    std::fs::rename(&moved, &dir).expect("mv back");
    assert_eq!(http_get(addr, "/-/ready").status, 200);
    assert_exporter_matches_python(addr, &dir, "after the directory came back");
    let (_, body) = scrape(addr, None, false);
    assert_eq!(
        sample_value(&body, "muster_exporter_scrape_failures_total"),
        Some(1.0)
    );
}

fn expect_usage_error(args: &[&str], needle: &str) {
    let out = run_with_input(muster().args(args), b"", Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "muster {args:?} should exit 2, got {} with:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(needle),
        "muster {args:?}: the error should mention {needle:?}:\n{stderr}"
    );
}

#[test]
fn exporter_refuses_bad_configuration_with_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("does-not-exist");
    let missing_s = missing.to_str().expect("utf-8");
    expect_usage_error(
        &["exporter", "--bind", "127.0.0.1:0", "--dir", missing_s],
        "does-not-exist",
    );
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    expect_usage_error(
        &[
            "exporter",
            "--bind",
            "127.0.0.1:0",
            "--dir",
            file.to_str().expect("utf-8"),
        ],
        "not a directory",
    );
    let dir = tmp.path().to_str().expect("utf-8");
    expect_usage_error(
        &["exporter", "--bind", "not an address", "--dir", dir],
        "cannot listen on not an address",
    );
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    expect_usage_error(
        &["exporter", "--bind", &taken_addr, "--dir", dir],
        "cannot listen on",
    );
    let web = tmp.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    )
    .expect("write");
    expect_usage_error(
        &[
            "exporter",
            "--bind",
            "127.0.0.1:0",
            "--dir",
            dir,
            "--web-config-file",
            web.to_str().expect("utf-8"),
        ],
        "web.yml",
    );
    // No --dir and no PROMETHEUS_MULTIPROC_DIR: clap's usage error, exit 2.
    let out = run_with_input(muster().args(["exporter"]), b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
}

/// `curl` (scripts/test installs it) for HTTPS requests: (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = run_with_input(
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
            .args(args),
        b"",
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn exporter_serves_tls_and_basic_auth_from_the_web_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    python_write(&dir, &["realistic"]);
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    std::fs::write(tmp.path().join("server.pem"), cert.cert.pem()).expect("write");
    std::fs::write(
        tmp.path().join("server.key"),
        cert.signing_key.serialize_pem(),
    )
    .expect("write");
    let password = "Kx4-vB9q-Tn2w-Lp7z";
    let hash = bcrypt::hash_with_result(password, 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    let web = tmp.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .expect("write");
    let (_p, addr) = start_exporter(
        &dir,
        tmp.path(),
        &["--web-config-file", web.to_str().expect("utf-8")],
    );
    let url = format!("https://{addr}/metrics");
    let ca = tmp.path().join("server.pem");
    let ca = ca.to_str().expect("utf-8");
    let (status, _) = curl(&["--cacert", ca, &url]);
    assert_eq!(status, 401, "no credentials");
    let (status, _) = curl(&["--cacert", ca, "-u", "prometheus:wrong", &url]);
    assert_eq!(status, 401, "wrong password");
    let good = format!("prometheus:{password}");
    let (status, body) = curl(&["--cacert", ca, "-u", &good, &url]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("http_requests_total"), "{body}");
    // Health stays open (muster.protect_health is off), over TLS.
    let (status, _) = curl(&["--cacert", ca, &format!("https://{addr}/-/healthy")]);
    assert_eq!(status, 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(http(addr, "GET", "/metrics", &[], b"")
        .map(|a| a.status != 200)
        .unwrap_or(true));

    // A known-weak password is refused at start: exit 2.
    let weak = tmp.path().join("weak.yml");
    let weak_hash = bcrypt::hash_with_result("secret", 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(
        &weak,
        format!("basic_auth_users:\n  prometheus: '{weak_hash}'\n"),
    )
    .expect("write");
    expect_usage_error(
        &[
            "exporter",
            "--bind",
            "127.0.0.1:0",
            "--dir",
            dir.to_str().expect("utf-8"),
            "--web-config-file",
            weak.to_str().expect("utf-8"),
        ],
        "weak.yml",
    );
}

/// An exporter started with a low soft limit on open files (systemd's default
/// is 1024, and the exporter keeps every file of the directory open and
/// mapped) still reads a directory of more files than that: it raises its
/// soft limit to the hard one. Its totals equal a fresh `muster scrape`.
#[test]
fn exporter_reads_more_files_than_its_soft_descriptor_limit() {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::Ordering;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    const FILES: u64 = 300;
    let key = muster_store::encode_key("jobs", "jobs_total", &[], "Jobs done.");
    for pid in 0..FILES {
        let w = muster_store::writer::FileWriter::open(&dir.join(format!("counter_{pid}.db")))
            .expect("write a counter file");
        // SAFETY: the value word of an entry of `w`, which lives until the store is done.
        unsafe { (*w.value_ptr(&key).expect("entry")).store(1f64.to_bits(), Ordering::Release) };
    }
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&dir);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut p = Proc::start(
        "muster exporter",
        &mut cmd,
        &tmp.path().join("exporter.log"),
    );
    let addr = p.wait_addr("listening addr=", START);
    let (_, body) = scrape(addr, None, false);
    assert_eq!(
        sample_value(&body, "jobs_total"),
        Some(FILES as f64),
        "every file counted:\n{}",
        p.log_text()
    );
    assert_eq!(sample_value(&body, "muster_scrape_errors_total"), Some(0.0));
    assert_eq!(
        sample_value(&common::muster_scrape(&dir, "text"), "jobs_total"),
        Some(FILES as f64)
    );
}

/// Shrinks `file` to `len` bytes, as `truncate -s LEN` does.
fn truncate(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

/// Scrapes twice and checks each time that the exporter lives, counts a
/// bad file, and serves what Python's collector sees in `rest` (the files
/// nobody shrank), leaving out samples of the families in `shrunk`.
fn assert_serves_the_rest(
    p: &mut Proc,
    addr: SocketAddr,
    rest: &Path,
    shrunk: &[&str],
    what: &str,
) {
    let keep = |s: &String| {
        !s.starts_with("[\"muster_scrape_errors_total")
            && !shrunk.iter().any(|f| s.starts_with(&format!("[\"{f}")))
    };
    for round in ["first scrape", "second scrape"] {
        assert!(
            p.try_exit().is_none(),
            "the exporter died:\n{}",
            p.log_text()
        );
        let expected: Samples = python_collect(rest).into_iter().filter(keep).collect();
        let (_, body) = scrape(addr, None, false);
        let got: Samples = without_own(python_parse("text", &body, &[]))
            .into_iter()
            .filter(keep)
            .collect();
        assert_same(&expected, &got, &format!("{round} after {what}"));
        assert!(
            sample_value(&body, "muster_scrape_errors_total").is_some_and(|v| v >= 1.0),
            "{round} after {what}: a bad file is counted:\n{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn a_file_truncated_under_the_exporter_is_reported_and_the_rest_served() {
    // Someone shrinks files of the directory while the exporter has them
    // mapped (`> counter_x.db`, `truncate -s`, a clean-up script): reading a
    // mapped file past its new end raises SIGBUS.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    python_write(&dir, &["types"]);
    python_grow(&dir, 3000);
    let (mut p, addr) = start_exporter(&dir, tmp.path(), &[]);
    assert_exporter_matches_python(addr, &dir, "before");

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains("grower"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let emptied = names[0].clone();
    let grower = "counter_grower.db";
    assert!(
        std::fs::metadata(dir.join(grower)).expect("grown").len() > 64 << 10,
        "the grown file spans many pages"
    );
    // The files nobody shrank, as Python sees them (Python's collector fails
    // on the whole directory with a shrunk file in it).
    let rest = tmp.path().join("rest");
    std::fs::create_dir(&rest).expect("mkdir");
    for entry in std::fs::read_dir(&dir).expect("list") {
        let name = entry.expect("entry").file_name();
        if name != *emptied && name != grower {
            std::fs::copy(dir.join(&name), rest.join(&name)).expect("copy");
        }
    }
    std::fs::copy(dir.join(grower), tmp.path().join(grower)).expect("keep");

    // Emptied: its header is gone.
    truncate(&dir.join(&emptied), 0);
    std::fs::copy(tmp.path().join(grower), rest.join(grower)).expect("copy");
    assert_serves_the_rest(&mut p, addr, &rest, &[], &format!("{emptied} was emptied"));

    // Cut to two pages: its header says more is in use than is left.
    truncate(&dir.join(grower), 8192);
    std::fs::remove_file(rest.join(grower)).expect("rm");
    assert_serves_the_rest(
        &mut p,
        addr,
        &rest,
        &["grow_events"],
        "counter_grower.db was cut short",
    );

    let log = p.log_text();
    for file in [emptied.as_str(), grower] {
        assert!(
            log.contains(&format!(
                "skipping bad metric file (or its bad part) file={file}"
            )),
            "{file} is named in the log:\n{log}"
        );
    }
}

#[test]
fn a_reached_task_limit_is_a_clear_error_never_a_panic() {
    // A container whose pids.max is reached: the exporter cannot start its
    // runtime's threads.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut cmd = common::muster_with_task_limit(tmp.path(), 1);
    cmd.args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&dir);
    let out = common::run_with_input(&mut cmd, b"", START);
    let log = common::output_text(&out);
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot start 2 threads") && log.contains("pids.max"),
        "the error names the cause:\n{log}"
    );
}

#[test]
fn too_few_descriptors_is_a_clear_error_never_a_panic() {
    // `ulimit -n` (soft and hard) from 4 to 16: the exporter either serves the
    // directory, or stops with an error exit code that names the cause.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    common::rust_write(&dir, "w0", 0);
    assert!(
        std::fs::read_dir(&dir).expect("list").count() > 0,
        "files written"
    );
    let (mut served, mut refused) = (0, 0);
    for n in 4..=16u64 {
        let mut cmd = muster();
        cmd.env("MUSTER_LOG", "info")
            .args(["exporter", "--bind", "127.0.0.1:0", "--dir"])
            .arg(&dir);
        common::limit_descriptors(&mut cmd, n);
        let name = format!("exporter-nofile-{n}");
        let mut p = Proc::start(&name, &mut cmd, &tmp.path().join(format!("{name}.log")));
        let exited = common::wait_until("it serves or stops", START, || {
            if let Some(status) = p.try_exit() {
                return Some(Some(status));
            }
            common::find_addr(&p.log_text(), "listening addr=").map(|_| None)
        });
        let log = p.log_text();
        assert!(!log.contains("panicked"), "ulimit -n {n}:\n{log}");
        match exited {
            Some(status) => {
                refused += 1;
                assert!(
                    status.code().is_some_and(|c| c != 0),
                    "ulimit -n {n}: {status:?}\n{log}"
                );
                assert!(log.contains("Too many open files"), "ulimit -n {n}:\n{log}");
            }
            None => {
                served += 1;
                // A scrape either works or is answered with an error; the
                // exporter lives on.
                let addr = common::find_addr(&log, "listening addr=").expect("address");
                if let Ok(answer) = common::http(addr, "GET", "/metrics", &[], b"") {
                    assert!(
                        [200, 500, 503].contains(&answer.status),
                        "ulimit -n {n}: {}",
                        answer.status
                    );
                }
                p.assert_running();
                p.stop_cleanly(START);
                assert!(!p.log_text().contains("panicked"), "ulimit -n {n}");
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
}
