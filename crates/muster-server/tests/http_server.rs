//! muster-server's HTTP stack on its own (`server::HttpServer`, what workers, the
//! metrics process and `muster exporter` all serve with): the connection cap, the idle
//! keep-alive limit, the header read timeout and the drain, against real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use muster_server::http::ResponseBody;
use muster_server::server::{Handler, HttpLimits, HttpServer};
use muster_server::Listener;

/// Answers every request with its path, and records the paths in arrival order.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Handler for Recorder {
    fn call(
        &self,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send + 'static {
        let path = req.uri().path().to_string();
        self.0.lock().expect("lock").push(path.clone());
        async move {
            Response::new(
                Full::new(Bytes::from(path))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
        }
    }
}

/// Runs an HttpServer with `limits` on its own thread until the returned sender is
/// dropped or sent to; returns its address, the recorder, the stop handle and the
/// thread (which yields whether the drain finished in time).
fn start(
    limits: HttpLimits,
) -> (
    SocketAddr,
    Recorder,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<bool>,
) {
    let listener = Listener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.tcp_addr().expect("addr");
    let recorder = Recorder::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handler = recorder.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (drain, _) = tokio::sync::watch::channel(false);
            let server =
                HttpServer::new(vec![listener], handler, limits, None, drain).expect("server");
            let (_, draining) = server
                .run_until(async {
                    let _ = stop_rx.await;
                })
                .await;
            draining.finish(Duration::from_secs(5)).await
        })
    });
    (addr, recorder, stop_tx, thread)
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(s)
}

/// Sends `GET path` on a kept-alive connection and reads the answer's body.
fn get(conn: &mut BufReader<TcpStream>, path: &str) -> String {
    write!(conn.get_mut(), "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("header line");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("body");
    String::from_utf8(body).expect("utf-8")
}

/// Whether the server closes `conn` (EOF) before the 10 s read timeout.
fn closed_by_server(conn: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).is_ok()
}

#[test]
fn the_connection_cap_holds_further_connections_in_the_accept_queue() {
    let (addr, recorder, stop, thread) = start(HttpLimits {
        max_connections: 1,
        ..HttpLimits::default()
    });
    let mut a = connect(addr);
    assert_eq!(get(&mut a, "/a1"), "/a1");
    // B's request is sent first, but B waits for A's connection to end.
    let b = std::thread::spawn(move || {
        let mut b = connect(addr);
        get(&mut b, "/b")
    });
    // (B's connect succeeds at once: it waits in the kernel's accept queue.)
    assert_eq!(get(&mut a, "/a2"), "/a2");
    drop(a);
    assert_eq!(b.join().expect("client b"), "/b");
    assert_eq!(*recorder.0.lock().expect("lock"), ["/a1", "/a2", "/b"]);
    drop(stop);
    assert!(thread.join().expect("server"));
}

#[test]
fn idle_and_silent_connections_are_closed() {
    let (addr, _, stop, thread) = start(HttpLimits {
        keepalive: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    });
    let mut idle = connect(addr);
    assert_eq!(get(&mut idle, "/"), "/");
    assert!(
        closed_by_server(&mut idle),
        "idle keep-alive connection kept"
    );
    let mut silent = connect(addr);
    assert!(closed_by_server(&mut silent), "silent connection kept");
    let mut slow = connect(addr);
    slow.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost")
        .expect("half a header");
    assert!(closed_by_server(&mut slow), "half a header kept");
    stop.send(()).expect("stop");
    assert!(thread.join().expect("server"));
}

#[test]
fn the_drain_answers_a_request_sent_on_an_idle_connection() {
    let (addr, _, stop, thread) = start(HttpLimits::default());
    let mut conn = connect(addr);
    assert_eq!(get(&mut conn, "/first"), "/first");
    stop.send(()).expect("stop");
    // The server drains now; the next request on the kept-alive connection is still
    // answered (and the connection closed after it).
    assert_eq!(get(&mut conn, "/second"), "/second");
    assert!(closed_by_server(&mut conn));
    assert!(thread.join().expect("server"), "drain did not finish");
}
