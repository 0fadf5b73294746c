//! Native histograms and exemplars across processes: what each process
//! writes into its `*.muster` files, merged by the collector.
//!
//! The property: the merge of N processes' observations (each with its own
//! schema and bucket limit, so some reduce their resolution while they run)
//! equals one process observing all of them at the merged (lowest) schema
//! without a limit: same buckets, zero bucket, count and sum.

use std::sync::Arc;

use muster_collect::{encode, Collector, Format, MetricSet, NativeHistogram};
use muster_metrics::{Counter, Histogram, NativeBuckets, Store};
use proptest::prelude::*;

/// A store of its own in `dir` for process id `id`.
fn store(dir: &std::path::Path, id: &str) -> Store {
    let store = Store::new(dir);
    store.set_process_id(id).unwrap();
    store
}

/// The native histogram on the `_count` sample of `family` (no labels).
fn native_of(set: &MetricSet, family: &str) -> Arc<NativeHistogram> {
    let count = format!("{family}_count");
    set.family(family)
        .unwrap_or_else(|| panic!("no family {family} in {set:?}"))
        .samples
        .iter()
        .find(|s| *s.name == *count)
        .and_then(|s| s.native.clone())
        .unwrap_or_else(|| panic!("no native histogram on {count}"))
}

/// One process: its schema, bucket limit and observations (multiples of
/// 1/4 or tiny values, so sums are exact in any order).
#[derive(Clone, Debug)]
struct Process {
    schema: i8,
    max_buckets: u32,
    values: Vec<f64>,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-4000i32..4000).prop_map(|q| f64::from(q) / 4.0),
        1 => Just(0.0),
        1 => (1i32..64).prop_map(|e| 2f64.powi(-e)),
        1 => Just(f64::NAN),
    ]
}

fn process() -> impl Strategy<Value = Process> {
    (
        -4i8..=8,
        prop_oneof![Just(0u32), 2u32..40],
        prop::collection::vec(value(), 0..120),
    )
        .prop_map(|(schema, max_buckets, values)| Process {
            schema,
            max_buckets,
            values,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn merging_processes_equals_one_process_observing_everything(
        processes in prop::collection::vec(process(), 1..5)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut final_schemas = Vec::new();
        for (i, p) in processes.iter().enumerate() {
            let h = Histogram::builder("lat", "Latency.")
                .native(NativeBuckets::with_schema(p.schema).unwrap().max_buckets(p.max_buckets))
                .store(&store(dir.path(), &format!("w{i}")))
                .build()
                .unwrap();
            for v in &p.values {
                h.observe(*v);
            }
            let observed = p.values.iter().any(|v| v.abs() > muster_metrics::DEFAULT_ZERO_THRESHOLD);
            final_schemas.push((observed, h.native_schema().unwrap(), p.schema));
        }
        let merged = native_of(&Collector::new(dir.path()).collect().unwrap(), "lat");

        // The lowest schema any process wrote buckets at (or configured, if
        // none wrote any).
        let want_schema = final_schemas
            .iter()
            .filter(|(observed, ..)| *observed)
            .map(|(_, s, _)| i32::from(*s))
            .min()
            .unwrap_or_else(|| final_schemas.iter().map(|(.., c)| i32::from(*c)).min().unwrap());
        prop_assert_eq!(merged.schema, want_schema);

        let one = tempfile::tempdir().unwrap();
        let reference = Histogram::builder("lat", "Latency.")
            .native(NativeBuckets::with_schema(want_schema as i8).unwrap().max_buckets(0))
            .store(&store(one.path(), "all"))
            .build()
            .unwrap();
        let all: Vec<f64> = processes.iter().flat_map(|p| p.values.iter().copied()).collect();
        for v in &all {
            reference.observe(*v);
        }
        let expected = native_of(&Collector::new(one.path()).collect().unwrap(), "lat");
        prop_assert_eq!(&merged.positive, &expected.positive);
        prop_assert_eq!(&merged.negative, &expected.negative);
        prop_assert_eq!(merged.zero_count, expected.zero_count);
        let counted = all.iter().filter(|v| !v.is_nan()).count() as f64;
        prop_assert_eq!(merged.count, counted);
        prop_assert_eq!(expected.count, counted);
        let sum: f64 = all.iter().sum();
        prop_assert!(merged.sum == sum || (merged.sum.is_nan() && sum.is_nan()), "{} vs {}", merged.sum, sum);
        prop_assert_eq!(merged.zero_threshold, muster_metrics::DEFAULT_ZERO_THRESHOLD);
    }
}

#[test]
fn classic_and_native_buckets_are_shown_together() {
    let dir = tempfile::tempdir().unwrap();
    for (i, values) in [[0.3, 0.7], [1.5, 3.0]].iter().enumerate() {
        let h = Histogram::builder("req", "Requests.")
            .buckets(&[0.5, 1.0])
            .native(NativeBuckets::with_schema(0).unwrap())
            .store(&store(dir.path(), &format!("w{i}")))
            .family(&["route"])
            .unwrap();
        for v in values {
            h.with_label_values(&["/a"]).observe(*v);
        }
    }
    let set = Collector::new(dir.path()).collect().unwrap();
    assert_eq!(set.value("req_count", &[("route", "/a")]), Some(4.0));
    assert_eq!(
        set.value("req_bucket", &[("route", "/a"), ("le", "0.5")]),
        Some(1.0)
    );
    let native = set
        .family("req")
        .unwrap()
        .samples
        .iter()
        .find(|s| &*s.name == "req_count")
        .and_then(|s| s.native.clone())
        .unwrap();
    // Schema 0: 0.3 in (0.25, 0.5] = -1, 0.7 in (0.5, 1] = 0, 1.5 = 1, 3 = 2.
    assert_eq!(native.positive, [(-1, 1.0), (0, 1.0), (1, 1.0), (2, 1.0)]);
    assert_eq!((native.count, native.sum), (4.0, 5.5));
    // The text formats are unchanged by native buckets (they cannot show them).
    let text = encode(&set, Format::Text);
    assert!(text.contains("req_count{route=\"/a\"} 4.0\n"), "{text}");
}

#[test]
fn a_native_only_histogram_shows_one_inf_bucket_count_and_sum() {
    let dir = tempfile::tempdir().unwrap();
    let h = Histogram::builder("solo", "Native only.")
        .native(NativeBuckets::default())
        .store(&store(dir.path(), "w0"))
        .build()
        .unwrap();
    h.observe(2.0);
    h.observe(-2.0);
    let set = Collector::new(dir.path()).collect().unwrap();
    assert_eq!(set.value("solo_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(set.value("solo_count", &[]), Some(2.0));
    assert_eq!(set.value("solo_sum", &[]), Some(0.0));
    let native = native_of(&set, "solo");
    assert_eq!(native.schema, 3);
    assert_eq!(native.positive, [(8, 1.0)]);
    assert_eq!(native.negative, [(8, 1.0)]);
}

#[test]
fn the_latest_exemplar_across_processes_is_shown_in_openmetrics() {
    let dir = tempfile::tempdir().unwrap();
    let first = Counter::new_in(&store(dir.path(), "w0"), "jobs", "Jobs.").unwrap();
    let second = Counter::new_in(&store(dir.path(), "w1"), "jobs", "Jobs.").unwrap();
    first.inc_with_exemplar(&[("trace_id", "older")]).unwrap();
    second.inc_with_exemplar(&[("trace_id", "newer")]).unwrap();
    first.inc();
    let h = Histogram::new_in(&store(dir.path(), "w2"), "lat", "Latency.", &[0.1, 1.0]).unwrap();
    h.observe_with_exemplar(0.5, &[("trace_id", "a\"b")])
        .unwrap();

    let set = Collector::new(dir.path()).collect().unwrap();
    let om = encode(&set, Format::OpenMetrics);
    let line = om.lines().find(|l| l.starts_with("jobs_total ")).unwrap();
    let (head, exemplar) = line.split_once(" # ").unwrap();
    assert_eq!(head, "jobs_total 3.0");
    assert!(exemplar.starts_with("{trace_id=\"newer\"} 1.0 "), "{line}");
    let ts: f64 = exemplar.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 60.0..=now).contains(&ts), "{ts}");
    let bucket = om
        .lines()
        .find(|l| l.starts_with("lat_bucket{le=\"1.0\"}"))
        .unwrap();
    assert!(bucket.contains(" # {trace_id=\"a\\\"b\"} 0.5 "), "{bucket}");
    assert!(!om
        .lines()
        .any(|l| l.starts_with("lat_bucket{le=\"0.1\"}") && l.contains('#')));
    // Text 0.0.4 has no exemplars.
    assert!(!encode(&set, Format::Text).contains("trace_id"));
}

#[test]
fn a_bad_muster_file_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let c = Counter::new_in(&store(dir.path(), "w0"), "jobs", "Jobs.").unwrap();
    c.inc_with_exemplar(&[("trace_id", "x")]).unwrap();
    std::fs::write(
        dir.path().join("native_w9.muster"),
        b"\xff\xff\xff\x7fgarbage",
    )
    .unwrap();
    let mut collector = Collector::new(dir.path());
    let set = collector.collect().unwrap();
    assert_eq!(set.value("jobs_total", &[]), Some(1.0));
    assert!(
        collector
            .last_errors()
            .iter()
            .any(|(file, _)| file == "native_w9.muster"),
        "{:?}",
        collector.last_errors()
    );
    assert!(encode(&set, Format::OpenMetrics).contains("trace_id=\"x\""));
}

/// Protobuf: a histogram with classic and native buckets carries both in one
/// `Histogram` (spans and deltas as client_golang writes them), with the
/// exemplars of its buckets; a counter carries its exemplar.
#[test]
fn protobuf_carries_native_buckets_classic_buckets_and_exemplars() {
    use muster_collect::{Escaping, Exposition, MediaType};
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    for (i, values) in [[0.3, 0.7, 3.0], [-1.5, 0.0, 100.0]].iter().enumerate() {
        let s = store(dir.path(), &format!("w{i}"));
        let h = Histogram::builder("req", "Requests.")
            .buckets(&[0.5, 1.0])
            .native(NativeBuckets::with_schema(0).unwrap())
            .store(&s)
            .build()
            .unwrap();
        for v in values {
            h.observe_with_exemplar(*v, &[("trace_id", &format!("t{i}"))])
                .unwrap();
        }
        Counter::new_in(&s, "jobs", "Jobs.")
            .unwrap()
            .inc_with_exemplar(&[("trace_id", "j")])
            .unwrap();
    }
    let set = Collector::new(dir.path()).collect().unwrap();
    let body = Exposition::new(MediaType::Protobuf, Escaping::Underscores).encode(&set);
    let mut rest = &body[..];
    let mut families = Vec::new();
    while !rest.is_empty() {
        families.push(pb::MetricFamily::decode_length_delimited(&mut rest).unwrap());
    }
    let req = families.iter().find(|f| f.name == "req").unwrap();
    let h = req.metric[0].histogram.as_ref().unwrap();
    assert_eq!((h.sample_count, h.sample_sum), (6, 102.5));
    assert_eq!(h.bucket.len(), 3, "classic buckets alongside");
    assert_eq!(h.schema, 0);
    assert_eq!(h.zero_count, 1);
    // Positive: 0.3 -> -1, 0.7 -> 0, 3 -> 2, 100 -> 7: spans [-1, 2] (gap
    // of one filled), [4 after, 1]; deltas of 1, 1, 0, 1 then 0.
    assert_eq!(
        h.positive_span
            .iter()
            .map(|s| (s.offset, s.length))
            .collect::<Vec<_>>(),
        [(-1, 4), (4, 1)]
    );
    assert_eq!(h.positive_delta, [1, 0, -1, 1, 0]);
    assert_eq!(
        h.negative_span
            .iter()
            .map(|s| (s.offset, s.length))
            .collect::<Vec<_>>(),
        [(1, 1)]
    );
    assert_eq!(h.negative_delta, [1]);
    let traced: Vec<&str> = h
        .bucket
        .iter()
        .filter_map(|b| b.exemplar.as_ref())
        .map(|e| e.label[0].value.as_str())
        .collect();
    assert_eq!(traced.len(), 3, "one exemplar per classic bucket");
    assert_eq!(
        h.exemplars.len(),
        3,
        "and all of them for the native histogram"
    );
    let jobs = families.iter().find(|f| f.name == "jobs_total").unwrap();
    let e = jobs.metric[0]
        .counter
        .as_ref()
        .unwrap()
        .exemplar
        .as_ref()
        .unwrap();
    assert_eq!(
        (e.label[0].name.as_str(), e.label[0].value.as_str(), e.value),
        ("trace_id", "j", 1.0)
    );
    assert!(e.timestamp.unwrap().seconds > 1_700_000_000);
}

#[test]
fn spans_fill_gaps_of_up_to_two_buckets() {
    let spans = |b: &[(i32, f64)]| {
        let (spans, deltas) = NativeHistogram::spans(b);
        (
            spans
                .iter()
                .map(|s| (s.offset, s.length))
                .collect::<Vec<_>>(),
            deltas,
        )
    };
    assert_eq!(spans(&[]), (vec![], vec![]));
    assert_eq!(spans(&[(3, 2.0)]), (vec![(3, 1)], vec![2]));
    assert_eq!(
        spans(&[(0, 1.0), (3, 2.0)]),
        (vec![(0, 4)], vec![1, -1, 0, 2])
    );
    assert_eq!(
        spans(&[(0, 1.0), (4, 2.0)]),
        (vec![(0, 1), (3, 1)], vec![1, 1])
    );
}
