//! Writes metric files with muster, for the interoperability and
//! concurrency tests at the repository root (`tests/`).
//!
//! ```text
//! write_fixture fixture DIR ID INDEX   every type and gauge mode, hostile labels
//! write_fixture hammer DIR ID SECONDS  update metrics from 2 threads for SECONDS,
//!                                      then print what was done as one JSON line
//! write_fixture plan DIR ID PLAN N     define the metrics and run the operations of
//!                                      process N of the JSON file PLAN (the
//!                                      differential tests' generated metric sets,
//!                                      also run by tests/python/write_plan.py)
//! ```
//!
//! `ID` names the process's files (`counter_<ID>.db`, ...); `pid` keeps the
//! real pid. `INDEX` varies the values between processes. Values that the
//! merge adds up across processes are dyadic (exact in binary), so the merged
//! result does not depend on the order files are read in.
//!
//! The `fixture` mode also writes some series of the Python writer's `types`
//! scenario (`tests/python/write_dir.py`) with the same names, help and
//! labels, so a directory written by both has series fed by both.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_metrics::{Counter, Gauge, GaugeMode, Histogram, Summary, DEFAULT_BUCKETS};

/// Label values that need escaping or are otherwise unusual.
const HOSTILE_VALUES: &[&str] = &[
    "quote\"d",
    "back\\slash",
    "new\nline",
    "tab\there",
    "café",
    "grin 😀",
    "",
    "all of it: \"\\\né😀\" {},=",
    "\\n is not a newline",
    "trailing backslash\\",
];
const HOSTILE_HELP: &str = "Help with a \\ backslash,\na newline, \"quotes\", café and 😀.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fixture", dir, id, index] => setup(dir, id).and_then(|()| {
            let index: u32 = index.parse().map_err(|e| format!("bad INDEX: {e}"))?;
            fixture(index).map_err(|e| e.to_string())
        }),
        ["hammer", dir, id, seconds] => setup(dir, id).and_then(|()| {
            let seconds: f64 = seconds.parse().map_err(|e| format!("bad SECONDS: {e}"))?;
            hammer(Duration::from_secs_f64(seconds)).map_err(|e| e.to_string())
        }),
        ["plan", dir, id, plan, n] => setup(dir, id).and_then(|()| run_plan(plan, n)),
        _ => Err(
            "usage: write_fixture fixture DIR ID INDEX | hammer DIR ID SECONDS | plan DIR ID PLAN N"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("write_fixture: {message}");
            ExitCode::FAILURE
        }
    }
}

fn setup(dir: &str, id: &str) -> Result<(), String> {
    muster_store::configure(dir);
    if id != "pid" {
        muster_store::set_process_id(id).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fixture(i: u32) -> Result<(), muster_metrics::MetricError> {
    let fi = f64::from(i);
    let shared = 2f64.powi(-((i % 3) as i32)); // dyadic

    // Counters, with and without labels; `_total` given or not.
    Counter::new("rs_events_total", "Events seen.")?.inc_by(fi + 1.0);
    let requests = Counter::family(
        "rs_requests",
        "Requests by method and code.",
        &["method", "code"],
    )?;
    requests.with_label_values(&["GET", "200"]).inc_by(2.0);
    requests
        .with_label_values(&["POST", &(500 + i).to_string()])
        .inc_by(0.1 * (fi + 1.0));
    requests.with_label_values(&["PUT", "201"]); // created, never incremented

    // Gauges in all ten modes, alone and labelled.
    for mode in GaugeMode::ALL {
        let m = mode.as_str();
        let g = Gauge::new(
            &format!("rs_gauge_{m}"),
            &format!("A gauge in {m} mode."),
            mode,
        )?;
        let lg = Gauge::family(
            &format!("rs_gauge_{m}_labelled"),
            &format!("A labelled gauge in {m} mode."),
            &["shard"],
            mode,
        )?;
        if matches!(mode, GaugeMode::MostRecent | GaugeMode::LiveMostRecent) {
            g.set(10.0 * fi + 0.5);
            lg.with_label_values(&["shared"]).set(-fi - 0.25);
            lg.with_label_values(&[&format!("own{i}")]).set(0.1 * fi);
            g.set(10.0 * fi + 1.5);
        } else {
            g.set(shared * 3.0);
            g.add(fi);
            g.sub(0.5);
            lg.with_label_values(&["shared"]).set(fi - 1.5);
            lg.with_label_values(&[&format!("own{i}")])
                .set(1.0 / 3.0 + fi);
            lg.with_label_values(&["untouched"]);
        }
    }

    // Histograms: default buckets, custom buckets (with Go-style `le`s such
    // as 1e+06), and one that never observed anything.
    let latency = Histogram::family(
        "rs_latency_seconds",
        "Latency with default buckets.",
        &["route"],
        &DEFAULT_BUCKETS,
    )?;
    for v in [0.0, 0.0078125, 0.25, 2.5, 7.5, 10.0, 12.0, shared] {
        latency.with_label_values(&["/shared"]).observe(v);
    }
    for v in [0.005, 0.01, 0.1, 0.3 + fi, 1e-9, 1000.0] {
        latency
            .with_label_values(&[&format!("/own/{i}")])
            .observe(v);
    }
    latency.with_label_values(&["/never"]);
    let sizes = Histogram::new(
        "rs_size_bytes",
        "Sizes with custom buckets.",
        &[1.0, 10.0, 100.0, 1e3, 1e6, 1e10],
    )?;
    for v in [0.0, 1.0, 5.0, 999.0, 1e6, 4e9, 1e11, 2f64.powi(i as i32)] {
        sizes.observe(v);
    }

    // Bounds whose `le` text differs between Python's repr and Go's format.
    let exotic = [
        1e-7,
        2.5e-5,
        0.30000000000000004,
        1234567.0,
        123456789.0,
        1e16,
        1e21,
    ];
    let exotic_hist = Histogram::new(
        "rs_exotic_bounds",
        "Bounds with odd float formats.",
        &exotic,
    )?;
    for v in exotic.iter().chain(&[0.0, 3e21]) {
        exotic_hist.observe(*v);
    }

    // Summaries.
    let payload = Summary::new("rs_payload_bytes", "Payload sizes.")?;
    payload.observe(512.0 * (fi + 1.0));
    payload.observe(0.5);
    let by_kind = Summary::family("rs_payload_labelled", "Payload sizes by kind.", &["kind"])?;
    by_kind.with_label_values(&["shared"]).observe(4.0);
    by_kind
        .with_label_values(&[&format!("own{i}")])
        .observe(0.3 * (fi + 1.0));

    // Hostile label values and help text, in every type.
    let hostile = Counter::family("rs_hostile", HOSTILE_HELP, &["value", "index"])?;
    for (k, v) in HOSTILE_VALUES.iter().enumerate() {
        hostile
            .with_label_values(&[v, &k.to_string()])
            .inc_by(k as f64 + 1.0);
    }
    Counter::family(
        "rs_hostile_empty_value",
        "Only empty label values.",
        &["a", "b"],
    )?
    .with_label_values(&["", ""])
    .inc_by(2.0);
    Gauge::family("rs_hostile_gauge", HOSTILE_HELP, &["value"], GaugeMode::All)?
        .with_label_values(&[HOSTILE_VALUES[i as usize % HOSTILE_VALUES.len()]])
        .set(fi + 0.5);
    let hostile_sum = Gauge::family(
        "rs_hostile_gauge_sum",
        "Sum gauge.",
        &["value"],
        GaugeMode::LiveSum,
    )?;
    let hostile_hist =
        Histogram::family("rs_hostile_seconds", HOSTILE_HELP, &["value"], &[0.5, 1.0])?;
    let hostile_summary = Summary::family("rs_hostile_summary", HOSTILE_HELP, &["value"])?;
    for v in HOSTILE_VALUES {
        hostile_sum.with_label_values(&[v]).add(0.25);
        hostile_hist.with_label_values(&[v]).observe(0.75);
        hostile_summary.with_label_values(&[v]).observe(2.0);
    }

    // Special values (one series per process, or max/min).
    let special = Gauge::family("rs_special", "Special values.", &["what"], GaugeMode::All)?;
    for (what, v) in [
        ("inf", f64::INFINITY),
        ("minus_inf", f64::NEG_INFINITY),
        ("nan", f64::NAN),
        ("huge", f64::MAX),
        ("tiny", 5e-324),
        ("third", 1.0 / 3.0),
        ("big_int", 2f64.powi(53) + 2.0),
        ("negative", -123.456),
    ] {
        special.with_label_values(&[what]).set(v);
    }
    Gauge::new("rs_special_max", "Max with infinities.", GaugeMode::Max)?.set(if i == 0 {
        f64::INFINITY
    } else {
        fi
    });
    Gauge::new("rs_special_min", "Min with infinities.", GaugeMode::Min)?.set(if i == 1 {
        f64::NEG_INFINITY
    } else {
        -fi
    });
    let odd = Counter::family(
        "rs_special_counter",
        "Counter with odd increments.",
        &["kind"],
    )?;
    odd.with_label_values(&["zero"]).inc_by(0.0);
    odd.with_label_values(&[&format!("tiny{i}")]).inc_by(1e-9);
    odd.with_label_values(&[&format!("huge{i}")]).inc_by(1e300);
    odd.with_label_values(&["big"]).inc_by(2f64.powi(52));

    // Series of the Python `types` scenario: same names, help and labels.
    Counter::family(
        "py_requests_total",
        "Requests by method and code.",
        &["method", "code"],
    )?
    .with_label_values(&["GET", "200"])
    .inc_by(2.0);
    for mode in [
        GaugeMode::Sum,
        GaugeMode::Max,
        GaugeMode::Min,
        GaugeMode::All,
    ] {
        let m = mode.as_str();
        let g = Gauge::new(
            &format!("py_gauge_{m}"),
            &format!("A gauge in {m} mode."),
            mode,
        )?;
        g.set(shared * 3.0 + 100.0);
    }
    let py_latency = Histogram::family(
        "py_latency_seconds",
        "Latency with default buckets.",
        &["route"],
        &DEFAULT_BUCKETS,
    )?;
    for v in [0.0, 0.25, 2.5, 12.0] {
        py_latency.with_label_values(&["/shared"]).observe(v);
    }
    Summary::new("py_payload_bytes", "Payload sizes.")?.observe(512.0);
    Ok(())
}

/// One metric of a plan, made with muster's API.
enum PlanMetric {
    Counter(muster_metrics::Family<Counter>),
    Gauge(muster_metrics::Family<Gauge>),
    Histogram(muster_metrics::Family<Histogram>),
    Summary(muster_metrics::Family<Summary>),
}

/// Runs process `n` of the plan in the JSON file `path`: `{"processes": [{
/// "metrics": [{"type", "name", "help", "labels", "mode", "buckets"}], "ops":
/// [[metric, [label values], "inc"|"set"|"observe", value]]}]}`.
fn run_plan(path: &str, n: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let plan: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let n: usize = n.parse().map_err(|e| format!("bad N: {e}"))?;
    let process = &plan["processes"][n];
    let str_of = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or(format!("not a string: {v}"))
    };
    let mut metrics = Vec::new();
    for m in process["metrics"].as_array().ok_or("no metrics")? {
        let (name, help) = (str_of(&m["name"])?, str_of(&m["help"])?);
        let labels: Vec<String> = m["labels"]
            .as_array()
            .ok_or("no labels")?
            .iter()
            .map(str_of)
            .collect::<Result<_, _>>()?;
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let made = |e: muster_metrics::MetricError| format!("{name}: {e}");
        let metric = match m["type"].as_str() {
            Some("counter") => {
                PlanMetric::Counter(Counter::family(&name, &help, &labels).map_err(made)?)
            }
            Some("gauge") => {
                let mode = GaugeMode::parse(&str_of(&m["mode"])?).ok_or("bad mode")?;
                PlanMetric::Gauge(Gauge::family(&name, &help, &labels, mode).map_err(made)?)
            }
            Some("histogram") => {
                let buckets: Vec<f64> = m["buckets"]
                    .as_array()
                    .ok_or("no buckets")?
                    .iter()
                    .map(|b| b.as_f64().ok_or("bad bucket"))
                    .collect::<Result<_, _>>()?;
                PlanMetric::Histogram(
                    Histogram::family(&name, &help, &labels, &buckets).map_err(made)?,
                )
            }
            Some("summary") => {
                PlanMetric::Summary(Summary::family(&name, &help, &labels).map_err(made)?)
            }
            other => return Err(format!("unknown type {other:?}")),
        };
        metrics.push(metric);
    }
    for op in process["ops"].as_array().ok_or("no ops")? {
        let metric = op[0]
            .as_u64()
            .and_then(|i| metrics.get(i as usize))
            .ok_or("bad metric")?;
        let values: Vec<String> = op[1]
            .as_array()
            .ok_or("no label values")?
            .iter()
            .map(str_of)
            .collect::<Result<_, _>>()?;
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        // JSON has no NaN or infinities: they come as strings.
        let value = match &op[3] {
            serde_json::Value::String(s) => s.parse::<f64>().map_err(|e| e.to_string())?,
            v => v.as_f64().ok_or("bad value")?,
        };
        match (metric, op[2].as_str()) {
            (PlanMetric::Counter(c), Some("inc")) => c.with_label_values(&values).inc_by(value),
            (PlanMetric::Gauge(g), Some("set")) => g.with_label_values(&values).set(value),
            (PlanMetric::Gauge(g), Some("inc")) => g.with_label_values(&values).add(value),
            (PlanMetric::Histogram(h), Some("observe")) => {
                h.with_label_values(&values).observe(value)
            }
            (PlanMetric::Summary(s), Some("observe")) => {
                s.with_label_values(&values).observe(value)
            }
            (_, op) => return Err(format!("operation {op:?} does not fit its metric")),
        }
    }
    Ok(())
}

/// Updates counters, a histogram and new labelled series from two threads
/// until `duration` is over; prints what it did as one JSON line.
fn hammer(duration: Duration) -> Result<(), muster_metrics::MetricError> {
    let counter = Counter::new("rs_hammer", "Hammered counter.")?;
    let histogram = Histogram::new(
        "rs_hammer_seconds",
        "Hammered histogram.",
        &[1.0, 2.0, 4.0, 8.0],
    )?;
    // New series keep appearing, so files grow while scrapes read them.
    let series = Counter::family(
        "rs_hammer_series",
        "One series per label value.",
        &["n", "pad"],
    )?;
    let pad = "p".repeat(96);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (counter, histogram, series, pad, stop) = (
                counter.clone(),
                histogram.clone(),
                series.clone(),
                pad.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let (mut incs, mut sum, mut created) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        counter.inc();
                        let v = incs % 11; // whole numbers: a torn sum would show
                        histogram.observe(v as f64);
                        sum += v;
                        incs += 1;
                    }
                    if created < 1000 {
                        series
                            .with_label_values(&[&format!("{t}-{created}"), &pad])
                            .inc();
                        created += 1;
                    }
                }
                (incs, sum, created)
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut incs, mut sum, mut created) = (0, 0, 0);
    for t in threads {
        let (i, s, c) = t.join().expect("hammer thread panicked");
        incs += i;
        sum += s;
        created += c;
    }
    println!(
        "{{\"pid\": {}, \"rs_hammer_total\": {incs}, \"rs_hammer_seconds_count\": {incs}, \
         \"rs_hammer_seconds_sum\": {sum}, \"rs_hammer_series\": {created}}}",
        std::process::id()
    );
    Ok(())
}
