//! Protobuf exposition: the merged families as length-delimited
//! `io.prometheus.client.MetricFamily` messages (the
//! `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited` body), built from the `prometheus-client` crate's
//! generated data model.
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
//! `created_timestamp` (`start_timestamp` in the crate's copy of the schema,
//! the same field); the merge of a Python directory has none (Python writes
//! no created time in multiprocess mode), so it is left out.
//!
//! Counts are integers on the wire when they are whole (always so for what
//! the merge adds up), else the `_float` fields carry them.
//!
//! Native histogram buckets (on the model's `_count` sample) fill the same
//! `Histogram`: schema, zero threshold and count, spans and deltas of the
//! positive and negative buckets, next to the classic buckets when the
//! series has both. Exemplars go where the schema has them: a counter's
//! `Counter.exemplar`, a classic bucket's `Bucket.exemplar`, and for a
//! histogram with native buckets all of its bucket exemplars in
//! `Histogram.exemplars` too.

use std::hash::BuildHasher;

use hashbrown::HashMap;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
use prost::Message;

use std::sync::Arc;

use crate::model::{
    Exemplar, Labels, MetricFamily, MetricKind, MetricSet, NativeHistogram, Sample,
};
use crate::names::{escape_name, Escaping};

/// Encodes `set` as length-delimited `MetricFamily` messages, names shown by
/// `escaping` (`allow-utf-8`: as they are).
pub(crate) fn encode_protobuf(set: &MetricSet, escaping: Escaping) -> Vec<u8> {
    let samples: usize = set.families.iter().map(|f| f.samples.len()).sum();
    let mut out = Vec::with_capacity(samples * 48 + set.families.len() * 64);
    for family in &set.families {
        let message = family_message(family, escaping);
        // Writing into a `Vec` cannot run out of room: it grows.
        message
            .encode_length_delimited(&mut out)
            .expect("a Vec grows as needed");
    }
    out
}

/// The `MetricFamily` message of one merged family.
pub(crate) fn family_message(family: &MetricFamily, escaping: Escaping) -> pb::MetricFamily {
    // The names shown are Python's `underscores` escaping of the names as
    // written: any other scheme starts from the names as written.
    let name = if escaping == Escaping::Underscores {
        &family.name
    } else {
        family.written_name()
    };
    let (name, kind) = match family.kind {
        MetricKind::Counter => (format!("{name}_total"), pb::MetricType::Counter),
        MetricKind::Gauge(_) => (name.to_owned(), pb::MetricType::Gauge),
        MetricKind::Histogram => (name.to_owned(), pb::MetricType::Histogram),
        MetricKind::Summary => (name.to_owned(), pb::MetricType::Summary),
    };
    let labels = LabelNames { family, escaping };
    let metric = match family.kind {
        MetricKind::Counter => counter_metrics(family, labels),
        MetricKind::Gauge(_) => family
            .samples
            .iter()
            .map(|s| pb::Metric {
                label: labels.pairs(&s.labels, None),
                gauge: Some(pb::Gauge { value: s.value }),
                ..Default::default()
            })
            .collect(),
        MetricKind::Histogram => histogram_metrics(family, labels),
        MetricKind::Summary => summary_metrics(family, labels),
    };
    pb::MetricFamily {
        name: escape_name(&name, escaping, true).into_owned(),
        help: family.help.to_string(),
        r#type: kind as i32,
        metric,
        unit: String::new(),
    }
}

/// `name`'s suffix after the family name, if it has the family's name.
fn suffix<'a>(family: &MetricFamily, sample: &'a Sample) -> Option<&'a str> {
    sample.name.strip_prefix(&*family.name)
}

fn counter_metrics(family: &MetricFamily, labels: LabelNames<'_>) -> Vec<pb::Metric> {
    let mut metrics: Vec<(&Labels, pb::Metric)> = Vec::with_capacity(family.samples.len());
    let mut created = Vec::new();
    for sample in &family.samples {
        if suffix(family, sample) == Some("_created") {
            created.push(sample);
        } else {
            metrics.push((&sample.labels, counter_metric(sample, labels)));
        }
    }
    for c in created {
        if let Some((_, m)) = metrics
            .iter_mut()
            .find(|(l, _)| l.pairs() == c.labels.pairs())
        {
            if let Some(counter) = &mut m.counter {
                counter.start_timestamp = timestamp(c.value);
            }
        }
    }
    metrics.into_iter().map(|(_, m)| m).collect()
}

/// A counter's `Metric`, with its exemplar if it has one.
fn counter_metric(sample: &Sample, labels: LabelNames<'_>) -> pb::Metric {
    pb::Metric {
        label: labels.pairs(&sample.labels, None),
        counter: Some(pb::Counter {
            value: sample.value,
            exemplar: sample.exemplar.as_deref().map(exemplar),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An exemplar as the schema holds it (label names as recorded: they are
/// legacy names, checked when recorded).
fn exemplar(e: &Exemplar) -> pb::Exemplar {
    pb::Exemplar {
        label: e
            .labels
            .iter()
            .map(|(name, value)| pb::LabelPair {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        value: e.value,
        timestamp: timestamp(e.timestamp),
    }
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
                        .filter(|(n, _)| n != skip)
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
fn same_base(a: &[(String, String)], b: &[(String, String)], skip: &str) -> bool {
    let mut a = a.iter().filter(|(n, _)| n != skip);
    let mut b = b.iter().filter(|(n, _)| n != skip);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// One histogram label set, gathered from its samples.
#[derive(Default)]
struct HistogramSeries {
    buckets: Vec<pb::Bucket>,
    count: Option<f64>,
    sum: f64,
    created: Option<f64>,
    native: Option<Arc<NativeHistogram>>,
}

impl HistogramSeries {
    /// The `Histogram` message: classic buckets, native buckets, or both.
    fn finish(self) -> pb::Histogram {
        let native = self.native.clone();
        let mut histogram = self.finish_classic();
        if let Some(native) = native {
            histogram.schema = native.schema;
            histogram.zero_threshold = native.zero_threshold;
            (histogram.zero_count, histogram.zero_count_float) = split_count(native.zero_count);
            let (spans, deltas) = NativeHistogram::spans(&native.positive);
            histogram.positive_span = spans.iter().map(span).collect();
            histogram.positive_delta = deltas;
            let (spans, deltas) = NativeHistogram::spans(&native.negative);
            histogram.negative_span = spans.iter().map(span).collect();
            histogram.negative_delta = deltas;
            histogram.exemplars = histogram
                .bucket
                .iter()
                .filter_map(|b| b.exemplar.clone())
                .collect();
        }
        histogram
    }

    fn finish_classic(self) -> pb::Histogram {
        // Without `_count`, the `+Inf` bucket (the last) is the count.
        let count = self.count.or_else(|| {
            self.buckets.last().map(|b| {
                if b.cumulative_count_float > 0.0 {
                    b.cumulative_count_float
                } else {
                    b.cumulative_count as f64
                }
            })
        });
        let (sample_count, sample_count_float) = split_count(count.unwrap_or(0.0));
        pb::Histogram {
            sample_count,
            sample_count_float,
            sample_sum: self.sum,
            bucket: self.buckets,
            start_timestamp: self.created.and_then(timestamp),
            ..Default::default()
        }
    }
}

fn histogram_metrics(family: &MetricFamily, names: LabelNames<'_>) -> Vec<pb::Metric> {
    let mut series: Series<'_, HistogramSeries> = Series::new("le");
    for sample in &family.samples {
        let part = match suffix(family, sample) {
            Some(s @ ("_bucket" | "_count" | "_sum" | "_created")) => s,
            _ => continue,
        };
        let h = series.get(&sample.labels, HistogramSeries::default);
        match part {
            "_bucket" => {
                let Some(bound) = sample.labels.get("le").and_then(parse_bound) else {
                    continue;
                };
                let (cumulative_count, cumulative_count_float) = split_count(sample.value);
                h.buckets.push(pb::Bucket {
                    cumulative_count,
                    cumulative_count_float,
                    upper_bound: bound,
                    exemplar: sample.exemplar.as_deref().map(exemplar),
                });
            }
            "_count" => {
                h.count = Some(sample.value);
                h.native = sample.native.clone();
            }
            "_sum" => h.sum = sample.value,
            _ => h.created = Some(sample.value),
        }
    }
    series
        .items
        .into_iter()
        .map(|(labels, h)| pb::Metric {
            label: names.pairs(labels, Some("le")),
            histogram: Some(h.finish()),
            ..Default::default()
        })
        .collect()
}

fn summary_metrics(family: &MetricFamily, names: LabelNames<'_>) -> Vec<pb::Metric> {
    let mut series: Series<'_, pb::Summary> = Series::new("quantile");
    for sample in &family.samples {
        let part = match suffix(family, sample) {
            Some(s @ ("" | "_count" | "_sum" | "_created")) => s,
            _ => continue,
        };
        let s = series.get(&sample.labels, pb::Summary::default);
        match part {
            "" => {
                if let Some(quantile) = sample.labels.get("quantile").and_then(parse_bound) {
                    s.quantile.push(pb::Quantile {
                        quantile,
                        value: sample.value,
                    });
                }
            }
            // The schema has only an integer count for summaries.
            "_count" => s.sample_count = split_count(sample.value).0,
            "_sum" => s.sample_sum = sample.value,
            _ => s.start_timestamp = timestamp(sample.value),
        }
    }
    series
        .items
        .into_iter()
        .map(|(labels, s)| pb::Metric {
            label: names.pairs(labels, Some("quantile")),
            summary: Some(s),
            ..Default::default()
        })
        .collect()
}

/// How a family's label names are shown.
#[derive(Clone, Copy)]
struct LabelNames<'a> {
    family: &'a MetricFamily,
    escaping: Escaping,
}

impl LabelNames<'_> {
    /// The label pairs of `labels` but `skip`, names shown by the escaping
    /// (from the names as written, but for `underscores`).
    fn pairs(self, labels: &Labels, skip: Option<&str>) -> Vec<pb::LabelPair> {
        labels
            .pairs()
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != skip)
            .map(|(name, value)| {
                let name = match self.escaping {
                    Escaping::Underscores => name,
                    _ => self.family.written_label_name(name),
                };
                pb::LabelPair {
                    name: escape_name(name, self.escaping, false).into_owned(),
                    value: value.clone(),
                }
            })
            .collect()
    }
}

/// A count as the schema's integer field when it is whole and fits, else as
/// its float field (which overrides the integer one when above 0).
fn split_count(count: f64) -> (u64, f64) {
    if count.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&count) {
        (count as u64, 0.0)
    } else {
        (0, count)
    }
}

fn span(s: &crate::model::BucketSpan) -> pb::BucketSpan {
    pb::BucketSpan {
        offset: s.offset,
        length: s.length,
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

/// A time in seconds since the epoch as a protobuf `Timestamp`; `None` for
/// a value that is not a time (NaN, infinite, negative).
fn timestamp(seconds: f64) -> Option<prost_types::Timestamp> {
    if !seconds.is_finite() || seconds < 0.0 || seconds >= i64::MAX as f64 {
        return None;
    }
    let whole = seconds.floor();
    Some(prost_types::Timestamp {
        seconds: whole as i64,
        nanos: (((seconds - whole) * 1e9) as i32).min(999_999_999),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(Labels::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ))
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
            created,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000
            })
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
