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
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    pub(crate) listeners: Vec<StdListener>,
    pub(crate) supervisor_pid: Pid,
    /// The signal mask to restore once the worker's own handlers are installed.
    pub(crate) signal_mask: nix::sys::signal::SigSet,
}

impl WorkerParams {
    /// What the worker serves.
    pub fn kind(&self) -> WorkerKind {
        self.kind
    }

    /// Unblocks signals (blocked since the fork): call once the worker's own handlers
    /// are installed. A signal sent to the worker since its fork is delivered now.
    pub fn unblock_signals(&self) {
        crate::signals::restore(&self.signal_mask);
    }

    /// What the application is told about this worker.
    fn context(&self) -> WorkerContext {
        WorkerContext {
            slot: self.slot,
            id: self.id.clone(),
            multiproc_dir: self.dir.clone(),
            config: self.config.clone(),
        }
    }
}

/// Runs a worker to its end and returns its exit code.
pub(crate) fn run_worker<A: AppFactory>(p: WorkerParams, app: &A) -> i32 {
    if p.kind == WorkerKind::App {
        if let Err(e) = app.post_fork(&p.context()) {
            error!(worker = %p.id, error = %e, "post_fork hook failed");
            return EXIT_BOOT_ERROR;
        }
    }
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

    let ctx = p.context();
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
        handler_timeout: (!p.config.handler_timeout.is_zero()).then_some(p.config.handler_timeout),
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

    let builder = Arc::new(http_builder(&p.config));
    let tls = p
        .web
        .as_ref()
        .and_then(|w| w.tls.clone())
        .map(tokio_rustls::TlsAcceptor::from);
    let limits = Arc::new(ConnLimits {
        header_read_timeout: p.config.header_read_timeout,
        keepalive: p.config.keepalive,
        max_requests: p.config.max_requests_per_connection,
    });
    let conn_permits = Arc::new(tokio::sync::Semaphore::new(p.config.worker_connections));
    // Draining: connections watch this; each connection task holds a clone of
    // `conns_tx`, so `conns_rx` yields `None` once every connection has finished.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let (conns_tx, mut conns_rx) = tokio::sync::mpsc::channel::<()>(1);
    slot.set_state(SlotState::Ready);
    info!(worker = %p.id, pid = std::process::id(), max_requests = limit, "worker serving");

    let recycling = loop {
        // At most `worker_connections` at once: wait for room before accepting (other
        // workers take the connections meanwhile).
        let accept = async {
            let permit = Arc::clone(&conn_permits).acquire_owned().await;
            let r = std::future::poll_fn(|cx| {
                for l in &listeners {
                    if let Poll::Ready(r) = l.poll_accept(cx) {
                        return Poll::Ready(r);
                    }
                }
                Poll::Pending
            })
            .await;
            (permit, r)
        };
        tokio::select! {
            (permit, r) = accept => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(
                        Conn {
                            builder: Arc::clone(&builder),
                            tls: tls.clone(),
                            limits: Arc::clone(&limits),
                            shared: Arc::clone(&shared),
                            svc: svc.clone(),
                            drain: drain_rx.clone(),
                            _alive: conns_tx.clone(),
                            _permit: permit.ok(),
                        },
                        stream,
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
    let deadline = drain_deadline(p.config.graceful_timeout);
    tokio::select! {
        r = tokio::time::timeout(deadline, conns_rx.recv()) => {
            if r.is_err() {
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

/// How long an idle connection of a draining worker gets to send one more request.
/// Its client may already have sent it (the last answer on the connection did not say
/// `Connection: close`): closing the connection unread would lose that request, so it
/// is answered, with `Connection: close`, before the connection closes.
const DRAIN_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// The hyper builder of a worker, with the request limits of the configuration: header
/// read timeout (needs the tokio timer), header count and size, HTTP/2 stream limits.
fn http_builder(config: &Config) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.limit_request_fields)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128);
    b
}

/// Per-connection limits.
struct ConnLimits {
    header_read_timeout: Duration,
    keepalive: Duration,
    max_requests: u64,
}

/// What a connection task holds.
struct Conn<S> {
    builder: Arc<Builder<TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Arc<ConnLimits>,
    shared: Arc<Shared>,
    svc: Option<S>,
    drain: tokio::sync::watch::Receiver<bool>,
    /// Dropped when the connection ends (the drain waits for all of them).
    _alive: tokio::sync::mpsc::Sender<()>,
    /// The connection's place among `worker_connections`.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// When a connection last moved a byte, and how many requests it has in progress.
struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Requests started on the connection (none yet: still waiting for the first).
    requests: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_millis(now.saturating_sub(last))
    }
}

/// A stream that records its last read or write in an [`Activity`].
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request finished however its future ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.touch();
    }
}

/// Serves one connection (after the TLS handshake, if TLS is configured).
///
/// Limits: the first request (handshake included) must arrive within
/// `header_read_timeout`; hyper enforces the header read timeout and header limits of
/// every request; a connection with no request in progress and no bytes moving for
/// `keepalive` is closed (a request in progress is bounded by `--handler-timeout`);
/// HTTP/1.1 connections are closed after `max_requests`. When
/// the worker drains, the request in progress finishes, or an idle connection's next
/// request (within [`DRAIN_REQUEST_GRACE`]) is answered, then the connection closes.
async fn serve_connection<S: crate::AppService>(c: Conn<S>, stream: tokio::net::TcpStream) {
    let activity = Arc::new(Activity {
        start: std::time::Instant::now(),
        last_ms: std::sync::atomic::AtomicU64::new(0),
        in_flight: std::sync::atomic::AtomicUsize::new(0),
        requests: std::sync::atomic::AtomicU64::new(0),
    });
    let stream = Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    match c.tls.clone() {
        None => serve_io(c, TokioIo::new(stream), activity).await,
        Some(acceptor) => {
            match tokio::time::timeout(c.limits.header_read_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => serve_io(c, TokioIo::new(tls), activity).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<S, I>(c: Conn<S>, io: I, activity: Arc<Activity>)
where
    S: crate::AppService,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering;
    let Conn {
        builder,
        limits,
        shared,
        svc,
        mut drain,
        ..
    } = c;
    // Woken at the start of every request (for the drain below).
    let request_seen = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (activity, request_seen, limits) = (
            Arc::clone(&activity),
            Arc::clone(&request_seen),
            Arc::clone(&limits),
        );
        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = InFlight(Arc::clone(&activity));
            request_seen.notify_waiters();
            let n = activity.requests.fetch_add(1, Ordering::AcqRel) + 1;
            let http1 = req.version() <= http::Version::HTTP_11;
            let last_on_connection = limits.max_requests > 0 && n >= limits.max_requests;
            let (shared, svc) = (Arc::clone(&shared), svc.clone());
            async move {
                let mut resp = dispatch(&shared, svc, req).await;
                // The one place that ends an HTTP/1 connection after this answer: at the
                // connection's request limit, or when the worker recycles or drains (it
                // would drop the connection, and a request sent on it).
                if http1 && (last_on_connection || shared.closing()) {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                drop(guard);
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let tick = (limits.keepalive.min(limits.header_read_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = async { drain.wait_for(|d| *d).await.is_ok() } => break,
            _ = tokio::time::sleep(tick) => {
                if activity.requests.load(Ordering::Acquire) == 0
                    && activity.start.elapsed() > limits.header_read_timeout
                {
                    tracing::debug!("no request within the header read timeout; closing");
                    return;
                }
                // Idle: no request in progress and no byte moving. (A request in
                // progress is bounded by --handler-timeout, not here.)
                if activity.in_flight.load(Ordering::Acquire) == 0
                    && activity.idle() > limits.keepalive
                {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.header_read_timeout, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
    // Draining. Registered before the check, so a request starting in between wakes it.
    let next_request = request_seen.notified();
    tokio::pin!(next_request);
    next_request.as_mut().enable();
    if activity.in_flight.load(Ordering::Acquire) == 0 {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = next_request => {}
            _ = tokio::time::sleep(DRAIN_REQUEST_GRACE) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
