//! Server configuration: a [`Config`] read from TOML (`-c/--config`) and the
//! gunicorn-style command-line flags in [`ServerArgs`].
//!
//! Precedence, lowest first: built-in defaults, the `WEB_CONCURRENCY` environment
//! variable (workers) and `PROMETHEUS_MULTIPROC_DIR` (directory), the config file, the
//! command-line flags. On SIGHUP the supervisor recomputes the configuration the same way
//! (re-reading the file) with [`Config::reload`].
//!
//! TOML keys (all optional; unknown keys are an error; times in seconds):
//!
//! ```toml
//! workers = 4
//! bind = ["127.0.0.1:8000"]
//! timeout = 30
//! graceful_timeout = 30
//! threads = 1
//! max_requests = 0
//! max_requests_jitter = 0
//! pid = "/run/muster.pid"
//! metrics_bind = "127.0.0.1:9100"
//! multiproc_dir = "/run/muster/metrics"
//! max_boot_failures = 5
//! http_metrics = true
//! web_config_file = "/etc/muster/web.yml"
//! header_read_timeout = 10
//! keepalive = 5
//! handler_timeout = 60
//! limit_request_fields = 100
//! max_header_bytes = 32768
//! max_requests_per_connection = 1000
//! worker_connections = 1000
//! ```
//!
//! `--allow-weak-credentials` exists only as a command-line flag: accepting a weak
//! password has to be said explicitly each time the server starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ServerError;

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// The settings of one server run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of application worker processes.
    pub workers: usize,
    /// Addresses to listen on (`host:port`); ignored when systemd passes sockets.
    pub bind: Vec<String>,
    /// A worker silent (no heartbeat) for this long is killed and replaced.
    pub timeout: Duration,
    /// How long a stopping worker may take to finish in-flight requests.
    pub graceful_timeout: Duration,
    /// Runtime threads per worker: 1 = a current-thread tokio runtime (a blocked worker
    /// stops its heartbeat and is replaced after `timeout`), more = multi-thread.
    pub threads: usize,
    /// Requests after which a worker is recycled; 0 disables recycling.
    pub max_requests: u64,
    /// Up to this many extra requests, chosen at random per worker, are added to
    /// `max_requests` so that workers do not all recycle at once.
    pub max_requests_jitter: u64,
    /// Pid file written at start and removed at exit.
    pub pid: Option<PathBuf>,
    /// Separate listener for `/metrics` and health, served outside the app workers.
    pub metrics_bind: Option<String>,
    /// The multiprocess directory; a private temporary one when `None`.
    pub multiproc_dir: Option<PathBuf>,
    /// Consecutive workers that die before ever becoming ready before the server gives
    /// up with an error.
    pub max_boot_failures: u32,
    /// Record the default HTTP metrics (`http_requests_total`, ...); off only to measure
    /// their cost.
    pub http_metrics: bool,
    /// The TOML file this configuration was read from, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// Web configuration file (exporter-toolkit format: TLS, basic auth); see
    /// [`crate::webconfig`]. Read and checked before anything forks, re-read on SIGHUP.
    pub web_config_file: Option<PathBuf>,
    /// Start even though a configured password is a known-weak one (logged as a warning).
    pub allow_weak_credentials: bool,
    /// A client must send a request's complete header within this time (HTTP/1.1; the
    /// clock also runs while a kept-alive connection waits for its next request), and a
    /// new connection must have sent its first request (TLS handshake included) within
    /// it.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub keepalive: Duration,
    /// An application request without a response head after this long is answered
    /// 504 Gateway Timeout; zero = no limit. (`timeout` is the heartbeat of a hung
    /// worker, not a request limit.)
    pub handler_timeout: Duration,
    /// Most header fields in a request (more: 431).
    pub limit_request_fields: usize,
    /// Most bytes of request line and headers (more: 431); at least 8192.
    pub max_header_bytes: usize,
    /// Requests served on one HTTP/1.1 connection before it is closed (`Connection:
    /// close`); 0 = no limit.
    pub max_requests_per_connection: u64,
    /// Most connections one worker serves at once; further connections wait in the
    /// shared accept queue for a worker with room.
    pub worker_connections: usize,
    /// The command-line flags, re-applied over the file on SIGHUP.
    pub(crate) args: Option<ServerArgs>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: default_workers(),
            bind: vec![DEFAULT_BIND.to_string()],
            timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(30),
            threads: 1,
            max_requests: 0,
            max_requests_jitter: 0,
            pid: None,
            metrics_bind: None,
            multiproc_dir: std::env::var_os("PROMETHEUS_MULTIPROC_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            max_boot_failures: 5,
            http_metrics: true,
            config_file: None,
            web_config_file: None,
            allow_weak_credentials: false,
            header_read_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(60),
            limit_request_fields: 100,
            max_header_bytes: 32 * 1024,
            max_requests_per_connection: 1000,
            worker_connections: 1000,
            args: None,
        }
    }
}

fn default_workers() -> usize {
    if let Some(n) = std::env::var("WEB_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Settings laid over the defaults: the keys a TOML config file may hold (all
/// optional; unknown keys are an error), and what the command-line flags set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    workers: Option<usize>,
    bind: Option<Vec<String>>,
    timeout: Option<f64>,
    graceful_timeout: Option<f64>,
    threads: Option<usize>,
    max_requests: Option<u64>,
    max_requests_jitter: Option<u64>,
    pid: Option<PathBuf>,
    metrics_bind: Option<String>,
    multiproc_dir: Option<PathBuf>,
    max_boot_failures: Option<u32>,
    http_metrics: Option<bool>,
    web_config_file: Option<PathBuf>,
    header_read_timeout: Option<f64>,
    keepalive: Option<f64>,
    handler_timeout: Option<f64>,
    limit_request_fields: Option<usize>,
    max_header_bytes: Option<usize>,
    max_requests_per_connection: Option<u64>,
    worker_connections: Option<usize>,
}

/// Command-line flags with gunicorn's names; flatten into a clap parser with
/// `#[command(flatten)]`, then call [`ServerArgs::to_config`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Number of worker processes [default: $WEB_CONCURRENCY or the number of cores]
    #[arg(short = 'w', long, value_name = "N")]
    pub workers: Option<usize>,
    /// Address to listen on, host:port; repeatable [default: 127.0.0.1:8000]
    #[arg(short = 'b', long = "bind", value_name = "ADDR")]
    pub bind: Vec<String>,
    /// Kill and replace a worker silent for this many seconds [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Seconds a stopping worker gets to finish in-flight requests [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub graceful_timeout: Option<f64>,
    /// Runtime threads per worker; 1 = current-thread runtime [default: 1]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Recycle a worker after this many requests; 0 = never [default: 0]
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,
    /// Random extra requests (0..=N) added to --max-requests per worker [default: 0]
    #[arg(long, value_name = "N")]
    pub max_requests_jitter: Option<u64>,
    /// Write the supervisor's pid to this file
    #[arg(long, value_name = "FILE")]
    pub pid: Option<PathBuf>,
    /// TOML configuration file (re-read on SIGHUP)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve /metrics and health on this address from a process outside the app workers
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
    /// Multiprocess metrics directory [default: $PROMETHEUS_MULTIPROC_DIR or a private temp dir]
    #[arg(long, value_name = "DIR")]
    pub multiproc_dir: Option<PathBuf>,
    /// Do not record the default HTTP metrics (to measure their cost)
    #[arg(long)]
    pub no_http_metrics: bool,
    /// Web configuration file (Prometheus exporter-toolkit format: tls_server_config,
    /// basic_auth_users) protecting /metrics; see docs/security.md
    #[arg(long, value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Start even if a password in the web config file is a known-weak one
    #[arg(long)]
    pub allow_weak_credentials: bool,
    /// Seconds a client gets to send a request's headers (and a new connection its
    /// first request) [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub header_read_timeout: Option<f64>,
    /// Close a connection idle (no request in progress) for this many seconds [default: 5]
    #[arg(long = "keep-alive", value_name = "SECONDS")]
    pub keepalive: Option<f64>,
    /// Answer 504 when an application request has no response after this many
    /// seconds; 0 = no limit [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub handler_timeout: Option<f64>,
    /// Most header fields per request [default: 100]
    #[arg(long, value_name = "N")]
    pub limit_request_fields: Option<usize>,
    /// Most bytes of request line and headers [default: 32768]
    #[arg(long, value_name = "BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Requests per HTTP/1.1 connection before it is closed; 0 = no limit [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_requests_per_connection: Option<u64>,
    /// Most simultaneous connections per worker [default: 1000]
    #[arg(long, value_name = "N")]
    pub worker_connections: Option<usize>,
}

impl ServerArgs {
    /// Builds the configuration: defaults and environment, then the config file given
    /// with `-c`, then these flags.
    pub fn to_config(&self) -> Result<Config, ServerError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        Overrides {
            workers: self.workers,
            bind: (!self.bind.is_empty()).then(|| self.bind.clone()),
            timeout: self.timeout,
            graceful_timeout: self.graceful_timeout,
            threads: self.threads,
            max_requests: self.max_requests,
            max_requests_jitter: self.max_requests_jitter,
            pid: self.pid.clone(),
            metrics_bind: self.metrics_bind.clone(),
            multiproc_dir: self.multiproc_dir.clone(),
            max_boot_failures: None,
            http_metrics: self.no_http_metrics.then_some(false),
            web_config_file: self.web_config_file.clone(),
            header_read_timeout: self.header_read_timeout,
            keepalive: self.keepalive,
            handler_timeout: self.handler_timeout,
            limit_request_fields: self.limit_request_fields,
            max_header_bytes: self.max_header_bytes,
            max_requests_per_connection: self.max_requests_per_connection,
            worker_connections: self.worker_connections,
        }
        .apply(&mut config, Source::Flags)?;
        config.allow_weak_credentials |= self.allow_weak_credentials;
        config.args = Some(self.clone());
        config.validate()?;
        Ok(config)
    }
}

/// Where a layer of settings comes from; errors name a value as it was given there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    File,
    Flags,
}

impl Overrides {
    /// Sets every value this layer holds over `config`.
    fn apply(self, config: &mut Config, source: Source) -> Result<(), ServerError> {
        let secs = |v: Option<f64>, key: &str, flag: &str| {
            let name = if source == Source::Flags { flag } else { key };
            v.map(|v| seconds(name, v)).transpose()
        };
        set(&mut config.workers, self.workers);
        set(&mut config.bind, self.bind);
        set(
            &mut config.timeout,
            secs(self.timeout, "timeout", "--timeout")?,
        );
        set(
            &mut config.graceful_timeout,
            secs(
                self.graceful_timeout,
                "graceful_timeout",
                "--graceful-timeout",
            )?,
        );
        set(&mut config.threads, self.threads);
        set(&mut config.max_requests, self.max_requests);
        set(&mut config.max_requests_jitter, self.max_requests_jitter);
        set(&mut config.pid, self.pid.map(Some));
        set(&mut config.metrics_bind, self.metrics_bind.map(Some));
        set(&mut config.multiproc_dir, self.multiproc_dir.map(Some));
        set(&mut config.max_boot_failures, self.max_boot_failures);
        set(&mut config.http_metrics, self.http_metrics);
        set(&mut config.web_config_file, self.web_config_file.map(Some));
        set(
            &mut config.header_read_timeout,
            secs(
                self.header_read_timeout,
                "header_read_timeout",
                "--header-read-timeout",
            )?,
        );
        set(
            &mut config.keepalive,
            secs(self.keepalive, "keepalive", "--keep-alive")?,
        );
        set(
            &mut config.handler_timeout,
            secs(self.handler_timeout, "handler_timeout", "--handler-timeout")?,
        );
        set(&mut config.limit_request_fields, self.limit_request_fields);
        set(&mut config.max_header_bytes, self.max_header_bytes);
        set(
            &mut config.max_requests_per_connection,
            self.max_requests_per_connection,
        );
        set(&mut config.worker_connections, self.worker_connections);
        Ok(())
    }
}

/// Overrides `slot` with `value`, when there is one.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn seconds(what: &str, v: f64) -> Result<Duration, ServerError> {
    if !v.is_finite() || !(0.0..=1.0e9).contains(&v) {
        return Err(ServerError::Config(format!(
            "{what} must be a number of seconds between 0 and 1e9, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    /// Parses a TOML document over the defaults (the keys are listed in the module docs).
    pub fn from_toml_str(text: &str) -> Result<Config, ServerError> {
        let file: Overrides =
            toml::from_str(text).map_err(|e| ServerError::Config(format!("{e}")))?;
        let mut config = Config::default();
        file.apply(&mut config, Source::File)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut config = Self::from_toml_str(&text).map_err(|e| match e {
            ServerError::Config(m) => {
                ServerError::Config(format!("config file {}: {m}", path.display()))
            }
            other => other,
        })?;
        config.config_file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Recomputes the configuration as at startup (re-reading the config file, then
    /// re-applying the command-line flags). Used on SIGHUP.
    pub fn reload(&self) -> Result<Config, ServerError> {
        match (&self.args, &self.config_file) {
            (Some(args), _) => args.to_config(),
            (None, Some(path)) => Config::from_file(path),
            (None, None) => Ok(self.clone()),
        }
    }

    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.workers == 0 {
            return Err(ServerError::Config("workers must be at least 1".into()));
        }
        if self.workers > crate::scoreboard::MAX_APP_WORKERS {
            return Err(ServerError::Config(format!(
                "workers must be at most {}",
                crate::scoreboard::MAX_APP_WORKERS
            )));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(ServerError::Config(
                "threads must be between 1 and 256".into(),
            ));
        }
        if self.bind.is_empty() {
            return Err(ServerError::Config(
                "at least one bind address is needed".into(),
            ));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(ServerError::Config("timeout must be at least 0.1 s".into()));
        }
        if self.header_read_timeout < Duration::from_millis(100) {
            return Err(ServerError::Config(
                "header_read_timeout must be at least 0.1 s".into(),
            ));
        }
        if self.keepalive < Duration::from_millis(100) {
            return Err(ServerError::Config(
                "keepalive must be at least 0.1 s".into(),
            ));
        }
        if !(1..=10_000).contains(&self.limit_request_fields) {
            return Err(ServerError::Config(
                "limit_request_fields must be between 1 and 10000".into(),
            ));
        }
        if !(8192..=16 * 1024 * 1024).contains(&self.max_header_bytes) {
            return Err(ServerError::Config(
                "max_header_bytes must be between 8192 and 16777216".into(),
            ));
        }
        if self.worker_connections == 0 {
            return Err(ServerError::Config(
                "worker_connections must be at least 1".into(),
            ));
        }
        if self.max_boot_failures == 0 {
            return Err(ServerError::Config(
                "max_boot_failures must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c = Config::from_toml_str(
            "workers = 3\nbind = [\"0.0.0.0:9000\"]\ntimeout = 2.5\nmax_requests = 10\n",
        )
        .expect("valid");
        assert_eq!(c.workers, 3);
        assert_eq!(c.bind, vec!["0.0.0.0:9000".to_string()]);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.max_requests, 10);
        assert_eq!(c.graceful_timeout, Duration::from_secs(30));
    }

    #[test]
    fn documented_keys_parse() {
        let doc = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(doc.contains("max_boot_failures"), "{doc}");
        let c = Config::from_toml_str(&doc).expect("documented example parses");
        assert_eq!(c.workers, 4);
        assert_eq!(c.metrics_bind.as_deref(), Some("127.0.0.1:9100"));
        assert!(c.http_metrics);
    }

    #[test]
    fn bad_toml_is_a_clear_error() {
        let e = Config::from_toml_str("workerz = 3").expect_err("unknown key");
        assert!(e.to_string().contains("workerz"), "{e}");
        let e = Config::from_toml_str("workers = 0").expect_err("zero workers");
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = Config::from_toml_str("timeout = -1").expect_err("negative");
        assert!(e.to_string().contains("timeout"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "workers = 3\nmax_requests = 7\n").expect("write");
        let args = ServerArgs {
            workers: Some(5),
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        let c = args.to_config().expect("config");
        assert_eq!(c.workers, 5);
        assert_eq!(c.max_requests, 7);
        std::fs::write(&path, "workers = 3\nmax_requests = 9\n").expect("write");
        let c2 = c.reload().expect("reload");
        assert_eq!(c2.workers, 5);
        assert_eq!(c2.max_requests, 9);
    }
}
