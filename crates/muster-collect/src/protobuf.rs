//! Protobuf exposition: the merged families as length-delimited
//! `io.prometheus.client.MetricFamily` messages (the
//! `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited` body).
//!
//! Each family becomes one message, each label set one `Metric`:
//! - a counter `x` is the family `x_total` (as client_golang names it) with
//!   one `Counter` per label set;
//! - a gauge, one `Gauge`;
//! - a histogram, one `Histogram` per label set without `le`: its buckets
//!   (cumulative, `le` as the upper bound, `+Inf` included), `_count` and
//!   `_sum`;
//! - a summary, one `Summary` per label set without `quantile`: `_count`,
//!   `_sum` and any quantiles.
//!
//! A `<name>_created` sample of a counter, histogram or summary (the earliest
//! start, in seconds, of the processes that wrote the series) becomes its
//! `created_timestamp`; the merge of a Python directory has none (Python
//! writes no created time in multiprocess mode), so it is left out.
//!
//! Counts are integers on the wire when they are whole (always so for what
//! the merge adds up), else the `_float` fields carry them.
//!
//! The messages are written field by field with prost's wire helpers, from
//! the schema of the `prometheus-client` crate's `metrics.proto` (field
//! numbers below): building the crate's generated structs first (a `String`
//! per label name and value, every message sized twice) made a protobuf
//! scrape of a 64-worker directory half again slower than text, and it must
//! not be slower. The tests decode every body with the crate's generated
//! data model and compare with the crate's own encoding of the same
//! families (`tests/registry.rs`).
//!
//! Native histogram buckets (on the model's `_count` sample) fill the same
//! `Histogram`: schema, zero threshold and count, spans and deltas of the
//! positive and negative buckets, next to the classic buckets when the
//! series has both. Exemplars go where the schema has them: a counter's
//! `Counter.exemplar`, a classic bucket's `Bucket.exemplar`, and for a
//! histogram with native buckets all of its bucket exemplars in
//! `Histogram.exemplars` too.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashMap;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, sint32, sint64, WireType};

use crate::model::{
    BucketSpan, Exemplar, LabelPair, Labels, MetricFamily, MetricKind, MetricSet, NativeHistogram,
    Sample,
};
use crate::names::{escape_name, Escaping};

/// `MetricType` values.
const COUNTER: u64 = 0;
const GAUGE: u64 = 1;
const SUMMARY: u64 = 2;
const HISTOGRAM: u64 = 4;

/// Encodes `set` as length-delimited `MetricFamily` messages, names shown by
/// `escaping` (`allow-utf-8`: as they are).
pub(crate) fn encode_protobuf(set: &MetricSet, escaping: Escaping) -> Vec<u8> {
    let samples: usize = set.families.iter().map(|f| f.samples.len()).sum();
    let mut out = Vec::with_capacity(samples * 64 + set.families.len() * 64);
    for family in &set.families {
        length_delimited(&mut out, |out| write_family(out, family, escaping));
    }
    out
}

/// Writes what `body` writes, preceded by its length (a varint).
fn length_delimited(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    // One byte is room for the length of most messages; the body moves
    // right when its length needs more.
    let start = out.len();
    out.push(0);
    body(out);
    let len = out.len() - start - 1;
    let room = encoded_len_varint(len as u64);
    if room > 1 {
        out.resize(out.len() + room - 1, 0);
        out.copy_within(start + 1..start + 1 + len, start + room);
    }
    let mut prefix = &mut out[start..start + room];
    encode_varint(len as u64, &mut prefix);
}

/// A message field `field` holding what `body` writes.
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(field, WireType::LengthDelimited, out);
    length_delimited(out, body);
}

fn string(out: &mut Vec<u8>, field: u32, text: &str) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

fn double(out: &mut Vec<u8>, field: u32, value: f64) {
    encode_key(field, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

fn varint(out: &mut Vec<u8>, field: u32, value: u64) {
    encode_key(field, WireType::Varint, out);
    encode_varint(value, out);
}

/// A count: field `int_field` (`uint64`) when it is whole and fits, else
/// `float_field` (`double`, which overrides the integer one when above 0).
fn count(out: &mut Vec<u8>, int_field: u32, float_field: u32, count: f64) {
    if count.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&count) {
        varint(out, int_field, count as u64);
    } else {
        double(out, float_field, count);
    }
}

/// A `google.protobuf.Timestamp` field for a time in seconds since the
/// epoch; nothing for a value that is not a time (NaN, infinite, negative).
fn timestamp(out: &mut Vec<u8>, field: u32, seconds: f64) {
    if !seconds.is_finite() || seconds < 0.0 || seconds >= i64::MAX as f64 {
        return;
    }
    let whole = seconds.floor();
    let nanos = (((seconds - whole) * 1e9) as u64).min(999_999_999);
    message(out, field, |out| {
        varint(out, 1, whole as u64);
        if nanos > 0 {
            varint(out, 2, nanos);
        }
    });
}

/// Writes one `MetricFamily` message's fields: name (1), help (2), type (3),
/// metrics (4).
fn write_family(out: &mut Vec<u8>, family: &MetricFamily, escaping: Escaping) {
    // The names shown are Python's `underscores` escaping of the names as
    // written: any other scheme starts from the names as written.
    let name = if escaping == Escaping::Underscores {
        &family.name
    } else {
        family.written_name()
    };
    let labels = LabelNames { family, escaping };
    match family.kind {
        MetricKind::Counter => {
            string(
                out,
                1,
                &escape_name(&format!("{name}_total"), escaping, true),
            );
            string(out, 2, &family.help);
            varint(out, 3, COUNTER);
            write_counters(out, family, labels);
        }
        MetricKind::Gauge(_) => {
            string(out, 1, &escape_name(name, escaping, true));
            string(out, 2, &family.help);
            varint(out, 3, GAUGE);
            for sample in &family.samples {
                // Metric: labels (1), gauge (2) { value (1) }.
                message(out, 4, |out| {
                    labels.write(out, &sample.labels, None);
                    message(out, 2, |out| double(out, 1, sample.value));
                });
            }
        }
        MetricKind::Histogram => {
            string(out, 1, &escape_name(name, escaping, true));
            string(out, 2, &family.help);
            varint(out, 3, HISTOGRAM);
            write_histograms(out, family, labels);
        }
        MetricKind::Summary => {
            string(out, 1, &escape_name(name, escaping, true));
            string(out, 2, &family.help);
            varint(out, 3, SUMMARY);
            write_summaries(out, family, labels);
        }
    }
}

/// `name`'s suffix after the family name, if it has the family's name.
fn suffix<'a>(family: &MetricFamily, sample: &'a Sample) -> Option<&'a str> {
    sample.name.strip_prefix(&*family.name)
}

fn write_counters(out: &mut Vec<u8>, family: &MetricFamily, labels: LabelNames<'_>) {
    let is_created = |s: &Sample| suffix(family, s) == Some("_created");
    let created: Vec<&Sample> = family.samples.iter().filter(|s| is_created(s)).collect();
    for sample in family.samples.iter().filter(|s| !is_created(s)) {
        let start = created
            .iter()
            .find(|c| c.labels.pairs() == sample.labels.pairs())
            .map(|c| c.value);
        write_counter(out, sample, start, labels);
    }
}

/// A counter's `Metric`: labels (1), counter (3) { value (1), exemplar (2),
/// created_timestamp (3) }.
fn write_counter(out: &mut Vec<u8>, sample: &Sample, created: Option<f64>, labels: LabelNames<'_>) {
    message(out, 4, |out| {
        labels.write(out, &sample.labels, None);
        message(out, 3, |out| {
            double(out, 1, sample.value);
            if let Some(e) = &sample.exemplar {
                message(out, 2, |out| write_exemplar(out, e));
            }
            if let Some(created) = created {
                timestamp(out, 3, created);
            }
        });
    });
}

/// The label sets of a histogram or summary family, in order of first
/// appearance, each with its parts; `skip` is the label that tells a
/// series' samples apart (`le`, `quantile`).
struct Series<'a, T> {
    skip: &'static str,
    items: Vec<(&'a Labels, T)>,
    /// Items by the hash of their labels less `skip`.
    index: HashMap<u64, Vec<usize>, foldhash::fast::FixedState>,
}

impl<'a, T> Series<'a, T> {
    fn new(skip: &'static str) -> Series<'a, T> {
        Series {
            skip,
            items: Vec::new(),
            index: HashMap::default(),
        }
    }

    /// The parts of the series `labels` (less `skip`) belongs to, made with
    /// `new` if it is the first of its series. The merge gives a series'
    /// samples one after another, so the last series is looked at first.
    fn get(&mut self, labels: &'a Labels, new: impl FnOnce() -> T) -> &mut T {
        let skip = self.skip;
        let same = |i: &usize| same_base(self.items[*i].0.pairs(), labels.pairs(), skip);
        let last = self.items.len().checked_sub(1).filter(same);
        let index = match last {
            Some(i) => i,
            None => {
                let hash = self.index.hasher().hash_one(
                    labels
                        .pairs()
                        .iter()
                        .filter(|(n, _)| **n != *skip)
                        .collect::<Vec<_>>(),
                );
                let found = self
                    .index
                    .get(&hash)
                    .and_then(|c| c.iter().copied().find(same));
                match found {
                    Some(i) => i,
                    None => {
                        self.items.push((labels, new()));
                        let i = self.items.len() - 1;
                        self.index.entry(hash).or_default().push(i);
                        i
                    }
                }
            }
        };
        &mut self.items[index].1
    }
}

/// Whether two label sets are equal but for label `skip`.
fn same_base(a: &[LabelPair], b: &[LabelPair], skip: &str) -> bool {
    let mut a = a.iter().filter(|(n, _)| **n != *skip);
    let mut b = b.iter().filter(|(n, _)| **n != *skip);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// An `Exemplar` message's fields: labels (1: name (1), value (2)), value
/// (2), timestamp (3). Label names are as recorded: legacy names, checked
/// when recorded.
fn write_exemplar(out: &mut Vec<u8>, e: &Exemplar) {
    for (name, value) in &e.labels {
        message(out, 1, |out| {
            string(out, 1, name);
            string(out, 2, value);
        });
    }
    double(out, 2, e.value);
    timestamp(out, 3, e.timestamp);
}

/// One histogram label set, gathered from its samples.
#[derive(Default)]
struct HistogramSeries<'a> {
    /// Upper bound, cumulative count and exemplar of each bucket.
    buckets: Vec<(f64, f64, Option<&'a Exemplar>)>,
    count: Option<f64>,
    sum: f64,
    created: Option<f64>,
    native: Option<&'a Arc<NativeHistogram>>,
}

impl HistogramSeries<'_> {
    /// Writes the `Histogram` message's fields: sample_count (1) or
    /// sample_count_float (4), sample_sum (2), buckets (3: cumulative_count
    /// (1) or cumulative_count_float (4), upper_bound (2), exemplar (3)),
    /// the native buckets (5-14, see [`write_native`]), created_timestamp
    /// (15) and, with native buckets, every bucket exemplar (16).
    fn write(&self, out: &mut Vec<u8>) {
        // Without `_count`, the `+Inf` bucket (the last) is the count.
        let total = self
            .count
            .or_else(|| self.buckets.last().map(|b| b.1))
            .unwrap_or(0.0);
        count(out, 1, 4, total);
        double(out, 2, self.sum);
        for &(bound, cumulative, exemplar) in &self.buckets {
            message(out, 3, |out| {
                count(out, 1, 4, cumulative);
                double(out, 2, bound);
                if let Some(e) = exemplar {
                    message(out, 3, |out| write_exemplar(out, e));
                }
            });
        }
        if let Some(native) = self.native {
            write_native(out, native);
        }
        if let Some(created) = self.created {
            timestamp(out, 15, created);
        }
        if self.native.is_some() {
            for e in self.buckets.iter().filter_map(|b| b.2) {
                message(out, 16, |out| write_exemplar(out, e));
            }
        }
    }
}

/// A `Histogram`'s native fields: schema (5), zero_threshold (6),
/// zero_count (7) or zero_count_float (8), negative spans (9) and deltas
/// (10), positive spans (12) and deltas (13). A native histogram with no
/// observation gets one empty positive span, as client_golang gives it, so
/// that a reader still sees a native histogram.
fn write_native(out: &mut Vec<u8>, native: &NativeHistogram) {
    sint32::encode(5, &native.schema, out);
    double(out, 6, native.zero_threshold);
    count(out, 7, 8, native.zero_count);
    let (negative_spans, negative_deltas) = NativeHistogram::spans(&native.negative);
    let (mut positive_spans, positive_deltas) = NativeHistogram::spans(&native.positive);
    if positive_spans.is_empty() && negative_spans.is_empty() && native.zero_count == 0.0 {
        positive_spans.push(BucketSpan {
            offset: 0,
            length: 0,
        });
    }
    for (spans, deltas, span_field, delta_field) in [
        (&negative_spans, &negative_deltas, 9, 10),
        (&positive_spans, &positive_deltas, 12, 13),
    ] {
        // BucketSpan: offset (1, sint32), length (2).
        for span in spans {
            message(out, span_field, |out| {
                sint32::encode(1, &span.offset, out);
                varint(out, 2, u64::from(span.length));
            });
        }
        if !deltas.is_empty() {
            sint64::encode_packed(delta_field, deltas, out);
        }
    }
}

fn write_histograms(out: &mut Vec<u8>, family: &MetricFamily, names: LabelNames<'_>) {
    let mut series: Series<'_, HistogramSeries> = Series::new("le");
    for sample in &family.samples {
        let part = match suffix(family, sample) {
            Some(s @ ("_bucket" | "_count" | "_sum" | "_created")) => s,
            _ => continue,
        };
        let h = series.get(&sample.labels, HistogramSeries::default);
        match part {
            "_bucket" => {
                if let Some(bound) = sample.labels.get("le").and_then(parse_bound) {
                    h.buckets
                        .push((bound, sample.value, sample.exemplar.as_deref()));
                }
            }
            "_count" => {
                h.count = Some(sample.value);
                h.native = sample.native.as_ref();
            }
            "_sum" => h.sum = sample.value,
            _ => h.created = Some(sample.value),
        }
    }
    for (labels, h) in &series.items {
        // Metric: labels (1), histogram (7).
        message(out, 4, |out| {
            names.write(out, labels, Some("le"));
            message(out, 7, |out| h.write(out));
        });
    }
}

/// One summary label set, gathered from its samples.
#[derive(Default)]
struct SummarySeries {
    /// Quantile and value.
    quantiles: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
    created: Option<f64>,
}

fn write_summaries(out: &mut Vec<u8>, family: &MetricFamily, names: LabelNames<'_>) {
    let mut series: Series<'_, SummarySeries> = Series::new("quantile");
    for sample in &family.samples {
        let part = match suffix(family, sample) {
            Some(s @ ("" | "_count" | "_sum" | "_created")) => s,
            _ => continue,
        };
        let s = series.get(&sample.labels, SummarySeries::default);
        match part {
            "" => {
                if let Some(q) = sample.labels.get("quantile").and_then(parse_bound) {
                    s.quantiles.push((q, sample.value));
                }
            }
            "_count" => s.count = sample.value,
            "_sum" => s.sum = sample.value,
            _ => s.created = Some(sample.value),
        }
    }
    for (labels, s) in &series.items {
        // Metric: labels (1), summary (4) { sample_count (1), sample_sum (2),
        // quantiles (3: quantile (1), value (2)), created_timestamp (4) }.
        message(out, 4, |out| {
            names.write(out, labels, Some("quantile"));
            message(out, 4, |out| {
                // The schema has only an integer count for summaries.
                let whole = s.count.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&s.count);
                varint(out, 1, if whole { s.count as u64 } else { 0 });
                double(out, 2, s.sum);
                for &(q, v) in &s.quantiles {
                    message(out, 3, |out| {
                        double(out, 1, q);
                        double(out, 2, v);
                    });
                }
                if let Some(created) = s.created {
                    timestamp(out, 4, created);
                }
            });
        });
    }
}

/// How a family's label names are shown.
#[derive(Clone, Copy)]
struct LabelNames<'a> {
    family: &'a MetricFamily,
    escaping: Escaping,
}

impl LabelNames<'_> {
    /// Writes the label pairs of `labels` but `skip` (`Metric` field 1:
    /// name (1), value (2)), names shown by the escaping (from the names as
    /// written, but for `underscores`).
    fn write(self, out: &mut Vec<u8>, labels: &Labels, skip: Option<&str>) {
        for (name, value) in labels.pairs() {
            if Some(&**name) == skip {
                continue;
            }
            let name = match self.escaping {
                Escaping::Underscores => name,
                _ => self.family.written_label_name(name),
            };
            message(out, 1, |out| {
                string(out, 1, &escape_name(name, self.escaping, false));
                string(out, 2, value);
            });
        }
    }
}

/// A bucket bound or quantile from its label text (`+Inf` included).
fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
    use prost::Message;
    use std::sync::Arc;

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(Labels::new(pairs.iter().copied()))
    }

    fn sample(name: &str, pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels(pairs),
            value,
            exemplar: None,
            native: None,
        }
    }

    fn decode(bytes: &[u8]) -> Vec<pb::MetricFamily> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            out.push(pb::MetricFamily::decode_length_delimited(&mut rest).expect("decodes"));
        }
        out
    }

    #[test]
    fn created_samples_become_created_timestamps() {
        let set = MetricSet {
            families: vec![
                MetricFamily {
                    name: "c".into(),
                    help: "h".into(),
                    kind: MetricKind::Counter,
                    samples: vec![
                        sample("c_total", &[("a", "1")], 3.0),
                        sample("c_total", &[("a", "2")], 4.0),
                        sample("c_created", &[("a", "2")], 1_700_000_000.25),
                    ],
                    utf8_names: None,
                },
                MetricFamily {
                    name: "h".into(),
                    help: "h".into(),
                    kind: MetricKind::Histogram,
                    samples: vec![
                        sample("h_bucket", &[("le", "1.0")], 1.0),
                        sample("h_bucket", &[("le", "+Inf")], 2.5),
                        sample("h_count", &[], 2.5),
                        sample("h_sum", &[], 7.0),
                        sample("h_created", &[], 1_600_000_000.0),
                    ],
                    utf8_names: None,
                },
                MetricFamily {
                    name: "s".into(),
                    help: "h".into(),
                    kind: MetricKind::Summary,
                    samples: vec![
                        sample("s", &[("quantile", "0.5"), ("x", "y")], 0.25),
                        sample("s_count", &[("x", "y")], 2.0),
                        sample("s_sum", &[("x", "y")], 0.5),
                    ],
                    utf8_names: None,
                },
            ],
        };
        let families = decode(&encode_protobuf(&set, Escaping::Underscores));
        assert_eq!(families.len(), 3);
        let c = &families[0];
        assert_eq!(c.name, "c_total");
        assert_eq!(c.metric.len(), 2);
        assert_eq!(c.metric[0].counter.as_ref().unwrap().start_timestamp, None);
        let created = c.metric[1].counter.as_ref().unwrap().start_timestamp;
        assert_eq!(
            created.map(|t| (t.seconds, t.nanos)),
            Some((1_700_000_000, 250_000_000))
        );
        let h = families[1].metric[0].histogram.as_ref().unwrap();
        assert_eq!(h.sample_count, 0);
        assert_eq!(h.sample_count_float, 2.5);
        assert_eq!(h.sample_sum, 7.0);
        assert_eq!(h.bucket.len(), 2);
        assert_eq!(
            (h.bucket[0].cumulative_count, h.bucket[0].upper_bound),
            (1, 1.0)
        );
        assert_eq!(h.bucket[1].cumulative_count_float, 2.5);
        assert!(h.bucket[1].upper_bound.is_infinite());
        assert_eq!(h.start_timestamp.map(|t| t.seconds), Some(1_600_000_000));
        let s = &families[2].metric[0];
        assert_eq!(s.label.len(), 1);
        let summary = s.summary.as_ref().unwrap();
        assert_eq!((summary.sample_count, summary.sample_sum), (2, 0.5));
        assert_eq!(summary.quantile.len(), 1);
        assert_eq!(summary.start_timestamp, None);
    }

    #[test]
    fn names_are_written_by_the_requested_escaping() {
        let family = MetricFamily {
            name: "my_metric".into(),
            help: "h".into(),
            kind: MetricKind::Counter,
            samples: vec![sample(
                "my_metric_total",
                &[("a_b", "x"), ("le_x", "y")],
                1.0,
            )],
            utf8_names: Some(Arc::new(crate::model::Utf8Names {
                family: Some("my.metric".into()),
                labels: vec![("a_b".into(), "a.b".into())],
            })),
        };
        let set = MetricSet {
            families: vec![family],
        };
        for (escaping, name, label) in [
            (Escaping::AllowUtf8, "my.metric_total", "a.b"),
            (Escaping::Underscores, "my_metric_total", "a_b"),
            (Escaping::Dots, "my_dot_metric__total", "a_dot_b"),
            (Escaping::Values, "U__my_2e_metric__total", "U__a_2e_b"),
        ] {
            let f = &decode(&encode_protobuf(&set, escaping))[0];
            assert_eq!(f.name, name, "{escaping:?}");
            let labels: Vec<&str> = f.metric[0].label.iter().map(|l| l.name.as_str()).collect();
            let other = if escaping == Escaping::Dots {
                "le__x"
            } else {
                "le_x"
            };
            assert_eq!(labels, [label, other], "{escaping:?}");
        }
    }
}
