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

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::http::{dispatch, RouteTable, Shared};
use crate::instruments::{HttpMetrics, ProcessMetrics};
use crate::scoreboard::{Scoreboard, SlotState};
use crate::supervisor::EXIT_BOOT_ERROR;
use crate::{AppFactory, WorkerContext};

/// What a worker process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The application (with muster's endpoints in front).
    App,
    /// Only `/metrics` and health, on `--metrics-bind`.
    Metrics,
}

/// Everything a worker needs, handed over by the supervisor in the child.
pub(crate) struct WorkerParams {
    pub kind: WorkerKind,
    pub slot: usize,
    pub id: String,
    pub dir: PathBuf,
    pub config: Config,
    pub scoreboard: Arc<Scoreboard>,
    pub listeners: Vec<StdListener>,
    pub supervisor_pid: Pid,
}

/// Runs a worker to its end and returns its exit code.
pub(crate) fn run_worker<A: AppFactory>(p: WorkerParams, app: &A) -> i32 {
    let mut builder = if p.config.threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(p.config.threads);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().max_blocking_threads(4).build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(worker = %p.id, error = %e, "cannot build the tokio runtime");
            return EXIT_BOOT_ERROR;
        }
    };
    let code = rt.block_on(worker_main(p, app));
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

async fn worker_main<A: AppFactory>(p: WorkerParams, app: &A) -> i32 {
    let Some(slot) = p.scoreboard.slot(p.slot) else {
        return EXIT_BOOT_ERROR;
    };
    slot.set_pid(std::process::id() as i32);
    slot.beat();

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
                    std::process::exit(1);
                }
                if let Some(s) = sb.slot(index) {
                    s.beat();
                }
                if let Some(m) = &process_metrics {
                    m.update();
                }
            }
        });
    }

    let ctx = WorkerContext {
        slot: p.slot,
        id: p.id.clone(),
        multiproc_dir: p.dir.clone(),
        config: p.config.clone(),
    };
    let (svc, metrics, routes) = match p.kind {
        WorkerKind::App => {
            let svc = match app.build(&ctx) {
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

    let mut listeners = Vec::new();
    for l in p.listeners {
        let l = l
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l));
        match l {
            Ok(l) => listeners.push(l),
            Err(e) => {
                error!(worker = %p.id, error = %e, "cannot use a listener");
                return EXIT_BOOT_ERROR;
            }
        }
    }

    let limit = match p.kind {
        WorkerKind::App => jittered_limit(p.config.max_requests, p.config.max_requests_jitter),
        WorkerKind::Metrics => 0,
    };
    let shared = Arc::new(Shared {
        dir: p.dir.clone(),
        collector: Arc::new(Mutex::new(crate::scrape::Scraper::new(p.dir.clone()))),
        metrics,
        routes,
        scoreboard: Arc::clone(&p.scoreboard),
        slot: p.slot,
        request_limit: limit,
        drain: tokio::sync::Notify::new(),
    });

    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    // Draining: connections watch this; each connection task holds a clone of
    // `conns_tx`, so `conns_rx` yields `None` once every connection has finished.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let (conns_tx, mut conns_rx) = tokio::sync::mpsc::channel::<()>(1);
    slot.set_state(SlotState::Ready);
    info!(worker = %p.id, pid = std::process::id(), max_requests = limit, "worker serving");

    let recycling = loop {
        let accept = std::future::poll_fn(|cx| {
            for l in &listeners {
                if let Poll::Ready(r) = l.poll_accept(cx) {
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        });
        tokio::select! {
            r = accept => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(
                        Arc::clone(&builder),
                        stream,
                        Arc::clone(&shared),
                        svc.clone(),
                        drain_rx.clone(),
                        conns_tx.clone(),
                    ));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warn!(worker = %p.id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = term.recv() => break false,
            _ = shared.drain.notified() => break true,
            _ = int.recv() => return 0,
            _ = quit.recv() => return 0,
        }
    };

    // Drain: stop accepting (close our copies of the listeners; the sockets stay open in
    // the other workers and the supervisor), finish in-flight requests, then exit.
    slot.set_state(SlotState::Draining);
    drop(listeners);
    info!(
        worker = %p.id,
        reason = if recycling { "max requests reached" } else { "SIGTERM" },
        "worker draining"
    );
    let _ = drain_tx.send(true);
    drop(conns_tx);
    let deadline = p.config.graceful_timeout;
    tokio::select! {
        r = tokio::time::timeout(deadline, conns_rx.recv()) => {
            if r.is_err() {
                warn!(worker = %p.id, "graceful timeout reached with requests in flight");
            }
        }
        _ = int.recv() => {}
        _ = quit.recv() => {}
    }
    0
}

/// How long a connection accepted just before draining gets to send its first request
/// (its bytes may already be in flight; closing it unread would reset it).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection; when the worker drains, lets the request in progress (or the
/// first request of a connection that has not sent one yet) finish, then closes.
async fn serve_connection<S: crate::AppService>(
    builder: Arc<Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    svc: Option<S>,
    mut drain: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
) {
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (started, first) = (Arc::clone(&started), Arc::clone(&first));
        hyper::service::service_fn(move |req| {
            if !started.swap(true, std::sync::atomic::Ordering::AcqRel) {
                first.notify_one();
            }
            dispatch(Arc::clone(&shared), svc.clone(), req)
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.wait_for(|d| *d) => {}
    }
    if !started.load(std::sync::atomic::Ordering::Acquire) {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = first.notified() => {}
            _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
