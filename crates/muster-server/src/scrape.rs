//! The merged scrape of the multiprocess directory (muster-collect), behind one small
//! type so the HTTP layer does not depend on the collector's details.

use std::path::PathBuf;

/// Holds a collector for one directory (it keeps mappings open between scrapes), and
/// counts the bad files it skips into the server-wide `muster_scrape_errors_total`.
pub(crate) struct Scraper {
    inner: muster_collect::Collector,
    errors: Option<muster_metrics::Counter>,
    errors_seen: u64,
}

impl Scraper {
    /// Made in the worker (after its process id is set).
    pub(crate) fn new(dir: PathBuf) -> Scraper {
        let errors = muster_metrics::Counter::new(
            "muster_scrape_errors",
            "Times a scrape skipped a bad multiprocess file (or a bad part of one).",
        )
        .map_err(|e| tracing::warn!(error = %e, "scrape error counter unavailable"))
        .ok();
        Scraper {
            inner: muster_collect::Collector::new(dir),
            errors,
            errors_seen: 0,
        }
    }

    /// Collects and encodes for the given `Accept` header: (content type, body).
    pub(crate) fn scrape(
        &mut self,
        accept: Option<&str>,
    ) -> Result<(&'static str, String), String> {
        let format = muster_collect::Format::negotiate(accept);
        let set = self.inner.collect().map_err(|e| e.to_string());
        let total = self.inner.errors_total();
        if total > self.errors_seen {
            if let Some(c) = &self.errors {
                c.inc_by((total - self.errors_seen) as f64);
            }
            self.errors_seen = total;
        }
        let set = set?;
        Ok((format.content_type(), muster_collect::encode(&set, format)))
    }
}
