//! Differential tests: the judge is the real Python `prometheus_client==0.26.0`.
//!
//! A seeded generator makes metric sets — every type and gauge mode; legacy,
//! dotted, colon, non-ASCII and digit-led names; label names to escape and a
//! user `pid` label; hostile label values and help (quotes, backslashes,
//! newlines, non-ASCII); special gauge values; families whose type, mode or
//! help differ between processes — and splits them over several processes.
//! Python processes (`tests/python/write_plan.py`) and muster processes (the
//! `write_fixture` example's `plan` mode) write them into one directory. Then:
//!
//! - muster's merge (`muster scrape`, text 0.0.4 and OpenMetrics) read back
//!   by Python's own parsers equals Python's `MultiProcessCollector` over the
//!   same directory (`tests/python/collect.py`: names escaped as Python's
//!   exposition escapes them, files in sorted order, type conflicts resolved
//!   by muster's documented rule), samples and families (name, type, help);
//! - with each name escaping scheme (`allow-utf-8`, `underscores`, `dots`,
//!   `values`), muster's text 1.0.0 and OpenMetrics expositions read by
//!   Python's parsers equal Python's own expositions of the same merge with
//!   that scheme (`tests/python/judge_escaping.py`);
//! - promtool parses the text exposition. (promtool 2.42's `check metrics`
//!   reads only the text format: given OpenMetrics it reads it as text and
//!   stops at the `\"` OpenMetrics requires in HELP; the real Prometheus
//!   reading muster's OpenMetrics is tests/prometheus.rs.)
//!
//! `MUSTER_DIFF_SEEDS=1,2,3` runs those seeds instead of the fixed ones (to
//! reproduce a failure: the message names the seed).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    assert_same, fixture_bin, muster, muster_scrape, output_text, promtool, py_script, python,
    run_ok, run_with_input, Samples,
};
use serde_json::{json, Value};

/// SplitMix64: a small, well-known generator, so a seed means the same
/// metric set on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A multiple of 1/4 in `lo..hi` quarters: sums of them are exact in any order.
    fn quarters(&mut self, lo: i64, hi: i64) -> f64 {
        (lo + self.below((hi - lo) as usize) as i64) as f64 / 4.0
    }
}

const MODES: [&str; 10] = [
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
];
/// Label names: legacy ones (`pid` among them), then ones Python's exposition
/// escapes.
const LABEL_NAMES: [&str; 6] = ["a", "route", "pid", "my.label", "\u{fc}n\u{ef}", "0digit"];
const LABEL_VALUES: [&str; 10] = [
    "",
    "x",
    "y",
    "quote\"d",
    "back\\slash",
    "new\nline",
    "caf\u{e9}",
    "grin \u{1F600}",
    "a,b=c}",
    "trailing\\",
];
const HELPS: [&str; 4] = [
    "Plain help.",
    "Help with a \\ backslash,\na newline, \"quotes\", caf\u{e9} and \u{1F600}.",
    "",
    "trailing backslash \\",
];
const BOUNDS: [f64; 6] = [0.25, 0.5, 1.0, 2.5, 10.0, 1e6];
const OBSERVED: [f64; 10] = [0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 7.75, 10.0, 1e6, 2e6];
const KINDS: [&str; 5] = ["counter", "gauge", "gauge", "histogram", "summary"];

/// A family of the generated set, as most processes define it.
struct Family {
    name: String,
    labels: Vec<&'static str>,
    /// Only Python can write it: its name or a label name is not legacy.
    python_only: bool,
}

fn legacy(name: &str, metric: bool) -> bool {
    name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) || (metric && c == ':')
    })
}

/// The definition of family `k` in one process: `kind` may differ from
/// other processes' (a conflict), so may the mode and the help.
fn definition(rng: &mut Rng, family: &Family, kind: &str) -> Value {
    let mut spec = json!({
        "type": kind,
        "name": family.name,
        "help": rng.pick(&HELPS),
        "labels": family.labels,
    });
    match kind {
        "gauge" => spec["mode"] = json!(rng.pick(&MODES)),
        "histogram" => {
            let mut buckets: Vec<f64> = BOUNDS.iter().copied().filter(|_| rng.chance(50)).collect();
            if buckets.is_empty() {
                buckets.push(1.0);
            }
            spec["buckets"] = json!(buckets);
        }
        _ => {}
    }
    spec
}

/// Operations on the metric at `index` (defined by `spec`).
fn operations(rng: &mut Rng, index: usize, spec: &Value, ops: &mut Vec<Value>) {
    let labels = spec["labels"].as_array().map_or(0, Vec::len);
    let mode = spec["mode"].as_str().unwrap_or("");
    for _ in 0..1 + rng.below(6) {
        let values: Vec<&str> = (0..labels)
            .map(|i| {
                if i == 0 {
                    *rng.pick(&LABEL_VALUES)
                } else {
                    // Few values, so series of different processes meet.
                    *rng.pick(&LABEL_VALUES[..3])
                }
            })
            .collect();
        let (op, value) = match spec["type"].as_str() {
            Some("counter") => ("inc", json!(rng.quarters(0, 40))),
            Some("gauge") if rng.chance(8) => ("set", json!(*rng.pick(&["nan", "inf", "-inf"]))),
            // Python refuses inc() on a most-recent gauge.
            Some("gauge") if !mode.contains("mostrecent") && rng.chance(40) => {
                ("inc", json!(rng.quarters(-20, 40)))
            }
            Some("gauge") => ("set", json!(rng.quarters(-40, 40))),
            Some("histogram") => ("observe", json!(*rng.pick(&OBSERVED))),
            _ => ("observe", json!(rng.quarters(0, 40))),
        };
        ops.push(json!([index, values, op, value]));
    }
}

/// The plan of one seed: families split over Python and muster processes.
fn plan(seed: u64) -> Value {
    let mut rng = Rng(seed);
    let families: Vec<(Family, &str)> = (0..5 + rng.below(6))
        .map(|k| {
            // Some families only Python can write (names muster's API refuses,
            // which Python's exposition escapes); the others both write.
            let python_only = rng.chance(35);
            let name = match (python_only, rng.below(4)) {
                (true, 0) => format!("f{k}.dotted.name"),
                (true, 1) => format!("f{k}_caf\u{e9}"),
                (true, 2) => format!("0f{k}.lead"),
                (_, 0) => format!("f{k}:colon"),
                _ => format!("f{k}_plain"),
            };
            let names: &[&'static str] = if python_only {
                &LABEL_NAMES
            } else {
                &LABEL_NAMES[..3]
            };
            let mut labels: Vec<&'static str> = Vec::new();
            for _ in 0..rng.below(4) {
                let l = *rng.pick(names);
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            let kind = *rng.pick(&KINDS);
            (
                Family {
                    python_only: !legacy(&name, true) || labels.iter().any(|l| !legacy(l, false)),
                    name,
                    labels,
                },
                kind,
            )
        })
        .collect();
    let process_count = 2 + rng.below(4);
    let mut processes = Vec::new();
    for p in 0..process_count {
        // The first process is Python's, the second muster's, then either.
        let python = p == 0 || (p > 1 && rng.chance(50));
        let mut metrics = Vec::new();
        let mut ops = Vec::new();
        for (family, kind) in &families {
            if (family.python_only && !python) || !rng.chance(75) {
                continue;
            }
            // Now and then a process defines the family with another type.
            let kind = if rng.chance(12) {
                *rng.pick(&KINDS)
            } else {
                *kind
            };
            let spec = definition(&mut rng, family, kind);
            operations(&mut rng, metrics.len(), &spec, &mut ops);
            metrics.push(spec);
        }
        processes.push(json!({
            "writer": if python { "python" } else { "muster" },
            "id": format!("m{p}"),
            "metrics": metrics,
            "ops": ops,
        }));
    }
    json!({ "seed": seed, "processes": processes })
}

/// Writes the plan's processes into `dir`: Python's in one run of
/// write_plan.py (each a forked process), muster's as write_fixture processes.
fn write(plan: &Value, plan_file: &Path, dir: &Path) {
    run_ok(
        Command::new(python())
            .arg(py_script("write_plan.py"))
            .arg(plan_file)
            .arg(dir),
        b"",
    );
    for (n, process) in plan["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .enumerate()
    {
        if process["writer"] == "muster" {
            run_ok(
                Command::new(fixture_bin())
                    .arg("plan")
                    .arg(dir)
                    .arg(process["id"].as_str().expect("id"))
                    .arg(plan_file)
                    .arg(n.to_string()),
                b"",
            );
        }
    }
}

/// promtool parses `exposition` (0: clean, 3: lint findings only).
fn promtool_parses(exposition: &[u8], context: &str) {
    let out = run_with_input(
        Command::new(promtool()).args(["check", "metrics"]),
        exposition,
        Duration::from_secs(60),
    );
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{context}: promtool could not parse it:\n{}\n--- exposition ---\n{}",
        output_text(&out),
        String::from_utf8_lossy(exposition)
    );
}

/// The judge's lists, by name (`python`, `text_meta`, ...).
fn judge(dir: &Path, text: &Path, openmetrics: &Path) -> BTreeMap<String, Samples> {
    let out = run_ok(
        Command::new(python())
            .arg(py_script("judge.py"))
            .arg(dir)
            .arg(text)
            .arg(openmetrics),
        b"",
    );
    let v: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out).expect("JSON from judge.py");
    v.into_iter()
        .map(|(k, lines)| {
            // The same canonical text as the other helpers (tests/common).
            let mut lines: Samples = lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<Value>(l)
                        .expect("a canonical line")
                        .to_string()
                })
                .collect();
            lines.sort();
            (k, lines)
        })
        .collect()
}

fn check_seed(seed: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    let plan = plan(seed);
    let plan_file = tmp.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).expect("write the plan");
    write(&plan, &plan_file, &dir);
    let context = format!("seed {seed} (plan: {plan})");
    let mut files = Vec::new();
    for format in ["text", "openmetrics"] {
        let body = muster_scrape(&dir, format);
        if format == "text" {
            promtool_parses(&body, &format!("seed {seed}, {format}"));
        }
        let file = tmp.path().join(format!("{format}.txt"));
        std::fs::write(&file, &body).expect("write the exposition");
        files.push(file);
    }
    let lists = judge(&dir, &files[0], &files[1]);
    let python = &lists["python"];
    assert!(
        python.len() >= 3,
        "{context}: Python's merge has only {} samples",
        python.len()
    );
    for format in ["text", "openmetrics"] {
        assert_same(
            python,
            &lists[format],
            &format!("{context}\n{format} samples"),
        );
        assert_same(
            &lists["python_meta"],
            &lists[&format!("{format}_meta")],
            &format!("{context}\n{format} families (name, type, help)"),
        );
    }
    check_escaping(&dir, tmp.path(), &context);
}

/// The name escaping schemes a scraper may ask for (`escaping=`).
const SCHEMES: [&str; 4] = ["allow-utf-8", "underscores", "dots", "values"];

/// muster's text 1.0.0 and OpenMetrics expositions of `dir` with every
/// escaping scheme equal Python's own expositions of the same merge with that
/// scheme (`tests/python/judge_escaping.py` says which of Python's outputs
/// each is held to), samples and families.
fn check_escaping(dir: &Path, scratch: &Path, context: &str) {
    let expositions = scratch.join("escaping");
    std::fs::create_dir_all(&expositions).expect("a directory for the expositions");
    for scheme in SCHEMES {
        for (format, arg) in [("text", "text-1.0.0"), ("openmetrics", "openmetrics")] {
            let body = run_ok(
                muster().args(["scrape", "--dir"]).arg(dir).args([
                    "--format",
                    arg,
                    "--escaping",
                    scheme,
                ]),
                b"",
            );
            let file = expositions.join(format!("{format}-{scheme}.txt"));
            std::fs::write(&file, &body).expect("write the exposition");
        }
    }
    let out = run_ok(
        Command::new(python())
            .arg(py_script("judge_escaping.py"))
            .arg(dir)
            .arg(&expositions),
        b"",
    );
    let lists: BTreeMap<String, BTreeMap<String, Vec<String>>> =
        serde_json::from_slice(&out).expect("JSON from judge_escaping.py");
    for scheme in SCHEMES {
        for format in ["text", "openmetrics"] {
            assert!(
                lists.contains_key(&format!("{format}-{scheme}")),
                "{context}: the judge has no {format}-{scheme}"
            );
        }
    }
    for (what, sides) in &lists {
        assert_same(
            &sides["python"],
            &sides["muster"],
            &format!("{context}\n{what} (Python's exposition with this escaping)"),
        );
    }
}

fn seeds(fixed: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("MUSTER_DIFF_SEEDS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("MUSTER_DIFF_SEEDS: comma-separated integers")
            })
            .collect(),
        _ => fixed.collect(),
    }
}

fn run_seeds(fixed: std::ops::Range<u64>) {
    let mut report = String::new();
    for seed in seeds(fixed) {
        if let Err(panic) = std::panic::catch_unwind(|| check_seed(seed)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let _ = writeln!(report, "---- seed {seed} ----\n{message}");
        }
    }
    assert!(report.is_empty(), "differences from Python:\n{report}");
}

// Four tests of five seeds each, so the test runner can run them side by side.

#[test]
fn muster_merges_like_python_seeds_0_to_4() {
    run_seeds(0..5);
}

#[test]
fn muster_merges_like_python_seeds_5_to_9() {
    run_seeds(5..10);
}

#[test]
fn muster_merges_like_python_seeds_10_to_14() {
    run_seeds(10..15);
}

#[test]
fn muster_merges_like_python_seeds_15_to_19() {
    run_seeds(15..20);
}
