//! Counters: values that only go up.

use std::sync::Arc;

use muster_store::{FileKind, Store, ValueCell};

use crate::desc::{Desc, MetricError};
use crate::family::{Family, LabelSet, Member};

/// A monotonically increasing value, exported as `<name>_total`.
#[derive(Clone, Debug)]
pub struct Counter(Arc<ValueCell>);

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
        self.0.add(1.0);
    }

    /// Adds `amount`. Negative and NaN amounts are ignored: a counter never
    /// goes down.
    #[inline]
    pub fn inc_by(&self, amount: f64) {
        if amount >= 0.0 {
            self.0.add(amount);
        }
    }

    /// This process's value.
    pub fn get(&self) -> f64 {
        self.0.get()
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
        Counter(Arc::new(cell))
    }
}
