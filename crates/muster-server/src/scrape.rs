//! The merged scrape of the multiprocess directory (muster-collect), behind one small
//! type so the HTTP layer does not depend on the collector's details.

use std::path::PathBuf;
use std::sync::Arc;

use crate::scoreboard::Scoreboard;

/// Holds a collector for one directory (it keeps mappings open between scrapes),
/// counts the bad files it skips into the server-wide `muster_scrape_errors_total`,
/// and adds `muster_store_write_errors_total` from the scoreboard: values that could
/// not be written to the directory cannot be reported through it, so they are
/// counted in shared memory instead.
pub(crate) struct Scraper {
    inner: muster_collect::Collector,
    scoreboard: Arc<Scoreboard>,
    errors: Option<muster_metrics::Counter>,
    errors_seen: u64,
}

impl Scraper {
    /// Made in the worker (after its process id is set).
    pub(crate) fn new(dir: PathBuf, scoreboard: Arc<Scoreboard>) -> Scraper {
        let errors = muster_metrics::Counter::new(
            "muster_scrape_errors",
            "Times a scrape skipped a bad multiprocess file (or a bad part of one).",
        )
        .map_err(|e| tracing::warn!(error = %e, "scrape error counter unavailable"))
        .ok();
        Scraper {
            inner: muster_collect::Collector::new(dir),
            scoreboard,
            errors,
            errors_seen: 0,
        }
    }

    /// Collects and encodes in `exposition`.
    pub(crate) fn scrape(
        &mut self,
        exposition: muster_collect::Exposition,
    ) -> Result<Vec<u8>, String> {
        let set = self
            .inner
            .collect()
            .map_err(|e| format!("cannot read {}: {e}", self.inner.dir().display()));
        let total = self.inner.errors_total();
        if total > self.errors_seen {
            if let Some(c) = &self.errors {
                c.inc_by((total - self.errors_seen) as f64);
            }
            self.errors_seen = total;
        }
        let mut set = set?;
        set.push_simple(
            "muster_store_write_errors",
            "Metric values workers could not write to the multiprocess directory (full or \
             unwritable); they are kept in the worker's memory only.",
            muster_collect::MetricKind::Counter,
            "muster_store_write_errors_total",
            self.scoreboard.write_errors() as f64,
        );
        Ok(exposition.encode(&set))
    }
}
