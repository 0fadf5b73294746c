//! Gauges: values that go up and down, merged across processes by a mode.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use muster_store::{FileKind, GaugeMode, Store, ValueCell};

use crate::desc::{Desc, MetricError};
use crate::family::{Family, LabelSet, Member};

/// A value that can go up and down.
///
/// How a scrape merges the values of several processes is the gauge's
/// [`GaugeMode`], as in Python: `All` keeps one series per process, `Sum`
/// adds them, `MostRecent` keeps the latest `set`, and the `Live*` modes
/// forget a process's value when it dies.
#[derive(Clone, Debug)]
pub struct Gauge {
    cell: Arc<ValueCell>,
    most_recent: bool,
}

impl Gauge {
    /// A gauge without labels, in the default store.
    pub fn new(name: &str, help: &str, mode: GaugeMode) -> Result<Gauge, MetricError> {
        Gauge::new_in(Store::global(), name, help, mode)
    }

    /// A gauge without labels, in `store`.
    pub fn new_in(
        store: &Store,
        name: &str,
        help: &str,
        mode: GaugeMode,
    ) -> Result<Gauge, MetricError> {
        let desc = Arc::new(desc(store, name, help, &[], mode)?);
        Ok(Gauge::build(&desc, &(), &[]))
    }

    /// A family of gauges with these label names, in the default store.
    pub fn family(
        name: &str,
        help: &str,
        labels: &[&str],
        mode: GaugeMode,
    ) -> Result<Family<Gauge>, MetricError> {
        Gauge::family_in(Store::global(), name, help, labels, mode)
    }

    /// A family of gauges with these label names, in `store`.
    pub fn family_in(
        store: &Store,
        name: &str,
        help: &str,
        labels: &[&str],
        mode: GaugeMode,
    ) -> Result<Family<Gauge>, MetricError> {
        Ok(Family::new(desc(store, name, help, labels, mode)?, ()))
    }

    /// A family of gauges labelled by the type `L`, in the default store.
    pub fn typed_family<L: LabelSet>(
        name: &str,
        help: &str,
        mode: GaugeMode,
    ) -> Result<Family<Gauge, L>, MetricError> {
        Gauge::typed_family_in(Store::global(), name, help, mode)
    }

    /// A family of gauges labelled by the type `L`, in `store`.
    pub fn typed_family_in<L: LabelSet>(
        store: &Store,
        name: &str,
        help: &str,
        mode: GaugeMode,
    ) -> Result<Family<Gauge, L>, MetricError> {
        Ok(Family::new(desc(store, name, help, L::NAMES, mode)?, ()))
    }

    /// Sets the value (and, in the most-recent modes, its timestamp).
    #[inline]
    pub fn set(&self, value: f64) {
        if self.most_recent {
            self.cell.set_with_timestamp(value, now());
        } else {
            self.cell.set(value);
        }
    }

    /// Adds `amount` (which may be negative). In the most-recent modes the
    /// timestamp is set too, so the change counts as this process's latest
    /// value (Python refuses `inc`/`dec` in those modes).
    #[inline]
    pub fn add(&self, amount: f64) {
        if self.most_recent {
            self.cell.add_with_timestamp(amount, now());
        } else {
            self.cell.add(amount);
        }
    }

    /// Subtracts `amount`.
    #[inline]
    pub fn sub(&self, amount: f64) {
        self.add(-amount);
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts 1.
    #[inline]
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// Sets the value to the current Unix time in seconds.
    pub fn set_to_current_time(&self) {
        self.set(now());
    }

    /// This process's value.
    pub fn get(&self) -> f64 {
        self.cell.get()
    }
}

fn desc(
    store: &Store,
    name: &str,
    help: &str,
    labels: &[&str],
    mode: GaugeMode,
) -> Result<Desc, MetricError> {
    Desc::new(store, name, help, labels, &[], FileKind::Gauge(mode))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Member for Gauge {
    type Config = ();

    fn build(desc: &Arc<Desc>, _: &(), values: &[&str]) -> Gauge {
        let cell = desc.cell(desc.key("", values, None));
        cell.touch();
        let most_recent = matches!(
            desc.kind,
            FileKind::Gauge(GaugeMode::MostRecent | GaugeMode::LiveMostRecent)
        );
        Gauge {
            cell: Arc::new(cell),
            most_recent,
        }
    }
}
