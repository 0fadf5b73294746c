//! Histograms and summaries: distributions of observed values.

use std::sync::{Arc, OnceLock};

use muster_store::{
    encode_labels, float_to_go_string, ExemplarCell, ExemplarError, FileKind, Store, ValueCell,
};

use crate::desc::{Desc, MetricError};
use crate::family::{Family, LabelSet, Member};
use crate::native::{NativeBuckets, NativeCells};

/// Python's default bucket bounds (seconds), `+Inf` included.
pub const DEFAULT_BUCKETS: [f64; 15] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    f64::INFINITY,
];

/// Counts observations in buckets, and sums them.
///
/// Classic buckets: each process writes one non-cumulative count per bucket
/// and the sum, as Python does; a scrape adds them up and makes the buckets
/// cumulative. Native buckets (see [`NativeBuckets`] and
/// [`Histogram::builder`]) go to muster's own file, which Python's collector
/// does not read; a histogram may have both.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    bounds: Arc<[f64]>,
    buckets: Box<[ValueCell]>,
    /// The classic sum (`None` for a histogram with native buckets only).
    sum: Option<ValueCell>,
    native: Option<NativeCells>,
    /// One slot per classic bucket, or one for a native-only histogram;
    /// made when the first exemplar arrives.
    exemplars: Box<[OnceLock<ExemplarCell>]>,
    store: Store,
}

/// How a histogram's series are laid out: classic bounds (empty for none)
/// and native buckets. (Public only because [`Member`] names it.)
#[derive(Clone, Debug)]
pub struct HistogramConfig {
    bounds: Arc<[f64]>,
    native: Option<NativeBuckets>,
}

/// Builds a [`Histogram`] (or a family of them) with classic buckets,
/// native buckets, or both.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use muster_metrics::{Histogram, NativeBuckets, Store};
/// let store = Store::new(dir.path());
/// let latency = Histogram::builder("request_seconds", "Request latency.")
///     .buckets(&[0.1, 0.5, 1.0])
///     .native(NativeBuckets::with_factor(1.1).unwrap())
///     .store(&store)
///     .family(&["route"])
///     .unwrap();
/// latency.with_label_values(&["/"]).observe(0.25);
/// ```
#[derive(Debug)]
pub struct HistogramBuilder<'a> {
    name: &'a str,
    help: &'a str,
    store: Store,
    buckets: Option<Vec<f64>>,
    native: Option<NativeBuckets>,
}

impl<'a> HistogramBuilder<'a> {
    /// Classic bucket upper bounds, increasing (`+Inf` is added). Without
    /// this, a histogram with native buckets has no classic ones, and one
    /// without has Python's [`DEFAULT_BUCKETS`].
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.buckets = Some(bounds.to_vec());
        self
    }

    /// Native (sparse exponential) buckets as well.
    pub fn native(mut self, native: NativeBuckets) -> Self {
        self.native = Some(native);
        self
    }

    /// Writes into `store` instead of the default store.
    pub fn store(mut self, store: &Store) -> Self {
        self.store = store.clone();
        self
    }

    fn parts(&self, labels: &[&str]) -> Result<(Desc, HistogramConfig), MetricError> {
        let bounds = match (&self.buckets, &self.native) {
            (Some(b), _) => bounds(b)?,
            (None, None) => bounds(&DEFAULT_BUCKETS)?,
            (None, Some(_)) => Arc::from([]),
        };
        let desc = Desc::new(
            &self.store,
            self.name,
            self.help,
            labels,
            &["le"],
            FileKind::Histogram,
        )?;
        Ok((
            desc,
            HistogramConfig {
                bounds,
                native: self.native,
            },
        ))
    }

    /// A histogram without labels.
    pub fn build(self) -> Result<Histogram, MetricError> {
        let (desc, config) = self.parts(&[])?;
        Ok(Histogram::build(&Arc::new(desc), &config, &[]))
    }

    /// A family of histograms with these label names.
    pub fn family(self, labels: &[&str]) -> Result<Family<Histogram>, MetricError> {
        let (desc, config) = self.parts(labels)?;
        Ok(Family::new(desc, config))
    }

    /// A family of histograms labelled by the type `L`.
    pub fn typed_family<L: LabelSet>(self) -> Result<Family<Histogram, L>, MetricError> {
        let (desc, config) = self.parts(L::NAMES)?;
        Ok(Family::new(desc, config))
    }
}

impl Histogram {
    /// A builder for a histogram with classic buckets, native buckets or
    /// both, in the default store unless [`HistogramBuilder::store`] says.
    pub fn builder<'a>(name: &'a str, help: &'a str) -> HistogramBuilder<'a> {
        HistogramBuilder {
            name,
            help,
            store: Store::global().clone(),
            buckets: None,
            native: None,
        }
    }

    /// A histogram without labels, in the default store. `buckets` are upper
    /// bounds in increasing order; `+Inf` is added if missing.
    pub fn new(name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, MetricError> {
        Histogram::new_in(Store::global(), name, help, buckets)
    }

    /// A histogram without labels, in `store`.
    pub fn new_in(
        store: &Store,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricError> {
        Histogram::builder(name, help)
            .buckets(buckets)
            .store(store)
            .build()
    }

    /// A family of histograms with these label names, in the default store.
    pub fn family(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<Family<Histogram>, MetricError> {
        Histogram::family_in(Store::global(), name, help, labels, buckets)
    }

    /// A family of histograms with these label names, in `store`.
    pub fn family_in(
        store: &Store,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<Family<Histogram>, MetricError> {
        Histogram::builder(name, help)
            .buckets(buckets)
            .store(store)
            .family(labels)
    }

    /// A family of histograms labelled by the type `L`, in the default store.
    pub fn typed_family<L: LabelSet>(
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Family<Histogram, L>, MetricError> {
        Histogram::typed_family_in(Store::global(), name, help, buckets)
    }

    /// A family of histograms labelled by the type `L`, in `store`.
    pub fn typed_family_in<L: LabelSet>(
        store: &Store,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Family<Histogram, L>, MetricError> {
        Histogram::builder(name, help)
            .buckets(buckets)
            .store(store)
            .typed_family()
    }

    /// Records one observation. As in Python, NaN is added to the sum but
    /// counted in no bucket (`NaN <= bound` is false even for `+Inf`); the
    /// native buckets do the same.
    #[inline]
    pub fn observe(&self, value: f64) {
        let cells = &*self.0;
        // Bounds are few and sorted: a forward scan beats a binary search.
        if let Some(index) = cells.bounds.iter().position(|b| value <= *b) {
            cells.buckets[index].add(1.0);
        }
        if let Some(sum) = &cells.sum {
            sum.add(value);
        }
        if let Some(native) = &cells.native {
            native.observe(value);
        }
    }

    /// Records one observation with an exemplar (labels such as
    /// `trace_id`, OpenMetrics' limit of 128 characters): the latest
    /// exemplar of the value's classic bucket (or of the series, without
    /// classic buckets) in this process. The observation is recorded
    /// whatever the labels; an error says why the exemplar was not.
    pub fn observe_with_exemplar(
        &self,
        value: f64,
        labels: &[(&str, &str)],
    ) -> Result<(), ExemplarError> {
        self.observe(value);
        let cells = &*self.0;
        let slot = if cells.bounds.is_empty() {
            Some(0)
        } else {
            cells.bounds.iter().position(|b| value <= *b)
        };
        let encoded = encode_labels(labels)?;
        if let Some(slot) = slot {
            let exemplar = cells.exemplars[slot].get_or_init(|| {
                let key = match cells.buckets.get(slot) {
                    Some(bucket) => bucket.key().to_owned(),
                    None => cells
                        .native
                        .as_ref()
                        .map(NativeCells::exemplar_key)
                        .unwrap_or_default(),
                };
                ExemplarCell::new_in(&cells.store, key)
            });
            exemplar.set(&encoded, value, now());
        }
        Ok(())
    }

    /// This process's sum of observations.
    pub fn sum(&self) -> f64 {
        match (&self.0.sum, &self.0.native) {
            (Some(sum), _) => sum.get(),
            (None, Some(native)) => native.sum(),
            (None, None) => 0.0,
        }
    }

    /// This process's number of observations.
    pub fn count(&self) -> f64 {
        match &self.0.native {
            Some(native) if self.0.buckets.is_empty() => native.count(),
            _ => self.0.buckets.iter().map(ValueCell::get).sum(),
        }
    }

    /// This process's number of observations in native buckets (`None`
    /// without native buckets).
    pub fn native_count(&self) -> Option<f64> {
        self.0.native.as_ref().map(NativeCells::count)
    }

    /// The schema this process makes new native buckets at (the configured
    /// one, or lower after the bucket limit halved the resolution).
    pub fn native_schema(&self) -> Option<i8> {
        self.0.native.as_ref().map(NativeCells::schema)
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn bounds(buckets: &[f64]) -> Result<Arc<[f64]>, MetricError> {
    let mut bounds = buckets.to_vec();
    if bounds.iter().any(|b| b.is_nan()) {
        return Err(MetricError::InvalidBuckets("a bound is NaN".into()));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(MetricError::InvalidBuckets(
            "bounds must be strictly increasing".into(),
        ));
    }
    if bounds.last() != Some(&f64::INFINITY) {
        bounds.push(f64::INFINITY);
    }
    Ok(bounds.into())
}

impl Member for Histogram {
    type Config = HistogramConfig;

    fn build(desc: &Arc<Desc>, config: &HistogramConfig, values: &[&str]) -> Histogram {
        let buckets: Box<[ValueCell]> = config
            .bounds
            .iter()
            .map(|b| {
                let le = float_to_go_string(*b);
                desc.cell(desc.key("_bucket", values, Some(("le", &le))))
            })
            .collect();
        let sum = (!buckets.is_empty()).then(|| desc.cell(desc.key("_sum", values, None)));
        buckets.iter().for_each(ValueCell::touch);
        sum.iter().for_each(ValueCell::touch);
        let native = config
            .native
            .map(|native| NativeCells::new(desc, native, values));
        let exemplars = (0..buckets.len().max(1)).map(|_| OnceLock::new()).collect();
        Histogram(Arc::new(HistogramCells {
            bounds: config.bounds.clone(),
            buckets,
            sum,
            native,
            exemplars,
            store: desc.store.clone(),
        }))
    }
}

/// Counts and sums observations (no quantiles, as in Python's multiprocess mode).
#[derive(Clone, Debug)]
pub struct Summary(Arc<[ValueCell; 2]>);

impl Summary {
    /// A summary without labels, in the default store.
    pub fn new(name: &str, help: &str) -> Result<Summary, MetricError> {
        Summary::new_in(Store::global(), name, help)
    }

    /// A summary without labels, in `store`.
    pub fn new_in(store: &Store, name: &str, help: &str) -> Result<Summary, MetricError> {
        let desc = Arc::new(summary_desc(store, name, help, &[])?);
        Ok(Summary::build(&desc, &(), &[]))
    }

    /// A family of summaries with these label names, in the default store.
    pub fn family(name: &str, help: &str, labels: &[&str]) -> Result<Family<Summary>, MetricError> {
        Summary::family_in(Store::global(), name, help, labels)
    }

    /// A family of summaries with these label names, in `store`.
    pub fn family_in(
        store: &Store,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<Family<Summary>, MetricError> {
        Ok(Family::new(summary_desc(store, name, help, labels)?, ()))
    }

    /// A family of summaries labelled by the type `L`, in the default store.
    pub fn typed_family<L: LabelSet>(
        name: &str,
        help: &str,
    ) -> Result<Family<Summary, L>, MetricError> {
        Summary::typed_family_in(Store::global(), name, help)
    }

    /// A family of summaries labelled by the type `L`, in `store`.
    pub fn typed_family_in<L: LabelSet>(
        store: &Store,
        name: &str,
        help: &str,
    ) -> Result<Family<Summary, L>, MetricError> {
        Ok(Family::new(summary_desc(store, name, help, L::NAMES)?, ()))
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, value: f64) {
        self.0[0].add(1.0);
        self.0[1].add(value);
    }

    /// This process's number of observations.
    pub fn count(&self) -> f64 {
        self.0[0].get()
    }

    /// This process's sum of observations.
    pub fn sum(&self) -> f64 {
        self.0[1].get()
    }
}

/// The description of a summary (`quantile` is reserved).
fn summary_desc(
    store: &Store,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<Desc, MetricError> {
    Desc::new(store, name, help, labels, &["quantile"], FileKind::Summary)
}

impl Member for Summary {
    type Config = ();

    fn build(desc: &Arc<Desc>, _: &(), values: &[&str]) -> Summary {
        let cells = [
            desc.cell(desc.key("_count", values, None)),
            desc.cell(desc.key("_sum", values, None)),
        ];
        cells.iter().for_each(ValueCell::touch);
        Summary(Arc::new(cells))
    }
}

#[cfg(test)]
mod tests {
    use super::bounds;

    #[test]
    fn bounds_are_checked_and_closed_with_inf() {
        assert_eq!(&*bounds(&[1.0, 2.0]).unwrap(), &[1.0, 2.0, f64::INFINITY]);
        assert_eq!(&*bounds(&[f64::INFINITY]).unwrap(), &[f64::INFINITY]);
        assert!(bounds(&[2.0, 1.0]).is_err());
        assert!(bounds(&[1.0, 1.0]).is_err());
        assert!(bounds(&[f64::NAN]).is_err());
    }
}
