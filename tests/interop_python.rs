//! Directories written by the real Python prometheus_client (several
//! processes) merged by `muster scrape` give exactly the samples Python's
//! MultiProcessCollector gives, in both exposition formats, as read back by
//! prometheus_client's own parsers.

mod common;

use common::{assert_matches_python, assert_same, python_write};

const BOTH: &[&str] = &["text", "openmetrics"];

#[test]
fn every_type_and_gauge_mode() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types"]);
    assert_matches_python(dir.path(), BOTH, "python types");
}

#[test]
fn hostile_labels_and_help() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["hostile"]);
    assert_matches_python(dir.path(), BOTH, "python hostile");
}

#[test]
fn realistic_web_app() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["realistic"]);
    assert_matches_python(dir.path(), BOTH, "python realistic");
}

#[test]
fn special_values() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["special"]);
    assert_matches_python(dir.path(), BOTH, "python special");
}

/// OpenMetrics forbids `_sum` on a histogram with negative bounds (and
/// Python's parser enforces it), so this one is compared in text only.
#[test]
fn negative_bucket_bounds_text() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["negative"]);
    assert_matches_python(dir.path(), &["text"], "python negative buckets");
}

#[test]
fn all_scenarios_in_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile", "realistic", "special"]);
    assert_matches_python(dir.path(), BOTH, "python all scenarios");
}

/// An empty directory is a valid, empty scrape in both formats.
#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let expected = common::python_collect(dir.path());
    assert!(expected.is_empty());
    for format in BOTH {
        let exposition = common::muster_scrape(dir.path(), format);
        let got = common::python_parse(format, &exposition, &[]);
        common::assert_same(&expected, &got, &format!("empty directory, {format}"));
    }
}

/// prometheus_client 0.26 accepts metric and label names outside the legacy
/// character set (`Counter('http.requests', ..., ['my.label'])`) and its
/// exposition escapes them (`http_requests_total{my_label="x"}`); muster's
/// must show the same names, parse with Python's parsers and with promtool.
#[test]
fn non_legacy_names_are_escaped_like_python() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["names"]);
    assert_matches_python(dir.path(), BOTH, "python names");
    let text = String::from_utf8(common::muster_scrape(dir.path(), "text")).unwrap();
    assert!(
        text.contains("http_requests_total{method=\"GET\",my_label=\"x\"} 6.0\n"),
        "{text}"
    );
    let out = common::run_with_input(
        std::process::Command::new(common::promtool()).args(["check", "metrics"]),
        text.as_bytes(),
        std::time::Duration::from_secs(60),
    );
    // 0: clean; 3: lint findings only (this scenario's names draw some).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool could not parse the exposition:\n{}\n{text}",
        common::output_text(&out)
    );
}

/// A gauge with a user label named `pid`: in `all`/`liveall` mode the
/// process id replaces it (Python lets the process's pid win), in the other
/// modes the merge drops it; a counter keeps it.
#[test]
fn user_pid_labels_merge_like_python() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["pid_labels"]);
    assert_matches_python(dir.path(), BOTH, "python pid labels");
}

/// Python splits a file's base name on `_`: the type is part 0, a gauge's mode
/// part 1 and its pid part 2 without its last 3 characters. Files whose id
/// holds `_` are read the same way, not skipped as foreign.
#[test]
fn file_ids_with_underscores_are_read_like_python() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types"]);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.strip_suffix(".db").unwrap();
        let renamed = if name.starts_with("gauge_") {
            format!("{stem}_node.db") // gauge_all_1234_node.db: Python's pid is "1"
        } else {
            let (kind, id) = stem.split_once('_').unwrap();
            format!("{kind}_web_{id}.db") // counter_web_1234.db
        };
        std::fs::rename(dir.path().join(&name), dir.path().join(renamed)).unwrap();
    }
    assert_matches_python(dir.path(), BOTH, "python files with `_` in their ids");
}

/// Python's collector reads `*.db` only: a directory where muster also keeps
/// native histogram buckets and exemplars (`*.muster`) gives byte for byte
/// the exposition of the same directory without them, in both formats.
#[test]
fn native_buckets_and_exemplars_are_invisible_to_python() {
    use muster_metrics::{Counter, Histogram, NativeBuckets, Store};
    const EXPOSE: &str = "import sys\n\
        from prometheus_client import CollectorRegistry, generate_latest\n\
        from prometheus_client.multiprocess import MultiProcessCollector\n\
        from prometheus_client.openmetrics.exposition import generate_latest as om\n\
        r = CollectorRegistry()\n\
        MultiProcessCollector(r, path=sys.argv[1])\n\
        sys.stdout.buffer.write(generate_latest(r) + b'----\\n' + om(r))\n";
    let expose = |dir: &std::path::Path| {
        common::run_ok(
            std::process::Command::new(common::python())
                .arg("-c")
                .arg(EXPOSE)
                .arg(dir),
            b"",
        )
    };
    let write = |dir: &std::path::Path, native: bool| {
        for (w, values) in [[0.02, 0.3, 7.0], [0.2, 0.0, 12.0]].iter().enumerate() {
            let store = Store::new(dir);
            store.set_process_id(&format!("w{w}")).unwrap();
            let mut builder = Histogram::builder("req_seconds", "Request time.")
                .buckets(&[0.1, 1.0, 10.0])
                .store(&store);
            if native {
                builder = builder.native(NativeBuckets::default());
            }
            let h = builder.family(&["route"]).unwrap();
            let c = Counter::family_in(&store, "req", "Requests.", &["route"]).unwrap();
            for v in values {
                let (h, c) = (h.with_label_values(&["/a"]), c.with_label_values(&["/a"]));
                if native {
                    h.observe_with_exemplar(
                        *v,
                        &[("trace_id", "0af7651916cd43dd8448eb211c80319c")],
                    )
                    .unwrap();
                    c.inc_with_exemplar(&[("trace_id", "b7ad6b7169203331")])
                        .unwrap();
                } else {
                    h.observe(*v);
                    c.inc();
                }
            }
        }
    };
    let (plain, with_native) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(plain.path(), false);
    write(with_native.path(), true);
    let muster_files = std::fs::read_dir(with_native.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".muster")
        })
        .count();
    assert_eq!(
        muster_files, 4,
        "native and exemplar files of two processes"
    );
    let want = expose(plain.path());
    assert!(String::from_utf8_lossy(&want).contains("req_seconds_count{route=\"/a\"} 6.0"));
    assert_eq!(
        String::from_utf8_lossy(&expose(with_native.path())),
        String::from_utf8_lossy(&want)
    );
    // muster's OpenMetrics of the directory shows the exemplars, and Python's
    // OpenMetrics parser reads it to the same samples as without them.
    let with = common::muster_scrape(with_native.path(), "openmetrics");
    let text = String::from_utf8_lossy(&with);
    assert!(
        text.contains("# {trace_id=\"0af7651916cd43dd8448eb211c80319c\"}")
            && text.contains("# {trace_id=\"b7ad6b7169203331\"} 1.0 "),
        "{text}"
    );
    let without = common::muster_scrape(plain.path(), "openmetrics");
    assert_same(
        &common::python_parse("openmetrics", &without, &[]),
        &common::python_parse("openmetrics", &with, &[]),
        "OpenMetrics with exemplars, read by Python's parser",
    );
}
