//! `muster exporter`: a long-lived process that serves the merged metrics of a
//! multiprocess directory — written by muster workers, Python gunicorn workers, or
//! both — over HTTP.
//!
//! One [`muster_collect::Collector`] lives as long as the process, so a scrape only
//! parses entries appended since the previous one; files that appear, grow, are
//! replaced or disappear between scrapes are picked up by its directory listing.
//!
//! Endpoints: `GET /metrics` (OpenMetrics 1.0 or text 0.0.4 by `Accept`, gzip by
//! `Accept-Encoding`), `GET /-/healthy` (200 while the process runs), `GET /-/ready`
//! (200 while the directory can be read, else 503). Besides the directory's metrics
//! it exports its own: `muster_exporter_scrape_duration_seconds` (histogram),
//! `muster_scrape_errors_total` (bad files skipped), `muster_exporter_files` (metric
//! files in the directory at the last scrape), `muster_exporter_series` (merged series
//! it keeps state for) and `muster_exporter_scrape_failures_total` (scrapes that could
//! not read the directory).
//!
//! `--web-config-file` takes the exporter-toolkit file that muster-server reads
//! ([`muster_server::WebConfig`]): TLS for the listener, basic auth for `/metrics`
//! (and for the health endpoints with `muster.protect_health`).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use muster_collect::{Collector, Exposition, Labels, MetricFamily, MetricKind, Sample};
use muster_server::http::ResponseBody;
use muster_server::server::{Handler, HttpLimits, HttpServer};
use muster_server::Listener;
use muster_store::GaugeMode;

/// Upper bounds of the scrape duration histogram, in seconds.
const DURATION_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How long in-flight requests get after SIGTERM/SIGINT before the process exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What `muster exporter` is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct ExporterArgs {
    /// The multiprocess directory to serve (as PROMETHEUS_MULTIPROC_DIR). It is only
    /// read: the exporter never creates, clears or writes files in it.
    #[arg(long, env = "PROMETHEUS_MULTIPROC_DIR")]
    pub dir: PathBuf,
    /// Address to listen on: `host:port` (port 0 picks a free port, logged at start),
    /// `unix:PATH` or `fd://N`.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9464")]
    pub bind: String,
    /// Prometheus exporter-toolkit web configuration file: TLS and basic auth for
    /// /metrics (see docs/security.md).
    #[arg(long)]
    pub web_config_file: Option<PathBuf>,
    /// Accept known-weak credentials in the web configuration file.
    #[arg(long)]
    pub allow_weak_credentials: bool,
}

/// Why the exporter could not start or stopped; [`ExporterError::exit_code`] maps
/// each to the process exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// A flag, the directory or the web configuration is unusable (exit 2).
    #[error("{0}")]
    Config(String),
    /// The listen address cannot be resolved or bound (exit 2).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Anything else (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl ExporterError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExporterError::Config(_) | ExporterError::Bind { .. } => 2,
            ExporterError::Runtime(_) => 1,
        }
    }
}

/// Checks that `dir` is a directory this process can list, with an error that says
/// what is wrong.
pub fn check_dir(dir: &Path) -> Result<(), ExporterError> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        ExporterError::Config(format!(
            "multiprocess directory {}: {e} (set --dir or PROMETHEUS_MULTIPROC_DIR to the directory your workers write)",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(ExporterError::Config(format!(
            "multiprocess directory {} is not a directory",
            dir.display()
        )));
    }
    std::fs::read_dir(dir).map_err(|e| {
        ExporterError::Config(format!(
            "multiprocess directory {} cannot be read: {e}",
            dir.display()
        ))
    })?;
    Ok(())
}

/// The scrape duration histogram, kept in this process's memory.
#[derive(Debug, Default)]
struct DurationHistogram {
    /// Non-cumulative counts per bound of [`DURATION_BOUNDS`], then `+Inf`.
    buckets: [u64; DURATION_BOUNDS.len() + 1],
    sum: f64,
}

impl DurationHistogram {
    fn observe(&mut self, seconds: f64) {
        let i = DURATION_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
    }

    fn family(&self) -> MetricFamily {
        let name = "muster_exporter_scrape_duration_seconds";
        let bucket: Arc<str> = Arc::from(format!("{name}_bucket"));
        let mut samples = Vec::with_capacity(DURATION_BOUNDS.len() + 3);
        let mut cumulative = 0u64;
        let les = DURATION_BOUNDS
            .iter()
            .map(|b| muster_store::float_to_go_string(*b))
            .chain(std::iter::once("+Inf".to_owned()));
        for (le, n) in les.zip(self.buckets.iter()) {
            cumulative += n;
            samples.push(Sample {
                name: Arc::clone(&bucket),
                labels: Arc::new(Labels::new([("le", le)])),
                value: cumulative as f64,
                exemplar: None,
                native: None,
            });
        }
        let none = Arc::new(Labels::empty());
        samples.push(Sample {
            name: Arc::from(format!("{name}_count")),
            labels: Arc::clone(&none),
            value: cumulative as f64,
            exemplar: None,
            native: None,
        });
        samples.push(Sample {
            name: Arc::from(format!("{name}_sum")),
            labels: none,
            value: self.sum,
            exemplar: None,
            native: None,
        });
        MetricFamily {
            name: name.into(),
            help: "Time the exporter took to merge the multiprocess directory.".into(),
            kind: MetricKind::Histogram,
            samples,
            utf8_names: None,
        }
    }
}

/// The scraping side of the exporter: the long-lived collector and the exporter's
/// own metrics.
struct Scraper {
    collector: Collector,
    durations: DurationHistogram,
    failures: u64,
}

impl Scraper {
    /// Merges the directory and encodes it, with the exporter's own metrics, in
    /// `exposition`.
    fn scrape(&mut self, exposition: Exposition) -> Result<Vec<u8>, String> {
        let start = Instant::now();
        let result = self.collector.collect();
        self.durations.observe(start.elapsed().as_secs_f64());
        let mut set = match result {
            Ok(set) => set,
            Err(e) => {
                self.failures += 1;
                return Err(e.to_string());
            }
        };
        self.collector.append_own_metrics(&mut set);
        set.families.push(self.durations.family());
        set.push_simple(
            "muster_exporter_files",
            "Metric files (*.db) in the multiprocess directory at the last scrape.",
            MetricKind::Gauge(GaugeMode::LiveSum),
            "muster_exporter_files",
            self.collector.file_count() as f64,
        );
        set.push_simple(
            "muster_exporter_series",
            "Merged series the exporter keeps state for (those of files gone since, until \
             it drops them): its memory follows this.",
            MetricKind::Gauge(GaugeMode::LiveSum),
            "muster_exporter_series",
            self.collector.tracked_series() as f64,
        );
        set.push_simple(
            "muster_exporter_scrape_failures",
            "Scrapes that could not read the multiprocess directory at all.",
            MetricKind::Counter,
            "muster_exporter_scrape_failures_total",
            self.failures as f64,
        );
        Ok(exposition.encode(&set))
    }
}

/// State shared by every connection.
struct Shared {
    dir: PathBuf,
    scraper: Mutex<Scraper>,
    /// The web configuration (basic auth for `/metrics`), when given.
    web: Option<muster_server::WebConfig>,
}

type Body = Full<Bytes>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(web) = &shared.web {
        let protected = match req.uri().path() {
            "/metrics" => true,
            "/-/healthy" | "/-/ready" => web.protect_health,
            _ => false,
        };
        if protected && !web.authorize(req.headers().get(AUTHORIZATION)).await {
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(muster_server::auth::CHALLENGE),
            );
            return Ok(r);
        }
    }
    let resp = match req.uri().path() {
        "/metrics" if get => metrics(&shared, &req).await,
        "/-/healthy" if get => plain(StatusCode::OK, "OK\n"),
        "/-/ready" if get => {
            let dir = shared.dir.clone();
            let ok = tokio::task::spawn_blocking(move || std::fs::read_dir(dir).is_ok())
                .await
                .unwrap_or(false);
            if ok {
                plain(StatusCode::OK, "ready\n")
            } else {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the multiprocess directory cannot be read\n",
                )
            }
        }
        "/" if get => plain(
            StatusCode::OK,
            "muster exporter: metrics at /metrics, health at /-/healthy and /-/ready\n",
        ),
        "/metrics" | "/-/healthy" | "/-/ready" | "/" => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

async fn metrics(shared: &Arc<Shared>, req: &Request<Incoming>) -> Response<Body> {
    let exposition = Exposition::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = muster_server::http::accepts_gzip(req.headers().get(ACCEPT_ENCODING));
    let shared = Arc::clone(shared);
    let job = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, bool), String> {
        let body = {
            let mut s = shared.scraper.lock().unwrap_or_else(|p| p.into_inner());
            s.scrape(exposition)?
        };
        Ok(muster_server::http::metrics_body(body, gzip))
    });
    match job.await {
        Ok(Ok((body, gz))) => {
            tracing::debug!(content_type = exposition.content_type(), "scrape answered");
            let mut r = respond(StatusCode::OK, exposition.content_type(), body);
            muster_server::http::set_metrics_headers(r.headers_mut(), gz);
            r
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "scrape failed");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("scrape failed: {e}\n"),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "scrape task failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n")
        }
    }
}

/// Loads and checks the web configuration file (muster-server's: TLS, basic auth,
/// weak-credential refusal), before anything is served.
fn load_web_config(args: &ExporterArgs) -> Result<Option<muster_server::WebConfig>, ExporterError> {
    let Some(path) = &args.web_config_file else {
        return Ok(None);
    };
    muster_server::WebConfig::load(path, args.allow_weak_credentials)
        .map(Some)
        .map_err(|e| ExporterError::Config(e.to_string()))
}

/// Runs the exporter until SIGTERM or SIGINT. Errors before serving (directory,
/// address, web configuration) come back at once.
pub fn run(args: &ExporterArgs) -> Result<(), ExporterError> {
    check_dir(&args.dir)?;
    let web = load_web_config(args)?;
    let listener = Listener::bind(&args.bind).map_err(|e| match e {
        muster_server::ServerError::Bind { addr, reason } => ExporterError::Bind { addr, reason },
        other => ExporterError::Config(other.to_string()),
    })?;
    let shared = Arc::new(Shared {
        dir: args.dir.clone(),
        scraper: Mutex::new(Scraper {
            collector: Collector::new(&args.dir),
            durations: DurationHistogram::default(),
            failures: 0,
        }),
        web,
    });
    let rt = muster_server::runtime::build_runtime(2)
        .map_err(|e| ExporterError::Runtime(format!("cannot start the runtime: {e}")))?;
    rt.block_on(serve(listener, shared))
}

/// The exporter's requests, served by muster-server's HTTP stack.
#[derive(Clone)]
struct ExporterHandler(Arc<Shared>);

impl Handler for ExporterHandler {
    fn call(
        &self,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send + 'static {
        let shared = Arc::clone(&self.0);
        async move {
            let resp = match handle(shared, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            resp.map(|b| b.map_err(|never| match never {}).boxed_unsync())
        }
    }
}

async fn serve(listener: Listener, shared: Arc<Shared>) -> Result<(), ExporterError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| ExporterError::Runtime(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| ExporterError::Runtime(format!("cannot handle SIGINT: {e}")))?;
    let tls = shared.web.as_ref().and_then(|w| w.tls.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "exporter: listening addr={listener} scheme={scheme} dir={}",
        shared.dir.display()
    );
    // The server's stack and limits: header read timeout, idle keep-alive, header
    // limits, requests per connection, a connection cap.
    let (drain, _) = tokio::sync::watch::channel(false);
    let server = HttpServer::new(
        vec![listener],
        ExporterHandler(Arc::clone(&shared)),
        HttpLimits::default(),
        tls,
        drain,
    )
    .map_err(|e| ExporterError::Runtime(format!("cannot use the listener: {e}")))?;
    let ((), draining) = server
        .run_until(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await;
    tracing::info!("exporter: stopping");
    if !draining.finish(DRAIN_TIMEOUT).await {
        tracing::warn!("exporter: connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_count_and_sum() {
        let mut h = DurationHistogram::default();
        h.observe(0.0001);
        h.observe(0.003);
        h.observe(100.0);
        let f = h.family();
        let set = muster_collect::MetricSet { families: vec![f] };
        let n = "muster_exporter_scrape_duration_seconds";
        for (le, want) in [("0.0005", 1.0), ("0.005", 2.0), ("2.5", 2.0), ("+Inf", 3.0)] {
            assert_eq!(
                set.value(&format!("{n}_bucket"), &[("le", le)]),
                Some(want),
                "le={le}"
            );
        }
        assert_eq!(set.value(&format!("{n}_count"), &[]), Some(3.0));
        assert!((set.value(&format!("{n}_sum"), &[]).unwrap_or(0.0) - 100.0031).abs() < 1e-9);
    }

    #[test]
    fn a_missing_directory_is_a_config_error() {
        let e = check_dir(Path::new("/nonexistent/muster/dir")).expect_err("missing dir");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/muster/dir"), "{e}");
    }
}
