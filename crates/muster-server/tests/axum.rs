//! A real axum application (the `axum_app` example) under the pre-fork server, with 2
//! workers: routes labelled by axum's matched path, async startup, `ConnectInfo`,
//! a WebSocket echo (tokio-tungstenite as the client) that is told when its worker
//! drains, and a rolling reload (SIGHUP) during which no request fails.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const BOOT: Duration = Duration::from_secs(20);

fn start() -> Server {
    Server::start_with(Options {
        args: &["-w", "2"],
        example: "axum_app",
        ..Options::default()
    })
}

/// Sends `text` over the WebSocket and returns what comes back.
async fn echo<S>(ws: &mut S, text: &str) -> String
where
    S: futures_util::Sink<Message>
        + futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    ws.send(Message::text(text)).await.expect("send");
    match tokio::time::timeout(BOOT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no echo: {other:?}"),
    }
}

#[test]
fn axum_routes_are_labelled_by_their_matched_path() {
    let _g = serial();
    let server = start();
    server.wait_workers(2, BOOT);
    for id in 1..=10 {
        let (status, body) = server.get(&format!("/users/{id}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("\"id\":{id}")), "{body}");
    }
    assert_eq!(server.get("/nope").0, 404);
    let (status, body) = server.get("/peer");
    assert_eq!((status, body.trim()), (200, "127.0.0.1"));
    let (_, hello) = server.get("/");
    assert!(hello.starts_with("hello from worker w"), "{hello}");
    let m = server.metrics();
    assert_eq!(
        sample(
            &m,
            "http_requests_total",
            &[("route", "/users/{id}"), ("status", "200")]
        ),
        10.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "unmatched")]),
        1.0,
        "{m}"
    );
    assert!(!m.contains("/users/7"), "raw path in labels:\n{m}");
    assert_eq!(sample(&m, "users_looked_up_total", &[]), 10.0, "{m}");
}

#[test]
fn websockets_and_a_rolling_reload_under_two_workers() {
    let _g = serial();
    let server = start();
    let before = server.wait_workers(2, BOOT);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("ws://{}/ws", server.addr);
    let (mut old_ws, _) = rt
        .block_on(tokio_tungstenite::connect_async(&url))
        .expect("WebSocket handshake");
    assert_eq!(rt.block_on(echo(&mut old_ws, "hello")), "hello");

    // Plain requests keep flowing during the reload; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let addr = server.addr;
    let client = {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                match request(addr, "GET", "/users/1", None, &[]) {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => return Err(format!("{other:?}")),
                };
            }
            Ok(())
        })
    };
    wait_for("traffic", BOOT, || {
        (ok.load(Ordering::Relaxed) > 20).then_some(())
    });
    server.signal(Signal::SIGHUP);
    // The old worker's WebSocket is told to go away when its worker drains.
    let closed = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), old_ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    });
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::Away));
    let after = wait_for("both workers replaced", Duration::from_secs(30), || {
        let w = server.workers();
        (w.len() == 2 && w.iter().all(|p| !before.contains(p))).then_some(w)
    });
    server.wait_workers(2, BOOT);
    let seen = ok.load(Ordering::Relaxed);
    wait_for("traffic on the new workers", BOOT, || {
        (ok.load(Ordering::Relaxed) > seen + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    client
        .join()
        .expect("client thread")
        .expect("no request may fail during the reload");
    // A new WebSocket reaches a new worker.
    let (mut new_ws, _) = rt
        .block_on(tokio_tungstenite::connect_async(&url))
        .expect("WebSocket handshake after the reload");
    assert_eq!(rt.block_on(echo(&mut new_ws, "again")), "again");
    assert_eq!(after.len(), 2);
    let m = server.metrics();
    assert!(
        sample(
            &m,
            "http_requests_total",
            &[("route", "/ws"), ("status", "101")]
        ) >= 2.0,
        "{m}"
    );
}
