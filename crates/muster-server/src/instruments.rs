//! The metrics muster itself records: HTTP, per-worker process and supervisor metrics.
//! Created in the process that writes them (workers after fork, the supervisor at
//! start), so each lands in that process's own files.

use muster_metrics::{Counter, Family, Gauge, GaugeMode, Histogram, MetricError, NativeBuckets};
use tracing::warn;

/// Buckets of `http_request_duration_seconds` (seconds).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Per-worker HTTP metrics.
pub(crate) struct HttpMetrics {
    pub requests: Family<Counter>,
    pub duration: Family<Histogram>,
    pub in_progress: Family<Gauge>,
}

impl HttpMetrics {
    pub(crate) fn new() -> Result<HttpMetrics, MetricError> {
        Ok(HttpMetrics {
            requests: Counter::family(
                "http_requests",
                "HTTP requests handled, by method, route template and status",
                &["method", "route", "status"],
            )?,
            // Classic buckets (what Python's collector and text scrapes see)
            // and native ones (client_golang's factor 1.1: schema 3, at most
            // 160 buckets), for Prometheus scraping protobuf.
            duration: Histogram::builder(
                "http_request_duration_seconds",
                "time to the response head, by method, route template and status",
            )
            .buckets(&DURATION_BUCKETS)
            .native(NativeBuckets::with_factor(1.1)?)
            .family(&["method", "route", "status"])?,
            in_progress: Gauge::family(
                "http_requests_in_progress",
                "HTTP requests being handled, by method and route template",
                &["method", "route"],
                GaugeMode::LiveSum,
            )?,
        })
    }
}

/// A worker process's CPU time, resident memory and open fds: live-sum gauges
/// labelled `worker`, written by the worker itself ([`ProcessMetrics`]) or, for a
/// `muster run` command, by the supervisor for the worker's process group.
pub(crate) struct ProcessGauges {
    cpu: Family<Gauge>,
    rss: Family<Gauge>,
    fds: Family<Gauge>,
}

impl ProcessGauges {
    pub(crate) fn new() -> Result<ProcessGauges, MetricError> {
        Ok(ProcessGauges {
            cpu: worker_gauge(
                "muster_worker_cpu_seconds",
                "user and system CPU time of the worker process, seconds",
            )?,
            rss: worker_gauge(
                "muster_worker_resident_memory_bytes",
                "resident memory of the worker process",
            )?,
            fds: worker_gauge(
                "muster_worker_open_fds",
                "open file descriptors of the worker process",
            )?,
        })
    }

    /// Sets worker `worker`'s gauges to `stats`.
    pub(crate) fn set(&self, worker: &str, stats: &crate::procmetrics::ProcStats) {
        let w: &[&str] = &[worker];
        self.cpu.with_label_values(w).set(stats.cpu_seconds);
        self.rss.with_label_values(w).set(stats.resident_bytes);
        self.fds.with_label_values(w).set(stats.open_fds);
    }
}

fn worker_gauge(name: &str, help: &str) -> Result<Family<Gauge>, MetricError> {
    Gauge::family(name, help, &["worker"], GaugeMode::LiveSum)
}

/// Per-worker process metrics, labelled `worker` (live gauges: they vanish when the
/// worker dies).
pub(crate) struct ProcessMetrics {
    worker: String,
    gauges: ProcessGauges,
    start: Family<Gauge>,
}

impl ProcessMetrics {
    pub(crate) fn new(worker: &str) -> Result<ProcessMetrics, MetricError> {
        let m = ProcessMetrics {
            worker: worker.to_string(),
            gauges: ProcessGauges::new()?,
            start: worker_gauge(
                "muster_worker_start_time_seconds",
                "start time of the worker process, seconds since the epoch",
            )?,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        m.start.with_label_values(&[&m.worker]).set(now);
        m.update();
        Ok(m)
    }

    pub(crate) fn update(&self) {
        if let Some(s) = crate::procmetrics::read() {
            self.gauges.set(&self.worker, &s);
        }
    }
}

/// The supervisor's own metrics (written to its files, id `supervisor`).
pub(crate) struct SupervisorMetrics {
    inner: Option<(Gauge, Family<Counter>)>,
}

impl SupervisorMetrics {
    pub(crate) fn new() -> SupervisorMetrics {
        let make = || -> Result<(Gauge, Family<Counter>), MetricError> {
            let workers = Gauge::new(
                "muster_workers",
                "application worker processes alive",
                GaugeMode::LiveSum,
            )?;
            let restarts = Counter::family(
                "muster_worker_restarts",
                "workers replaced, by reason (crash, timeout, recycle, boot_failure)",
                &["reason"],
            )?;
            for r in ["crash", "timeout", "recycle", "boot_failure"] {
                restarts.with_label_values(&[r]);
            }
            Ok((workers, restarts))
        };
        match make() {
            Ok(m) => SupervisorMetrics { inner: Some(m) },
            Err(e) => {
                warn!(error = %e, "supervisor metrics unavailable");
                SupervisorMetrics { inner: None }
            }
        }
    }

    pub(crate) fn set_workers(&self, n: usize) {
        if let Some((g, _)) = &self.inner {
            g.set(n as f64);
        }
    }

    pub(crate) fn restart(&self, reason: &str) {
        if let Some((_, c)) = &self.inner {
            c.with_label_values(&[reason]).inc();
        }
    }
}
