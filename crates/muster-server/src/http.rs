//! The HTTP layer of a worker: muster's own endpoints (`/metrics`, `/-/healthy`,
//! `/-/ready`) in front of the user's service, and the metrics middleware that labels
//! every request by its route template.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use muster_collect::Exposition;
use tracing::warn;

use crate::accesslog::{AccessLog, Entry};
use crate::forwarded::{Client, TrustedProxies};
use crate::instruments::HttpMetrics;
use crate::scoreboard::{Scoreboard, SlotState};
use crate::server::Handler;
use crate::webconfig::WebConfig;
use crate::{AppService, BoxError};

/// The body type of every response a worker sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Route label of a request that matches no route template.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A response extension naming the route template that handled the request (for
/// routers that know it, e.g. copy axum's `MatchedPath` into it). It overrides the
/// route table for `http_requests_total` and `http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate(pub String);

/// A `tower::Service` made from an async function; see [`service_fn`].
#[derive(Clone, Copy, Debug)]
pub struct ServiceFn<F> {
    f: F,
}

/// Makes a `tower::Service` from `Fn(Request<Incoming>) -> impl Future<Output =
/// Result<Response<B>, E>>`; the function is cloned into each connection.
pub fn service_fn<F>(f: F) -> ServiceFn<F> {
    ServiceFn { f }
}

impl<F, Fut, B, E> tower_service::Service<Request<Incoming>> for ServiceFn<F>
where
    F: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    type Response = Response<B>;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Fut {
        (self.f)(req)
    }
}

/// Route templates like `/walks/{id}/complete`: `{name}` matches one non-empty path
/// segment, `{*name}` the rest of the path. The most literal template wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(Arc<str>, Vec<Segment>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

impl RouteTable {
    /// Builds the table; templates must start with `/`.
    pub fn new<I, T>(templates: I) -> RouteTable
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut routes: Vec<(Arc<str>, Vec<Segment>)> = templates
            .into_iter()
            .filter_map(|t| {
                let t = t.as_ref();
                if !t.starts_with('/') {
                    warn!(route = t, "route template must start with '/'; ignored");
                    return None;
                }
                let segs = split(t)
                    .map(|s| {
                        if s.starts_with("{*") && s.ends_with('}') {
                            Segment::Rest
                        } else if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect();
                Some((Arc::from(t), segs))
            })
            .collect();
        // More literal segments first, then fewer wildcards.
        routes.sort_by_key(|(_, segs)| {
            let count = |kind: Segment| segs.iter().filter(|s| **s == kind).count();
            (count(Segment::Rest), count(Segment::Param))
        });
        RouteTable { routes }
    }

    /// The template matching `path`, if any.
    pub fn find(&self, path: &str) -> Option<&Arc<str>> {
        self.routes
            .iter()
            .find(|(_, segs)| matches(segs, split(path)))
            .map(|(t, _)| t)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches<'a>(segs: &[Segment], mut parts: impl Iterator<Item = &'a str>) -> bool {
    for seg in segs {
        let ok = match seg {
            Segment::Rest => return true,
            Segment::Param => parts.next().is_some(),
            Segment::Literal(l) => parts.next() == Some(l.as_str()),
        };
        if !ok {
            return false;
        }
    }
    parts.next().is_none()
}

/// The method label: standard methods by name, anything else `other` (bounded).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// State shared by the connections of one worker.
pub(crate) struct Shared {
    pub collector: Arc<Mutex<crate::scrape::Scraper>>,
    pub metrics: Option<HttpMetrics>,
    pub routes: RouteTable,
    pub scoreboard: Arc<Scoreboard>,
    pub slot: usize,
    /// Recycle after this many requests (0 = never).
    pub request_limit: u64,
    pub drain: tokio::sync::Notify,
    /// Serve muster's endpoints here (off on the application's listeners with
    /// `--no-metrics-on-app-port`).
    pub own_endpoints: bool,
    /// The access log, when `--access-logfile` is given.
    pub access_log: Option<Arc<AccessLog>>,
    /// `--forwarded-allow-ips`.
    pub proxies: TrustedProxies,
    /// Whether the listeners speak TLS (the scheme of a request).
    pub tls: bool,
    /// An application request still without a response head after this long is
    /// answered 504 (`--handler-timeout`; `None` = no limit).
    pub handler_timeout: Option<std::time::Duration>,
    /// The web config file: basic auth for `/metrics` (and, with `protect_health`, the
    /// health endpoints).
    pub web: Option<Arc<WebConfig>>,
}

impl Shared {
    fn draining(&self) -> bool {
        self.scoreboard
            .slot(self.slot)
            .is_none_or(|s| s.state() != SlotState::Ready)
    }

    /// Counts an application request; the request that reaches the `--max-requests`
    /// limit starts the drain (recycling).
    fn count_request(&self) {
        if let Some(s) = self.scoreboard.slot(self.slot) {
            if self.request_limit > 0 && s.count_request() == self.request_limit {
                self.drain.notify_one();
            }
        }
    }

    /// Whether the worker is about to stop serving connections: it is draining, or it
    /// has reached its `--max-requests` limit and is about to drain.
    pub(crate) fn closing(&self) -> bool {
        self.scoreboard.slot(self.slot).is_none_or(|s| {
            s.state() != SlotState::Ready
                || (self.request_limit > 0 && s.requests() >= self.request_limit)
        })
    }
}

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    full(status, "text/plain; charset=utf-8", body)
}

/// 401 with the basic-auth challenge.
fn unauthorized() -> Response<ResponseBody> {
    let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(crate::auth::CHALLENGE),
    );
    r
}

/// The [`Handler`] of a worker: muster's endpoints, then the application's service.
pub(crate) struct AppHandler<S> {
    pub shared: Arc<Shared>,
    pub svc: Option<S>,
}

impl<S: Clone> Clone for AppHandler<S> {
    fn clone(&self) -> Self {
        AppHandler {
            shared: Arc::clone(&self.shared),
            svc: self.svc.clone(),
        }
    }
}

impl<S: AppService> Handler for AppHandler<S> {
    fn call(
        &self,
        mut req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send + 'static {
        let peer = req.extensions().get::<crate::Peer>().copied();
        let client = self
            .shared
            .proxies
            .client(peer, self.shared.tls, req.headers());
        req.extensions_mut().insert(client);
        let this = self.clone();
        async move { dispatch(&this.shared, this.svc, req).await }
    }

    fn closing(&self) -> bool {
        self.shared.closing()
    }
}

/// muster's own endpoints (answered to GET and HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Healthy,
    Ready,
}

/// Handles one request: muster's endpoints, else the user's service (if any) through
/// the metrics middleware. (Whether the connection stays open afterwards is the
/// connection's business: `worker::serve_io`.)
pub(crate) async fn dispatch<S: AppService>(
    shared: &Shared,
    svc: Option<S>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let endpoint = match req.uri().path() {
        "/metrics" if get && shared.own_endpoints => Endpoint::Metrics,
        "/-/healthy" if get && shared.own_endpoints => Endpoint::Healthy,
        "/-/ready" if get && shared.own_endpoints => Endpoint::Ready,
        _ => {
            return match svc {
                Some(svc) => {
                    let r = match &shared.access_log {
                        None => instrumented(shared, svc, req).await,
                        Some(log) => logged(shared, log, svc, req).await,
                    };
                    shared.count_request();
                    r
                }
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    };
    if let Some(web) = &shared.web {
        let protected = endpoint == Endpoint::Metrics || web.protect_health;
        if protected && !web.authorize(req.headers().get(AUTHORIZATION)).await {
            return unauthorized();
        }
    }
    match endpoint {
        Endpoint::Metrics => metrics(shared, &req).await,
        Endpoint::Healthy => text(StatusCode::OK, "OK\n"),
        Endpoint::Ready if shared.draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        Endpoint::Ready => text(StatusCode::OK, "ready\n"),
    }
}

/// [`instrumented`], and a line in the access log once the response head is ready.
async fn logged<S: AppService>(
    shared: &Shared,
    log: &AccessLog,
    svc: S,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let start = std::time::SystemTime::now();
    let clock = Instant::now();
    let (method, uri, version) = (req.method().clone(), req.uri().clone(), req.version());
    let headers = req.headers().clone();
    let client = req.extensions().get::<Client>().and_then(|c| c.ip);
    let resp = instrumented(shared, svc, req).await;
    log.log(&Entry {
        client,
        user: None,
        start,
        method: &method,
        uri: &uri,
        version,
        request_headers: &headers,
        status: resp.status(),
        response_headers: resp.headers(),
        elapsed: clock.elapsed(),
    });
    resp
}

/// Decrements `http_requests_in_progress` however the request ends (also when the
/// client goes away and the future is dropped).
struct InProgress<'a>(&'a muster_metrics::Gauge);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn instrumented<S: AppService>(
    shared: &Shared,
    mut svc: S,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let Some(metrics) = &shared.metrics else {
        return call(&mut svc, req, shared.handler_timeout).await.0;
    };
    let method = method_label(req.method());
    let route: &str = shared
        .routes
        .find(req.uri().path())
        .map_or(UNMATCHED_ROUTE, |t| t);
    // One lookup serves both the increment and the decrement.
    let gauge = metrics.in_progress.with_label_values(&[method, route]);
    gauge.inc();
    let guard = InProgress(gauge);
    let trace_id = req
        .headers()
        .get("traceparent")
        .and_then(|v| trace_id(v.as_bytes()))
        .map(|id| id.to_owned());
    let start = Instant::now();
    let (resp, template) = call(&mut svc, req, shared.handler_timeout).await;
    let elapsed = start.elapsed().as_secs_f64();
    let route = template.as_deref().unwrap_or(route);
    let status = resp.status();
    let labels: &[&str] = &[method, route, status.as_str()];
    let (requests, duration) = (
        metrics.requests.with_label_values(labels),
        metrics.duration.with_label_values(labels),
    );
    match &trace_id {
        Some(id) => {
            // A 32-character hex id always fits an exemplar.
            let exemplar: &[(&str, &str)] = &[("trace_id", id)];
            let _ = requests.inc_with_exemplar(exemplar);
            let _ = duration.observe_with_exemplar(elapsed, exemplar);
        }
        None => {
            requests.inc();
            duration.observe(elapsed);
        }
    }
    drop(guard);
    resp
}

/// The trace id of a W3C `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`); `None` when the
/// header is malformed or the id is all zeros (invalid by the spec).
pub(crate) fn trace_id(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let mut parts = text.split('-');
    let (version, id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(id, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none())
        && id.bytes().any(|b| b != b'0');
    valid.then_some(id)
}

/// Calls the user's service; an error becomes a 500, no response head within
/// `timeout` a 504. Returns the response and the route template it names, if any.
async fn call<S: AppService>(
    svc: &mut S,
    req: Request<Incoming>,
    timeout: Option<std::time::Duration>,
) -> (Response<ResponseBody>, Option<String>) {
    if let Err(e) = std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
        let e: BoxError = e.into();
        warn!(error = %e, "service not ready");
        return (
            text(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n"),
            None,
        );
    }
    let fut = svc.call(req);
    let result = match timeout {
        None => fut.await,
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => {
                warn!(
                    timeout_ms = limit.as_millis() as u64,
                    "handler timeout: no response in time; answering 504"
                );
                return (text(StatusCode::GATEWAY_TIMEOUT, "handler timeout\n"), None);
            }
        },
    };
    match result {
        Ok(mut resp) => {
            // Taken out (it is only a label), so no copy of the string is made.
            let template = resp.extensions_mut().remove::<RouteTemplate>().map(|t| t.0);
            (resp.map(|b| b.map_err(Into::into).boxed_unsync()), template)
        }
        Err(e) => {
            let e: BoxError = e.into();
            warn!(error = %e, "service failed");
            (
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n"),
                None,
            )
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (present and not `q=0`).
pub fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("gzip") && coding != "*" {
            return false;
        }
        !it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// The body of a `/metrics` answer: gzipped when `gzip` allows it (and
/// compression works), with whether it is. CPU work: run it off the
/// request executor (`spawn_blocking`).
pub fn metrics_body(body: Vec<u8>, gzip: bool) -> (Vec<u8>, bool) {
    if gzip {
        // Exposition text compresses about 10:1; room for that avoids regrowing.
        let out = Vec::with_capacity(body.len() / 8 + 64);
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        if enc.write_all(&body).is_ok() {
            if let Ok(bytes) = enc.finish() {
                return (bytes, true);
            }
        }
    }
    (body, false)
}

/// Sets the headers of a `/metrics` answer: `Vary: Accept-Encoding`, and
/// `Content-Encoding: gzip` when the body from [`metrics_body`] is gzipped.
pub fn set_metrics_headers(headers: &mut http::HeaderMap, gzipped: bool) {
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
}

async fn metrics(shared: &Shared, req: &Request<Incoming>) -> Response<ResponseBody> {
    let exposition = Exposition::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(req.headers().get(ACCEPT_ENCODING));
    let collector = Arc::clone(&shared.collector);
    let job = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, bool), String> {
        let body = collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scrape(exposition)?;
        Ok(metrics_body(body, gzip))
    });
    match job.await {
        Ok(Ok((body, gz))) => {
            tracing::debug!(content_type = exposition.content_type(), "scrape answered");
            let mut r = full(StatusCode::OK, exposition.content_type(), body);
            set_metrics_headers(r.headers_mut(), gz);
            r
        }
        Ok(Err(e)) => {
            warn!(error = %e, "scrape failed");
            full(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("scrape failed: {e}\n"),
            )
        }
        Err(e) => {
            warn!(error = %e, "scrape task failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparent_headers_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let good = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(trace_id(good.as_bytes()), Some(id));
        // A later version may add fields.
        let later = format!("01-{id}-00f067aa0ba902b7-01-extra");
        assert_eq!(trace_id(later.as_bytes()), Some(id));
        for bad in [
            "".to_owned(),
            format!("00-{id}-00f067aa0ba902b7"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{}-00f067aa0ba902b7-01", &id[..31]),
            "00-zz-yy-01".to_owned(),
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn routes_match_templates_not_raw_paths() {
        let t = RouteTable::new([
            "/",
            "/walks",
            "/walks/{id}",
            "/walks/{id}/complete",
            "/walks/stats",
            "/static/{*p}",
        ]);
        let f = |p: &str| t.find(p).map(|s| s.to_string());
        assert_eq!(f("/").as_deref(), Some("/"));
        assert_eq!(f("/walks").as_deref(), Some("/walks"));
        assert_eq!(f("/walks/").as_deref(), Some("/walks"));
        assert_eq!(f("/walks/17").as_deref(), Some("/walks/{id}"));
        assert_eq!(f("/walks/stats").as_deref(), Some("/walks/stats"));
        assert_eq!(
            f("/walks/17/complete").as_deref(),
            Some("/walks/{id}/complete")
        );
        assert_eq!(f("/walks/17/other"), None);
        assert_eq!(f("/static/a/b/c").as_deref(), Some("/static/{*p}"));
        assert_eq!(f("/nope"), None);
    }

    #[test]
    fn gzip_negotiation() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&h("gzip"))));
        assert!(accepts_gzip(Some(&h("deflate, gzip;q=0.5"))));
        assert!(!accepts_gzip(Some(&h("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("identity"))));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").expect("method");
        assert_eq!(method_label(&odd), "other");
    }
}
