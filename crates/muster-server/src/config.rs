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
//! max_worker_lifetime = 3600
//! max_worker_memory = 536870912
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

/// How a setting is written in the TOML file (and by the flags), and read into a
/// [`Config`] value.
trait Kind {
    /// The value in [`Config`].
    type Value;
    /// The value in the file.
    type File;
    /// The file's value as a setting; `name` names it in errors.
    fn read(v: Self::File, name: &str) -> Result<Self::Value, ServerError>;
    /// The setting as the file writes it (`None`: not set).
    fn write(v: &Self::Value) -> Option<Self::File>;
}

/// A value as it is.
struct Plain<T>(std::marker::PhantomData<T>);
impl<T: Clone> Kind for Plain<T> {
    type Value = T;
    type File = T;
    fn read(v: T, _: &str) -> Result<T, ServerError> {
        Ok(v)
    }
    fn write(v: &T) -> Option<T> {
        Some(v.clone())
    }
}

/// An optional value (unset by default).
struct Maybe<T>(std::marker::PhantomData<T>);
impl<T: Clone> Kind for Maybe<T> {
    type Value = Option<T>;
    type File = T;
    fn read(v: T, _: &str) -> Result<Option<T>, ServerError> {
        Ok(Some(v))
    }
    fn write(v: &Option<T>) -> Option<T> {
        v.clone()
    }
}

/// A duration, written as seconds.
struct Seconds;
impl Kind for Seconds {
    type Value = Duration;
    type File = f64;
    fn read(v: f64, name: &str) -> Result<Duration, ServerError> {
        seconds(name, v)
    }
    fn write(v: &Duration) -> Option<f64> {
        Some(v.as_secs_f64())
    }
}

/// Declares every setting once: its [`Config`] field, type and help, how the file
/// writes it (a [`Kind`]), its default, TOML key (the field's name), and command-line
/// flag (clap attributes, the flag's type and how it becomes the file's value). Generates [`Config`], its `Default`, the file's
/// `Overrides` (also what the flags set) and [`SettingFlags`].
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $vty:ty, as $kind:ty = $default:expr,
            flag $fty:ty = $to_file:expr, #[arg($($arg:tt)*)];
    )*) => {
        /// The settings of one server run. Each field is a TOML key of the same name
        /// and a command-line flag ([`SettingFlags`]).
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $vty, )*
            /// The TOML file this configuration was read from, re-read on SIGHUP.
            pub config_file: Option<PathBuf>,
            /// Start even though a configured password is a known-weak one (logged as
            /// a warning); a flag only.
            pub allow_weak_credentials: bool,
            /// The command-line flags, re-applied over the file on SIGHUP.
            pub(crate) args: Option<ServerArgs>,
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $name: $default, )*
                    config_file: None,
                    allow_weak_credentials: false,
                    args: None,
                }
            }
        }

        /// Settings laid over the defaults: the keys a TOML config file may hold (all
        /// optional; unknown keys are an error), and what the command-line flags set.
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        struct Overrides {
            $( $name: Option<<$kind as Kind>::File>, )*
        }

        impl Overrides {
            /// Sets every value this layer holds over `config`.
            fn apply(self, config: &mut Config, source: Source) -> Result<(), ServerError> {
                $(
                    if let Some(v) = self.$name {
                        config.$name = <$kind as Kind>::read(v, &source.name(stringify!($name)))?;
                    }
                )*
                Ok(())
            }

            /// Every value of `config`, as a file would hold it.
            fn of(config: &Config) -> Overrides {
                Overrides { $( $name: <$kind as Kind>::write(&config.$name), )* }
            }

            /// What the flags set.
            fn from_flags(f: &SettingFlags) -> Overrides {
                Overrides {
                    $( $name: {
                        let to_file: fn(&$fty) -> Option<<$kind as Kind>::File> = $to_file;
                        to_file(&f.$name)
                    }, )*
                }
            }
        }

        /// The settings' command-line flags, gunicorn's names where gunicorn has the
        /// setting (part of [`ServerArgs`]).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct SettingFlags {
            $( $(#[doc = $doc])* #[arg($($arg)*)] pub $name: $fty, )*
        }

        /// Every TOML key.
        #[cfg(test)]
        const KEYS: &[&str] = &[$(stringify!($name)),*];
    };
}

/// A flag that sets the value as it is.
fn same<T: Clone>(v: &Option<T>) -> Option<T> {
    v.clone()
}

settings! {
    /// Number of application worker processes [default: $WEB_CONCURRENCY, else the
    /// number of cores]
    workers: usize, as Plain<usize> = default_workers(),
        flag Option<usize> = same, #[arg(short = 'w', long, value_name = "N")];
    /// Addresses to listen on: HOST:PORT, unix:PATH or fd://N; repeatable (ignored when
    /// systemd passes sockets) [default: 127.0.0.1:8000]
    bind: Vec<String>, as Plain<Vec<String>> = vec![DEFAULT_BIND.to_string()],
        flag Vec<String> = |v| (!v.is_empty()).then(|| v.clone()),
        #[arg(short = 'b', long = "bind", value_name = "ADDR")];
    /// A worker whose heartbeat is silent this long is hung: SIGABRT, then SIGKILL, and
    /// replaced [default: 30]
    timeout: Duration, as Seconds = Duration::from_secs(30),
        flag Option<f64> = same, #[arg(long, value_name = "SECONDS")];
    /// Seconds a stopping worker gets to finish in-flight requests [default: 30]
    graceful_timeout: Duration, as Seconds = Duration::from_secs(30),
        flag Option<f64> = same, #[arg(long, value_name = "SECONDS")];
    /// Runtime threads per worker; 1 = a current-thread runtime (a blocked worker stops
    /// its heartbeat and is replaced after --timeout) [default: 1]
    threads: usize, as Plain<usize> = 1,
        flag Option<usize> = same, #[arg(long, value_name = "N")];
    /// Recycle a worker after this many requests; 0 = never [default: 0]
    max_requests: u64, as Plain<u64> = 0,
        flag Option<u64> = same, #[arg(long, value_name = "N")];
    /// Random extra requests (0..=N) added to --max-requests per worker, so that
    /// workers do not all recycle at once [default: 0]
    max_requests_jitter: u64, as Plain<u64> = 0,
        flag Option<u64> = same, #[arg(long, value_name = "N")];
    /// Recycle a worker (gracefully, like --max-requests) once it has lived this many
    /// seconds; 0 = never [default: 0]
    max_worker_lifetime: Duration, as Seconds = Duration::ZERO,
        flag Option<f64> = same, #[arg(long, value_name = "SECONDS")];
    /// Recycle a worker once the resident memory of its process tree exceeds this
    /// many bytes (suffixes K, M, G: 512M); 0 = never [default: 0]
    max_worker_memory: u64, as Plain<u64> = 0,
        flag Option<u64> = same, #[arg(long, value_name = "BYTES", value_parser = parse_bytes)];
    /// Write the supervisor's pid to this file (removed at exit)
    pid: Option<PathBuf>, as Maybe<PathBuf> = None,
        flag Option<PathBuf> = same, #[arg(long, value_name = "FILE")];
    /// Also serve /metrics and health on this address, from a process outside the app
    /// workers
    metrics_bind: Option<String>, as Maybe<String> = None,
        flag Option<String> = same, #[arg(long, value_name = "ADDR")];
    /// Multiprocess metrics directory [default: $PROMETHEUS_MULTIPROC_DIR, else a
    /// private temporary directory]
    multiproc_dir: Option<PathBuf>, as Maybe<PathBuf> = std::env::var_os("PROMETHEUS_MULTIPROC_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from),
        flag Option<PathBuf> = same, #[arg(long, value_name = "DIR")];
    /// Workers in a row that die before becoming ready before the server gives up
    /// [default: 5]
    max_boot_failures: u32, as Plain<u32> = 5,
        flag Option<u32> = same, #[arg(long, value_name = "N")];
    /// Record the default HTTP metrics (http_requests_total, ...); the flag turns them
    /// off, only to measure their cost
    http_metrics: bool, as Plain<bool> = true,
        flag bool = |off| off.then_some(false), #[arg(long = "no-http-metrics")];
    /// Web configuration file (Prometheus exporter-toolkit format: tls_server_config,
    /// basic_auth_users) protecting /metrics; see docs/security.md
    web_config_file: Option<PathBuf>, as Maybe<PathBuf> = None,
        flag Option<PathBuf> = same, #[arg(long, value_name = "FILE")];
    /// Seconds a client gets to send a request's headers (and a new connection its
    /// first request) [default: 10]
    header_read_timeout: Duration, as Seconds = Duration::from_secs(10),
        flag Option<f64> = same, #[arg(long, value_name = "SECONDS")];
    /// Close a connection idle (no request in progress) for this many seconds
    /// [default: 5]
    keepalive: Duration, as Seconds = Duration::from_secs(5),
        flag Option<f64> = same, #[arg(long = "keep-alive", value_name = "SECONDS")];
    /// Answer 504 when an application request has no response after this many seconds;
    /// 0 = no limit [default: 60]
    handler_timeout: Duration, as Seconds = Duration::from_secs(60),
        flag Option<f64> = same, #[arg(long, value_name = "SECONDS")];
    /// Most header fields per request (more: 431) [default: 100]
    limit_request_fields: usize, as Plain<usize> = 100,
        flag Option<usize> = same, #[arg(long, value_name = "N")];
    /// Most bytes of request line and headers (more: 431; at least 8192) [default: 32768]
    max_header_bytes: usize, as Plain<usize> = 32 * 1024,
        flag Option<usize> = same, #[arg(long, value_name = "BYTES")];
    /// Requests per HTTP/1.1 connection before it is closed; 0 = no limit [default: 1000]
    max_requests_per_connection: u64, as Plain<u64> = 1000,
        flag Option<u64> = same, #[arg(long, value_name = "N")];
    /// Most simultaneous connections per worker; more wait in the shared accept queue
    /// [default: 1000]
    worker_connections: usize, as Plain<usize> = 1000,
        flag Option<usize> = same, #[arg(long, value_name = "N")];
    /// Log level: error, warn, info, debug, trace, or tracing directives
    /// [default: $MUSTER_LOG, else info]
    log_level: String, as Plain<String> = std::env::var("MUSTER_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".into()),
        flag Option<String> = same, #[arg(long, value_name = "LEVEL")];
    /// Write an access log line per application request to FILE ('-' = standard
    /// output) [default: none]
    access_logfile: Option<PathBuf>, as Maybe<PathBuf> = None,
        flag Option<PathBuf> = same, #[arg(long, value_name = "FILE")];
    /// Access log format, gunicorn's atoms: %(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)s ...
    /// [default: gunicorn's]
    access_logformat: String, as Plain<String> = crate::accesslog::DEFAULT_FORMAT.into(),
        flag Option<String> = same, #[arg(long, value_name = "FORMAT")];
    /// Peers trusted to set X-Forwarded-For/-Proto: IPs, CIDRs or '*', comma-separated
    /// (Unix-socket clients always are) [default: 127.0.0.1,::1]
    forwarded_allow_ips: Vec<String>, as Plain<Vec<String>> = vec!["127.0.0.1".into(), "::1".into()],
        flag Option<Vec<String>> = same,
        #[arg(long, value_name = "IPS", value_delimiter = ',')];
    /// Serve /metrics, /-/healthy and /-/ready on the application's listeners too; the
    /// flag turns it off (only on --metrics-bind, which is then required)
    metrics_on_app_port: bool, as Plain<bool> = true,
        flag bool = |off| off.then_some(false), #[arg(long = "no-metrics-on-app-port")];
    /// Run as this user (name or uid) once the listeners are bound
    user: Option<String>, as Maybe<String> = None,
        flag Option<String> = same, #[arg(long, short = 'u', value_name = "USER")];
    /// Run as this group (name or gid) once the listeners are bound
    group: Option<String>, as Maybe<String> = None,
        flag Option<String> = same, #[arg(long, short = 'g', value_name = "GROUP")];
    /// File mode creation mask, octal (e.g. 027), set at start
    umask: Option<u32>, as Maybe<u32> = None,
        flag Option<u32> = same,
        #[arg(long, short = 'm', value_name = "MASK", value_parser = parse_umask)];
    /// Change to this directory at start
    chdir: Option<PathBuf>, as Maybe<PathBuf> = None,
        flag Option<PathBuf> = same, #[arg(long, value_name = "DIR")];
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

/// Command-line flags with gunicorn's names: every setting ([`SettingFlags`]) and the
/// flags that only say what to do. Flatten into a clap parser with
/// `#[command(flatten)]`, then call [`ServerArgs::main`] (or [`ServerArgs::to_config`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// The settings.
    #[command(flatten)]
    pub settings: SettingFlags,
    /// TOML configuration file (re-read on SIGHUP)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start even if a password in the web config file is a known-weak one
    #[arg(long)]
    pub allow_weak_credentials: bool,
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

/// Parses a byte count: `536870912`, `512M`, `2G`, `64K` (powers of 1024).
fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => {
            return Err(format!(
                "{v:?} is not a byte count (e.g. 536870912, 512M, 2G)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{v:?} is not a byte count (e.g. 536870912, 512M, 2G)"))
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
        Overrides::from_flags(&self.settings).apply(&mut config, Source::Flags)?;
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

impl Source {
    /// A setting as it is spelled in this layer: the TOML key, or the flag.
    fn name(self, key: &str) -> String {
        match self {
            Source::File => key.to_string(),
            Source::Flags => format!("--{}", key.replace('_', "-")),
        }
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
        toml::to_string(&Overrides::of(self))
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
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
            settings: SettingFlags {
                workers: Some(3),
                bind: vec!["unix:/run/app.sock".into(), "127.0.0.1:9000".into()],
                handler_timeout: Some(2.5),
                umask: Some(0o027),
                forwarded_allow_ips: Some(vec!["10.0.0.0/8".into()]),
                access_logfile: Some("-".into()),
                http_metrics: true,
                ..SettingFlags::default()
            },
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
        assert!(text.contains("http_metrics = false"), "{text}");
        assert!(!back.http_metrics);
    }

    /// Every setting is a documented TOML key (module docs) and a flag in
    /// docs/operations.md or docs/security.md: declared once, documented everywhere.
    #[test]
    fn every_setting_is_documented() {
        let module = include_str!("config.rs");
        let docs = [
            include_str!("../../../docs/operations.md"),
            include_str!("../../../docs/security.md"),
        ]
        .concat();
        for key in KEYS {
            assert!(
                module.contains(&format!("//! {key} = ")),
                "{key} is not in the module docs' example"
            );
            assert!(docs.contains(&format!("`{key}")), "{key} is not in docs/");
        }
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
        assert_eq!(super::parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(super::parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("12X").is_err());
        assert!(super::parse_bytes("M").is_err());
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "workers = 3\nmax_requests = 7\n").expect("write");
        let args = ServerArgs {
            settings: SettingFlags {
                workers: Some(5),
                ..SettingFlags::default()
            },
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
