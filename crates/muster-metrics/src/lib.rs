//! What application code calls: [`Counter`], [`Gauge`], [`Histogram`] and
//! [`Summary`], alone or in a [`Family`] keyed by label values.
//!
//! Values live in the multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, or
//! [`muster_store::configure`]) in this process's own files, in the format
//! Python's `prometheus_client` uses. An update is a lock-free atomic on
//! mapped memory; a scrape in any process sees it at once. Metrics may be
//! created before `fork`: each child writes into its own files.
//!
//! Every constructor has an `_in` twin taking a [`Store`] (a directory and a
//! process id); the plain ones use the process default, [`Store::global`].
//! Metrics of different stores are independent, e.g. tests running in
//! parallel in one process, each with its own directory.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! muster_store::configure(dir.path());
//! use muster_metrics::{Counter, Histogram};
//! let walks = Counter::new("walks_started", "number of walks started").unwrap();
//! walks.inc();
//! let distance = Histogram::new("walk_distance_meters", "distance walked",
//!     &[0.0, 50.0, 200.0, 400.0, 800.0, 1600.0, 3200.0]).unwrap();
//! distance.observe(420.0);
//! ```

mod counter;
mod desc;
mod family;
mod gauge;
mod histogram;
mod native;

pub use counter::Counter;
pub use desc::MetricError;
pub use family::{
    set_default_label_set_limit, DynamicLabels, Family, LabelSet, Member, DEFAULT_LABEL_SET_LIMIT,
    MAX_LABEL_VALUE_BYTES, OVERFLOW_LABEL_VALUE,
};
pub use gauge::Gauge;
pub use histogram::{Histogram, HistogramBuilder, HistogramConfig, Summary, DEFAULT_BUCKETS};
pub use muster_store::ExemplarError;
pub use muster_store::{GaugeMode, Store};
pub use native::{
    reduce_index, NativeBuckets, DEFAULT_MAX_BUCKETS, DEFAULT_ZERO_THRESHOLD, MAX_SCHEMA,
    MIN_SCHEMA,
};
