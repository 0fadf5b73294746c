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
use crate::model::{escape_into, MetricFamily, MetricKind};

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
            // Samples come per label set: buckets (cumulative), _count, _sum.
            let mut buckets: Vec<(f64, u64)> = Vec::new();
            let mut previous = 0.0;
            let mut count = 0.0;
            for sample in &family.samples {
                if sample.name.ends_with("_bucket") {
                    let le = sample
                        .labels
                        .get("le")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::INFINITY);
                    buckets.push((le, (sample.value - previous).max(0.0).round() as u64));
                    previous = sample.value;
                } else if sample.name.ends_with("_count") {
                    count = sample.value;
                } else {
                    metric
                        .encode_family(&sample.labels.pairs())?
                        .encode_histogram::<NoLabelSet>(
                            sample.value,
                            count.round() as u64,
                            &buckets,
                            None,
                        )?;
                    buckets.clear();
                    previous = 0.0;
                }
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
