//! muster-server: a pre-fork (gunicorn-style) server runtime for Rust.
//!
//! A single-threaded supervisor binds the listening sockets, prepares the Prometheus
//! multiprocess directory, forks worker processes and keeps them alive (see [`run`]);
//! each worker builds its own tokio runtime after the fork and serves the user's
//! service (any `tower::Service`, or an axum `Router` with [`axum_app`]) together with
//! `/metrics`, `/-/healthy` and `/-/ready` (see [`http`] and [`server`]). Metric values
//! live in per-worker memory-mapped files that every scrape merges, so totals never
//! reset when workers die or recycle. `docs/operations.md` lists the flags.
//!
//! ```no_run
//! use muster_server::{app, service_fn, ServerArgs, Full, Bytes};
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] server: ServerArgs }
//!
//! fn main() -> Result<std::process::ExitCode, muster_server::ServerError> {
//!     let cli = Cli::parse();
//!     let config = cli.server.to_config()?;
//!     let factory = app(|_ctx: &muster_server::WorkerContext| {
//!         Ok(service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hi\n"))))
//!         }))
//!     })
//!     .routes(["/"]);
//!     muster_server::run(config, factory)
//! }
//! ```

#![warn(missing_docs)]

mod accepting;
mod accesslog;
pub mod auth;
#[cfg(feature = "axum")]
pub mod axum_app;
mod check;
pub mod command;
pub mod config;
mod connection;
mod forwarded;
pub mod http;
mod instruments;
pub mod listeners;
mod mpdir;
mod notify;
mod privileges;
mod procmetrics;
pub mod runtime;
mod scoreboard;
mod scrape;
pub mod server;
mod signals;
mod supervisor;
pub mod webconfig;
mod worker;
mod workernotify;

use std::path::PathBuf;

pub use bytes::Bytes;
pub use config::{Config, ServerArgs, SettingFlags};
pub use connection::Peer;
pub use forwarded::Client;
pub use http::{service_fn, RouteTemplate, ServiceFn};
pub use http_body_util::Full;
pub use listeners::Listener;
pub use scoreboard::{Slot, SlotState, MAX_APP_WORKERS};
pub use signals::ChildSignals;
pub use supervisor::{
    run, supervise, ExitReason, ForkedApp, WorkerProgram, WorkerView, EXIT_BOOT_ERROR,
};
pub use webconfig::WebConfig;
pub use worker::{WorkerKind, WorkerParams};

/// Sets up logging to standard error with `filter` (`info`, `debug`, or `tracing`
/// directives such as `info,muster_server=debug`); a bad filter falls back to `info`
/// with a warning. Does nothing if a subscriber is already installed.
pub fn init_logging(filter: &str) {
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, bad) {
        tracing::warn!(error = %e, "bad --log-level; logging at info");
    }
}

/// A whole `main` for a binary built on muster-server: parses [`ServerArgs`] from the
/// command line and hands them to [`ServerArgs::main`].
pub fn cli_main(
    run: impl FnOnce(Config) -> Result<std::process::ExitCode, ServerError>,
) -> std::process::ExitCode {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }
    <Cli as clap::Parser>::parse().server.main(run)
}

/// A boxed error, as returned by user factories and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value, file or flag is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// A listen address could not be resolved or bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The multiprocess directory is missing, unsafe or unusable.
    #[error("multiprocess directory: {0}")]
    MultiprocDir(String),
    /// `run` was called from a process that already has several threads; fork() would
    /// not be safe.
    #[error("muster must start single-threaded (found {0} threads): call run() before starting any thread or runtime")]
    NotSingleThreaded(usize),
    /// The application's preparation hook failed.
    #[error("application setup failed: {0}")]
    App(String),
    /// A worker exited with [`supervisor::EXIT_BOOT_ERROR`] before it became ready:
    /// its boot is hopeless (the application cannot be built), so the server stopped.
    #[error("worker {worker} died before becoming ready with a boot error ({last}); stopping")]
    WorkerBootError {
        /// The worker's id (`w<slot>`).
        worker: String,
        /// How it ended.
        last: String,
    },
    /// Workers kept dying before they ever became ready.
    #[error("{failures} workers in a row died before becoming ready (last: {last}); giving up")]
    WorkerBootFailed {
        /// How many in a row.
        failures: u32,
        /// How the last one ended.
        last: String,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    /// The process exit code a CLI should use for this error (2 configuration, 3 worker
    /// boot failure, 1 anything else).
    pub fn exit_code(&self) -> u8 {
        match self {
            ServerError::Config(_) | ServerError::Bind { .. } | ServerError::MultiprocDir(_) => 2,
            ServerError::WorkerBootFailed { .. } | ServerError::WorkerBootError { .. } => 3,
            _ => 1,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> ServerError {
        ServerError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// What a worker knows about itself, handed to [`AppFactory::build`].
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The worker's slot number (0..); a replacement reuses its predecessor's slot.
    pub slot: usize,
    /// The worker's metric-file id, `w<slot>`.
    pub id: String,
    /// The multiprocess metrics directory.
    pub multiproc_dir: PathBuf,
    /// The configuration in force when the worker was forked.
    pub config: Config,
    /// Tells the application when this worker starts draining (SIGTERM, a reload,
    /// `--max-requests`), e.g. to close WebSockets and other long-lived streams, which
    /// the drain does not wait for.
    pub drain: DrainSignal,
}

/// Whether (and when) a worker starts draining; see [`WorkerContext::drain`]. Cheap to
/// clone into handlers.
#[derive(Debug, Clone)]
pub struct DrainSignal(pub(crate) tokio::sync::watch::Receiver<bool>);

impl DrainSignal {
    /// Whether the worker is draining now.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the worker starts draining (or is gone).
    pub async fn draining(mut self) {
        let _ = self.0.wait_for(|d| *d).await;
    }
}

/// What the supervisor knows before forking, handed to [`AppFactory::before_fork`].
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// The multiprocess metrics directory (already prepared).
    pub multiproc_dir: PathBuf,
    /// The configuration.
    pub config: Config,
}

/// The service type a factory builds: a `tower::Service` over hyper requests, so an
/// axum `Router` (or anything else tower-shaped) fits, as does [`service_fn`].
pub trait AppService:
    tower_service::Service<
        ::http::Request<hyper::body::Incoming>,
        Response = ::http::Response<Self::Body>,
        Error = Self::Err,
        Future = Self::Fut,
    > + Clone
    + Send
    + 'static
{
    /// Response body.
    type Body: http_body::Body<Data = Bytes, Error = Self::BodyError> + Send + 'static;
    /// Response body error.
    type BodyError: Into<BoxError>;
    /// Service error.
    type Err: Into<BoxError>;
    /// Response future.
    type Fut: std::future::Future<Output = Result<::http::Response<Self::Body>, Self::Err>>
        + Send
        + 'static;
}

impl<S, B, E, F> AppService for S
where
    S: tower_service::Service<
            ::http::Request<hyper::body::Incoming>,
            Response = ::http::Response<B>,
            Error = E,
            Future = F,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
    F: std::future::Future<Output = Result<::http::Response<B>, E>> + Send + 'static,
{
    type Body = B;
    type BodyError = B::Error;
    type Err = E;
    type Fut = F;
}

/// Builds the application inside each worker, after fork.
pub trait AppFactory: Send + 'static {
    /// The service built per worker.
    type Service: AppService;

    /// Builds the service in a worker process, on its tokio runtime (so startup can be
    /// async: open a database pool here). Metrics created here write into this
    /// worker's files. An error stops the worker with a boot error (exit code 3), which
    /// stops the server.
    fn build(
        &self,
        ctx: &WorkerContext,
    ) -> impl std::future::Future<Output = Result<Self::Service, BoxError>>;

    /// Route templates (`/walks/{id}`) used to label the HTTP metrics; a request that
    /// matches none is labelled `unmatched`. A response carrying a [`RouteTemplate`]
    /// extension overrides this.
    fn routes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs once in the supervisor, before any worker is forked (prepare shared state
    /// such as a database schema). Must not start threads.
    fn before_fork(&mut self, _ctx: &ServerContext) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs in the supervisor on SIGHUP, before the workers are replaced. Must not
    /// leave threads running: the supervisor refuses to fork while it has more than one.
    fn on_reload(&mut self, _ctx: &ServerContext) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs in each worker right after fork, before its runtime exists and before
    /// [`AppFactory::build`] (gunicorn's `post_fork`): reseed, drop what the
    /// supervisor held. An error stops the worker as a boot error.
    fn post_fork(&self, _ctx: &WorkerContext) -> Result<(), BoxError> {
        Ok(())
    }
}

/// An [`AppFactory`] made from a closure; see [`app`].
pub struct FnApp<F> {
    build: F,
    routes: Vec<String>,
}

/// Wraps a closure `Fn(&WorkerContext) -> Result<Service, BoxError>` as a factory.
pub fn app<F, S>(build: F) -> FnApp<F>
where
    F: Fn(&WorkerContext) -> Result<S, BoxError> + Send + 'static,
    S: AppService,
{
    FnApp {
        build,
        routes: Vec::new(),
    }
}

impl<F> FnApp<F> {
    /// Sets the route templates used as metric labels.
    pub fn routes<I, T>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.routes = routes.into_iter().map(Into::into).collect();
        self
    }
}

impl<F, S> AppFactory for FnApp<F>
where
    F: Fn(&WorkerContext) -> Result<S, BoxError> + Send + 'static,
    S: AppService,
{
    type Service = S;
    fn build(&self, ctx: &WorkerContext) -> impl std::future::Future<Output = Result<S, BoxError>> {
        std::future::ready((self.build)(ctx))
    }
    fn routes(&self) -> Vec<String> {
        self.routes.clone()
    }
}
