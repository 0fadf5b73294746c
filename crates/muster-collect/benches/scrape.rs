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
//! - `scrape_warm_protobuf`, `encode_protobuf`: `scrape_warm` and `encode`
//!   with the protobuf exposition (what Prometheus gets when it asks for
//!   PrometheusProto) instead of text 0.0.4, to compare in the same run.
//!
//! Times are CPU time of the benchmarking thread (user + system,
//! `CLOCK_THREAD_CPUTIME_ID`), so other load on a shared machine counts less;
//! `MUSTER_BENCH_CLOCK=wall` measures wall-clock time instead. A cold
//! collect of megabytes of entries reads them in several threads (see
//! `muster_collect`'s scan), whose time the benchmarking thread's clock does
//! not count: compare cold scrapes in wall-clock time
//! (`scripts/bench.d/cold_scrape.py` times the whole `muster scrape`).
//!
//! Without the variable, a small directory is generated with muster's own
//! writer so the bench still runs.

#[path = "../../muster-metrics/benches/support/clock.rs"]
mod clock;

use std::hint::black_box;

use clock::Clock;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use muster_collect::{encode, Collector, Escaping, Exposition, Format, MediaType};

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

    // A warm scrape in text 0.0.4 and in protobuf, each with its own collector.
    for (group, media) in [
        ("scrape_warm", MediaType::Text004),
        ("scrape_warm_protobuf", MediaType::Protobuf),
    ] {
        let exposition = Exposition::new(media, Escaping::Underscores);
        let mut g = c.benchmark_group(group);
        g.sample_size(20);
        for (label, dir) in &dirs {
            let mut collector = Collector::new(dir);
            collector.collect().unwrap();
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    let set = collector.collect().unwrap();
                    black_box(exposition.encode(&set))
                })
            });
        }
        g.finish();
    }

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

    for (group, media) in [
        ("encode", MediaType::Text004),
        ("encode_protobuf", MediaType::Protobuf),
    ] {
        let exposition = Exposition::new(media, Escaping::Underscores);
        let mut g = c.benchmark_group(group);
        g.sample_size(20);
        for (label, dir) in &dirs {
            let set = Collector::new(dir).collect().unwrap();
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| black_box(exposition.encode(&set)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(Clock::from_env(1e6, "ms"))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scrape
}
criterion_main!(benches);
