//! The HTTP stack of every muster process that serves: a worker, the `--metrics-bind`
//! process, and `muster exporter`. One accept loop over any number of listeners (TCP
//! and Unix), at most `max_connections` connections at once, each served by
//! `connection` with the same limits (header read timeout, idle keep-alive, header
//! count and size, requests per connection, optional TLS), and a drain that stops
//! accepting, lets in-flight requests (and upgraded connections) finish, and answers
//! a request already sent on an idle kept-alive connection.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::Config;
use crate::connection::{http_builder, serve_connection, Accepted, Acceptor, Conn, Held, Peer};
use crate::http::ResponseBody;
use crate::listeners::Listener;

/// What answers the requests of a server: cloned into each connection (keep it cheap:
/// `Arc`s). Requests carry their [`Peer`] as an extension.
pub trait Handler: Clone + Send + 'static {
    /// Answers one request.
    fn call(
        &self,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;

    /// Whether HTTP/1 answers should close their connection now (the server is about
    /// to drain).
    fn closing(&self) -> bool {
        false
    }
}

/// The limits every connection gets (the same flags and defaults as the server's; see
/// `docs/security.md`).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request's header (and a new connection's first request) must arrive within it.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no byte moving for this long is
    /// closed.
    pub keepalive: Duration,
    /// Most header fields in a request.
    pub limit_request_fields: usize,
    /// Most bytes of request line and headers.
    pub max_header_bytes: usize,
    /// Requests per HTTP/1.1 connection (0 = no limit).
    pub max_requests_per_connection: u64,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
}

impl HttpLimits {
    /// The limits of a configuration.
    pub fn from_config(c: &Config) -> HttpLimits {
        HttpLimits {
            header_read_timeout: c.header_read_timeout,
            keepalive: c.keepalive,
            limit_request_fields: c.limit_request_fields,
            max_header_bytes: c.max_header_bytes,
            max_requests_per_connection: c.max_requests_per_connection,
            max_connections: c.worker_connections,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&Config::default())
    }
}

/// Listeners served by this process until told to stop; see [`HttpServer::run_until`].
pub struct HttpServer<H> {
    listeners: Vec<Acceptor>,
    conn: Arc<ConnParts<H>>,
    permits: Arc<tokio::sync::Semaphore>,
    drain: tokio::sync::watch::Sender<bool>,
}

struct ConnParts<H> {
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Arc<HttpLimits>,
    handler: H,
}

/// A server that stopped accepting: [`Draining::finish`] lets its connections end.
pub struct Draining {
    drain: tokio::sync::watch::Sender<bool>,
    conns: tokio::sync::mpsc::Receiver<()>,
}

impl<H: Handler> HttpServer<H> {
    /// Registers `listeners` with the current tokio runtime. `tls` applies to every
    /// listener. `drain` is sent `true` when the drain starts (connections and anyone
    /// else subscribed, such as the application, see it).
    pub fn new(
        listeners: Vec<Listener>,
        handler: H,
        limits: HttpLimits,
        tls: Option<Arc<rustls::ServerConfig>>,
        drain: tokio::sync::watch::Sender<bool>,
    ) -> std::io::Result<HttpServer<H>> {
        let listeners = listeners
            .into_iter()
            .map(Acceptor::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpServer {
            listeners,
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            conn: Arc::new(ConnParts {
                builder: Arc::new(http_builder(&limits)),
                tls: tls.map(tokio_rustls::TlsAcceptor::from),
                limits: Arc::new(limits),
                handler,
            }),
            drain,
        })
    }

    /// Accepts and serves connections until `stop` completes, then stops accepting
    /// (the listeners are closed in this process) and returns `stop`'s output with the
    /// [`Draining`] server.
    pub async fn run_until<T>(self, stop: impl Future<Output = T>) -> (T, Draining) {
        let (alive, conns) = tokio::sync::mpsc::channel::<()>(1);
        let HttpServer {
            listeners,
            conn,
            permits,
            drain,
        } = self;
        tokio::pin!(stop);
        let stopped = loop {
            // At most `max_connections` at once: wait for room before accepting (other
            // processes on the same listeners take the connections meanwhile).
            let accept = async {
                let permit = Arc::clone(&permits).acquire_owned().await;
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
                    Ok(accepted) => {
                        let c = Conn {
                            builder: Arc::clone(&conn.builder),
                            tls: conn.tls.clone(),
                            limits: Arc::clone(&conn.limits),
                            handler: conn.handler.clone(),
                            drain: drain.subscribe(),
                        };
                        let held = Held { _alive: alive.clone(), _permit: permit.ok() };
                        match accepted {
                            Accepted::Tcp(stream, addr) => {
                                let _ = stream.set_nodelay(true);
                                tokio::spawn(serve_connection(c, held, stream, Peer::Tcp(addr)));
                            }
                            Accepted::Unix(stream) => {
                                tokio::spawn(serve_connection(c, held, stream, Peer::Unix));
                            }
                        }
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                out = &mut stop => break out,
            }
        };
        // Stop accepting: close our copies of the listeners (the sockets stay open in
        // the other processes that share them).
        drop(listeners);
        (stopped, Draining { drain, conns })
    }
}

impl Draining {
    /// Tells every connection to finish (the request in progress, or one more request
    /// already sent on an idle kept-alive connection) and waits up to `deadline` for
    /// all of them; `false` if some were still open then.
    pub async fn finish(self, deadline: Duration) -> bool {
        let Draining { drain, mut conns } = self;
        let _ = drain.send(true);
        tokio::time::timeout(deadline, conns.recv()).await.is_ok()
    }
}
