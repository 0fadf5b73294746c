//! Scrape cost of a multiprocess directory (normally one written by the real
//! Python client; see `scripts/bench`).
//!
//! ```text
//! MUSTER_BENCH_SCRAPE_DIRS="w16=/path/a,w64=/path/b" cargo bench -p muster-collect --bench scrape
//! ```
//!
//! For each `label=dir` (criterion ids `<group>/<label>`):
//! - `scrape_cold`: `Collector::new` + `collect` + `encode` (text 0.0.4), what
//!   a one-shot scrape (`muster scrape`) does, minus process start.
//! - `scrape_warm`: `collect` + `encode` on a long-lived collector that has
//!   scraped the directory before (what a server's `/metrics` does).
//! - `collect_cold`, `collect_warm`, `encode`: the parts on their own.
//!
//! Times are CPU time of the benchmarking thread (user + system,
//! `CLOCK_THREAD_CPUTIME_ID`), so other load on a shared machine counts less;
//! `MUSTER_BENCH_CLOCK=wall` measures wall-clock time instead.
//!
//! Without the variable, a small directory is generated with muster's own
//! writer so the bench still runs.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use muster_collect::{encode, Collector, Format};

fn dirs() -> (Vec<(String, PathBuf)>, Option<tempfile::TempDir>) {
    if let Ok(spec) = std::env::var("MUSTER_BENCH_SCRAPE_DIRS") {
        let dirs = spec
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (label, path) = item
                    .split_once('=')
                    .expect("MUSTER_BENCH_SCRAPE_DIRS items are label=path");
                (label.to_owned(), PathBuf::from(path))
            })
            .collect();
        return (dirs, None);
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    write_own_dir(tmp.path());
    (vec![("own".to_owned(), tmp.path().to_owned())], Some(tmp))
}

/// A small directory written by this process (one "worker"), for a run
/// without Python.
fn write_own_dir(dir: &std::path::Path) {
    use muster_metrics::{Counter, Gauge, GaugeMode, Histogram, DEFAULT_BUCKETS};
    muster_store::configure(dir);
    let requests =
        Counter::family("http_requests", "Requests.", &["method", "route", "status"]).unwrap();
    let durations = Histogram::family(
        "http_request_duration_seconds",
        "Durations.",
        &["method", "route"],
        &DEFAULT_BUCKETS,
    )
    .unwrap();
    let inflight = Gauge::family(
        "http_requests_in_progress",
        "In flight.",
        &["route"],
        GaugeMode::LiveSum,
    )
    .unwrap();
    for r in 0..100 {
        let route = format!("/api/v1/resource_{r:03}/{{id}}");
        for m in ["GET", "POST"] {
            for s in ["200", "404", "500"] {
                requests.with_label_values(&[m, &route, s]).inc();
            }
            durations.with_label_values(&[m, &route]).observe(0.1);
        }
        inflight.with_label_values(&[&route]).set(1.0);
    }
}

/// CPU time of the calling thread, or wall time (`MUSTER_BENCH_CLOCK=wall`).
struct Clock {
    wall: bool,
}

impl Clock {
    fn from_env() -> Clock {
        Clock {
            wall: std::env::var("MUSTER_BENCH_CLOCK").as_deref() == Ok("wall"),
        }
    }

    fn now_ns(&self) -> u64 {
        if self.wall {
            static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            return ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64;
        }
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a valid out pointer.
        unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

impl Measurement for Clock {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

/// Shows values in ms (criterion's estimates files stay in ns).
struct Nanos;

impl ValueFormatter for Nanos {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn scrape(c: &mut Criterion<Clock>) {
    let (dirs, _tmp) = dirs();
    for (label, dir) in &dirs {
        let mut check = Collector::new(dir);
        let set = check.collect().expect("the directory is readable");
        let body = encode(&set, Format::Text);
        eprintln!(
            "scrape bench: {label} = {}: {} bytes, {} lines of text, {} scrape errors",
            dir.display(),
            body.len(),
            body.lines().count(),
            check.errors_total()
        );
    }

    let mut g = c.benchmark_group("scrape_cold");
    g.sample_size(10);
    for (label, dir) in &dirs {
        g.bench_with_input(BenchmarkId::from_parameter(label), dir, |b, dir| {
            b.iter(|| {
                let mut collector = Collector::new(dir);
                let set = collector.collect().unwrap();
                black_box(encode(&set, Format::Text))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scrape_warm");
    g.sample_size(20);
    for (label, dir) in &dirs {
        let mut collector = Collector::new(dir);
        collector.collect().unwrap();
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let set = collector.collect().unwrap();
                black_box(encode(&set, Format::Text))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("collect_cold");
    g.sample_size(10);
    for (label, dir) in &dirs {
        g.bench_with_input(BenchmarkId::from_parameter(label), dir, |b, dir| {
            b.iter(|| black_box(Collector::new(dir).collect().unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("collect_warm");
    g.sample_size(20);
    for (label, dir) in &dirs {
        let mut collector = Collector::new(dir);
        collector.collect().unwrap();
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(collector.collect().unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    for (label, dir) in &dirs {
        let set = Collector::new(dir).collect().unwrap();
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(encode(&set, Format::Text)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(Clock::from_env())
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scrape
}
criterion_main!(benches);
