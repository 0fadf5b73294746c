//! Scraping a multiprocess directory: the merge, with the semantics of
//! Python's `MultiProcessCollector`, done incrementally by a long-lived
//! [`Collector`]; [`encode`] to Prometheus text 0.0.4 or OpenMetrics 1.0,
//! and its inverse [`parse`]; and [`MultiprocessCollector`] for a
//! `prometheus_client` registry; [`compact`] folds dead processes' files
//! into archives.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use muster_collect::{encode, Collector, Format};
//! let mut collector = Collector::new(dir.path());
//! let set = collector.collect().unwrap();
//! let body = encode(&set, Format::negotiate(Some("application/openmetrics-text")));
//! assert!(body.ends_with("# EOF\n"));
//! ```

pub mod compact;
mod encode;
mod key;
mod listing;
mod merge;
mod model;
mod names;
mod native;
mod parse;
pub mod push;
mod registry;
mod scan;

pub use encode::{encode, Format};
pub use merge::{CollectError, Collector};
pub use model::{
    BucketSpan, Exemplar, Labels, MetricFamily, MetricKind, MetricSet, NativeHistogram, Sample,
};
pub use parse::{parse, ParseError};
pub use registry::MultiprocessCollector;
