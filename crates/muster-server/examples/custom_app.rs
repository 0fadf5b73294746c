//! A user's own binary on muster: a tiny service with its own metric, run under the
//! pre-fork server with gunicorn-style flags.
//!
//! ```text
//! cargo run -p muster-server --example custom_app -- -w 2 -b 127.0.0.1:8000
//! curl localhost:8000/hello/ann
//! curl localhost:8000/metrics | grep greetings
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use muster_metrics::Counter;
use muster_server::{app, service_fn, Bytes, Full, ServerArgs, WorkerContext};

#[derive(Parser)]
#[command(about = "hello service under muster")]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    // Runs in each worker after fork: metrics created here go to the worker's files.
    let factory = app(|_ctx: &WorkerContext| {
        let greetings = Arc::new(Counter::family(
            "greetings",
            "greetings sent, by language",
            &["lang"],
        )?);
        Ok(service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let greetings = Arc::clone(&greetings);
                async move {
                    let name = req.uri().path().trim_start_matches("/hello/").to_string();
                    greetings.with_label_values(&["en"]).inc();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                        "hello, {name}\n"
                    )))))
                }
            },
        ))
    })
    // Route templates label the HTTP metrics (never the raw path).
    .routes(["/hello/{name}"]);

    // --check-config, --print-config, --log-level, then the server.
    cli.server
        .main(|config| muster_server::run(config, factory))
}
