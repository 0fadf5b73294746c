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
            let mut labels: Vec<(String, String)> = s
                .labels
                .pairs()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
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

// --- protobuf: muster's encoder against the crate's ---------------------------

use muster_collect::{Collector, Escaping, Exposition, MediaType};
use muster_store::GaugeMode;
use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as pb};
use prost::Message;

/// SplitMix64, so a seed is the same directory everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Adds `delta` to entry `sample{labels}` of family `family` in the file of
/// `kind` of process `id`.
fn write(
    dir: &Path,
    kind: FileKind,
    id: &str,
    family: &str,
    sample: &str,
    labels: &[(&str, &str)],
    delta: f64,
) {
    let writer = FileWriter::open(&dir.join(kind.file_name(id))).unwrap();
    let key = encode_key(family, sample, labels, "Help text.");
    let slot = unsafe { &*writer.value_ptr(&key).unwrap() };
    let v = f64::from_bits(slot.load(Ordering::Relaxed)) + delta;
    slot.store(v.to_bits(), Ordering::Relaxed);
}

/// A directory of three processes with counters, gauges (two modes),
/// histograms and summaries under random label sets and values (whole
/// counts, as the crate's histogram takes).
fn random_dir(dir: &Path, seed: u64) {
    let mut rng = Rng(seed);
    for id in ["p1", "p2", "p3"] {
        for _ in 0..1 + rng.below(12) {
            let route = format!("/r{}", rng.below(5));
            let method = ["GET", "POST"][rng.below(2) as usize];
            let labels = [("method", method), ("route", route.as_str())];
            let whole = rng.below(1000) as f64;
            let quarters = rng.below(4000) as f64 / 4.0;
            match rng.below(5) {
                0 => write(
                    dir,
                    FileKind::Counter,
                    id,
                    "requests",
                    "requests_total",
                    &labels,
                    whole,
                ),
                1 => write(
                    dir,
                    FileKind::Gauge(GaugeMode::LiveSum),
                    id,
                    "inflight",
                    "inflight",
                    &labels,
                    quarters,
                ),
                2 => write(
                    dir,
                    FileKind::Gauge(GaugeMode::All),
                    id,
                    "temperature",
                    "temperature",
                    &labels,
                    quarters - 500.0,
                ),
                3 => {
                    for le in ["0.1", "1.0", "+Inf"] {
                        let with_le = [labels[0], labels[1], ("le", le)];
                        write(
                            dir,
                            FileKind::Histogram,
                            id,
                            "latency",
                            "latency_bucket",
                            &with_le,
                            rng.below(50) as f64,
                        );
                    }
                    write(
                        dir,
                        FileKind::Histogram,
                        id,
                        "latency",
                        "latency_sum",
                        &labels,
                        quarters,
                    );
                }
                _ => {
                    write(
                        dir,
                        FileKind::Summary,
                        id,
                        "sizes",
                        "sizes_count",
                        &labels,
                        whole,
                    );
                    write(
                        dir,
                        FileKind::Summary,
                        id,
                        "sizes",
                        "sizes_sum",
                        &labels,
                        quarters,
                    );
                }
            }
        }
    }
}

fn decode_delimited(mut bytes: &[u8]) -> Vec<pb::MetricFamily> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(
            pb::MetricFamily::decode_length_delimited(&mut bytes)
                .expect("a delimited MetricFamily"),
        );
    }
    out
}

/// muster's protobuf exposition of a directory decodes to the same
/// `MetricFamily` messages as the crate's own protobuf encoding of the same
/// merged families (through [`MultiprocessCollector`]); summaries, which the
/// crate hands over as untyped `x_count` and `x_sum`, carry the same values.
#[test]
fn protobuf_matches_the_crates_own_encoding() {
    for seed in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        random_dir(dir.path(), seed);
        let set = Collector::new(dir.path()).collect().unwrap();
        let ours = decode_delimited(
            &Exposition::new(MediaType::Protobuf, Escaping::Underscores).encode(&set),
        );

        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(MultiprocessCollector::new(dir.path())));
        let bytes = prometheus_protobuf::encode_to_vec(&registry).unwrap();
        let theirs = decode_delimited(&bytes);

        let summaries: Vec<&pb::MetricFamily> = ours
            .iter()
            .filter(|f| f.r#type == pb::MetricType::Summary as i32)
            .collect();
        let ours_comparable: Vec<&pb::MetricFamily> = ours
            .iter()
            .filter(|f| f.r#type != pb::MetricType::Summary as i32)
            .collect();
        let theirs_comparable: Vec<&pb::MetricFamily> = theirs
            .iter()
            .filter(|f| f.r#type != pb::MetricType::Untyped as i32)
            .collect();
        assert!(
            !ours_comparable.is_empty(),
            "seed {seed}: nothing to compare"
        );
        assert_eq!(ours_comparable, theirs_comparable, "seed {seed}");

        for summary in summaries {
            for (suffix, pick) in [
                (
                    "_count",
                    (|s: &pb::Summary| s.sample_count as f64) as fn(&pb::Summary) -> f64,
                ),
                ("_sum", |s: &pb::Summary| s.sample_sum),
            ] {
                let name = format!("{}{suffix}", summary.name);
                let untyped = theirs
                    .iter()
                    .find(|f| f.name == name)
                    .unwrap_or_else(|| panic!("seed {seed}: no {name}"));
                // The bridge writes each as a gauge value in an untyped family.
                let want: Vec<(Vec<pb::LabelPair>, f64)> = untyped
                    .metric
                    .iter()
                    .map(|m| (m.label.clone(), m.gauge.as_ref().expect("a value").value))
                    .collect();
                let got: Vec<(Vec<pb::LabelPair>, f64)> = summary
                    .metric
                    .iter()
                    .map(|m| (m.label.clone(), pick(m.summary.as_ref().unwrap())))
                    .collect();
                assert_eq!(got, want, "seed {seed}: {name}");
            }
        }
    }
}
