//! Bridging to the official Rust client: merged multiprocess metrics inside
//! a user's `prometheus_client::registry::Registry`.
//!
//! That crate encodes OpenMetrics only, writes HELP unescaped (we escape it
//! first) and has no Summary type, so a
//! summary `x` is handed over as two untyped families `x_count` and `x_sum`;
//! histogram bucket counts become `u64`. Our own [`crate::encode`] has
//! neither limit.

use std::fmt;
use std::sync::Mutex;

use prometheus_client::collector::Collector as ClientCollector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::merge::Collector;
use crate::model::{escape_into, LabelPair, MetricFamily, MetricKind};

/// A `prometheus_client` collector that merges a multiprocess directory at
/// each encode: `registry.register_collector(Box::new(MultiprocessCollector::new(dir)))`.
pub struct MultiprocessCollector {
    inner: Mutex<Collector>,
}

impl MultiprocessCollector {
    /// A collector for `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> MultiprocessCollector {
        MultiprocessCollector {
            inner: Mutex::new(Collector::new(dir)),
        }
    }
}

impl fmt::Debug for MultiprocessCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiprocessCollector")
            .finish_non_exhaustive()
    }
}

impl ClientCollector for MultiprocessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let set = {
            let mut collector = self
                .inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match collector.collect() {
                Ok(set) => set,
                Err(e) => {
                    tracing::error!(error = %e, "multiprocess scrape failed");
                    return Ok(());
                }
            }
        };
        for family in &set.families {
            encode_family(&mut encoder, family)?;
        }
        Ok(())
    }
}

fn encode_family(encoder: &mut DescriptorEncoder, family: &MetricFamily) -> Result<(), fmt::Error> {
    // The crate writes HELP exactly as given: escape it as OpenMetrics requires.
    let mut help = String::with_capacity(family.help.len());
    escape_into(&mut help, &family.help, true);
    match family.kind {
        MetricKind::Counter | MetricKind::Gauge(_) => {
            let metric_type = if family.kind == MetricKind::Counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(&family.name, &help, None, metric_type)?;
            for sample in &family.samples {
                let value = Value(sample.value, metric_type);
                value.encode(metric.encode_family(&sample.labels.pairs())?)?;
            }
        }
        MetricKind::Histogram => {
            let mut metric =
                encoder.encode_descriptor(&family.name, &help, None, MetricType::Histogram)?;
            // One histogram per label set (`le` aside): its buckets (cumulative),
            // `_count` and `_sum`, as far as the files had them.
            let mut series: Option<HistogramParts> = None;
            for sample in &family.samples {
                let base: Vec<LabelPair> = sample
                    .labels
                    .pairs()
                    .iter()
                    .filter(|(name, _)| &**name != "le")
                    .cloned()
                    .collect();
                let parts = match &mut series {
                    Some(parts) if parts.base == base => parts,
                    _ => {
                        if let Some(done) = series.take() {
                            done.encode(&mut metric)?;
                        }
                        series.insert(HistogramParts::new(base))
                    }
                };
                parts.add(sample);
            }
            if let Some(done) = series {
                done.encode(&mut metric)?;
            }
        }
        MetricKind::Summary => {
            for suffix in ["_count", "_sum"] {
                let name = format!("{}{suffix}", family.name);
                let mut metric =
                    encoder.encode_descriptor(&name, &help, None, MetricType::Unknown)?;
                for sample in family.samples.iter().filter(|s| *s.name == *name) {
                    Value(sample.value, MetricType::Gauge)
                        .encode(metric.encode_family(&sample.labels.pairs())?)?;
                }
            }
        }
    }
    Ok(())
}

/// The samples of one histogram label set, gathered for the crate's encoder.
struct HistogramParts {
    /// The label set without `le`.
    base: Vec<LabelPair>,
    /// Upper bound and non-cumulative count.
    buckets: Vec<(f64, u64)>,
    /// The last cumulative bucket value.
    previous: f64,
    sum: Option<f64>,
}

impl HistogramParts {
    fn new(base: Vec<LabelPair>) -> HistogramParts {
        HistogramParts {
            base,
            buckets: Vec::new(),
            previous: 0.0,
            sum: None,
        }
    }

    fn add(&mut self, sample: &crate::model::Sample) {
        if sample.name.ends_with("_bucket") {
            let le = sample
                .labels
                .get("le")
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::INFINITY);
            let count = (sample.value - self.previous).max(0.0).round() as u64;
            self.buckets.push((le, count));
            self.previous = sample.value;
        } else if sample.name.ends_with("_sum") {
            self.sum = Some(sample.value);
        }
        // `_count` is the last cumulative bucket, which `previous` holds.
    }

    /// The crate has no histogram without a sum: a label set whose files held
    /// buckets but no `_sum` entry (a foreign or partly written file) goes out
    /// with a NaN sum rather than not at all.
    fn encode(
        self,
        metric: &mut prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), fmt::Error> {
        metric
            .encode_family(&self.base)?
            .encode_histogram::<NoLabelSet>(
                self.sum.unwrap_or(f64::NAN),
                self.previous.round() as u64,
                &self.buckets,
                None,
            )
    }
}

/// A merged value, encoded as the crate's counter or gauge.
struct Value(f64, MetricType);

impl Value {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), fmt::Error> {
        match self.1 {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, f64, f64>(&self.0, None),
            _ => encoder.encode_gauge(&self.0),
        }
    }
}
