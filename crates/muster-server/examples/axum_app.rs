//! An axum service under muster: routes declared once (the metrics' `route` label is
//! axum's matched path), async startup, the client's address, a WebSocket echo that
//! says goodbye when its worker drains, and a metric of its own.
//!
//! ```text
//! cargo run -p muster-server --example axum_app -- -w 2 -b 127.0.0.1:8000
//! curl localhost:8000/users/7
//! curl localhost:8000/metrics | grep -E 'http_requests_total|users_looked_up'
//! ```
//!
//! `main` is a plain function: muster forks the workers before any runtime exists,
//! then each worker runs the async closure below on its own tokio runtime.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use muster_metrics::Counter;
use muster_server::{axum_app, DrainSignal, WorkerContext};

/// What every handler of one worker shares (built once per worker, after fork).
struct AppState {
    /// Stands for a connection pool opened at startup.
    greeting: String,
    looked_up: Counter,
    drain: DrainSignal,
}

/// Async startup, in each worker: open "the pool", create the metrics.
async fn build(ctx: WorkerContext) -> Result<Router, muster_server::BoxError> {
    // A database pool would be opened here; any async work is fine.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let state = Arc::new(AppState {
        greeting: format!("hello from worker {}", ctx.id),
        looked_up: Counter::new("users_looked_up", "user lookups")?,
        drain: ctx.drain.clone(),
    });
    Ok(Router::new()
        .route("/", get(hello))
        .route("/users/{id}", get(user))
        .route("/peer", get(peer))
        .route("/slow/{ms}", get(slow))
        .route("/ws", get(ws))
        .with_state(state))
}

async fn hello(State(state): State<Arc<AppState>>) -> String {
    format!("{}\n", state.greeting)
}

async fn user(State(state): State<Arc<AppState>>, Path(id): Path<u64>) -> Json<serde_json::Value> {
    state.looked_up.inc();
    Json(serde_json::json!({ "id": id, "name": format!("user {id}") }))
}

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    format!("{}\n", addr.ip())
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    "slept\n"
}

async fn ws(State(state): State<Arc<AppState>>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    let drain = state.drain.clone();
    upgrade.on_upgrade(move |socket| echo(socket, drain))
}

/// Echoes text and binary messages; when the worker starts draining, closes the
/// socket with 1001 (going away) so the client reconnects to another worker.
async fn echo(mut socket: WebSocket, drain: DrainSignal) {
    let draining = drain.draining();
    tokio::pin!(draining);
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if socket.send(m).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            () = &mut draining => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: axum::extract::ws::close_code::AWAY,
                        reason: "worker draining".into(),
                    })))
                    .await;
                return;
            }
        }
    }
}

fn main() -> ExitCode {
    axum_app::main(build)
}
