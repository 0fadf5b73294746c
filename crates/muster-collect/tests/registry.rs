//! The `prometheus_client` bridge on histograms whose files are incomplete.

use std::path::Path;
use std::sync::atomic::Ordering;

use muster_collect::{parse, Format, MultiprocessCollector};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind};

/// Adds `delta` to the histogram entry `sample{labels}` of process "p1".
fn add(dir: &Path, sample: &str, labels: &[(&str, &str)], delta: f64) {
    let writer = FileWriter::open(&dir.join(FileKind::Histogram.file_name("p1"))).unwrap();
    let key = encode_key("latency", sample, labels, "Latency.");
    let slot = unsafe { &*writer.value_ptr(&key).unwrap() };
    let v = f64::from_bits(slot.load(Ordering::Relaxed)) + delta;
    slot.store(v.to_bits(), Ordering::Relaxed);
}

/// A parsed sample: name, labels in name order, value.
type Parsed = (String, Vec<(String, String)>, f64);

/// The bridge's exposition of `dir`, parsed back.
fn bridged(dir: &Path) -> Vec<Parsed> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(MultiprocessCollector::new(dir)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let set = parse(&text, Format::OpenMetrics).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    set.families
        .iter()
        .flat_map(|f| &f.samples)
        .map(|s| {
            // The crate writes `le` first; compare label sets in name order.
            let mut labels = s.labels.pairs().to_vec();
            labels.sort();
            (s.name.to_string(), labels, s.value)
        })
        .collect()
}

fn value(samples: &[Parsed], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    let mut found = samples
        .iter()
        .filter(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v);
    let v = found
        .next()
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {samples:?}"));
    assert!(found.next().is_none(), "{name}{labels:?} twice");
    v
}

#[test]
fn a_label_set_without_sum_keeps_its_buckets_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // "a" and "c" are complete; "b" has buckets but no _sum entry (a foreign
    // or partly written file). Written in the order a, b, c.
    for (route, fast, slow, sum) in [
        ("a", 1.0, 2.0, Some(3.5)),
        ("b", 4.0, 8.0, None),
        ("c", 16.0, 32.0, Some(40.0)),
    ] {
        add(
            d,
            "latency_bucket",
            &[("route", route), ("le", "0.1")],
            fast,
        );
        add(
            d,
            "latency_bucket",
            &[("route", route), ("le", "+Inf")],
            slow,
        );
        if let Some(sum) = sum {
            add(d, "latency_sum", &[("route", route)], sum);
        }
    }
    let s = bridged(d);
    for (route, fast, total) in [("a", 1.0, 3.0), ("b", 4.0, 12.0), ("c", 16.0, 48.0)] {
        assert_eq!(
            value(&s, "latency_bucket", &[("route", route), ("le", "0.1")]),
            fast,
            "{route}"
        );
        assert_eq!(
            value(&s, "latency_bucket", &[("route", route), ("le", "+Inf")]),
            total,
            "{route}"
        );
        assert_eq!(
            value(&s, "latency_count", &[("route", route)]),
            total,
            "{route}"
        );
    }
    assert_eq!(value(&s, "latency_sum", &[("route", "a")]), 3.5);
    assert!(value(&s, "latency_sum", &[("route", "b")]).is_nan());
    assert_eq!(value(&s, "latency_sum", &[("route", "c")]), 40.0);
}
