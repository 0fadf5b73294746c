//! axum under the pre-fork server (cargo feature `axum`, on by default).
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use muster_server::axum_app;
//!
//! fn main() -> std::process::ExitCode {
//!     // No #[tokio::main]: muster forks first, then each worker builds its runtime
//!     // and calls this (async: open a database pool here).
//!     axum_app::main(|_ctx| async {
//!         Ok(Router::new().route("/users/{id}", get(|| async { "a user\n" })))
//!     })
//! }
//! ```
//!
//! - Routes are listed once, in the router: the `route` label of the HTTP metrics is
//!   axum's [`MatchedPath`] (`/users/{id}`), never the raw path.
//! - Handlers see the client's address as `ConnectInfo<SocketAddr>` (TCP) and
//!   `ConnectInfo<muster_server::Peer>` (TCP or Unix socket).
//! - Upgrades (WebSockets) work; an upgraded connection is the application's, and
//!   [`WorkerContext::drain`] tells it when its worker starts draining.

use std::convert::Infallible;
use std::future::Future;
use std::process::ExitCode;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;

use crate::{AppFactory, BoxError, Config, Peer, RouteTemplate, ServerError, WorkerContext};

/// An [`AppFactory`] whose workers serve the [`Router`] an async closure builds; see
/// [`axum_app`].
pub struct AxumApp<F> {
    make: F,
}

/// Makes a factory from `Fn(WorkerContext) -> impl Future<Output = Result<Router,
/// BoxError>>`, called once in each worker after fork, on its runtime.
pub fn axum_app<F, Fut>(make: F) -> AxumApp<F>
where
    F: Fn(WorkerContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Router, BoxError>>,
{
    AxumApp { make }
}

impl<F, Fut> AppFactory for AxumApp<F>
where
    F: Fn(WorkerContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Router, BoxError>>,
{
    type Service = AxumService;

    async fn build(&self, ctx: &WorkerContext) -> Result<AxumService, BoxError> {
        let router = (self.make)(ctx.clone()).await?;
        Ok(AxumService::new(router))
    }
}

/// A [`Router`] as muster serves it: its matched path labels the metrics, and every
/// request carries `ConnectInfo`. Build one with [`AxumService::new`] to use a router
/// with [`crate::app`] or a factory of your own.
#[derive(Clone)]
pub struct AxumService {
    router: Router,
}

impl AxumService {
    /// Wraps `router` (with all its routes: the labelling layer applies to the routes
    /// it has now).
    pub fn new(router: Router) -> AxumService {
        AxumService {
            router: router.route_layer(axum::middleware::from_fn(label_route)),
        }
    }
}

/// Copies axum's matched path into the response, where muster's metrics take the
/// `route` label from.
async fn label_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(RouteTemplate(route));
    }
    resp
}

impl tower_service::Service<http::Request<Incoming>> for AxumService {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<http::Request<Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        if let Some(peer) = req.extensions().get::<Peer>().copied() {
            if let Peer::Tcp(addr) = peer {
                req.extensions_mut().insert(ConnectInfo(addr));
            }
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        self.router.call(req)
    }
}

/// Runs the routers `make` builds under the pre-fork server with `config`. Call it
/// before any runtime or thread exists (it forks): from a plain `fn main`.
pub fn run<F, Fut>(config: Config, make: F) -> Result<ExitCode, ServerError>
where
    F: Fn(WorkerContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Router, BoxError>>,
{
    crate::run(config, axum_app(make))
}

/// A whole `main`: parses muster's command-line flags ([`crate::ServerArgs`], gunicorn's
/// names), sets up logging (`--log-level`), runs the routers `make` builds, and
/// returns the exit status (a message on stderr for errors).
pub fn main<F, Fut>(make: F) -> ExitCode
where
    F: Fn(WorkerContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Router, BoxError>>,
{
    crate::cli_main(|config| run(config, make))
}
