//! One connection: the optional TLS handshake, hyper's HTTP/1.1 and h2
//! serving with the request limits of the configuration, a watchdog for the first
//! request and idleness, and the drain (finish the request in progress, or answer one
//! more request sent on an idle kept-alive connection, then close).
//!
//! Generic over the stream, so TCP and Unix sockets are served alike; the peer's
//! address travels with each request as a [`Peer`] extension.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use crate::http::ResponseBody;
use crate::server::{Handler, HttpLimits};

/// How long an idle connection of a draining worker gets to send one more request.
/// Its client may already have sent it (the last answer on the connection did not say
/// `Connection: close`): closing the connection unread would lose that request, so it
/// is answered, with `Connection: close`, before the connection closes.
pub(crate) const DRAIN_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// The hyper builder, with the request limits: header read timeout (needs the tokio
/// timer), header count and size, HTTP/2 stream limits.
pub(crate) fn http_builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.limit_request_fields)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128);
    b
}

/// What a connection task holds.
pub(crate) struct Conn<H> {
    pub builder: Arc<Builder<TokioExecutor>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: Arc<HttpLimits>,
    pub handler: H,
    pub drain: tokio::sync::watch::Receiver<bool>,
}

/// Held by a connection's stream, so released when the stream is dropped, which is
/// also after an upgrade (a WebSocket) ends: the drain waits for upgraded connections
/// too (an application closes them when [`crate::DrainSignal`] fires), and they count
/// against `worker_connections`.
pub(crate) struct Held {
    /// Dropped when the connection ends (the drain waits for all of them).
    pub _alive: tokio::sync::mpsc::Sender<()>,
    /// The connection's place among `worker_connections`.
    pub _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Who is at the other end of a connection; every request carries it as an extension
/// (`req.extensions().get::<Peer>()`), for the access log, `--forwarded-allow-ips` and
/// axum's `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(std::net::SocketAddr),
    /// A client on a Unix socket (no address).
    Unix,
}

impl Peer {
    /// The client's IP address (TCP only).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{}", a.ip()),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// A listener as a worker's runtime uses it.
pub(crate) enum Acceptor {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// An accepted stream.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Acceptor {
    /// Registers an inherited listener with the runtime.
    pub(crate) fn new(l: crate::listeners::Listener) -> std::io::Result<Acceptor> {
        use crate::listeners::Listener;
        // A descriptor of our own: the Listener's drop would remove a Unix socket's
        // path only in the process that bound it, never here.
        let is_tcp = matches!(l, Listener::Tcp(_));
        let fd = nix::unistd::dup(l.as_fd()).map_err(std::io::Error::from)?;
        drop(l);
        if is_tcp {
            let std_l = std::net::TcpListener::from(fd);
            std_l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(std_l).map(Acceptor::Tcp)
        } else {
            let std_l = std::os::unix::net::UnixListener::from(fd);
            std_l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(std_l).map(Acceptor::Unix)
        }
    }

    pub(crate) fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<Accepted>> {
        match self {
            Acceptor::Tcp(l) => l.poll_accept(cx).map_ok(|(s, a)| Accepted::Tcp(s, a)),
            Acceptor::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| Accepted::Unix(s)),
        }
    }
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
    _held: Held,
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
pub(crate) async fn serve_connection<H, T>(c: Conn<H>, held: Held, stream: T, peer: Peer)
where
    H: Handler,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        start: std::time::Instant::now(),
        last_ms: std::sync::atomic::AtomicU64::new(0),
        in_flight: std::sync::atomic::AtomicUsize::new(0),
        requests: std::sync::atomic::AtomicU64::new(0),
    });
    let stream = Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
        _held: held,
    };
    match c.tls.clone() {
        None => serve_io(c, TokioIo::new(stream), activity, peer).await,
        Some(acceptor) => {
            match tokio::time::timeout(c.limits.header_read_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => serve_io(c, TokioIo::new(tls), activity, peer).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<H, I>(c: Conn<H>, io: I, activity: Arc<Activity>, peer: Peer)
where
    H: Handler,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering;
    let Conn {
        builder,
        limits,
        handler,
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
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer);
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = InFlight(Arc::clone(&activity));
            request_seen.notify_waiters();
            let n = activity.requests.fetch_add(1, Ordering::AcqRel) + 1;
            let http1 = req.version() <= http::Version::HTTP_11;
            let last_on_connection =
                limits.max_requests_per_connection > 0 && n >= limits.max_requests_per_connection;
            let handler = handler.clone();
            async move {
                let mut resp: http::Response<ResponseBody> = handler.call(req).await;
                // The one place that ends an HTTP/1 connection after this answer: at the
                // connection's request limit, or when the server recycles or drains (it
                // would drop the connection, and a request sent on it).
                if http1 && (last_on_connection || handler.closing()) {
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
    let conn = builder.serve_connection_with_upgrades(io, service);
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
