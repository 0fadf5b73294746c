//! Histograms and summaries: distributions of observed values.

use std::sync::Arc;

use muster_store::{float_to_go_string, FileKind, Store, ValueCell};

use crate::desc::{Desc, MetricError};
use crate::family::{Family, LabelSet, Member};

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
/// Each process writes one non-cumulative count per bucket and the sum, as
/// Python does; a scrape adds them up and makes the buckets cumulative.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    bounds: Arc<[f64]>,
    buckets: Box<[ValueCell]>,
    sum: ValueCell,
}

impl Histogram {
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
        let (desc, bounds) = histogram_desc(store, name, help, &[], buckets)?;
        Ok(Histogram::build(&Arc::new(desc), &bounds, &[]))
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
        let (desc, bounds) = histogram_desc(store, name, help, labels, buckets)?;
        Ok(Family::new(desc, bounds))
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
        let (desc, bounds) = histogram_desc(store, name, help, L::NAMES, buckets)?;
        Ok(Family::new(desc, bounds))
    }

    /// Records one observation. As in Python, NaN is added to the sum but
    /// counted in no bucket (`NaN <= bound` is false even for `+Inf`).
    #[inline]
    pub fn observe(&self, value: f64) {
        let cells = &*self.0;
        // Bounds are few and sorted: a forward scan beats a binary search.
        if let Some(index) = cells.bounds.iter().position(|b| value <= *b) {
            cells.buckets[index].add(1.0);
        }
        cells.sum.add(value);
    }

    /// This process's sum of observations.
    pub fn sum(&self) -> f64 {
        self.0.sum.get()
    }

    /// This process's number of observations.
    pub fn count(&self) -> f64 {
        self.0.buckets.iter().map(ValueCell::get).sum()
    }
}

/// The description and checked bounds of a histogram (`le` is reserved).
fn histogram_desc(
    store: &Store,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<(Desc, Arc<[f64]>), MetricError> {
    let bounds = bounds(buckets)?;
    Ok((
        Desc::new(store, name, help, labels, &["le"], FileKind::Histogram)?,
        bounds,
    ))
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
    type Config = Arc<[f64]>;

    fn build(desc: &Arc<Desc>, bounds: &Arc<[f64]>, values: &[&str]) -> Histogram {
        let buckets: Box<[ValueCell]> = bounds
            .iter()
            .map(|b| {
                let le = float_to_go_string(*b);
                desc.cell(desc.key("_bucket", values, Some(("le", &le))))
            })
            .collect();
        let sum = desc.cell(desc.key("_sum", values, None));
        buckets.iter().for_each(ValueCell::touch);
        sum.touch();
        Histogram(Arc::new(HistogramCells {
            bounds: bounds.clone(),
            buckets,
            sum,
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
