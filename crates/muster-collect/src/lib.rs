//! Scraping a multiprocess directory: the merge, with the semantics of
//! Python's `MultiProcessCollector`, done incrementally by a long-lived
//! [`Collector`]; [`Exposition`]: content negotiation and encoding to
//! Prometheus text 0.0.4/1.0.0, OpenMetrics 0.0.1/1.0.0 or protobuf, with
//! any name escaping scheme; [`encode`] to the text formats as Python shows
//! them, and its inverse [`parse`]; and [`MultiprocessCollector`] for a
//! `prometheus_client` registry; [`compact`] folds dead processes' files
//! into archives.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use muster_collect::{Collector, Exposition};
//! let mut collector = Collector::new(dir.path());
//! let set = collector.collect().unwrap();
//! let exposition = Exposition::negotiate(Some("application/openmetrics-text;version=1.0.0"));
//! let body = exposition.encode(&set);
//! assert!(body.ends_with(b"# EOF\n"));
//! assert_eq!(
//!     exposition.content_type(),
//!     "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
//! );
//! ```

pub mod compact;
mod encode;
mod key;
mod listing;
mod merge;
mod model;
mod names;
mod native;
mod negotiate;
mod parse;
mod protobuf;
pub mod push;
mod registry;
mod scan;

pub use encode::{encode, Format};
pub use merge::{CollectError, Collector};
pub use model::{
    BucketSpan, Exemplar, LabelPair, Labels, MetricFamily, MetricKind, MetricSet, NativeHistogram,
    Sample, Utf8Names,
};
pub use names::Escaping;
pub use negotiate::{Exposition, MediaType};
pub use parse::{parse, ParseError};
pub use registry::MultiprocessCollector;
