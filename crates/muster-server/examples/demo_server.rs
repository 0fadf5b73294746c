//! The demo app under the pre-fork server, as the end-to-end tests run it.
//!
//! `cargo run -p muster-server --example demo_server -- -w 4 -b 127.0.0.1:8000`
//!
//! Extra routes for tests: `GET /slow/{ms}` answers after sleeping (asynchronously),
//! `GET /spin/{ms}` busy-loops the worker's runtime thread. `--fail-boot` makes every
//! worker fail while building its app.
//!
//! Faults for the supervision tests: `--fail-boot-if FILE` (building the app fails,
//! exit code 3, while FILE exists), `--crash-boot-if FILE` (the worker exits 1 before
//! it is ready while FILE exists), `--post-fork-delay MS` (the worker sleeps right
//! after fork, before its runtime exists), `--thread-on-reload` (the reload hook
//! leaves a thread running in the supervisor), `--atexit-marker` (an `atexit` handler
//! registered before the server starts prints `atexit handler ran in pid N`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Parser;
use http::{Request, Response};
use hyper::body::Incoming;
use muster_demo::{demo_app, DemoApp, DemoService};
use muster_server::{AppFactory, BoxError, Bytes, Full, ServerArgs, ServerContext, WorkerContext};

#[derive(Parser)]
#[command(about = "muster demo server (test binary)")]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    /// Make every worker fail to boot.
    #[arg(long)]
    fail_boot: bool,
    #[command(flatten)]
    faults: Faults,
}

/// Faults the supervision tests inject.
#[derive(clap::Args, Clone, Default)]
struct Faults {
    /// Building the app fails (exit code 3) while this file exists.
    #[arg(long, value_name = "FILE")]
    fail_boot_if: Option<std::path::PathBuf>,
    /// The worker exits with code 1 before it is ready while this file exists.
    #[arg(long, value_name = "FILE")]
    crash_boot_if: Option<std::path::PathBuf>,
    /// Milliseconds each worker sleeps right after fork.
    #[arg(long, value_name = "MS")]
    post_fork_delay: Option<u64>,
    /// The reload hook starts a thread that keeps running.
    #[arg(long)]
    thread_on_reload: bool,
    /// Register an atexit handler that prints its pid.
    #[arg(long)]
    atexit_marker: bool,
}

struct TestApp {
    inner: DemoApp,
    fail_boot: bool,
    faults: Faults,
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

    async fn build(&self, ctx: &WorkerContext) -> Result<TestService, BoxError> {
        if self.fail_boot {
            return Err("failing on purpose (--fail-boot)".into());
        }
        if self
            .faults
            .fail_boot_if
            .as_ref()
            .is_some_and(|f| f.exists())
        {
            return Err("failing on purpose (--fail-boot-if)".into());
        }
        if self
            .faults
            .crash_boot_if
            .as_ref()
            .is_some_and(|f| f.exists())
        {
            eprintln!("crashing on purpose (--crash-boot-if)");
            std::process::exit(1);
        }
        Ok(TestService {
            inner: self.inner.build(ctx).await?,
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

    fn on_reload(&mut self, _ctx: &ServerContext) -> Result<(), BoxError> {
        if self.faults.thread_on_reload {
            std::thread::spawn(|| loop {
                std::thread::park();
            });
        }
        Ok(())
    }

    fn post_fork(&self, _ctx: &WorkerContext) -> Result<(), BoxError> {
        if let Some(ms) = self.faults.post_fork_delay {
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(())
    }
}

extern "C" fn atexit_marker() {
    let line = format!("atexit handler ran in pid {}\n", std::process::id());
    // SAFETY: writes a buffer we own to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.faults.atexit_marker {
        // SAFETY: registers a plain function.
        unsafe { libc::atexit(atexit_marker) };
    }
    cli.server.main(|config| {
        muster_server::run(
            config,
            TestApp {
                inner: demo_app(),
                fail_boot: cli.fail_boot,
                faults: cli.faults.clone(),
            },
        )
    })
}
