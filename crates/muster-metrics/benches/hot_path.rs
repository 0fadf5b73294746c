//! Hot path of muster's metrics next to the official in-memory
//! `prometheus-client` crate, measured in the same run.
//!
//! `cargo bench -p muster-metrics --bench hot_path`
//!
//! Groups (criterion ids `<group>/<impl>`):
//! - `counter_inc`: `inc()` on a handle held by the caller.
//! - `gauge_set`: `set(v)` on a handle.
//! - `labelled_inc`: lookup by label values (method, route, status; 100
//!   routes x 2 methods x 3 statuses, cycled) and `inc()`; `muster_typed`
//!   looks up the same sets through a typed `LabelSet`.
//! - `histogram_observe`: `observe(v)` with Python's default buckets, values
//!   cycled across the buckets; `muster_native` with native buckets only
//!   (schema 3), `muster_classic_and_native` with both.
//! - `counter_inc_contended`: two threads incrementing one counter; the time
//!   is wall time per increment of one thread (both run at once).
//! - `labelled_inc_contended`: two threads doing labelled lookup + inc on one
//!   family at once (same measure).
//!
//! muster writes into mapped files in a temporary multiprocess directory,
//! exactly as a worker does; `prometheus-client` keeps values in memory.
//!
//! The single-thread groups are measured in CPU time of the benchmarking
//! thread (`CLOCK_THREAD_CPUTIME_ID`), so that other load on a shared machine
//! (time the thread spends descheduled) does not count; set
//! `MUSTER_BENCH_CLOCK=wall` for wall-clock time. The contended groups are
//! always wall-clock time.

#[path = "support/clock.rs"]
mod clock;

use std::hint::black_box;

use clock::Clock;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, Criterion};
use muster_metrics::{
    Counter, Gauge, GaugeMode, Histogram, LabelSet, NativeBuckets, DEFAULT_BUCKETS,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family as PcFamily;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;

const METHODS: [&str; 2] = ["GET", "POST"];
const STATUSES: [&str; 3] = ["200", "404", "500"];
const ROUTES: usize = 100;

/// Label values as a request handler has them: borrowed strings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: &'static str,
}

impl LabelSet for RequestLabels {
    const NAMES: &'static [&'static str] = &["method", "route", "status"];
    fn values(&self) -> impl AsRef<[&str]> {
        [self.method, self.route, self.status]
    }
}

/// The same, owned (what `Family<Vec<(String, String)>, _>` users build).
type OwnedLabels = Vec<(String, String)>;

fn label_sets() -> Vec<[&'static str; 3]> {
    let routes: Vec<&'static str> = (0..ROUTES)
        .map(|i| &*Box::leak(format!("/api/v1/resource_{i:03}/{{id}}").into_boxed_str()))
        .collect();
    let mut sets = Vec::new();
    // Interleave so consecutive lookups hit different keys.
    for status in STATUSES {
        for method in METHODS {
            for route in &routes {
                sets.push([method, *route, status]);
            }
        }
    }
    sets
}

/// Observation values spread over the default buckets (and past them).
fn observations() -> Vec<f64> {
    (0..64)
        .map(|i| {
            let x = i as f64 / 63.0;
            0.001 * (12_000f64).powf(x) // 1 ms .. 12 s, log-spaced
        })
        .collect()
}

fn setup_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("muster-bench-")
        .tempdir()
        .expect("a temporary directory");
    muster_store::configure(dir.path());
    dir
}

type C = Criterion<Clock>;

/// Moves `i` to the next index of `0..n`, wrapping, and returns it.
fn advance(i: &mut usize, n: usize) -> usize {
    *i = if *i + 1 == n { 0 } else { *i + 1 };
    *i
}

/// The next index of `0..n` for the calling thread. Each thread keeps its own
/// position; the threads of one `contended` run start `n / 2` apart.
fn thread_position(start: &AtomicUsize, n: usize) -> usize {
    thread_local!(static POS: Cell<Option<usize>> = const { Cell::new(None) });
    POS.with(|pos| {
        let mut i = pos
            .get()
            .unwrap_or_else(|| start.fetch_add(n / 2, Ordering::Relaxed) % n);
        let next = advance(&mut i, n);
        pos.set(Some(next));
        next
    })
}

fn counter_inc(c: &mut C) {
    let mut g = c.benchmark_group("counter_inc");
    let muster = Counter::new("bench_counter", "a counter").unwrap();
    g.bench_function("muster", |b| b.iter(|| black_box(&muster).inc()));
    let pc_u64: PcCounter = PcCounter::default();
    g.bench_function("prometheus_client_u64", |b| {
        b.iter(|| black_box(&pc_u64).inc())
    });
    let pc_f64: PcCounter<f64> = PcCounter::default();
    g.bench_function("prometheus_client_f64", |b| {
        b.iter(|| black_box(&pc_f64).inc())
    });
    g.finish();
}

fn gauge_set(c: &mut C) {
    let mut g = c.benchmark_group("gauge_set");
    let muster = Gauge::new("bench_gauge", "a gauge", GaugeMode::All).unwrap();
    let mut v = 0.0f64;
    g.bench_function("muster", |b| {
        b.iter(|| {
            v += 1.0;
            black_box(&muster).set(black_box(v))
        })
    });
    let pc: PcGauge<f64, AtomicU64> = PcGauge::default();
    g.bench_function("prometheus_client_f64", |b| {
        b.iter(|| {
            v += 1.0;
            black_box(&pc).set(black_box(v));
        })
    });
    g.finish();
}

/// A muster family with the benchmark's label names, every label set
/// already created (the benches measure lookups of existing series).
fn primed_family(name: &str, sets: &[[&'static str; 3]]) -> muster_metrics::Family<Counter> {
    let family = Counter::family(name, "requests", &["method", "route", "status"]).unwrap();
    for s in sets {
        family.with_label_values(s).inc();
    }
    family
}

fn labelled_inc(c: &mut C) {
    let sets = label_sets();
    let n = sets.len();
    let mut g = c.benchmark_group("labelled_inc");

    let muster = primed_family("bench_http_requests", &sets);
    let mut i = 0usize;
    g.bench_function("muster", |b| {
        b.iter(|| {
            black_box(&muster)
                .with_label_values(black_box(&sets[advance(&mut i, n)]))
                .inc();
        })
    });

    let typed =
        Counter::typed_family::<RequestLabels>("bench_http_requests_typed", "requests").unwrap();
    for &[method, route, status] in &sets {
        typed
            .get(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
    g.bench_function("muster_typed", |b| {
        b.iter(|| {
            let [m, r, s] = *black_box(&sets[advance(&mut i, n)]);
            black_box(&typed)
                .get(&RequestLabels {
                    method: m,
                    route: r,
                    status: s,
                })
                .inc();
        })
    });

    let pc: PcFamily<RequestLabels, PcCounter> = PcFamily::default();
    let keys: Vec<RequestLabels> = sets
        .iter()
        .map(|[m, r, s]| RequestLabels {
            method: m,
            route: r,
            status: s,
        })
        .collect();
    for k in &keys {
        pc.get_or_create(k).inc();
    }
    g.bench_function("prometheus_client_borrowed", |b| {
        b.iter(|| {
            let [m, r, s] = *black_box(&sets[advance(&mut i, n)]);
            black_box(&pc)
                .get_or_create(&RequestLabels {
                    method: m,
                    route: r,
                    status: s,
                })
                .inc();
        })
    });

    let pc_owned: PcFamily<OwnedLabels, PcCounter> = PcFamily::default();
    let owned = |[m, r, s]: [&str; 3]| -> OwnedLabels {
        vec![
            ("method".to_owned(), m.to_owned()),
            ("route".to_owned(), r.to_owned()),
            ("status".to_owned(), s.to_owned()),
        ]
    };
    for s in &sets {
        pc_owned.get_or_create(&owned(*s)).inc();
    }
    g.bench_function("prometheus_client_owned", |b| {
        b.iter(|| {
            black_box(&pc_owned)
                .get_or_create(&owned(*black_box(&sets[advance(&mut i, n)])))
                .inc();
        })
    });
    g.finish();
}

fn histogram_observe(c: &mut C) {
    let values = observations();
    let n = values.len();
    let mut g = c.benchmark_group("histogram_observe");
    let muster = Histogram::new("bench_duration_seconds", "durations", &DEFAULT_BUCKETS).unwrap();
    let mut i = 0usize;
    g.bench_function("muster", |b| {
        b.iter(|| {
            black_box(&muster).observe(black_box(values[advance(&mut i, n)]));
        })
    });
    // Native buckets only (schema 3, as client_golang's factor 1.1), and
    // both kinds at once (what the demo records), on the same values.
    let native = Histogram::builder("bench_native_seconds", "durations")
        .native(NativeBuckets::with_factor(1.1).unwrap())
        .build()
        .unwrap();
    g.bench_function("muster_native", |b| {
        b.iter(|| {
            black_box(&native).observe(black_box(values[advance(&mut i, n)]));
        })
    });
    let both = Histogram::builder("bench_both_seconds", "durations")
        .buckets(&DEFAULT_BUCKETS)
        .native(NativeBuckets::with_factor(1.1).unwrap())
        .build()
        .unwrap();
    g.bench_function("muster_classic_and_native", |b| {
        b.iter(|| {
            black_box(&both).observe(black_box(values[advance(&mut i, n)]));
        })
    });
    // Python's default bounds without +Inf (the crate adds its own).
    let pc = PcHistogram::new(DEFAULT_BUCKETS[..DEFAULT_BUCKETS.len() - 1].iter().copied());
    g.bench_function("prometheus_client", |b| {
        b.iter(|| {
            black_box(&pc).observe(black_box(values[advance(&mut i, n)]));
        })
    });
    g.finish();
}

/// Wall time per increment when `threads` threads increment at once.
fn contended(iters: u64, threads: usize, inc: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    inc();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn counter_inc_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_inc_contended");
    let muster = Counter::new("bench_contended", "a contended counter").unwrap();
    g.bench_function("muster", |b| {
        b.iter_custom(|iters| contended(iters, 2, &|| black_box(&muster).inc()))
    });
    let pc: PcCounter = PcCounter::default();
    g.bench_function("prometheus_client_u64", |b| {
        b.iter_custom(|iters| {
            contended(iters, 2, &|| {
                black_box(&pc).inc();
            })
        })
    });
    let pc_f64: PcCounter<f64> = PcCounter::default();
    g.bench_function("prometheus_client_f64", |b| {
        b.iter_custom(|iters| {
            contended(iters, 2, &|| {
                black_box(&pc_f64).inc();
            })
        })
    });
    g.finish();
}

/// Two threads doing labelled lookups + inc on one family at once, each
/// cycling through the label sets from a different start.
fn labelled_inc_contended(c: &mut Criterion) {
    let sets = label_sets();
    let n = sets.len();
    let mut g = c.benchmark_group("labelled_inc_contended");
    let muster = primed_family("bench_http_requests_contended", &sets);
    g.bench_function("muster", |b| {
        b.iter_custom(|iters| {
            let start = AtomicUsize::new(0);
            contended(iters, 2, &|| {
                let i = thread_position(&start, n);
                black_box(&muster).with_label_values(&sets[i]).inc();
            })
        })
    });
    let pc: PcFamily<RequestLabels, PcCounter> = PcFamily::default();
    g.bench_function("prometheus_client_borrowed", |b| {
        b.iter_custom(|iters| {
            let start = AtomicUsize::new(0);
            contended(iters, 2, &|| {
                let [m, r, s] = sets[thread_position(&start, n)];
                black_box(&pc)
                    .get_or_create(&RequestLabels {
                        method: m,
                        route: r,
                        status: s,
                    })
                    .inc();
            })
        })
    });
    g.finish();
}

fn single_thread(c: &mut C) {
    let _dir = setup_dir();
    counter_inc(c);
    gauge_set(c);
    labelled_inc(c);
    histogram_observe(c);
}

fn two_threads(c: &mut Criterion<WallTime>) {
    let _dir = setup_dir();
    counter_inc_contended(c);
    labelled_inc_contended(c);
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .with_measurement(Clock::from_env(1.0, "ns"))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = single_thread
}
criterion_group! {
    name = two_thread_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = two_threads
}
criterion_main!(hot_path, two_thread_benches);
