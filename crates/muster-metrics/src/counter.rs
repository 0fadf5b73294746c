//! Counters: values that only go up.

use std::sync::{Arc, OnceLock};

use muster_store::{encode_labels, ExemplarCell, ExemplarError, FileKind, Store, ValueCell};

use crate::desc::{Desc, MetricError};
use crate::family::{Family, LabelSet, Member};

/// A monotonically increasing value, exported as `<name>_total`.
#[derive(Clone, Debug)]
pub struct Counter(Arc<CounterCells>);

#[derive(Debug)]
struct CounterCells {
    value: ValueCell,
    /// The latest exemplar's slot, made when the first one arrives.
    exemplar: OnceLock<ExemplarCell>,
}

impl Counter {
    /// A counter without labels, in the default store. A trailing `_total`
    /// in `name` is dropped from the family name, as Python does.
    pub fn new(name: &str, help: &str) -> Result<Counter, MetricError> {
        Counter::new_in(Store::global(), name, help)
    }

    /// A counter without labels, in `store`.
    pub fn new_in(store: &Store, name: &str, help: &str) -> Result<Counter, MetricError> {
        let desc = Arc::new(desc(store, name, help, &[])?);
        Ok(Counter::build(&desc, &(), &[]))
    }

    /// A family of counters with these label names, in the default store.
    pub fn family(name: &str, help: &str, labels: &[&str]) -> Result<Family<Counter>, MetricError> {
        Counter::family_in(Store::global(), name, help, labels)
    }

    /// A family of counters with these label names, in `store`.
    pub fn family_in(
        store: &Store,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<Family<Counter>, MetricError> {
        Ok(Family::new(desc(store, name, help, labels)?, ()))
    }

    /// A family of counters labelled by the type `L`, in the default store.
    pub fn typed_family<L: LabelSet>(
        name: &str,
        help: &str,
    ) -> Result<Family<Counter, L>, MetricError> {
        Counter::typed_family_in(Store::global(), name, help)
    }

    /// A family of counters labelled by the type `L`, in `store`.
    pub fn typed_family_in<L: LabelSet>(
        store: &Store,
        name: &str,
        help: &str,
    ) -> Result<Family<Counter, L>, MetricError> {
        Ok(Family::new(desc(store, name, help, L::NAMES)?, ()))
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.0.value.add(1.0);
    }

    /// Adds `amount`. Negative and NaN amounts are ignored: a counter never
    /// goes down.
    #[inline]
    pub fn inc_by(&self, amount: f64) {
        if amount >= 0.0 {
            self.0.value.add(amount);
        }
    }

    /// Adds 1 with an exemplar (labels such as `trace_id`; OpenMetrics'
    /// limit of 128 characters): this process's latest exemplar of the
    /// series. The increment happens whatever the labels; an error says why
    /// the exemplar was not kept.
    pub fn inc_with_exemplar(&self, labels: &[(&str, &str)]) -> Result<(), ExemplarError> {
        self.inc_by_with_exemplar(1.0, labels)
    }

    /// Adds `amount` (see [`Counter::inc_by`]) with an exemplar of value
    /// `amount` (see [`Counter::inc_with_exemplar`]).
    pub fn inc_by_with_exemplar(
        &self,
        amount: f64,
        labels: &[(&str, &str)],
    ) -> Result<(), ExemplarError> {
        self.inc_by(amount);
        if amount >= 0.0 {
            let encoded = encode_labels(labels)?;
            let cell = &self.0.value;
            self.0
                .exemplar
                .get_or_init(|| ExemplarCell::new_in(cell.store(), cell.key().to_owned()))
                .set(&encoded, amount, crate::histogram::now());
        }
        Ok(())
    }

    /// This process's value.
    pub fn get(&self) -> f64 {
        self.0.value.get()
    }
}

fn desc(store: &Store, name: &str, help: &str, labels: &[&str]) -> Result<Desc, MetricError> {
    let family = name.strip_suffix("_total").unwrap_or(name);
    Desc::new(store, family, help, labels, &[], FileKind::Counter)
}

impl Member for Counter {
    type Config = ();

    fn build(desc: &Arc<Desc>, _: &(), values: &[&str]) -> Counter {
        let cell = desc.cell(desc.key("_total", values, None));
        cell.touch();
        Counter(Arc::new(CounterCells {
            value: cell,
            exemplar: OnceLock::new(),
        }))
    }
}
