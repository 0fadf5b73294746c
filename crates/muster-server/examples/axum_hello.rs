//! The benchmark's axum hello world, two ways with the same router (scripts/bench.d/
//! server_bench.py compares them):
//!
//! - `axum_hello -w N -b ADDR`: under muster, N forked workers;
//! - `axum_hello plain ADDR N`: plain `axum::serve` on one tokio runtime with N threads.

use std::process::ExitCode;

use axum::routing::get;
use axum::Router;

fn router() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

/// `axum::serve` on a multi-thread runtime of `threads` threads.
fn plain(addr: &str, threads: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, router()).await
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("plain") {
        let addr = args.get(2).map_or("127.0.0.1:8000", String::as_str);
        let threads = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2);
        return match plain(addr, threads) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("axum_hello: {e}");
                ExitCode::FAILURE
            }
        };
    }
    muster_server::axum_app::main(|_ctx| async { Ok(router()) })
}
