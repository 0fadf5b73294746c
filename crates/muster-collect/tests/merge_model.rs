//! Property test: the merge of random multiprocess directories equals a plain
//! model of Python's `MultiProcessCollector` (prometheus_client 0.26,
//! `multiprocess.py`: `_read_metrics` + `_accumulate_metrics(accumulate=True)`).
//!
//! Directories hold several process ids with counters, summaries, histograms
//! (random bounds per process, always with `+Inf`) and gauges in all ten
//! modes, with random label sets and timestamps, written with
//! `muster_store::writer::FileWriter` at `FileKind::file_name(id)`. They are
//! merged in rounds: write, collect, write more (new values, new entries, new
//! processes, live gauge files removed as when a process dies), collect
//! again, with one long-lived (incremental) collector and a fresh one each
//! round. Every result must equal the model's.
//!
//! Values are small multiples of 1/4 so every sum is exact in any order; gauge
//! timestamps are distinct across processes so "most recent" has one answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use muster_collect::{Collector, MetricKind, MetricSet};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind, GaugeMode};
use proptest::prelude::*;

/// Histogram bounds and Python's `floatToGoString` of each (written out here,
/// so the model does not use the code under test): includes the exponent
/// form Python uses for values of 1e6 and more.
const BOUNDS: [(f64, &str); 10] = [
    (-1.5, "-1.5"),
    (0.0, "0.0"),
    (1e-05, "1e-05"),
    (0.005, "0.005"),
    (0.1, "0.1"),
    (1.0, "1.0"),
    (2.5, "2.5"),
    (10.0, "10.0"),
    (1000.0, "1000.0"),
    (1234567.0, "1.234567e+06"),
];
const INF: (f64, &str) = (f64::INFINITY, "+Inf");

const LABEL_NAMES: [&str; 3] = ["a", "b", "route"];
/// Label values, including the characters exposition escaping cares about.
const LABEL_VALUES: [&str; 7] = ["", "x", "y z", "q\"uote", "back\\slash", "new\nline", "ünï"];
/// Process ids (file name suffixes; no `_`, as in Python's pids and muster's
/// slot ids).
const IDS: [&str; 5] = ["w0", "w1", "12345", "supervisor", "metrics"];

#[derive(Clone, Debug)]
enum Kind {
    Counter,
    Summary,
    /// Indices into `BOUNDS` the family may use (each process uses a subset).
    Histogram(Vec<usize>),
    Gauge(GaugeMode),
}

#[derive(Clone, Debug)]
struct Fam {
    kind: Kind,
    /// How many of `LABEL_NAMES` this family uses (the first n).
    label_count: usize,
}

impl Fam {
    fn file_kind(&self) -> FileKind {
        match self.kind {
            Kind::Counter => FileKind::Counter,
            Kind::Summary => FileKind::Summary,
            Kind::Histogram(_) => FileKind::Histogram,
            Kind::Gauge(m) => FileKind::Gauge(m),
        }
    }
}

fn fam_name(i: usize) -> String {
    format!("fam{i}")
}

fn fam_help(i: usize) -> String {
    format!("help of fam{i}: \\ \" \n ü")
}

/// One write: sets the value (and for gauges the timestamp) of one entry.
#[derive(Clone, Debug)]
struct Write {
    proc_: usize,
    fam: usize,
    /// Indices into `LABEL_VALUES`, one per label name (extra ones unused).
    labels: [usize; 3],
    /// Which sample of the family: counter `_total`; summary 0 `_count`, 1
    /// `_sum`; histogram 0 `_sum`, else bucket `pick % bounds` (+Inf last);
    /// gauge the value.
    pick: usize,
    /// Quarters.
    value: i32,
    /// Gauges: 0 = timestamp never set, else the base of a timestamp unique
    /// to this process.
    ts: u16,
}

#[derive(Clone, Debug)]
enum Step {
    Write(Write),
    /// The process died: its live gauge files are removed (what muster's
    /// supervisor and Python's `mark_process_dead` do).
    Die(usize),
}

fn mode_strategy() -> impl Strategy<Value = GaugeMode> {
    proptest::sample::select(GaugeMode::ALL.to_vec())
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Counter),
        Just(Kind::Summary),
        proptest::sample::subsequence((0..BOUNDS.len()).collect::<Vec<_>>(), 0..=5)
            .prop_map(Kind::Histogram),
        mode_strategy().prop_map(Kind::Gauge),
        mode_strategy().prop_map(Kind::Gauge),
    ]
}

fn fams_strategy() -> impl Strategy<Value = Vec<Fam>> {
    prop::collection::vec(
        (kind_strategy(), 0usize..=3).prop_map(|(kind, label_count)| Fam { kind, label_count }),
        1..6,
    )
}

fn write_strategy(fams: usize) -> impl Strategy<Value = Write> {
    (
        0..IDS.len(),
        0..fams,
        [0..3usize, 0..3usize, 0..LABEL_VALUES.len()],
        0usize..16,
        -40i32..400,
        prop_oneof![1 => Just(0u16), 4 => 1u16..500],
    )
        .prop_map(|(proc_, fam, labels, pick, value, ts)| Write {
            proc_,
            fam,
            labels,
            pick,
            value,
            ts,
        })
}

/// Rounds of steps; a collect follows every round.
fn rounds_strategy(fams: usize) -> impl Strategy<Value = Vec<Vec<Step>>> {
    let step = prop_oneof![
        12 => write_strategy(fams).prop_map(Step::Write),
        1 => (0..IDS.len()).prop_map(Step::Die),
    ];
    prop::collection::vec(prop::collection::vec(step, 0..40), 1..4)
}

fn case_strategy() -> impl Strategy<Value = (Vec<Fam>, Vec<Vec<Step>>)> {
    fams_strategy().prop_flat_map(|fams| {
        let n = fams.len();
        (Just(fams), rounds_strategy(n))
    })
}

/// What the files hold: (process, file kind) -> key -> (family, sample name,
/// labels, value, timestamp), in the order the entries were appended.
type Entry = (usize, String, Vec<(String, String)>, f64, f64);

#[derive(Default)]
struct World {
    files: BTreeMap<(usize, String), Vec<(String, Entry)>>,
    writers: BTreeMap<(usize, String), FileWriter>,
}

impl World {
    fn apply(&mut self, dir: &Path, fams: &[Fam], step: &Step) {
        match step {
            Step::Die(p) => {
                let live: Vec<(usize, String)> = self
                    .files
                    .keys()
                    .filter(|(q, name)| *q == *p && name.starts_with("gauge_live"))
                    .cloned()
                    .collect();
                for k in live {
                    self.writers.remove(&k);
                    self.files.remove(&k);
                    std::fs::remove_file(dir.join(&k.1)).expect("remove live gauge file");
                }
            }
            Step::Write(w) => self.write(dir, fams, w),
        }
    }

    fn write(&mut self, dir: &Path, fams: &[Fam], w: &Write) {
        let fam = &fams[w.fam];
        let name = fam_name(w.fam);
        let mut labels: Vec<(String, String)> = (0..fam.label_count)
            .map(|i| {
                let v = if i == 2 {
                    w.labels[2]
                } else {
                    // The first two labels draw from few values, so series
                    // of different processes meet.
                    w.labels[i] % 3
                };
                (LABEL_NAMES[i].to_string(), LABEL_VALUES[v].to_string())
            })
            .collect();
        let quarter = f64::from(w.value) / 4.0;
        let (sample, value, ts) = match &fam.kind {
            Kind::Counter => (format!("{name}_total"), quarter.abs(), 0.0),
            Kind::Summary => {
                let s = if w.pick & 1 == 0 { "_count" } else { "_sum" };
                (format!("{name}{s}"), quarter.abs(), 0.0)
            }
            Kind::Histogram(bounds) => {
                // Each process uses a subset of the family's bounds (Python
                // unions them), always with +Inf.
                let mine: Vec<(f64, &str)> = bounds
                    .iter()
                    .filter(|&&b| (b + w.proc_) % 3 != 1)
                    .map(|&b| BOUNDS[b])
                    .chain([INF])
                    .collect();
                if w.pick == 0 {
                    (format!("{name}_sum"), quarter, 0.0)
                } else {
                    let (_, le) = mine[w.pick % mine.len()];
                    labels.push(("le".to_string(), le.to_string()));
                    (format!("{name}_bucket"), quarter.abs(), 0.0)
                }
            }
            Kind::Gauge(_) => {
                let ts = if w.ts == 0 {
                    0.0
                } else {
                    f64::from(w.ts) + w.proc_ as f64 / 16.0
                };
                (name.clone(), quarter, ts)
            }
        };
        let file = fam.file_kind().file_name(IDS[w.proc_]);
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = encode_key(&name, &sample, &pairs, &fam_help(w.fam));
        let writer = self
            .writers
            .entry((w.proc_, file.clone()))
            .or_insert_with(|| FileWriter::open(&dir.join(&file)).expect("open file"));
        let ptr = writer.value_ptr(&key).expect("entry");
        // SAFETY: the value and the timestamp are the two 8-byte words at
        // `ptr`, valid while `writer` lives (it is kept in `self.writers`).
        unsafe {
            (*ptr).store(value.to_bits(), Ordering::Release);
            (*ptr.add(1)).store(ts.to_bits(), Ordering::Release);
        }
        let entries = self.files.entry((w.proc_, file)).or_default();
        let entry = (w.fam, sample, labels, value, ts);
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = entry,
            None => entries.push((key, entry)),
        }
    }
}

/// Label name/value pairs.
type LabelPairs = Vec<(String, String)>;

/// (sample name, labels sorted by name) -> value.
type Flat = BTreeMap<(String, LabelPairs), f64>;

fn sorted(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
    labels.sort();
    labels
}

/// Python's `MultiProcessCollector` over the world, written plainly.
fn model(world: &World, fams: &[Fam]) -> Flat {
    let mut out = Flat::new();
    for (f, fam) in fams.iter().enumerate() {
        let name = fam_name(f);
        // Every entry of this family, in any file.
        let entries = world.files.iter().flat_map(|((p, _), es)| {
            es.iter()
                .filter(move |(_, e)| e.0 == f)
                .map(move |(_, e)| (*p, e))
        });
        match &fam.kind {
            Kind::Counter | Kind::Summary => {
                for (_, (_, sample, labels, value, _)) in entries {
                    *out.entry((sample.clone(), sorted(labels.clone())))
                        .or_default() += value;
                }
            }
            Kind::Histogram(_) => {
                // labels without le -> bound -> summed value.
                let mut buckets: BTreeMap<LabelPairs, Vec<(f64, f64)>> = BTreeMap::new();
                for (_, (_, sample, labels, value, _)) in entries {
                    let le = labels.iter().find(|(k, _)| k == "le");
                    match le {
                        Some((_, le)) => {
                            let bound: f64 = if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().expect("bound")
                            };
                            let without: Vec<(String, String)> =
                                labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                            let b = buckets.entry(sorted(without)).or_default();
                            match b.iter_mut().find(|(x, _)| *x == bound) {
                                Some(x) => x.1 += value,
                                None => b.push((bound, *value)),
                            }
                        }
                        None => {
                            *out.entry((sample.clone(), sorted(labels.clone())))
                                .or_default() += value;
                        }
                    }
                }
                for (labels, mut b) in buckets {
                    b.sort_by(|x, y| x.0.total_cmp(&y.0));
                    let mut acc = 0.0;
                    for (bound, value) in b {
                        acc += value;
                        let le = if bound == f64::INFINITY {
                            INF.1
                        } else {
                            BOUNDS.iter().find(|(x, _)| *x == bound).expect("known").1
                        };
                        let mut l = labels.clone();
                        l.push(("le".to_string(), le.to_string()));
                        out.insert((format!("{name}_bucket"), sorted(l)), acc);
                    }
                    out.insert((format!("{name}_count"), labels), acc);
                }
            }
            Kind::Gauge(mode) => {
                // (sample, labels) -> (value, timestamp)
                let mut acc: BTreeMap<(String, LabelPairs), (f64, f64)> = BTreeMap::new();
                for (p, (_, sample, labels, value, ts)) in entries {
                    let labels = sorted(labels.clone());
                    use GaugeMode::*;
                    match mode {
                        All | LiveAll => {
                            let mut l = labels;
                            l.push(("pid".to_string(), IDS[p].to_string()));
                            out.insert((sample.clone(), sorted(l)), *value);
                        }
                        Min | LiveMin => {
                            let e = acc.entry((sample.clone(), labels)).or_insert((*value, 0.0));
                            e.0 = e.0.min(*value);
                        }
                        Max | LiveMax => {
                            let e = acc.entry((sample.clone(), labels)).or_insert((*value, 0.0));
                            e.0 = e.0.max(*value);
                        }
                        Sum | LiveSum => {
                            acc.entry((sample.clone(), labels)).or_insert((0.0, 0.0)).0 += value;
                        }
                        MostRecent | LiveMostRecent => {
                            // Python: `if current_timestamp < timestamp`, from 0:
                            // a value whose timestamp is 0 never shows.
                            if *ts > 0.0 {
                                let e = acc.entry((sample.clone(), labels)).or_insert((0.0, 0.0));
                                if e.1 < *ts {
                                    *e = (*value, *ts);
                                }
                            }
                        }
                    }
                }
                for (k, (v, _)) in acc {
                    out.insert(k, v);
                }
            }
        }
    }
    out
}

/// The collector's samples for the model's families, flattened; checks the
/// family's type and help and that no sample appears twice.
fn flatten(set: &MetricSet, fams: &[Fam]) -> Result<Flat, TestCaseError> {
    let mut out = Flat::new();
    for family in &set.families {
        let Some(f) = (0..fams.len()).find(|f| fam_name(*f) == *family.name) else {
            return Err(TestCaseError::fail(format!(
                "unexpected family {}",
                family.name
            )));
        };
        let help = fam_help(f);
        prop_assert_eq!(&*family.help, help.as_str());
        let kind = match fams[f].kind {
            Kind::Counter => MetricKind::Counter,
            Kind::Summary => MetricKind::Summary,
            Kind::Histogram(_) => MetricKind::Histogram,
            Kind::Gauge(m) => MetricKind::Gauge(m),
        };
        prop_assert_eq!(family.kind, kind, "type of {}", family.name);
        for s in &family.samples {
            let key = (s.name.to_string(), sorted(owned(s.labels.pairs())));
            let dup = out.insert(key.clone(), s.value);
            prop_assert!(dup.is_none(), "sample {:?} appears twice", key);
        }
        if let Kind::Histogram(_) = fams[f].kind {
            check_histogram_order(family)?;
        }
    }
    Ok(out)
}

/// Label pairs as owned strings.
fn owned(pairs: &[muster_collect::LabelPair]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A histogram's buckets come in increasing `le` per label set.
fn check_histogram_order(family: &muster_collect::MetricFamily) -> Result<(), TestCaseError> {
    let mut last: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for s in family
        .samples
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
    {
        let le = s.labels.get("le").expect("bucket without le");
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse::<f64>().expect("le")
        };
        let rest: Vec<(String, String)> = sorted(
            owned(s.labels.pairs())
                .into_iter()
                .filter(|(k, _)| k != "le")
                .collect(),
        );
        if let Some(prev) = last.insert(rest.clone(), bound) {
            prop_assert!(
                prev < bound,
                "{}{:?}: le {} after {}",
                family.name,
                rest,
                bound,
                prev
            );
        }
    }
    Ok(())
}

fn assert_same(expected: &Flat, got: &Flat, what: &str) -> Result<(), TestCaseError> {
    if expected == got {
        return Ok(());
    }
    let mut report = String::new();
    for (k, v) in expected {
        match got.get(k) {
            None => report.push_str(&format!("  missing {k:?} = {v}\n")),
            Some(g) if g != v => report.push_str(&format!("  {k:?}: expected {v}, got {g}\n")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !expected.contains_key(k) {
            report.push_str(&format!("  unexpected {k:?} = {v}\n"));
        }
    }
    Err(TestCaseError::fail(format!("{what}:\n{report}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn merge_matches_python_model((fams, rounds) in case_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let mut world = World::default();
        let mut incremental = Collector::new(dir.path());
        for (r, round) in rounds.iter().enumerate() {
            for step in round {
                world.apply(dir.path(), &fams, step);
            }
            let expected = model(&world, &fams);
            let got = flatten(&incremental.collect().expect("collect"), &fams)?;
            assert_same(&expected, &got, &format!("round {r}, incremental collector"))?;
            let fresh = flatten(&Collector::new(dir.path()).collect().expect("collect"), &fams)?;
            assert_same(&expected, &fresh, &format!("round {r}, fresh collector"))?;
            prop_assert_eq!(incremental.errors_total(), 0);
        }
    }
}

/// Python parses every `le` with `float()` and prints it again with
/// `floatToGoString`, so a writer's other spelling of a bound (`1` for
/// `1.0`, as a non-Python writer may produce) lands in the same bucket.
#[test]
fn bucket_bounds_are_merged_by_value_not_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let help = "h";
    // One writer per file (a second one would be refused).
    let mut writers = BTreeMap::new();
    for (id, le, v) in [
        ("w0", "1.0", 1.0),
        ("w1", "1", 2.0),
        ("w1", "+Inf", 4.0),
        ("w0", "1e1", 8.0),
    ] {
        let w = writers.entry(id).or_insert_with(|| {
            FileWriter::open(&dir.path().join(FileKind::Histogram.file_name(id))).unwrap()
        });
        let key = encode_key("h", "h_bucket", &[("le", le)], help);
        let ptr = w.value_ptr(&key).unwrap();
        // SAFETY: the value word of an entry of `w`, which outlives the store.
        unsafe { (*ptr).store(f64::to_bits(v), Ordering::Release) };
    }
    let set = Collector::new(dir.path()).collect().unwrap();
    let got: Vec<(String, Option<String>, f64)> = set
        .family("h")
        .expect("family h")
        .samples
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.labels.get("le").map(str::to_string),
                s.value,
            )
        })
        .collect();
    let expected = vec![
        ("h_bucket".to_string(), Some("1.0".to_string()), 3.0),
        ("h_bucket".to_string(), Some("10.0".to_string()), 11.0),
        ("h_bucket".to_string(), Some("+Inf".to_string()), 15.0),
        ("h_count".to_string(), None, 15.0),
    ];
    assert_eq!(got, expected);
}
