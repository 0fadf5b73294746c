//! A worker process: after fork it builds its own tokio runtime (by default
//! current-thread, so a request that hogs the worker also stops its heartbeat and gets
//! it replaced after `--timeout`, as with gunicorn's sync workers; `--threads N` gives
//! a multi-thread runtime), builds the user's service, and serves the inherited
//! listeners until told to stop.
//!
//! Signals in a worker: SIGTERM = drain (stop accepting, finish in-flight requests
//! within `graceful_timeout`, exit 0); SIGINT/SIGQUIT = exit at once. Reaching
//! `max_requests` (plus jitter) drains the same way as SIGTERM; the supervisor sees the
//! `Draining` state and forks a replacement.
//!
//! Connections: TLS (rustls, from the web config file) is negotiated in the connection's
//! own task; hyper enforces the header read timeout, header count and size; a watchdog
//! per connection closes it when the first request does not arrive in time or when it
//! has been idle for `keepalive`; a request in progress is answered 504 after
//! `handler_timeout`; at most `worker_connections` are served at once. See
//! `docs/security.md`.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::http::{AppHandler, RouteTable, Shared};
use crate::instruments::{HttpMetrics, ProcessMetrics};
use crate::scoreboard::{Scoreboard, SlotState};
use crate::server::{HttpLimits, HttpServer};
use crate::supervisor::EXIT_BOOT_ERROR;
use crate::webconfig::WebConfig;
use crate::{AppFactory, WorkerContext};

/// What a worker process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The application (with muster's endpoints in front).
    App,
    /// Only `/metrics` and health, on `--metrics-bind`.
    Metrics,
}

/// Everything a worker needs, handed over by the supervisor in the forked child (see
/// [`crate::WorkerProgram`]).
pub struct WorkerParams {
    pub(crate) kind: WorkerKind,
    pub(crate) slot: usize,
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) web: Option<Arc<WebConfig>>,
    pub(crate) scoreboard: Arc<Scoreboard>,
    pub(crate) listeners: Vec<crate::listeners::Listener>,
    pub(crate) supervisor_pid: Pid,
    /// The access log (opened by the supervisor, shared by every worker).
    pub(crate) access_log: Option<Arc<crate::accesslog::AccessLog>>,
    /// Signals held back since the fork, released once the worker's handlers exist.
    pub(crate) signals: Option<crate::signals::ChildSignals>,
}

impl WorkerParams {
    /// What the worker serves.
    pub fn kind(&self) -> WorkerKind {
        self.kind
    }

    /// Unblocks signals (blocked since the fork): call once the worker's own handlers
    /// are installed. A signal sent to the worker since its fork is delivered now.
    pub fn unblock_signals(&self) {
        if let Some(s) = &self.signals {
            s.release();
        }
    }

    /// What the application is told about this worker.
    fn context(&self, drain: &tokio::sync::watch::Receiver<bool>) -> WorkerContext {
        WorkerContext {
            slot: self.slot,
            id: self.id.clone(),
            multiproc_dir: self.dir.clone(),
            config: self.config.clone(),
            drain: crate::DrainSignal(drain.clone()),
        }
    }
}

/// Runs a worker to its end and returns its exit code.
pub(crate) fn run_worker<A: AppFactory>(p: WorkerParams, app: &A) -> i32 {
    // Draining: the connections and the application watch this.
    let drain = tokio::sync::watch::channel(false);
    let ctx = p.context(&drain.1);
    if p.kind == WorkerKind::App {
        if let Err(e) = app.post_fork(&ctx) {
            error!(worker = %p.id, error = %e, "post_fork hook failed");
            return EXIT_BOOT_ERROR;
        }
    }
    let rt = match crate::runtime::build_runtime(p.config.threads) {
        Ok(rt) => rt,
        Err(e) => {
            error!(worker = %p.id, error = %e, "cannot build the tokio runtime");
            return EXIT_BOOT_ERROR;
        }
    };
    let code = rt.block_on(worker_main(p, app, ctx, drain));
    // Do not wait for blocking tasks (a scrape) longer than a moment.
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

fn jittered_limit(max: u64, jitter: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    if jitter == 0 {
        return max;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    max.saturating_add(h.finish() % (jitter + 1))
}

async fn worker_main<A: AppFactory>(
    mut p: WorkerParams,
    app: &A,
    ctx: WorkerContext,
    (drain_tx, _): (
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Receiver<bool>,
    ),
) -> i32 {
    let Some(slot) = p.scoreboard.slot(p.slot) else {
        return EXIT_BOOT_ERROR;
    };
    slot.set_pid(std::process::id() as i32);
    slot.beat();
    // Earlier workers of this slot: their write errors stay counted.
    let write_errors_base = slot.write_errors();

    let (mut term, mut int, mut quit) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) {
        (Ok(t), Ok(i), Ok(q)) => (t, i, q),
        _ => {
            error!(worker = %p.id, "cannot install the worker's signal handlers");
            return EXIT_BOOT_ERROR;
        }
    };
    install_abort_handler(&p.id);
    // Our handlers exist: a signal sent since the fork (held back) is delivered now.
    p.unblock_signals();

    // Heartbeat and process metrics, from the start (booting counts against --timeout).
    let beat_every =
        (p.config.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let process_metrics = match ProcessMetrics::new(&p.id) {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(worker = %p.id, error = %e, "process metrics unavailable");
            None
        }
    };
    {
        let sb = Arc::clone(&p.scoreboard);
        let index = p.slot;
        let supervisor = p.supervisor_pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(beat_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if nix::unistd::getppid() != supervisor {
                    // PDEATHSIG should have killed us; be sure.
                    // SAFETY: ends the process without running the parent's atexit handlers.
                    unsafe { libc::_exit(1) };
                }
                if let Some(s) = sb.slot(index) {
                    s.beat();
                    s.publish_write_errors(write_errors_base);
                }
                if let Some(m) = &process_metrics {
                    m.update();
                }
            }
        });
    }

    let (svc, metrics, routes) = match p.kind {
        WorkerKind::App => {
            let svc = match app.build(&ctx).await {
                Ok(s) => s,
                Err(e) => {
                    error!(worker = %p.id, error = %e, "application failed to start");
                    return EXIT_BOOT_ERROR;
                }
            };
            let metrics = if p.config.http_metrics {
                HttpMetrics::new()
                    .map_err(|e| warn!(worker = %p.id, error = %e, "HTTP metrics unavailable"))
                    .ok()
            } else {
                None
            };
            (Some(svc), metrics, RouteTable::new(app.routes()))
        }
        WorkerKind::Metrics => (None, None, RouteTable::default()),
    };

    let limit = match p.kind {
        WorkerKind::App => jittered_limit(p.config.max_requests, p.config.max_requests_jitter),
        WorkerKind::Metrics => 0,
    };
    let app = p.kind == WorkerKind::App;
    let shared = Arc::new(Shared {
        handler_timeout: (!p.config.handler_timeout.is_zero()).then_some(p.config.handler_timeout),
        own_endpoints: !app || p.config.metrics_on_app_port,
        access_log: if app { p.access_log.clone() } else { None },
        // Checked by Config::validate.
        proxies: crate::forwarded::TrustedProxies::parse(&p.config.forwarded_allow_ips)
            .unwrap_or_default(),
        tls: p.web.as_ref().is_some_and(|w| w.tls.is_some()),
        collector: Arc::new(Mutex::new(crate::scrape::Scraper::new(
            p.dir.clone(),
            Arc::clone(&p.scoreboard),
        ))),
        metrics,
        routes,
        scoreboard: Arc::clone(&p.scoreboard),
        slot: p.slot,
        request_limit: limit,
        drain: tokio::sync::Notify::new(),
        web: p.web.clone(),
    });
    let server = HttpServer::new(
        std::mem::take(&mut p.listeners),
        AppHandler {
            shared: Arc::clone(&shared),
            svc,
        },
        HttpLimits::from_config(&p.config),
        p.web.as_ref().and_then(|w| w.tls.clone()),
        drain_tx,
    );
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            error!(worker = %p.id, error = %e, "cannot use a listener");
            return EXIT_BOOT_ERROR;
        }
    };
    slot.set_state(SlotState::Ready);
    info!(worker = %p.id, pid = std::process::id(), max_requests = limit, "worker serving");

    let (stop, draining) = server
        .run_until(async {
            tokio::select! {
                _ = term.recv() => Stop::Drain("SIGTERM"),
                _ = shared.drain.notified() => Stop::Drain("max requests reached"),
                _ = int.recv() => Stop::Now,
                _ = quit.recv() => Stop::Now,
            }
        })
        .await;
    let Stop::Drain(reason) = stop else {
        return 0;
    };
    // Drain: no longer accepting; finish in-flight requests, then exit.
    slot.set_state(SlotState::Draining);
    info!(worker = %p.id, reason, "worker draining");
    tokio::select! {
        done = draining.finish(drain_deadline(p.config.graceful_timeout)) => {
            if !done {
                warn!(
                    worker = %p.id,
                    "graceful timeout reached with requests in flight; exiting before the supervisor's SIGKILL"
                );
            }
        }
        _ = int.recv() => {}
        _ = quit.recv() => {}
    }
    0
}

/// Why a worker stops serving.
enum Stop {
    /// Drain first (SIGTERM, recycling).
    Drain(&'static str),
    /// At once (SIGINT, SIGQUIT).
    Now,
}

/// How long a draining worker waits for its requests: a little less than the
/// supervisor's `graceful_timeout`, so that the worker exits by itself (and says so)
/// before the supervisor's SIGKILL, which stays the last resort.
fn drain_deadline(graceful: Duration) -> Duration {
    graceful
        .saturating_sub((graceful / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

/// The name the SIGABRT handler prints (`worker w3 pid 1234`).
static ABORT_LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Handles the supervisor's SIGABRT to a hung worker (gunicorn's `worker_abort`):
/// prints which worker hung and the backtrace of the thread the kernel interrupted
/// (the thread group leader, i.e. the runtime's thread with the default
/// current-thread runtime), then aborts. Best effort: capturing a backtrace is not
/// async-signal-safe, so if the thread hung inside the allocator this can block, and
/// the supervisor's SIGKILL follows.
extern "C" fn log_hang_and_abort(_sig: libc::c_int) {
    let label = ABORT_LABEL.get().map_or("worker", String::as_str);
    let text = format!(
        "{label} hung (no heartbeat for --timeout) and was aborted by the supervisor; \
         backtrace of the interrupted thread:\n{}\n",
        std::backtrace::Backtrace::force_capture()
    );
    // SAFETY: write(2) of a buffer we own, then abort (SIGABRT's default action is
    // back in place: SA_RESETHAND).
    unsafe {
        libc::write(2, text.as_ptr().cast(), text.len());
        libc::abort();
    }
}

fn install_abort_handler(id: &str) {
    let _ = ABORT_LABEL.set(format!("worker {id} pid {}", std::process::id()));
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(log_hang_and_abort),
        nix::sys::signal::SaFlags::SA_RESETHAND,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only runs on SIGABRT, which is the supervisor telling us we
    // are being killed; see its doc for what it may do.
    if let Err(e) =
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGABRT, &action) }
    {
        warn!(worker = %id, error = %e, "cannot install the SIGABRT handler");
    }
}
