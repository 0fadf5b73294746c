//! The demo application of `muster demo` (and of muster-server's end-to-end tests): a
//! dog-walking service whose state lives in one SQLite file
//! shared by every worker (WAL mode, busy timeout), so a walk started on one worker can
//! be completed on another.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | 200, a short description |
//! | `POST /walks` | start a walk: `{"walker": "ann", "dog": "rex"}` → 201 `{"id": 1, ...}` |
//! | `POST /walks/{id}/complete` | complete it: `{"distance_m": 420}` → 200 |
//! | `GET /walks/{id}` | the walk's status |
//!
//! Metrics: `walks_started_total`, `walks_completed_total`, `invalid_walks_total`
//! (every rejected start or completion) and the histogram `walk_distance_meters`
//! (buckets 0, 50, 200, 400, 800, 1600, 3200).

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use muster_metrics::{Counter, Histogram};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::json;

use muster_server::{AppFactory, BoxError, ServerContext, WorkerContext};

/// Buckets of `walk_distance_meters`.
pub const DISTANCE_BUCKETS: [f64; 7] = [0.0, 50.0, 200.0, 400.0, 800.0, 1600.0, 3200.0];
/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;
/// Longest accepted walker or dog name, in characters.
const MAX_NAME: usize = 100;
/// Longest accepted walk, meters.
const MAX_DISTANCE: f64 = 100_000.0;
/// Environment variable naming the SQLite file (default: a private temporary directory).
pub const DB_ENV: &str = "MUSTER_DEMO_DB";

/// The demo app factory; see the module docs.
pub struct DemoApp {
    db_path: Option<PathBuf>,
    temp: Option<tempfile::TempDir>,
}

/// The demo app, storing walks in `$MUSTER_DEMO_DB` or, if unset, in a SQLite file in
/// a private temporary directory removed when the server stops.
pub fn demo_app() -> DemoApp {
    DemoApp {
        db_path: std::env::var_os(DB_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        temp: None,
    }
}

impl DemoApp {
    /// Stores walks in this SQLite file (created if missing).
    pub fn with_database(mut self, path: impl Into<PathBuf>) -> DemoApp {
        self.db_path = Some(path.into());
        self
    }

    /// The SQLite file, once chosen (after `before_fork`).
    pub fn database(&self) -> Option<&std::path::Path> {
        self.db_path.as_deref()
    }
}

fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl AppFactory for DemoApp {
    type Service = DemoService;

    fn before_fork(&mut self, _ctx: &ServerContext) -> Result<(), BoxError> {
        if self.db_path.is_none() {
            let t = tempfile::Builder::new().prefix("muster-demo-").tempdir()?;
            self.db_path = Some(t.path().join("walks.sqlite3"));
            self.temp = Some(t);
        }
        let path = self.db_path.clone().ok_or("no database path")?;
        let conn = open(&path).map_err(|e| format!("database {}: {e}", path.display()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS walks (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 walker TEXT NOT NULL,
                 dog TEXT NOT NULL,
                 started_at REAL NOT NULL,
                 completed_at REAL,
                 distance_m REAL
             );",
        )?;
        tracing::info!(database = %path.display(), "demo database ready");
        Ok(())
    }

    async fn build(&self, _ctx: &WorkerContext) -> Result<DemoService, BoxError> {
        let path = self.db_path.clone().ok_or("demo database not prepared")?;
        let conn = open(&path).map_err(|e| format!("database {}: {e}", path.display()))?;
        let state = DemoState {
            db: Mutex::new(conn),
            started: Counter::new("walks_started", "number of walks started")?,
            completed: Counter::new("walks_completed", "number of walks completed")?,
            invalid: Counter::new("invalid_walks", "walk requests rejected as invalid")?,
            distance: Histogram::new(
                "walk_distance_meters",
                "distance of completed walks, meters",
                &DISTANCE_BUCKETS,
            )?,
        };
        Ok(DemoService {
            state: Arc::new(state),
        })
    }

    fn routes(&self) -> Vec<String> {
        ["/", "/walks", "/walks/{id}", "/walks/{id}/complete"]
            .into_iter()
            .map(String::from)
            .collect()
    }
}

struct DemoState {
    db: Mutex<Connection>,
    started: Counter,
    completed: Counter,
    invalid: Counter,
    distance: Histogram,
}

/// The demo's per-worker service (a `tower::Service`).
#[derive(Clone)]
pub struct DemoService {
    state: Arc<DemoState>,
}

type DemoFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl tower_service::Service<Request<Incoming>> for DemoService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = DemoFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> DemoFuture {
        let state = Arc::clone(&self.state);
        Box::pin(async move { Ok(handle(state, req).await) })
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": message.into() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartWalk {
    walker: String,
    dog: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteWalk {
    #[serde(alias = "distance", alias = "distance_meters")]
    distance_m: f64,
}

async fn handle(state: Arc<DemoState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, []) => json_response(
            StatusCode::OK,
            json!({
                "service": "muster demo: dog walks",
                "routes": ["POST /walks", "POST /walks/{id}/complete", "GET /walks/{id}"],
            }),
        ),
        (Method::POST, ["walks"]) => match read_json::<StartWalk>(req).await {
            Ok(w) => start_walk(&state, w).await,
            Err(resp) => {
                state.invalid.inc();
                resp
            }
        },
        (Method::POST, ["walks", id, "complete"]) => {
            let Some(id) = parse_id(id) else {
                state.invalid.inc();
                return error(
                    StatusCode::BAD_REQUEST,
                    "walk id must be a positive integer",
                );
            };
            match read_json::<CompleteWalk>(req).await {
                Ok(c) => complete_walk(&state, id, c.distance_m).await,
                Err(resp) => {
                    state.invalid.inc();
                    resp
                }
            }
        }
        (Method::GET, ["walks", id]) => match parse_id(id) {
            Some(id) => get_walk(&state, id).await,
            None => error(
                StatusCode::BAD_REQUEST,
                "walk id must be a positive integer",
            ),
        },
        (_, [] | ["walks"] | ["walks", _] | ["walks", _, "complete"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

fn parse_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|id| *id > 0)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_BODY} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs a database job off the runtime thread.
async fn with_db<T, F>(state: &Arc<DemoState>, f: F) -> Result<T, Response<Full<Bytes>>>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let state = Arc::clone(state);
    let res = tokio::task::spawn_blocking(move || {
        let conn = state.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "database error");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "database task failed");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

fn valid_name(what: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if v.chars().count() > MAX_NAME {
        return Err(format!("{what} must be at most {MAX_NAME} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(v.to_string())
}

async fn start_walk(state: &Arc<DemoState>, w: StartWalk) -> Response<Full<Bytes>> {
    let (walker, dog) = match (valid_name("walker", &w.walker), valid_name("dog", &w.dog)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            state.invalid.inc();
            return error(StatusCode::UNPROCESSABLE_ENTITY, e);
        }
    };
    let (w2, d2) = (walker.clone(), dog.clone());
    let id = with_db(state, move |c| {
        c.execute(
            "INSERT INTO walks (walker, dog, started_at) VALUES (?1, ?2, ?3)",
            params![w2, d2, now_secs()],
        )?;
        Ok(c.last_insert_rowid())
    })
    .await;
    match id {
        Ok(id) => {
            state.started.inc();
            json_response(
                StatusCode::CREATED,
                json!({"id": id, "walker": walker, "dog": dog, "status": "started"}),
            )
        }
        Err(resp) => resp,
    }
}

enum Completion {
    Done,
    Unknown,
    AlreadyCompleted,
}

async fn complete_walk(state: &Arc<DemoState>, id: i64, distance: f64) -> Response<Full<Bytes>> {
    if !distance.is_finite() || !(0.0..=MAX_DISTANCE).contains(&distance) {
        state.invalid.inc();
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("distance_m must be a number of meters between 0 and {MAX_DISTANCE}"),
        );
    }
    let res = with_db(state, move |c| {
        let n = c.execute(
            "UPDATE walks SET completed_at = ?1, distance_m = ?2 WHERE id = ?3 AND completed_at IS NULL",
            params![now_secs(), distance, id],
        )?;
        if n == 1 {
            return Ok(Completion::Done);
        }
        let exists: Option<i64> = c
            .query_row("SELECT id FROM walks WHERE id = ?1", params![id], |r| r.get(0))
            .optional()?;
        Ok(if exists.is_some() {
            Completion::AlreadyCompleted
        } else {
            Completion::Unknown
        })
    })
    .await;
    match res {
        Ok(Completion::Done) => {
            state.completed.inc();
            state.distance.observe(distance);
            json_response(
                StatusCode::OK,
                json!({"id": id, "status": "completed", "distance_m": distance}),
            )
        }
        Ok(Completion::Unknown) => {
            state.invalid.inc();
            error(StatusCode::NOT_FOUND, format!("no walk with id {id}"))
        }
        Ok(Completion::AlreadyCompleted) => {
            state.invalid.inc();
            error(
                StatusCode::CONFLICT,
                format!("walk {id} is already completed"),
            )
        }
        Err(resp) => resp,
    }
}

async fn get_walk(state: &Arc<DemoState>, id: i64) -> Response<Full<Bytes>> {
    type Row = (String, String, f64, Option<f64>, Option<f64>);
    let row = with_db(state, move |c| -> rusqlite::Result<Option<Row>> {
        c.query_row(
            "SELECT walker, dog, started_at, completed_at, distance_m FROM walks WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
    })
    .await;
    match row {
        Ok(Some((walker, dog, started, completed, distance))) => json_response(
            StatusCode::OK,
            json!({
                "id": id,
                "walker": walker,
                "dog": dog,
                "started_at": started,
                "status": if completed.is_some() { "completed" } else { "started" },
                "completed_at": completed,
                "distance_m": distance,
            }),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no walk with id {id}")),
        Err(resp) => resp,
    }
}

/// Runs the demo app under the pre-fork server with these flags (what `muster demo`
/// does): `--check-config`, `--print-config` and `--log-level` included. Call it before
/// starting any thread or runtime: it forks.
pub fn run_demo(args: &muster_server::ServerArgs) -> std::process::ExitCode {
    args.main(|config| muster_server::run(config, demo_app()))
}
