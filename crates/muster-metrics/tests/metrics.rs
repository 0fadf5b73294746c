//! The metrics API as application code uses it, checked through a scrape.

use muster_collect_free::scrape;
use muster_metrics::{
    Counter, ExemplarError, Gauge, GaugeMode, Histogram, LabelSet, NativeBuckets, Store, Summary,
    OVERFLOW_LABEL_VALUE,
};

/// A tiny reader of this process's files, so this crate's tests do not
/// depend on muster-collect (which depends on this crate).
mod muster_collect_free {
    use muster_store::format::HEADER_SIZE;
    use muster_store::reader::{entries, MappedFile};
    use muster_store::Key;
    use std::path::Path;

    /// A sample as written: (sample name, labels, value, timestamp).
    pub type Entry = (String, Vec<(String, String)>, f64, f64);

    /// Every entry of every file.
    pub fn scrape(dir: &Path) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("exemplar_")
            {
                continue; // another entry layout, read by the exemplar tests
            }
            let map = MappedFile::open(&path).unwrap();
            let used = map.used().unwrap();
            for e in entries(map.bytes(), HEADER_SIZE, used) {
                let e = e.unwrap();
                let key = Key::parse(e.key).unwrap();
                let (value, timestamp) = map.load(e.value_pos);
                out.push((key.sample, key.labels, value, timestamp));
            }
        }
        out
    }
}

/// The (value, timestamp) of the sample with exactly these labels.
fn sample(dir: &std::path::Path, name: &str, labels: &[(&str, &str)]) -> Option<(f64, f64)> {
    scrape(dir)
        .into_iter()
        .find(|(s, l, _, _)| {
            s == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(n, v)| l.iter().any(|(a, b)| a == n && b == v))
        })
        .map(|(_, _, v, t)| (v, t))
}

fn value(dir: &std::path::Path, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(dir, name, labels).map(|(v, _)| v)
}

/// A directory and a store of its own, so tests run in parallel threads.
fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    (dir, store)
}

#[test]
fn every_type_writes_what_python_writes() {
    let (dir, s) = setup();
    let c = Counter::new_in(&s, "walks_started_total", "walks").unwrap();
    assert_eq!(
        value(dir.path(), "walks_started_total", &[]),
        Some(0.0),
        "created at 0"
    );
    c.inc();
    c.inc_by(2.5);
    c.inc_by(-4.0);
    c.inc_by(f64::NAN);
    assert_eq!(value(dir.path(), "walks_started_total", &[]), Some(3.5));

    let g = Gauge::new_in(&s, "temp", "t", GaugeMode::MostRecent).unwrap();
    g.set(7.0);
    // In a most-recent mode `set` writes the timestamp as well.
    let (v, t) = sample(dir.path(), "temp", &[]).unwrap();
    assert_eq!(v, 7.0);
    assert!(t > 0.0, "timestamp {t}");

    let h = Histogram::new_in(&s, "dist", "d", &[0.0, 50.0, 1e6]).unwrap();
    h.observe(0.0);
    h.observe(30.0);
    h.observe(2e6);
    h.observe(f64::NAN);
    // Non-cumulative counts; NaN is summed but counted in no bucket, as in Python.
    for (le, count) in [("0.0", 1.0), ("50.0", 1.0), ("1e+06", 0.0), ("+Inf", 1.0)] {
        assert_eq!(
            value(dir.path(), "dist_bucket", &[("le", le)]),
            Some(count),
            "le={le}"
        );
    }
    assert_eq!(h.count(), 3.0);
    assert!(h.sum().is_nan());

    let summary = Summary::new_in(&s, "size", "s").unwrap();
    summary.observe(3.0);
    summary.observe(4.0);
    assert_eq!(value(dir.path(), "size_count", &[]), Some(2.0));
    assert_eq!(value(dir.path(), "size_sum", &[]), Some(7.0));
}

#[test]
fn most_recent_gauge_keeps_every_add_from_every_thread() {
    let (dir, s) = setup();
    let g = Gauge::new_in(&s, "recent", "r", GaugeMode::MostRecent).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    g.inc();
                }
            });
        }
    });
    let (v, t) = sample(dir.path(), "recent", &[]).unwrap();
    assert_eq!(v, 200_000.0);
    assert!(t > 0.0, "timestamp {t}");
}

#[test]
fn families_bound_their_label_sets() {
    let (dir, s) = setup();
    let f = Counter::family_in(&s, "hits", "h", &["path"])
        .unwrap()
        .with_label_set_limit(3);
    for i in 0..10 {
        f.with_label_values(&[&format!("/p{i}")]).inc();
    }
    assert_eq!(f.len(), 3);
    assert_eq!(
        value(dir.path(), "hits_total", &[("path", OVERFLOW_LABEL_VALUE)]),
        Some(7.0)
    );
    assert_eq!(
        value(
            dir.path(),
            "muster_label_sets_dropped_total",
            &[("family", "hits")]
        ),
        Some(7.0)
    );
    // Known label sets still work past the limit.
    f.with_label_values(&["/p0"]).inc();
    assert_eq!(
        value(dir.path(), "hits_total", &[("path", "/p0")]),
        Some(2.0)
    );
}

#[test]
fn long_label_values_are_cut_and_wrong_counts_never_panic() {
    let (dir, s) = setup();
    let f = Counter::family_in(&s, "req", "r", &["a", "b"]).unwrap();
    let huge = "x".repeat(1 << 20);
    f.with_label_values(&[&huge, "y"]).inc();
    let cut = "x".repeat(muster_metrics::MAX_LABEL_VALUE_BYTES);
    assert_eq!(
        value(dir.path(), "req_total", &[("a", &cut), ("b", "y")]),
        Some(1.0)
    );
    f.with_label_values(&["only"]).inc();
    assert_eq!(
        value(dir.path(), "req_total", &[("a", "only"), ("b", "")]),
        Some(1.0)
    );
    assert!(f.try_with_label_values(&["1", "2", "3"]).is_err());
    // The file stays small however large the value was.
    let size = std::fs::metadata(
        dir.path()
            .join(format!("counter_{}.db", std::process::id())),
    )
    .unwrap()
    .len();
    assert!(size <= 1 << 16, "{size}");
}

struct Route<'a> {
    method: &'a str,
    route: &'a str,
}

impl LabelSet for Route<'_> {
    const NAMES: &'static [&'static str] = &["method", "route"];
    fn values(&self) -> impl AsRef<[&str]> {
        [self.method, self.route]
    }
}

#[test]
fn typed_label_sets() {
    let (dir, s) = setup();
    let f = Histogram::typed_family_in::<Route>(&s, "lat", "l", &muster_metrics::DEFAULT_BUCKETS)
        .unwrap();
    f.get(&Route {
        method: "GET",
        route: "/w/{id}",
    })
    .observe(0.2);
    assert_eq!(
        value(
            dir.path(),
            "lat_bucket",
            &[("method", "GET"), ("route", "/w/{id}"), ("le", "0.25")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            dir.path(),
            "lat_sum",
            &[("method", "GET"), ("route", "/w/{id}")]
        ),
        Some(0.2)
    );
}

#[test]
fn invalid_definitions_are_errors() {
    let (_dir, s) = setup();
    assert!(Counter::new_in(&s, "bad-name", "x").is_err());
    assert!(Histogram::family_in(&s, "h", "x", &["le"], &[1.0]).is_err());
    assert!(Summary::family_in(&s, "s", "x", &["quantile"]).is_err());
    assert!(Histogram::new_in(&s, "h2", "x", &[2.0, 1.0]).is_err());
    assert!(Gauge::family_in(&s, "g", "x", &["a", "a"], GaugeMode::All).is_err());
}

/// The native buckets of `dir`: (sample, schema, index, count).
fn native_buckets(dir: &std::path::Path) -> Vec<(String, i32, i32, f64)> {
    let mut out: Vec<_> = scrape(dir)
        .into_iter()
        .filter_map(|(sample, labels, value, _)| {
            let get = |n: &str| labels.iter().find(|(k, _)| k == n)?.1.parse::<i32>().ok();
            Some((sample, get("__schema")?, get("__index")?, value))
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[test]
fn native_buckets_go_to_their_own_file_in_client_golangs_layout() {
    let (dir, store) = setup();
    let h = Histogram::builder("lat", "Latency.")
        .native(NativeBuckets::with_schema(0).unwrap())
        .store(&store)
        .build()
        .unwrap();
    for v in [1.0, 1.5, 2.0, 3.0, -1.5, 0.0, f64::NAN] {
        h.observe(v);
    }
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        [format!("native_{}.muster", std::process::id())],
        "native only: no *.db"
    );
    // Schema 0: (0.5, 1] is 0, (1, 2] is 1, (2, 4] is 2.
    assert_eq!(
        native_buckets(dir.path()),
        [
            ("lat_negative".into(), 0, 1, 1.0),
            ("lat_positive".into(), 0, 0, 1.0),
            ("lat_positive".into(), 0, 1, 2.0),
            ("lat_positive".into(), 0, 2, 1.0),
        ]
    );
    assert_eq!(value(dir.path(), "lat_zero_count", &[]), Some(1.0));
    assert_eq!(value(dir.path(), "lat_schema", &[]), Some(0.0));
    assert_eq!(
        value(dir.path(), "lat_zero_threshold", &[]),
        Some(2f64.powi(-128))
    );
    assert!(
        value(dir.path(), "lat_sum", &[]).unwrap().is_nan(),
        "NaN is added to the sum"
    );
    assert_eq!(h.count(), 6.0, "NaN is counted in no bucket");
}

#[test]
fn the_bucket_limit_halves_the_resolution_and_keeps_every_count() {
    let (dir, store) = setup();
    let h = Histogram::builder("big", "Spread out.")
        .buckets(&[1.0])
        .native(NativeBuckets::with_schema(3).unwrap().max_buckets(4))
        .store(&store)
        .build()
        .unwrap();
    let values: Vec<f64> = (1..=200).map(|i| f64::from(i) * 0.37).collect();
    for v in &values {
        h.observe(*v);
    }
    let schema = h.native_schema().unwrap();
    assert!(schema < 3, "the limit reduced the schema (now {schema})");
    let buckets = native_buckets(dir.path());
    let total: f64 = buckets.iter().map(|b| b.3).sum();
    assert_eq!(total, 200.0, "no count is lost when the resolution changes");
    assert_eq!(h.native_count(), Some(200.0));
    assert_eq!(h.count(), 200.0, "classic buckets alongside");
    let at_last: std::collections::BTreeSet<i32> = buckets
        .iter()
        .filter(|b| b.1 == i32::from(schema))
        .map(|b| b.2)
        .collect();
    assert!(at_last.len() <= 4, "{at_last:?}");
    // Everything reduced to the lowest schema fits the limit.
    let reduced: std::collections::BTreeSet<i32> = buckets
        .iter()
        .map(|b| muster_metrics::reduce_index(b.2, b.1, i32::from(schema)))
        .collect();
    assert!(reduced.len() <= 4, "{reduced:?}");
}

#[test]
fn exemplars_are_kept_per_series_and_bad_labels_are_an_error_not_a_lost_count() {
    use muster_store::format::{EXEMPLAR_PAYLOAD, HEADER_SIZE};
    use muster_store::reader::{entries_sized, MappedFile};
    let (dir, store) = setup();
    let c = Counter::new_in(&store, "jobs", "Jobs.").unwrap();
    c.inc_with_exemplar(&[("trace_id", "abc")]).unwrap();
    let h = Histogram::new_in(&store, "lat", "Latency.", &[0.1, 1.0]).unwrap();
    h.observe_with_exemplar(0.5, &[("trace_id", "def")])
        .unwrap();
    let long = "x".repeat(200);
    assert_eq!(
        c.inc_with_exemplar(&[("trace_id", &long)]),
        Err(ExemplarError::TooLong(208))
    );
    assert_eq!(c.get(), 2.0);
    let path = dir
        .path()
        .join(format!("exemplar_{}.muster", std::process::id()));
    let map = MappedFile::open(&path).unwrap();
    let mut found = Vec::new();
    for e in entries_sized(
        map.bytes(),
        HEADER_SIZE,
        map.used().unwrap(),
        EXEMPLAR_PAYLOAD,
    ) {
        let e = e.unwrap();
        let key = muster_store::Key::parse(e.key).unwrap();
        let ex = map.load_exemplar(e.value_pos).unwrap();
        found.push((key.sample, key.labels, ex.labels[0].1.clone(), ex.value));
    }
    assert_eq!(
        found,
        [
            ("jobs_total".into(), vec![], "abc".into(), 1.0),
            (
                "lat_bucket".into(),
                vec![("le".into(), "1.0".into())],
                "def".into(),
                0.5
            ),
        ]
    );
}
