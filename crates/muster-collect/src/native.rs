//! muster's own files, which Python's collector never reads: native
//! histogram buckets (`native_<id>.muster`) and exemplars
//! (`exemplar_<id>.muster`), merged across processes and attached to the
//! samples the `*.db` merge made.
//!
//! Native buckets: every process's buckets of a series are reduced to the
//! lowest schema found among all of them (bucket `k` of schema `s` is bucket
//! `ceil(k / 2^(s - t))` of schema `t`) and added; the zero buckets and sums
//! are added; the zero threshold is the largest. The merged histogram goes
//! on the series' `_count` sample; a series with native buckets only gets
//! the samples of a classic histogram with one `+Inf` bucket, as
//! client_golang exposes it in text. Exemplars: per sample, the one with the
//! latest timestamp across processes.
//!
//! These files are read whole at every scrape (they hold a few entries per
//! series); a bad file or entry is skipped and reported like a bad `*.db`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hashbrown::HashMap;
use muster_store::format::{FileKind, HEADER_SIZE};
use muster_store::reader::{entries_sized, MappedFile};

use crate::key::{parse_key, Strings};
use crate::model::{
    Exemplar, LabelPair, Labels, MetricFamily, MetricKind, MetricSet, NativeHistogram, Sample,
};

/// A series: family name and labels sorted by name.
type SeriesKey = (String, Vec<LabelPair>);

/// One process's native part of one series.
#[derive(Default)]
struct Part {
    schema: Option<i32>,
    zero_threshold: Option<f64>,
    zero_count: f64,
    sum: f64,
    /// (negative, schema, index, count)
    buckets: Vec<(bool, i32, i32, f64)>,
}

/// What the muster files of a directory hold, read for one scrape.
#[derive(Default)]
pub(crate) struct MusterFiles {
    /// Per series, one part per file; and the family's help.
    native: BTreeMap<SeriesKey, Vec<Part>>,
    help: HashMap<String, String>,
    /// Per (sample name, sorted labels), the latest exemplar.
    exemplars: HashMap<(String, Vec<LabelPair>), Exemplar>,
    /// (file, problem) for files or entries that could not be read.
    pub(crate) problems: Vec<(String, String)>,
    /// Label names and values of the keys parsed.
    strings: Strings,
}

impl MusterFiles {
    /// Reads every `native_*.muster` and `exemplar_*.muster` in `dir` (the
    /// names `listing` found).
    pub(crate) fn read(dir: &Path, names: &[String]) -> MusterFiles {
        let mut files = MusterFiles::default();
        for name in names {
            let Some((kind, _)) = FileKind::parse_muster_file(name) else {
                continue;
            };
            let map = match MappedFile::open(&dir.join(name)) {
                Ok(map) => map,
                Err(e) => {
                    files.problems.push((name.clone(), e.to_string()));
                    continue;
                }
            };
            if let Err(problem) = files.read_file(&map, kind) {
                files.problems.push((name.clone(), problem));
            }
        }
        files
    }

    fn read_file(&mut self, map: &MappedFile, kind: FileKind) -> Result<(), String> {
        let used = map.used().map_err(|e| e.to_string())?;
        let mut parts: HashMap<SeriesKey, Part> = HashMap::new();
        let mut problem = None;
        for entry in entries_sized(map.bytes(), HEADER_SIZE, used, kind.payload_size()) {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            };
            let key = match parse_key(entry.key, &mut self.strings) {
                Ok(key) => key,
                Err(e) => {
                    problem.get_or_insert_with(|| e.to_string());
                    continue;
                }
            };
            if kind == FileKind::Exemplar {
                if let Some(stored) = map.load_exemplar(entry.value_pos) {
                    let id = (key.sample.into_owned(), key.labels);
                    let newer = self
                        .exemplars
                        .get(&id)
                        .is_none_or(|old| stored.timestamp > old.timestamp);
                    if newer {
                        let exemplar = Exemplar {
                            labels: stored.labels,
                            value: stored.value,
                            timestamp: stored.timestamp,
                        };
                        self.exemplars.insert(id, exemplar);
                    }
                }
                continue;
            }
            let value = map.load_value(entry.value_pos);
            let family = key.family.into_owned();
            let Some(part_name) = key.sample.strip_prefix(family.as_str()) else {
                problem.get_or_insert_with(|| "native entry of another family".into());
                continue;
            };
            let part_name = part_name.to_owned();
            let (mut schema, mut index) = (None, None);
            let mut labels = Vec::with_capacity(key.labels.len());
            for (name, v) in key.labels {
                match &*name {
                    "__schema" => schema = v.parse::<i32>().ok(),
                    "__index" => index = v.parse::<i32>().ok(),
                    _ => labels.push((name, v)),
                }
            }
            self.help
                .entry(family.clone())
                .or_insert_with(|| key.help.into_owned());
            let part = parts.entry((family, labels)).or_default();
            match (part_name.as_str(), schema, index) {
                ("_sum", ..) => part.sum += value,
                ("_zero_count", ..) => part.zero_count += value,
                ("_zero_threshold", ..) => part.zero_threshold = Some(value),
                ("_schema", ..) if value.fract() == 0.0 => part.schema = Some(value as i32),
                ("_positive", Some(s), Some(i)) if (-4..=8).contains(&s) => {
                    part.buckets.push((false, s, i, value))
                }
                ("_negative", Some(s), Some(i)) if (-4..=8).contains(&s) => {
                    part.buckets.push((true, s, i, value))
                }
                _ => {
                    problem.get_or_insert_with(|| {
                        format!(
                            "unknown native entry {:?}",
                            String::from_utf8_lossy(entry.key)
                        )
                    });
                }
            }
        }
        for (series, part) in parts {
            self.native.entry(series).or_default().push(part);
        }
        problem.map_or(Ok(()), Err)
    }

    /// Adds the native histograms and exemplars to `set`.
    pub(crate) fn attach(self, set: &mut MetricSet) {
        for ((family, labels), parts) in &self.native {
            let merged = merge_parts(parts);
            let help = self.help.get(family).cloned().unwrap_or_default();
            attach_native(set, family, &help, labels, merged);
        }
        if self.exemplars.is_empty() {
            return;
        }
        let mut sorted = Vec::new();
        for family in &mut set.families {
            if !matches!(family.kind, MetricKind::Counter | MetricKind::Histogram) {
                continue;
            }
            for sample in &mut family.samples {
                sorted.clear();
                sorted.extend(sample.labels.pairs().iter().cloned());
                sorted.sort();
                // A lookup by (name, labels) without building an owned key
                // per sample would need a borrowed form; sets are small here.
                let id = (sample.name.to_string(), std::mem::take(&mut sorted));
                if let Some(exemplar) = self.exemplars.get(&id) {
                    sample.exemplar = Some(Arc::new(exemplar.clone()));
                }
                sorted = id.1;
            }
        }
    }
}

/// Merges one series' parts (one per process).
fn merge_parts(parts: &[Part]) -> NativeHistogram {
    let lowest_bucket = parts.iter().flat_map(|p| &p.buckets).map(|b| b.1).min();
    let schema = lowest_bucket
        .or_else(|| parts.iter().filter_map(|p| p.schema).min())
        .unwrap_or(0)
        .clamp(-4, 8);
    let mut positive: BTreeMap<i32, f64> = BTreeMap::new();
    let mut negative: BTreeMap<i32, f64> = BTreeMap::new();
    let mut merged = NativeHistogram {
        schema,
        ..NativeHistogram::default()
    };
    for part in parts {
        merged.zero_count += part.zero_count;
        merged.sum += part.sum;
        if let Some(t) = part.zero_threshold.filter(|t| *t >= 0.0) {
            merged.zero_threshold = merged.zero_threshold.max(t);
        }
        for &(neg, s, index, count) in &part.buckets {
            let index = muster_metrics::reduce_index(index, s, schema);
            *if neg { &mut negative } else { &mut positive }
                .entry(index)
                .or_default() += count;
        }
    }
    let keep = |m: BTreeMap<i32, f64>| -> Vec<(i32, f64)> {
        m.into_iter().filter(|(_, c)| *c != 0.0).collect()
    };
    merged.positive = keep(positive);
    merged.negative = keep(negative);
    merged.count = merged.zero_count
        + merged.positive.iter().map(|b| b.1).sum::<f64>()
        + merged.negative.iter().map(|b| b.1).sum::<f64>();
    merged
}

/// Puts `native` on the `_count` sample of series `labels` of histogram
/// `family`, making the family or series (one `+Inf` bucket, count, sum)
/// when the `*.db` files have none.
fn attach_native(
    set: &mut MetricSet,
    family: &str,
    help: &str,
    labels: &[LabelPair],
    native: NativeHistogram,
) {
    let count_name = format!("{family}_count");
    let index = match set.families.iter().position(|f| &*f.name == family) {
        Some(i) => i,
        None => {
            set.families.push(MetricFamily {
                name: family.into(),
                help: help.into(),
                kind: MetricKind::Histogram,
                samples: Vec::new(),
                // Families with native buckets are made by muster-metrics,
                // whose names are legacy names.
                utf8_names: None,
            });
            set.families.len() - 1
        }
    };
    let target = &mut set.families[index];
    if target.kind != MetricKind::Histogram {
        tracing::warn!(
            family,
            "native buckets for a family of another type; not shown"
        );
        return;
    }
    let same_labels = |sample: &Sample| {
        let mut pairs = sample.labels.pairs().to_vec();
        pairs.sort();
        pairs == labels
    };
    if let Some(sample) = target
        .samples
        .iter_mut()
        .find(|s| *s.name == *count_name && same_labels(s))
    {
        sample.native = Some(Arc::new(native));
        return;
    }
    let base = Arc::new(Labels::new(labels.to_vec()));
    let mut with_le = labels.to_vec();
    with_le.push(("le".into(), "+Inf".into()));
    let sample = |name: String, labels: &Arc<Labels>, value: f64| Sample {
        name: name.into(),
        labels: labels.clone(),
        value,
        exemplar: None,
        native: None,
    };
    let (count, sum) = (native.count, native.sum);
    target.samples.push(sample(
        format!("{family}_bucket"),
        &Arc::new(Labels::new(with_le)),
        count,
    ));
    let mut count_sample = sample(count_name, &base, count);
    count_sample.native = Some(Arc::new(native));
    target.samples.push(count_sample);
    target
        .samples
        .push(sample(format!("{family}_sum"), &base, sum));
}
