//! The incremental collector over a directory that changes between scrapes.

use std::path::Path;
use std::sync::atomic::Ordering;

use muster_collect::{encode, Collector, Format};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind, GaugeMode};

/// Adds `delta` to `key` in the file of `kind` for process `id`.
fn add(dir: &Path, kind: FileKind, id: &str, key: &str, delta: f64) {
    set_with(dir, kind, id, key, |v| v + delta, None);
}

fn set_with(
    dir: &Path,
    kind: FileKind,
    id: &str,
    key: &str,
    f: impl Fn(f64) -> f64,
    ts: Option<f64>,
) {
    let writer = FileWriter::open(&dir.join(kind.file_name(id))).unwrap();
    let slot = unsafe { &*writer.value_ptr(key).unwrap() };
    let v = f(f64::from_bits(slot.load(Ordering::Relaxed)));
    slot.store(v.to_bits(), Ordering::Relaxed);
    if let Some(ts) = ts {
        unsafe { &*(slot as *const std::sync::atomic::AtomicU64).add(1) }
            .store(ts.to_bits(), Ordering::Relaxed);
    }
}

fn counter_key(name: &str, labels: &[(&str, &str)]) -> String {
    encode_key(name, &format!("{name}_total"), labels, "help")
}

#[test]
fn sums_counters_across_processes_and_sees_growth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Collector::new(d);
    let req = |id: &str, route: &str, delta: f64| {
        add(
            d,
            FileKind::Counter,
            id,
            &counter_key("req", &[("r", route)]),
            delta,
        )
    };
    req("1", "/a", 2.0);
    req("2", "/a", 3.0);
    let set = c.collect().unwrap();
    assert_eq!(set.value("req_total", &[("r", "/a")]), Some(5.0));

    // New entries appended to a known file, a new file, and a value update.
    req("1", "/b", 1.0);
    req("3", "/a", 10.0);
    req("2", "/a", 1.0);
    let set = c.collect().unwrap();
    assert_eq!(set.value("req_total", &[("r", "/a")]), Some(16.0));
    assert_eq!(set.value("req_total", &[("r", "/b")]), Some(1.0));
    assert_eq!(c.errors_total(), 0);
}

#[test]
fn gauge_modes_merge_like_python() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (mode, name) in [
        (GaugeMode::All, "g_all"),
        (GaugeMode::Min, "g_min"),
        (GaugeMode::Max, "g_max"),
        (GaugeMode::LiveSum, "g_sum"),
        (GaugeMode::MostRecent, "g_recent"),
    ] {
        let key = encode_key(name, name, &[], "h");
        for (id, value, ts) in [("1", 5.0, 100.0), ("2", -1.0, 300.0), ("3", 9.0, 200.0)] {
            set_with(d, FileKind::Gauge(mode), id, &key, |_| value, Some(ts));
        }
    }
    // A most-recent value never set (timestamp 0) is not shown, as in Python.
    set_with(
        d,
        FileKind::Gauge(GaugeMode::MostRecent),
        "1",
        &encode_key("g_unset", "g_unset", &[], "h"),
        |_| 4.0,
        None,
    );
    let set = Collector::new(d).collect().unwrap();
    assert_eq!(set.value("g_all", &[("pid", "2")]), Some(-1.0));
    assert_eq!(set.family("g_all").unwrap().samples.len(), 3);
    assert_eq!(set.value("g_min", &[]), Some(-1.0));
    assert_eq!(set.value("g_max", &[]), Some(9.0));
    assert_eq!(set.value("g_sum", &[]), Some(13.0));
    assert_eq!(set.value("g_recent", &[]), Some(-1.0));
    assert!(set.family("g_unset").is_none());
}

#[test]
fn histograms_are_cumulative_with_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bucket = |le: &str| encode_key("lat", "lat_bucket", &[("le", le), ("r", "x")], "h");
    for id in ["1", "2"] {
        add(d, FileKind::Histogram, id, &bucket("0.5"), 1.0);
        add(d, FileKind::Histogram, id, &bucket("+Inf"), 2.0);
        add(d, FileKind::Histogram, id, &bucket("1"), 0.0);
        add(
            d,
            FileKind::Histogram,
            id,
            &encode_key("lat", "lat_sum", &[("r", "x")], "h"),
            4.5,
        );
    }
    let set = Collector::new(d).collect().unwrap();
    let fam = set.family("lat").unwrap();
    let order: Vec<(String, Option<String>, f64)> = fam
        .samples
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.labels.get("le").map(str::to_owned),
                s.value,
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("lat_bucket".into(), Some("0.5".into()), 2.0),
            ("lat_bucket".into(), Some("1.0".into()), 2.0),
            ("lat_bucket".into(), Some("+Inf".into()), 6.0),
            ("lat_count".into(), None, 6.0),
            ("lat_sum".into(), None, 9.0),
        ]
    );
}

#[test]
fn a_foreign_histogram_entry_is_an_error_not_part_of_the_sum() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sum = encode_key("lat", "lat_sum", &[("r", "x")], "h");
    let bucket = encode_key("lat", "lat_bucket", &[("le", "+Inf"), ("r", "x")], "h");
    add(d, FileKind::Histogram, "1", &bucket, 2.0);
    add(d, FileKind::Histogram, "1", &sum, 4.5);
    // Neither Python nor muster writes a histogram's `_count`; a file that does
    // must not have it added into `_sum`.
    let count = encode_key("lat", "lat_count", &[("r", "x")], "h");
    add(d, FileKind::Histogram, "2", &count, 100.0);
    let mut c = Collector::new(d);
    let set = c.collect().unwrap();
    let fam = set.family("lat").unwrap();
    let value = |name: &str| {
        fam.samples
            .iter()
            .find(|s| *s.name == *name && s.labels.get("le").is_none())
            .map(|s| s.value)
    };
    assert_eq!(value("lat_sum"), Some(4.5));
    assert_eq!(value("lat_count"), Some(2.0));
    assert_eq!(c.errors_total(), 1);
    assert!(
        c.last_errors()
            .iter()
            .any(|(file, problem)| file.contains("_2.db") && problem.contains("lat_count")),
        "{:?}",
        c.last_errors()
    );
}

#[test]
fn deleted_and_replaced_files_are_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let live = encode_key("inflight", "inflight", &[], "h");
    set_with(
        d,
        FileKind::Gauge(GaugeMode::LiveSum),
        "w0",
        &live,
        |_| 2.0,
        None,
    );
    set_with(
        d,
        FileKind::Gauge(GaugeMode::LiveSum),
        "w1",
        &live,
        |_| 3.0,
        None,
    );
    add(d, FileKind::Counter, "w0", &counter_key("req", &[]), 7.0);
    let mut c = Collector::new(d);
    assert_eq!(c.collect().unwrap().value("inflight", &[]), Some(5.0));

    muster_store::remove_live_gauge_files(d, "w1").unwrap();
    assert_eq!(c.collect().unwrap().value("inflight", &[]), Some(2.0));
    muster_store::remove_live_gauge_files(d, "w0").unwrap();
    assert!(c.collect().unwrap().family("inflight").is_none());

    // Same name, new file (new inode): read afresh.
    let path = d.join(FileKind::Counter.file_name("w0"));
    std::fs::remove_file(&path).unwrap();
    add(d, FileKind::Counter, "w0", &counter_key("req", &[]), 1.0);
    assert_eq!(c.collect().unwrap().value("req_total", &[]), Some(1.0));
}

#[test]
fn bad_files_are_skipped_counted_and_never_fail_the_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add(d, FileKind::Counter, "1", &counter_key("ok", &[]), 7.0);
    std::fs::write(d.join("counter_2.db"), b"").unwrap();
    std::fs::write(d.join("histogram_3.db"), b"garbage garbage garbage").unwrap();
    std::fs::write(d.join("foo.db"), b"whatever").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("counter_4.db")).unwrap();
    // A valid entry whose key is not JSON.
    add(d, FileKind::Counter, "5", "not json", 1.0);

    let mut c = Collector::new(d);
    let set = c.collect().unwrap();
    assert_eq!(set.value("ok_total", &[]), Some(7.0));
    let mut bad: Vec<&str> = c.last_errors().iter().map(|(f, _)| f.as_str()).collect();
    bad.sort();
    assert_eq!(
        bad,
        [
            "counter_2.db",
            "counter_4.db",
            "counter_5.db",
            "foo.db",
            "histogram_3.db"
        ]
    );
    assert_eq!(c.errors_total(), 5);
    c.collect().unwrap();
    assert_eq!(
        c.errors_total(),
        10,
        "counted at every scrape they are skipped in"
    );

    let mut with_own = set.clone();
    c.append_own_metrics(&mut with_own);
    let text = encode(&with_own, Format::Text);
    assert!(text.contains("muster_scrape_errors_total 10.0\n"), "{text}");
}

#[test]
fn a_missing_directory_is_an_error() {
    let err = Collector::new("/nonexistent/muster").collect().unwrap_err();
    assert!(err.to_string().contains("/nonexistent/muster"), "{err}");
}

#[test]
fn a_replaced_file_is_read_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add(d, FileKind::Counter, "w0", &counter_key("a", &[]), 5.0);
    let mut c = Collector::new(d);
    assert_eq!(c.collect().unwrap().value("a_total", &[]), Some(5.0));
    // The collector holds the old file open, so its inode cannot be freed
    // and handed to the new file: the new inode number tells them apart.
    for round in 1..20 {
        let path = d.join(FileKind::Counter.file_name("w0"));
        std::fs::remove_file(&path).unwrap();
        add(
            d,
            FileKind::Counter,
            "w0",
            &counter_key("a", &[]),
            round as f64,
        );
        assert_eq!(
            c.collect().unwrap().value("a_total", &[]),
            Some(round as f64)
        );
    }
}

/// A directory big enough that a cold scrape reads it in several threads
/// (megabytes of new entries) merges exactly as a small one does.
#[test]
fn a_big_directory_read_by_several_threads_merges_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const FILES: usize = 24;
    const ROUTES: usize = 1500;
    let pad = "p".repeat(100);
    for f in 0..FILES {
        let id = format!("w{f}");
        let counters = FileWriter::open(&d.join(FileKind::Counter.file_name(&id))).unwrap();
        let gauges =
            FileWriter::open(&d.join(FileKind::Gauge(GaugeMode::All).file_name(&id))).unwrap();
        for r in 0..ROUTES {
            // Workers make their series in different orders.
            let r = if f % 2 == 0 { r } else { ROUTES - 1 - r };
            let r = (r + f * 97) % ROUTES;
            let route = format!("/r{r}/{pad}");
            let set = |w: &FileWriter, key: &str, v: f64| {
                let slot = unsafe { &*w.value_ptr(key).unwrap() };
                slot.store(v.to_bits(), Ordering::Relaxed);
            };
            set(
                &counters,
                &counter_key("req", &[("route", &route)]),
                r as f64,
            );
            set(
                &gauges,
                &encode_key("cache", "cache", &[("route", &route)], "h"),
                f as f64,
            );
        }
    }
    let mut c = Collector::new(d);
    let set = c.collect().unwrap();
    assert_eq!(c.errors_total(), 0, "{:?}", c.last_errors());
    for r in [0, 1, 777, ROUTES - 1] {
        let route = format!("/r{r}/{pad}");
        assert_eq!(
            set.value("req_total", &[("route", &route)]),
            Some((r * FILES) as f64),
            "route {r}"
        );
        assert_eq!(
            set.value("cache", &[("route", &route), ("pid", "w5")]),
            Some(5.0)
        );
    }
    assert_eq!(set.family("req").unwrap().samples.len(), ROUTES);
    assert_eq!(set.family("cache").unwrap().samples.len(), ROUTES * FILES);
    // The same again, incrementally, after a write.
    add(
        d,
        FileKind::Counter,
        "w3",
        &counter_key("req", &[("route", "new")]),
        2.0,
    );
    let again = c.collect().unwrap();
    assert_eq!(again.value("req_total", &[("route", "new")]), Some(2.0));
    assert_eq!(again, Collector::new(d).collect().unwrap());
}

/// Hundreds of files with bad ones spread among them: each file's values
/// are read under its own name, and each bad one is reported under its own.
#[test]
fn hundreds_of_files_with_bad_ones_among_them_are_each_read_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const FILES: usize = 300;
    let all = FileKind::Gauge(GaugeMode::All);
    let key = encode_key("busy", "busy", &[], "Busy.");
    for f in 0..FILES {
        set_with(d, all, &format!("w{f:03}"), &key, |_| f as f64, None);
    }
    // Bad files at the start, middle and end of the sorted order.
    std::os::unix::fs::symlink("/etc/passwd", d.join("gauge_all_w000x.db")).unwrap();
    std::fs::create_dir(d.join("gauge_all_w150x.db")).unwrap();
    std::fs::write(d.join("gauge_all_w299x.db"), b"").unwrap();

    let mut c = Collector::new(d);
    let set = c.collect().unwrap();
    // Each file's values under its own name (the `pid` label comes from it).
    for f in 0..FILES {
        let pid = format!("w{f:03}");
        assert_eq!(set.value("busy", &[("pid", &pid)]), Some(f as f64), "{pid}");
    }
    assert_eq!(set.family("busy").unwrap().samples.len(), FILES);
    assert_eq!(c.file_count(), FILES + 3);
    let problems: Vec<(&str, &str)> = c
        .last_errors()
        .iter()
        .map(|(f, p)| (f.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        problems,
        [
            (
                "gauge_all_w000x.db",
                "not a regular file (a symlink or special file); not followed"
            ),
            (
                "gauge_all_w150x.db",
                "not a regular file (a symlink or special file); not followed"
            ),
            ("gauge_all_w299x.db", "empty file (no header)"),
        ]
    );
}

/// A collector made for one scrape (`muster scrape`, `muster push`) keeps
/// nothing of the files' entries, so a second scrape with it reads them
/// all again: it says what a long-lived collector and a fresh one say.
#[test]
fn a_collector_for_one_scrape_says_what_a_long_lived_one_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let req = counter_key("req", &[("route", "/a")]);
    let temp = encode_key("temp", "temp", &[], "h");
    let mostrecent = FileKind::Gauge(GaugeMode::MostRecent);
    for w in ["w1", "w2"] {
        add(d, FileKind::Counter, w, &req, 2.0);
        set_with(d, mostrecent, w, &temp, |_| 20.0, Some(1.0));
    }
    let text = |c: &mut Collector| encode(&c.collect().unwrap(), Format::Text);
    let mut once = Collector::once(d);
    let mut long_lived = Collector::new(d);
    assert_eq!(text(&mut once), text(&mut long_lived));
    assert!(text(&mut once).contains("req_total{route=\"/a\"} 4.0\n"));

    // Values change, a worker appears, another goes.
    add(d, FileKind::Counter, "w1", &req, 1.0);
    add(d, FileKind::Counter, "w3", &req, 10.0);
    set_with(d, mostrecent, "w3", &temp, |_| 30.0, Some(2.0));
    std::fs::remove_file(d.join(FileKind::Counter.file_name("w2"))).unwrap();
    let after = text(&mut once);
    assert_eq!(after, text(&mut long_lived));
    assert_eq!(after, text(&mut Collector::new(d)));
    assert!(after.contains("req_total{route=\"/a\"} 13.0\n"), "{after}");
    assert!(after.contains("temp 30.0\n"), "{after}");
}
