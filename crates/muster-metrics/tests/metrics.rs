//! The metrics API as application code uses it, checked through a scrape.

use muster_collect_free::scrape;
use muster_metrics::{
    Counter, Gauge, GaugeMode, Histogram, LabelSet, Store, Summary, OVERFLOW_LABEL_VALUE,
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
