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
//! log_level = "info"
//! access_logfile = "-"
//! access_logformat = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
//! forwarded_allow_ips = ["127.0.0.1", "::1"]
//! metrics_on_app_port = true
//! user = "www-data"
//! group = "www-data"
//! umask = 0o027
//! chdir = "/srv/app"
//! ```
//!
//! `--allow-weak-credentials` exists only as a command-line flag: accepting a weak
//! password has to be said explicitly each time the server starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or `tracing` directives
    /// (`info,muster_server=debug`). Default: `$MUSTER_LOG`, else `info`.
    pub log_level: String,
    /// Access log file (`-` = standard output); none = no access log.
    pub access_logfile: Option<PathBuf>,
    /// Access log line format, in gunicorn's `%(x)s` atoms (listed in
    /// `docs/operations.md`).
    pub access_logformat: String,
    /// Peers trusted to set `X-Forwarded-For` / `X-Forwarded-Proto` (IP addresses, CIDR
    /// networks, or `*`); clients on a Unix socket always are.
    pub forwarded_allow_ips: Vec<String>,
    /// Serve `/metrics`, `/-/healthy` and `/-/ready` on the application's listeners too
    /// (off: only on `metrics_bind`, and those paths belong to the application).
    pub metrics_on_app_port: bool,
    /// Run as this user (name or uid) once the listeners are bound.
    pub user: Option<String>,
    /// Run as this group (name or gid) once the listeners are bound.
    pub group: Option<String>,
    /// File mode creation mask, set at start.
    pub umask: Option<u32>,
    /// Working directory, changed to at start.
    pub chdir: Option<PathBuf>,
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
            log_level: std::env::var("MUSTER_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "info".into()),
            access_logfile: None,
            access_logformat: crate::accesslog::DEFAULT_FORMAT.into(),
            forwarded_allow_ips: vec!["127.0.0.1".into(), "::1".into()],
            metrics_on_app_port: true,
            user: None,
            group: None,
            umask: None,
            chdir: None,
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
#[derive(Debug, Default, Deserialize, Serialize)]
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
    log_level: Option<String>,
    access_logfile: Option<PathBuf>,
    access_logformat: Option<String>,
    forwarded_allow_ips: Option<Vec<String>>,
    metrics_on_app_port: Option<bool>,
    user: Option<String>,
    group: Option<String>,
    umask: Option<u32>,
    chdir: Option<PathBuf>,
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
    /// Log level: error, warn, info, debug, trace, or tracing directives
    /// [default: $MUSTER_LOG or info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write an access log line per request to FILE ('-' = standard output) [default: none]
    #[arg(long, value_name = "FILE")]
    pub access_logfile: Option<PathBuf>,
    /// Access log format, gunicorn's atoms: %(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)s ...
    #[arg(long, value_name = "FORMAT")]
    pub access_logformat: Option<String>,
    /// Peers trusted to set X-Forwarded-For/-Proto: comma-separated IPs, CIDRs or '*'
    /// [default: 127.0.0.1,::1]
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    pub forwarded_allow_ips: Option<Vec<String>>,
    /// Do not serve /metrics, /-/healthy and /-/ready on the application's listeners
    /// (only on --metrics-bind, which is then required)
    #[arg(long)]
    pub no_metrics_on_app_port: bool,
    /// Run as this user (name or uid) once the listeners are bound
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// Run as this group (name or gid) once the listeners are bound
    #[arg(long, short = 'g', value_name = "GROUP")]
    pub group: Option<String>,
    /// File mode creation mask, octal (e.g. 027)
    #[arg(long, short = 'm', value_name = "MASK", value_parser = parse_umask)]
    pub umask: Option<u32>,
    /// Change to this directory at start
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Check the configuration (files, addresses, directory) and exit: 0 if usable
    #[arg(long)]
    pub check_config: bool,
    /// Print the effective configuration as a TOML config file and exit
    #[arg(long)]
    pub print_config: bool,
}

/// Parses an octal umask: `027`, `0o027`, `0027`.
fn parse_umask(v: &str) -> Result<u32, String> {
    let digits = v.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{v:?} is not an octal file mode mask (e.g. 027)"))
}

impl ServerArgs {
    /// What a `main` does with these flags: builds the configuration, sets up logging
    /// (`--log-level`), answers `--print-config` or `--check-config`, else calls `run`.
    /// Errors are printed (`muster: error: ...`) and become the exit status
    /// ([`ServerError::exit_code`]).
    pub fn main(
        &self,
        run: impl FnOnce(Config) -> Result<std::process::ExitCode, ServerError>,
    ) -> std::process::ExitCode {
        let fail = |e: ServerError| {
            eprintln!("muster: error: {e}");
            std::process::ExitCode::from(e.exit_code())
        };
        let config = match self.to_config() {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        crate::init_logging(&config.log_level);
        if self.print_config {
            print!("{}", config.to_toml());
            return std::process::ExitCode::SUCCESS;
        }
        if self.check_config {
            return match crate::check::check_config(&config) {
                Ok(()) => {
                    println!("configuration OK");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            };
        }
        run(config).unwrap_or_else(fail)
    }

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
            log_level: self.log_level.clone(),
            access_logfile: self.access_logfile.clone(),
            access_logformat: self.access_logformat.clone(),
            forwarded_allow_ips: self.forwarded_allow_ips.clone(),
            metrics_on_app_port: self.no_metrics_on_app_port.then_some(false),
            user: self.user.clone(),
            group: self.group.clone(),
            umask: self.umask,
            chdir: self.chdir.clone(),
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
        set(&mut config.log_level, self.log_level);
        set(&mut config.access_logfile, self.access_logfile.map(Some));
        set(&mut config.access_logformat, self.access_logformat);
        set(&mut config.forwarded_allow_ips, self.forwarded_allow_ips);
        set(&mut config.metrics_on_app_port, self.metrics_on_app_port);
        set(&mut config.user, self.user.map(Some));
        set(&mut config.group, self.group.map(Some));
        set(&mut config.umask, self.umask.map(Some));
        set(&mut config.chdir, self.chdir.map(Some));
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

    /// The configuration as a TOML config file (what `--print-config` prints): every
    /// key, with the value in force.
    pub fn to_toml(&self) -> String {
        let secs = |d: Duration| Some(d.as_secs_f64());
        let all = Overrides {
            workers: Some(self.workers),
            bind: Some(self.bind.clone()),
            timeout: secs(self.timeout),
            graceful_timeout: secs(self.graceful_timeout),
            threads: Some(self.threads),
            max_requests: Some(self.max_requests),
            max_requests_jitter: Some(self.max_requests_jitter),
            pid: self.pid.clone(),
            metrics_bind: self.metrics_bind.clone(),
            multiproc_dir: self.multiproc_dir.clone(),
            max_boot_failures: Some(self.max_boot_failures),
            http_metrics: Some(self.http_metrics),
            web_config_file: self.web_config_file.clone(),
            header_read_timeout: secs(self.header_read_timeout),
            keepalive: secs(self.keepalive),
            handler_timeout: secs(self.handler_timeout),
            limit_request_fields: Some(self.limit_request_fields),
            max_header_bytes: Some(self.max_header_bytes),
            max_requests_per_connection: Some(self.max_requests_per_connection),
            worker_connections: Some(self.worker_connections),
            log_level: Some(self.log_level.clone()),
            access_logfile: self.access_logfile.clone(),
            access_logformat: Some(self.access_logformat.clone()),
            forwarded_allow_ips: Some(self.forwarded_allow_ips.clone()),
            metrics_on_app_port: Some(self.metrics_on_app_port),
            user: self.user.clone(),
            group: self.group.clone(),
            umask: self.umask,
            chdir: self.chdir.clone(),
        };
        toml::to_string(&all).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
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
        if !self.metrics_on_app_port && self.metrics_bind.is_none() {
            return Err(ServerError::Config(
                "--no-metrics-on-app-port (metrics_on_app_port = false) needs --metrics-bind: \
                 /metrics would be served nowhere"
                    .into(),
            ));
        }
        if self.umask.is_some_and(|m| m > 0o777) {
            return Err(ServerError::Config("umask must be at most 0o777".into()));
        }
        crate::forwarded::TrustedProxies::parse(&self.forwarded_allow_ips)?;
        crate::accesslog::Format::parse(&self.access_logformat)?;
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
    fn printed_config_reads_back_the_same() {
        let args = ServerArgs {
            workers: Some(3),
            bind: vec!["unix:/run/app.sock".into(), "127.0.0.1:9000".into()],
            handler_timeout: Some(2.5),
            umask: Some(0o027),
            forwarded_allow_ips: Some(vec!["10.0.0.0/8".into()]),
            access_logfile: Some("-".into()),
            ..ServerArgs::default()
        };
        let c = args.to_config().expect("config");
        let text = c.to_toml();
        let back = Config::from_toml_str(&text).expect("printed config parses");
        assert_eq!(back.to_toml(), text);
        assert_eq!(back.workers, 3);
        assert_eq!(back.bind, c.bind);
        assert_eq!(back.handler_timeout, Duration::from_millis(2500));
        assert_eq!(back.umask, Some(0o027));
        assert!(text.contains("umask = 23"), "{text}");
    }

    #[test]
    fn bad_operator_settings_are_clear_errors() {
        let e = Config::from_toml_str("metrics_on_app_port = false").expect_err("nowhere");
        assert!(e.to_string().contains("--metrics-bind"), "{e}");
        let e = Config::from_toml_str("forwarded_allow_ips = [\"10.0.0.0/33\"]").expect_err("cidr");
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        let e = Config::from_toml_str("access_logformat = \"%(h)s %(zz)s\"").expect_err("atom");
        assert!(e.to_string().contains("%(zz)s"), "{e}");
        assert_eq!(super::parse_umask("027"), Ok(0o027));
        assert_eq!(super::parse_umask("0o22"), Ok(0o022));
        assert!(super::parse_umask("999").is_err());
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
