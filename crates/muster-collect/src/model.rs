//! The merged result of a scrape: families of samples.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

use muster_store::GaugeMode;

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Sum over processes.
    Counter,
    /// Merged by the mode.
    Gauge(GaugeMode),
    /// Buckets summed per bound and made cumulative.
    Histogram,
    /// Count and sum, summed.
    Summary,
}

impl MetricKind {
    /// The name in `# TYPE` lines.
    pub fn type_name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge(_) => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// A label's name and value. Shared: the series of one key (a gauge's per
/// process, a histogram's buckets) hold the same strings, not copies.
pub type LabelPair = (Arc<str>, Arc<str>);

/// A label set, with its exposition text rendered once.
#[derive(Debug, PartialEq, Eq)]
pub struct Labels {
    pairs: Vec<LabelPair>,
    rendered: String,
}

impl Labels {
    /// Labels from name/value pairs, kept in the given order.
    pub fn new<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Labels
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        // From a Vec of `LabelPair`s, the Vec itself is kept.
        let pairs: Vec<LabelPair> = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let size: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut rendered = String::with_capacity(size);
        for (name, value) in &pairs {
            render_pair(&mut rendered, name, value);
        }
        Labels { pairs, rendered }
    }

    /// No labels.
    pub fn empty() -> Labels {
        Labels {
            pairs: Vec::new(),
            rendered: String::new(),
        }
    }

    /// These labels and one more, `name="value"`, last: the same as
    /// [`Labels::new`] with the pair appended, without rendering these again.
    pub fn with(&self, name: &Arc<str>, value: &Arc<str>) -> Labels {
        let mut pairs = Vec::with_capacity(self.pairs.len() + 1);
        pairs.extend(self.pairs.iter().cloned());
        pairs.push((name.clone(), value.clone()));
        let mut rendered =
            String::with_capacity(self.rendered.len() + name.len() + value.len() + 4);
        rendered.push_str(&self.rendered);
        render_pair(&mut rendered, name, value);
        Labels { pairs, rendered }
    }

    /// The name/value pairs.
    pub fn pairs(&self) -> &[LabelPair] {
        &self.pairs
    }

    /// `name="value",...` with values escaped (the same in both formats);
    /// empty for no labels.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| &**v)
    }
}

/// Appends `name="value"` (value escaped) to rendered labels, after a comma
/// unless it is the first.
fn render_pair(rendered: &mut String, name: &str, value: &str) {
    if !rendered.is_empty() {
        rendered.push(',');
    }
    rendered.push_str(name);
    rendered.push_str("=\"");
    escape_into(rendered, value, true);
    rendered.push('"');
}

/// Escapes `\` and newline, and `"` when `quote`, as the exposition formats
/// require: label values always escape `"`, HELP text only in OpenMetrics.
pub(crate) fn escape_into(out: &mut String, text: &str, quote: bool) {
    // Nearly every text has nothing to escape: found out with memchr's
    // vector search (each label value of each new series comes here).
    let bytes = text.as_bytes();
    let special = if quote {
        memchr::memchr3(b'\\', b'\n', b'"', bytes)
    } else {
        memchr::memchr2(b'\\', b'\n', bytes)
    };
    if special.is_none() {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// One sample: a name, labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample name (`x_total`, `x_bucket`, ...).
    pub name: Arc<str>,
    /// Its labels (for buckets, `le` is the last one).
    pub labels: Arc<Labels>,
    /// The merged value.
    pub value: f64,
    /// The latest exemplar across processes (counters' `_total` and
    /// histograms' `_bucket` samples; see [`Exemplar`]).
    pub exemplar: Option<Arc<Exemplar>>,
    /// A histogram's native buckets merged across processes, on its
    /// `_count` sample (see [`NativeHistogram`]).
    pub native: Option<Arc<NativeHistogram>>,
}

/// An exemplar: labels (such as `trace_id`), the value it was recorded
/// with and when (seconds since the epoch). A merge keeps the latest.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Label names and values, as recorded.
    pub labels: Vec<(String, String)>,
    /// The observed value (the increment, for a counter).
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

/// One series of a native (sparse exponential) histogram, merged across
/// processes: every process's buckets reduced to the lowest schema any of
/// them used, and added.
///
/// At `schema` the bucket with index `k` counts the values in
/// `(2^((k-1)/2^schema), 2^(k/2^schema)]` (negative values mirrored);
/// values with `|v| <= zero_threshold` count in the zero bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativeHistogram {
    /// The resolution, -4..=8.
    pub schema: i32,
    /// The zero bucket's upper bound (the largest any process used).
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Observations in all buckets (NaN observations are in no bucket and
    /// not counted, as in the classic buckets).
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Positive buckets: (index, count), increasing index, counts not
    /// cumulative, no zero counts.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets, the same way (index of the magnitude).
    pub negative: Vec<(i32, f64)>,
}

/// A run of consecutive buckets in protobuf's sparse layout: `offset` from
/// the end of the previous span (from 0 for the first) and `length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpan {
    /// Gap to the previous span's end (the first span's start index).
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

impl NativeHistogram {
    /// `buckets` (sorted by index) as protobuf's spans and count deltas
    /// (each count minus the previous one). Gaps of up to two empty buckets
    /// are filled with zeros instead of starting a new span, as
    /// client_golang does.
    pub fn spans(buckets: &[(i32, f64)]) -> (Vec<BucketSpan>, Vec<i64>) {
        let mut spans: Vec<BucketSpan> = Vec::new();
        let mut deltas = Vec::new();
        let mut previous_count = 0i64;
        let mut next_index = 0i32;
        for &(index, count) in buckets {
            let count = count as i64;
            let gap = index - next_index;
            match spans.last_mut() {
                Some(span) if (0..=2).contains(&gap) => {
                    for _ in 0..gap {
                        deltas.push(-previous_count);
                        previous_count = 0;
                    }
                    span.length += gap as u32 + 1;
                }
                Some(_) => spans.push(BucketSpan {
                    offset: gap,
                    length: 1,
                }),
                None => spans.push(BucketSpan {
                    offset: index,
                    length: 1,
                }),
            }
            deltas.push(count - previous_count);
            previous_count = count;
            next_index = index + 1;
        }
        (spans, deltas)
    }
}

/// The names of a family as they were written (any UTF-8) where they differ
/// from the names shown, which are escaped as Python's exposition shows them
/// (`my.metric` is shown as `my_metric`). Kept so that a scraper asking for
/// `escaping=allow-utf-8` sees `"my.metric"`, and `dots`/`values` escape
/// from the name as written.
///
/// Names are merged as shown (as Python's default exposition shows them):
/// when two written names are shown alike (`a.b` and `a_b`), their series are
/// one, and the first written name the merge met is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Utf8Names {
    /// The family name as written (without `_total` for counters), when it
    /// is not the name shown.
    pub family: Option<Arc<str>>,
    /// Label names as written, by the name shown.
    pub labels: Vec<(String, Arc<str>)>,
}

impl Utf8Names {
    /// Records what a key wrote: its family name if that differs from the
    /// name shown, and its label names that differ (shown, written); the
    /// first written name of each shown name is kept.
    pub(crate) fn note(&mut self, family: Option<&str>, labels: &[(String, String)]) {
        if self.family.is_none() {
            self.family = family.map(Arc::from);
        }
        for (shown, written) in labels {
            if !self.labels.iter().any(|(s, _)| s == shown) {
                self.labels.push((shown.clone(), written.as_str().into()));
            }
        }
    }
}

/// A metric family: name, help, type and merged samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// The family name (without `_total` for counters), as shown: legacy
    /// characters only, escaped as Python's exposition escapes them.
    pub name: Arc<str>,
    /// The help text.
    pub help: Arc<str>,
    /// The type.
    pub kind: MetricKind,
    /// Samples; a histogram's come per label set as buckets in increasing
    /// `le`, then `_count`, then `_sum`.
    pub samples: Vec<Sample>,
    /// The names as written where they differ from those shown; `None` when
    /// all are legacy names.
    pub utf8_names: Option<Arc<Utf8Names>>,
}

impl MetricFamily {
    /// The family name as written (as shown when not known otherwise).
    pub(crate) fn written_name(&self) -> &str {
        self.utf8_names
            .as_ref()
            .and_then(|u| u.family.as_deref())
            .unwrap_or(&self.name)
    }

    /// A sample name (as shown) of this family as written: the written
    /// family name with the sample's suffix (`_total`, `_bucket`, ...).
    pub(crate) fn written_sample_name<'a>(&'a self, shown: &'a str) -> Cow<'a, str> {
        match (
            self.utf8_names.as_ref().and_then(|u| u.family.as_deref()),
            shown.strip_prefix(&*self.name),
        ) {
            (Some(written), Some(suffix)) => Cow::Owned(format!("{written}{suffix}")),
            _ => Cow::Borrowed(shown),
        }
    }

    /// A label name (as shown) as written.
    pub(crate) fn written_label_name<'a>(&'a self, shown: &'a str) -> &'a str {
        self.utf8_names
            .as_ref()
            .and_then(|u| u.labels.iter().find(|(s, _)| s == shown))
            .map_or(shown, |(_, w)| w)
    }

    /// Whether some label name of the family is written otherwise than shown.
    pub(crate) fn has_utf8_labels(&self) -> bool {
        self.utf8_names
            .as_ref()
            .is_some_and(|u| !u.labels.is_empty())
    }
}

/// Everything a scrape returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricSet {
    /// The families, each with at least one sample.
    pub families: Vec<MetricFamily>,
}

impl MetricSet {
    /// The family called `name`.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| &*f.name == name)
    }

    /// The value of sample `name` with exactly these labels (any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| {
                &*s.name == name
                    && s.labels.pairs.len() == labels.len()
                    && labels.iter().all(|(n, v)| s.labels.get(n) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Appends a family built from plain values (for metrics a process
    /// keeps in memory, such as the collector's own).
    pub fn push_simple(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        sample: &str,
        value: f64,
    ) {
        self.families.push(MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples: vec![Sample {
                name: sample.into(),
                labels: Arc::new(Labels::empty()),
                value,
                exemplar: None,
                native: None,
            }],
            utf8_names: None,
        });
    }
}

impl MetricSet {
    /// Adds `value` to the unlabelled sample `<name>_total` of the counter
    /// family `name`, making the sample or the family if the set has none:
    /// a count a process keeps in memory joins the count the directory
    /// already holds, and the family appears once. (If `name` is a family of
    /// another type, the set is left as it is.)
    pub fn add_to_counter(&mut self, name: &str, help: &str, value: f64) {
        let sample = format!("{name}_total");
        let Some(family) = self.families.iter_mut().find(|f| &*f.name == name) else {
            self.push_simple(name, help, MetricKind::Counter, &sample, value);
            return;
        };
        if family.kind != MetricKind::Counter {
            tracing::warn!(
                family = name,
                "a family of this name but another type exists; not adding to it"
            );
            return;
        }
        match family
            .samples
            .iter_mut()
            .find(|s| *s.name == *sample && s.labels.pairs().is_empty())
        {
            Some(s) => s.value += value,
            None => family.samples.push(Sample {
                name: sample.into(),
                labels: Arc::new(Labels::empty()),
                value,
                exemplar: None,
                native: None,
            }),
        }
    }
}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The rendered text follows from the pairs.
        self.pairs.hash(state);
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('{')?;
        f.write_str(&self.rendered)?;
        f.write_char('}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_added_renders_as_if_the_set_were_made_with_it() {
        let sets: [&[(&str, &str)]; 3] =
            [&[], &[("route", "/a")], &[("a", "x\"y\\z\n"), ("b", "")]];
        for set in sets {
            let pairs = |extra: Option<(&str, &str)>| {
                set.iter()
                    .copied()
                    .chain(extra)
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            };
            for (name, value) in [("le", "+Inf"), ("pid", "w\"1\\")] {
                let added = Labels::new(pairs(None)).with(&name.into(), &value.into());
                assert_eq!(added, Labels::new(pairs(Some((name, value)))));
            }
        }
    }
}
