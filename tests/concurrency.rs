//! Invariants 1 and 2 under load: writer processes hammer counters and a
//! histogram (and keep adding series, so files grow) while this test
//! scrapes in a loop, with a long-lived in-process Collector, fresh
//! Collectors and the CLI. No counter, bucket, `_count` or `_sum` may ever
//! decrease between consecutive scrapes, every value must be a whole number
//! (a torn f64 would not be), and at the end the totals equal what the
//! writers say they did.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture_bin, muster_scrape, Children};
use muster_collect::{Collector, MetricSet};

/// Rust writer processes (each with 2 threads; the machine has 2 cores).
const WRITERS: usize = 2;
const SECONDS: f64 = 3.0;

/// Monotonic samples of the hammer metrics: "name{labels}" -> value.
type Snapshot = BTreeMap<String, f64>;

/// Every sample of the hammer metrics (counters and a histogram) is monotonic.
fn is_hammer_monotonic(name: &str) -> bool {
    name.starts_with("rs_hammer") || name.starts_with("py_hammer")
}

fn from_set(set: &MetricSet) -> Snapshot {
    set.families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| is_hammer_monotonic(&s.name))
        .map(|s| (format!("{}{}", s.name, s.labels), s.value))
        .collect()
}

/// Reads `name{labels} value` lines of a text exposition.
fn from_text(text: &str) -> Snapshot {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            let name = series.split('{').next().unwrap();
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {l:?}: {e}"));
            let series = if series.contains('{') {
                series.to_owned()
            } else {
                format!("{series}{{}}")
            };
            is_hammer_monotonic(name).then_some((series, value))
        })
        .collect()
}

fn check_step(prev: &Snapshot, next: &Snapshot, step: usize, source: &str) {
    for (series, value) in next {
        assert!(
            value.is_finite() && value.fract() == 0.0 && *value >= 0.0,
            "scrape {step} ({source}): {series} = {value:?} is not a whole number (torn read?)"
        );
    }
    for (series, before) in prev {
        match next.get(series) {
            None => panic!("scrape {step} ({source}): {series} (was {before}) disappeared"),
            Some(after) => assert!(
                after >= before,
                "scrape {step} ({source}): {series} decreased from {before} to {after}"
            ),
        }
    }
}

#[test]
fn scrapes_never_go_backwards_while_rust_writers_hammer() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fixture_bin();
    let mut children = Children::default();
    for i in 0..WRITERS {
        children.push(
            Command::new(&bin)
                .arg("hammer")
                .arg(dir.path())
                .arg(format!("hammer-{i}"))
                .arg(SECONDS.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a hammer writer"),
        );
    }
    hammer_and_scrape(dir.path(), children, "rs_hammer");
}

/// The same with Python writers, whose files are resized (doubled and
/// remapped) while muster reads them.
#[test]
fn scrapes_never_go_backwards_while_python_writers_hammer() {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    children.push(
        Command::new(common::python())
            .arg(common::py_script("write_dir.py"))
            .arg(dir.path())
            .args(["hammer", "--seconds", &SECONDS.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python hammer writers"),
    );
    hammer_and_scrape(dir.path(), children, "py_hammer");
}

/// Scrapes `dir` while `children` write, checking every step; then checks
/// the totals against what the children print (JSON lines with
/// `<prefix>_total`, `<prefix>_seconds_count`, `<prefix>_seconds_sum` and
/// `<prefix>_series`).
fn hammer_and_scrape(dir: &Path, mut children: Children, prefix: &str) {
    let writers = children.0.len();
    let total_name = format!("{prefix}_total");
    let mut collector = Collector::new(dir);
    let mut prev = Snapshot::new();
    let mut step = 0usize;
    let mut cli_scrapes = 0;
    let mut fresh_scrapes = 0;
    let mut saw_progress = 0usize; // scrapes whose counter grew while writers ran
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(SECONDS + 60.0);
    let mut exited = vec![false; writers];
    // The CLI scrapes a few times, spread over the writers' run.
    let mut next_cli = start + Duration::from_millis(300);
    loop {
        for (i, child) in children.0.iter_mut().enumerate() {
            if !exited[i] {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "hammer writer {i} failed: {status}");
                    exited[i] = true;
                }
            }
        }
        let running = exited.iter().any(|e| !e);
        assert!(
            Instant::now() < deadline,
            "hammer writers did not finish within {:?}",
            deadline - start
        );
        step += 1;
        let (snapshot, source) = if Instant::now() >= next_cli && running {
            cli_scrapes += 1;
            next_cli += Duration::from_millis(700);
            let text = muster_scrape(dir, "text");
            (from_text(&String::from_utf8_lossy(&text)), "muster scrape")
        } else if step % 3 == 2 {
            fresh_scrapes += 1;
            let set = Collector::new(dir).collect().unwrap();
            (from_set(&set), "fresh Collector")
        } else {
            (
                from_set(&collector.collect().unwrap()),
                "long-lived Collector",
            )
        };
        check_step(&prev, &snapshot, step, source);
        let count = |s: &Snapshot| s.get(&format!("{total_name}{{}}")).copied().unwrap_or(0.0);
        if running && count(&snapshot) > count(&prev) {
            saw_progress += 1;
        }
        prev = snapshot;
        if !running {
            break;
        }
    }
    assert!(
        saw_progress >= 3,
        "only {saw_progress} of {step} scrapes saw the writers make progress: \
         the test did not scrape concurrently with the writers"
    );
    eprintln!(
        "{step} scrapes ({cli_scrapes} CLI, {fresh_scrapes} fresh Collector), \
         {saw_progress} saw the writers make progress"
    );
    assert!(
        cli_scrapes >= 2 && fresh_scrapes >= 1,
        "too few scrapes of some kind: {cli_scrapes} CLI, {fresh_scrapes} fresh Collector"
    );

    // What the writers say they did.
    let mut reported: BTreeMap<String, f64> = BTreeMap::new();
    for child in &mut children.0 {
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(!out.trim().is_empty(), "a writer reported nothing");
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("writer printed {line:?}: {e}"));
            for suffix in ["_total", "_seconds_count", "_seconds_sum", "_series"] {
                let key = format!("{prefix}{suffix}");
                let n = v[&key]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no {key} in {line}"));
                *reported.entry(key).or_default() += n;
            }
        }
    }
    let set = Collector::new(dir).collect().unwrap();
    let last = collector.collect().unwrap();
    assert_eq!(
        from_set(&set),
        from_set(&last),
        "a fresh and a long-lived collector disagree"
    );
    for suffix in ["_total", "_seconds_count", "_seconds_sum"] {
        let key = format!("{prefix}{suffix}");
        assert_eq!(
            set.value(&key, &[]),
            Some(reported[&key]),
            "{key}: merged value differs from what the writers reported"
        );
    }
    let inf_bucket = set.value(&format!("{prefix}_seconds_bucket"), &[("le", "+Inf")]);
    assert_eq!(
        inf_bucket,
        Some(reported[&format!("{prefix}_seconds_count")])
    );
    // Every writer creates the same label sets, each incremented once.
    let series = &set
        .family(&format!("{prefix}_series"))
        .expect("the hammer's series family")
        .samples;
    let total: f64 = series.iter().map(|s| s.value).sum();
    assert_eq!(
        total,
        reported[&format!("{prefix}_series")],
        "series created"
    );
    assert!(
        series.len() >= 1000,
        "only {} series were created",
        series.len()
    );
    // The files grew past Python's initial 64 KiB while being read.
    let biggest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(biggest > 64 * 1024, "largest file only {biggest} bytes");
}
