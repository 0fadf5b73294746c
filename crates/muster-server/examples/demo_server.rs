//! The demo app under the pre-fork server, as the end-to-end tests run it.
//!
//! `cargo run -p muster-server --example demo_server -- -w 4 -b 127.0.0.1:8000`
//!
//! Extra routes for tests: `GET /slow/{ms}` answers after sleeping (asynchronously),
//! `GET /spin/{ms}` busy-loops the worker's runtime thread. `--fail-boot` makes every
//! worker fail while building its app.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Parser;
use http::{Request, Response};
use hyper::body::Incoming;
use muster_server::demo::{demo_app, DemoApp, DemoService};
use muster_server::{AppFactory, BoxError, Bytes, Full, ServerArgs, ServerContext, WorkerContext};

#[derive(Parser)]
#[command(about = "muster demo server (test binary)")]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    /// Make every worker fail to boot.
    #[arg(long)]
    fail_boot: bool,
}

struct TestApp {
    inner: DemoApp,
    fail_boot: bool,
}

#[derive(Clone)]
struct TestService {
    inner: DemoService,
}

type Fut = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

fn millis(path: &str, prefix: &str) -> Option<u64> {
    path.strip_prefix(prefix)?.parse().ok()
}

impl tower_service::Service<Request<Incoming>> for TestService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Fut {
        let path = req.uri().path();
        if let Some(ms) = millis(path, "/slow/") {
            return Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
                Ok(Response::new(Full::new(Bytes::from("slept\n"))))
            });
        }
        if let Some(ms) = millis(path, "/spin/") {
            return Box::pin(async move {
                let end = Instant::now() + Duration::from_millis(ms.min(60_000));
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
                Ok(Response::new(Full::new(Bytes::from("spun\n"))))
            });
        }
        self.inner.call(req)
    }
}

impl AppFactory for TestApp {
    type Service = TestService;

    fn build(&self, ctx: &WorkerContext) -> Result<TestService, BoxError> {
        if self.fail_boot {
            return Err("failing on purpose (--fail-boot)".into());
        }
        Ok(TestService {
            inner: self.inner.build(ctx)?,
        })
    }

    fn routes(&self) -> Vec<String> {
        let mut r = self.inner.routes();
        r.push("/slow/{ms}".into());
        r.push("/spin/{ms}".into());
        r
    }

    fn before_fork(&mut self, ctx: &ServerContext) -> Result<(), BoxError> {
        self.inner.before_fork(ctx)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = cli.server.to_config().and_then(|config| {
        muster_server::run(
            config,
            TestApp {
                inner: demo_app(),
                fail_boot: cli.fail_boot,
            },
        )
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("muster: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
