//! The supervisor: a single-threaded loop that forks workers and keeps them alive.
//!
//! Signal handlers only count (see `signals`); the loop wakes on a signal or every
//! tick, then, in order: acts on recorded signals, reaps every exited child with
//! `waitpid(-1, WNOHANG)`, notices readiness and silence (heartbeats in the shared
//! [`Scoreboard`]), and brings the set of workers to what it should be (spawning with
//! backoff, rolling replacement after SIGHUP, scaling after TTIN/TTOU).
//!
//! What a worker process runs is a [`WorkerProgram`]: the supervisor forks (signals
//! blocked, the single-thread check before every fork), gives the child its slot,
//! default signal dispositions and `PR_SET_PDEATHSIG`, then hands it to the program
//! and leaves with `_exit`. [`ForkedApp`] serves an [`AppFactory`] on tokio + hyper
//! in the forked process; a program that execs a foreign command (`muster run`)
//! is a second strategy over the same loop.
//!
//! Worker slots: every application worker holds a slot number `k` and writes its
//! metrics into files with id `w<k>`. A replacement for a dead worker takes the most
//! recently freed slot, so it adopts (re-opens and continues) its predecessor's files:
//! counters never reset, a dead worker's values are counted exactly once (they are in
//! its slot's file, nowhere else), and the number of files is bounded by the most slots
//! ever in use at once. Before a slot is reused, the supervisor removes the dead
//! worker's live-gauge files, so its live gauges vanish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};
use tracing::{error, info, warn};

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::instruments::SupervisorMetrics;
use crate::listeners::{self, Listener};
use crate::mpdir::MultiprocDir;
use crate::scoreboard::{now_ms, Scoreboard, Slot, SlotState, MAX_APP_WORKERS, METRICS_SLOT};
use crate::signals::{ChildSignals, SignalState};
use crate::webconfig::WebConfig;
use crate::worker::{self, WorkerKind, WorkerParams};
use crate::{AppFactory, BoxError, ServerContext, ServerError};

/// Exit code of a worker that stopped because it reached `max_requests`.
pub(crate) const EXIT_RECYCLED: i32 = 0;
/// Exit code of a worker whose boot is hopeless (gunicorn's `WORKER_BOOT_ERROR`): the
/// application failed to build. The supervisor stops at once instead of retrying.
pub const EXIT_BOOT_ERROR: i32 = 3;

/// A worker living this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long quick-stopping workers get before SIGKILL.
const QUICK_STOP: Duration = Duration::from_secs(1);
/// How long a hung worker gets after SIGABRT (to log its backtrace) before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(5);
/// How often the memory of the workers is compared with `--max-worker-memory`.
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why a worker process ended, as the supervisor judges it when it reaps the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It died (or exited) on its own after it had been ready.
    Crash,
    /// It stopped heartbeating for `--timeout` and was aborted.
    Timeout,
    /// It reached `--max-requests` and drained itself, or was recycled for its
    /// lifetime (`--max-worker-lifetime`) or memory (`--max-worker-memory`).
    Recycle,
    /// It died before it ever became ready.
    BootFailure,
    /// It exited with [`EXIT_BOOT_ERROR`] before it became ready: retrying cannot help.
    BootError,
    /// It was replaced by a reload (SIGHUP).
    Reload,
    /// It was stopped because the worker count went down (SIGTTOU, reload).
    ScaleDown,
    /// It was stopped with the server.
    Shutdown,
}

impl ExitReason {
    /// The name used in logs and as the `reason` label of
    /// `muster_worker_restarts_total` (boot errors count as `boot_failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Crash => "crash",
            ExitReason::Timeout => "timeout",
            ExitReason::Recycle => "recycle",
            ExitReason::BootFailure | ExitReason::BootError => "boot_failure",
            ExitReason::Reload => "reload",
            ExitReason::ScaleDown => "scale_down",
            ExitReason::Shutdown => "shutdown",
        }
    }

    /// Whether the worker was asked to go (nothing went wrong).
    fn expected(self) -> bool {
        matches!(
            self,
            ExitReason::Recycle | ExitReason::Reload | ExitReason::ScaleDown | ExitReason::Shutdown
        )
    }
}

/// What a worker process runs after the supervisor forked it: the spawn strategy.
///
/// The supervisor does the same for every program: it forks with signals blocked,
/// and in the child restores the default signal dispositions, sets
/// `PR_SET_PDEATHSIG`, names the process's metric files after its slot, then calls
/// [`WorkerProgram::run_worker`] and leaves with `_exit(2)` and the code it returns.
/// Signals stay blocked until the program calls [`WorkerParams::unblock_signals`],
/// once its own handlers are in place.
pub trait WorkerProgram: Send + 'static {
    /// Runs once in the supervisor before the first fork. Must not start threads.
    fn before_fork(&mut self, ctx: &ServerContext) -> Result<(), BoxError>;
    /// Runs in the supervisor on SIGHUP, before the workers are replaced.
    fn on_reload(&mut self, ctx: &ServerContext) -> Result<(), BoxError>;
    /// Runs a worker of `params.kind` in the forked child and returns its exit code.
    fn run_worker(&mut self, params: WorkerParams) -> i32;
    /// Whether each application worker leads a process group of its own (a command
    /// and whatever it forks): a SIGKILL then goes to the whole group, and what is
    /// left of the group when its leader is reaped is killed.
    fn process_group(&self) -> bool {
        false
    }
    /// Runs in the supervisor on every turn of its loop, before readiness and silence
    /// are judged: a program whose workers do not report to the scoreboard themselves
    /// (an exec'd command) reports for them here. `listeners` are the application's.
    fn tend(&mut self, _workers: &[WorkerView<'_>], _listeners: &[Listener]) {}
    /// Runs in the supervisor after it reaped `pid`: one of its application workers
    /// (`slot` given), or another child (a grandchild adopted as subreaper, a helper
    /// process the program forked).
    fn reaped(&mut self, _pid: Pid, _slot: Option<usize>) {}
}

/// An application worker as [`WorkerProgram::tend`] sees it.
pub struct WorkerView<'a> {
    /// The worker's pid (the leader of its process group when
    /// [`WorkerProgram::process_group`]).
    pub pid: Pid,
    /// The worker's slot number.
    pub slot: usize,
    /// Its scoreboard record: [`Slot::beat`] keeps it alive,
    /// `Slot::set_state(SlotState::Ready)` makes it ready.
    pub board: &'a Slot,
    /// Whether the supervisor has seen it ready.
    pub ready: bool,
    /// Whether it is being stopped.
    pub stopping: bool,
}

/// The spawn strategy of [`run`]: each worker is this process, forked, serving the
/// [`AppFactory`]'s service on its own tokio runtime.
pub struct ForkedApp<A>(pub A);

impl<A: AppFactory> WorkerProgram for ForkedApp<A> {
    fn before_fork(&mut self, ctx: &ServerContext) -> Result<(), BoxError> {
        self.0.before_fork(ctx)
    }
    fn on_reload(&mut self, ctx: &ServerContext) -> Result<(), BoxError> {
        self.0.on_reload(ctx)
    }
    fn run_worker(&mut self, params: WorkerParams) -> i32 {
        worker::run_worker(params, &self.0)
    }
}

/// Runs the server until it is stopped: binds the listeners, takes over the multiprocess
/// directory, forks the workers and supervises them. Returns `ExitCode::SUCCESS` after
/// SIGTERM, SIGINT or SIGQUIT, and an error when startup fails, when workers keep
/// dying before becoming ready, or when forking became unsafe (a hook left a thread
/// running); in those cases the healthy workers are stopped gracefully first.
///
/// Must be called while the process is single-threaded (before any tokio runtime or
/// thread is started): it forks.
pub fn run<A: AppFactory>(config: Config, app: A) -> Result<ExitCode, ServerError> {
    supervise(config, ForkedApp(app))
}

/// [`run`] with any [`WorkerProgram`].
pub fn supervise<P: WorkerProgram>(
    mut config: Config,
    mut program: P,
) -> Result<ExitCode, ServerError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(ServerError::NotSingleThreaded(threads));
    }
    config.validate()?;
    crate::notify::init();
    crate::privileges::enter(&config)?;
    let identity = crate::privileges::Identity::resolve(&config)?;
    // The web config (TLS files, credentials, weak-password check) before anything else:
    // a mistake there is a configuration error, not a surprise at the first scrape.
    let web = load_web_config(&config)?;
    let access_log = open_access_log(&config)?;

    // Listeners before the directory is cleared: a second server started by mistake on
    // the same address fails here, before it touches the first one's files.
    let (app_listeners, from_systemd) = listeners::open_app(&config.bind)?;
    if from_systemd {
        info!(
            count = app_listeners.len(),
            "using sockets passed by systemd (LISTEN_FDS)"
        );
    }
    for l in &app_listeners {
        info!(addr = %l, "listening");
    }
    let metrics_listener = match &config.metrics_bind {
        Some(a) => {
            let l = Listener::bind(a)?;
            info!(addr = %l, "metrics listening");
            Some(l)
        }
        None => None,
    };
    // Bound: no privilege is needed from here on.
    identity.assume(
        &app_listeners
            .iter()
            .chain(&metrics_listener)
            .collect::<Vec<_>>(),
    )?;

    // The directory after the listeners (a second server on the same port stops
    // there) and before any worker or collector exists: taken over (locked) before
    // anything in it is cleared, refused if another server or live writers use it.
    let dir = MultiprocDir::prepare(config.multiproc_dir.as_deref())?;
    let dir_path = dir.path().to_path_buf();
    // Single-threaded here (checked above), so setting the environment is sound.
    std::env::set_var("PROMETHEUS_MULTIPROC_DIR", &dir_path);
    muster_store::configure(dir_path.clone());
    muster_store::set_process_id("supervisor")
        .map_err(|e| ServerError::MultiprocDir(format!("process id: {e}")))?;
    info!(dir = %dir_path.display(), "multiprocess directory ready");

    let ctx = ServerContext {
        multiproc_dir: dir_path.clone(),
        config: config.clone(),
    };
    program
        .before_fork(&ctx)
        .map_err(|e| ServerError::App(e.to_string()))?;

    let pidfile = match &config.pid {
        Some(p) => Some(PidFile::create(p.clone())?),
        None => None,
    };

    let scoreboard =
        Arc::new(Scoreboard::new().map_err(|e| ServerError::io("shared scoreboard", e))?);
    let signals = SignalState::install().map_err(|e| ServerError::io("signal handlers", e))?;
    let metrics = SupervisorMetrics::new();
    // What a reload compares against: the directory in use, not "none given".
    config.multiproc_dir.get_or_insert_with(|| dir_path.clone());

    let mut sup = Supervisor {
        target: config.workers,
        config,
        web,
        access_log,
        program,
        dir: dir_path,
        scoreboard,
        signals,
        metrics,
        app_listeners,
        metrics_listener,
        children: HashMap::new(),
        free_slots: Vec::new(),
        next_fresh_slot: 0,
        generation: 0,
        rolling: None,
        reload_check: None,
        told_ready: false,
        phase: Phase::Running,
        backoff_level: 0,
        boot_failures: 0,
        next_spawn_at: Instant::now(),
        fatal: None,
        supervisor_pid: getpid(),
        memory_checked_at: Instant::now(),
        before_reload: None,
    };
    info!(
        pid = sup.supervisor_pid.as_raw(),
        workers = sup.target,
        "supervisor started"
    );
    let result = sup.run_loop();
    drop(pidfile);
    drop(dir);
    match &result {
        Ok(_) => info!("supervisor stopped"),
        Err(e) => error!(error = %e, "supervisor stopped with an error"),
    }
    result
}

/// Loads the `--web-config-file`, if any (see [`crate::webconfig`]).
fn load_web_config(config: &Config) -> Result<Option<Arc<WebConfig>>, ServerError> {
    let Some(path) = &config.web_config_file else {
        return Ok(None);
    };
    let web = WebConfig::load(path, config.allow_weak_credentials)?;
    log_web_config(&web);
    Ok(Some(Arc::new(web)))
}

/// Opens the `--access-logfile`, if any: an unwritable file is a configuration error
/// before anything forks. Re-opened on SIGHUP (log rotation).
fn open_access_log(config: &Config) -> Result<Option<Arc<AccessLog>>, ServerError> {
    config
        .access_logfile
        .as_deref()
        .map(|path| AccessLog::open(path, &config.access_logformat))
        .transpose()
}

fn log_web_config(web: &WebConfig) {
    info!(
        file = %web.path.display(),
        tls = web.tls.is_some(),
        client_auth = ?web.client_auth,
        basic_auth = web.has_basic_auth(),
        protect_health = web.protect_health,
        "web config loaded"
    );
}

/// Threads of this process, from `/proc/self/status`.
pub(crate) fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Why a worker was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// `--max-worker-lifetime`, `--max-worker-memory`.
    Recycle,
    Reload,
    ScaleDown,
    Shutdown,
}

#[derive(Debug)]
struct Child {
    kind: WorkerKind,
    slot: usize,
    id: String,
    generation: u64,
    spawned_at: Instant,
    ready_at: Option<Instant>,
    /// Set when we asked it to stop (or it started draining by itself).
    stopping_since: Option<Instant>,
    stop_reason: Option<StopReason>,
    /// When it was sent SIGABRT for missing its heartbeats.
    aborted_at: Option<Instant>,
    kill_sent: bool,
    /// It started draining by itself (max_requests).
    self_drained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { deadline: Instant, graceful: bool },
}

/// A reload waiting for its credential check: a forked child runs the bcrypt
/// weak-password checks, so the loop keeps reaping meanwhile.
struct ReloadCheck {
    pid: Pid,
    config: Config,
    web: Option<Arc<WebConfig>>,
}

struct Supervisor<P: WorkerProgram> {
    config: Config,
    web: Option<Arc<WebConfig>>,
    access_log: Option<Arc<AccessLog>>,
    target: usize,
    program: P,
    dir: PathBuf,
    scoreboard: Arc<Scoreboard>,
    signals: SignalState,
    metrics: SupervisorMetrics,
    app_listeners: Vec<Listener>,
    metrics_listener: Option<Listener>,
    children: HashMap<Pid, Child>,
    /// Freed application slots; the most recently freed is reused first.
    free_slots: Vec<usize>,
    next_fresh_slot: usize,
    generation: u64,
    /// During a reload: the new worker we wait for before stopping an old one.
    rolling: Option<Pid>,
    reload_check: Option<ReloadCheck>,
    /// Whether systemd was told the current set of workers is ready (`sd_notify`).
    told_ready: bool,
    phase: Phase,
    backoff_level: u32,
    boot_failures: u32,
    next_spawn_at: Instant,
    fatal: Option<ServerError>,
    supervisor_pid: Pid,
    /// When the workers' memory was last compared with `--max-worker-memory`.
    memory_checked_at: Instant,
    /// The configuration in force before the last reload, while workers of an
    /// older generation still run (what a failed reload rolls back to).
    before_reload: Option<(Config, Option<Arc<WebConfig>>)>,
}

impl<P: WorkerProgram> Supervisor<P> {
    fn tick(&self) -> Duration {
        (self.config.timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(100))
    }

    fn run_loop(&mut self) -> Result<ExitCode, ServerError> {
        loop {
            if self.phase == Phase::Running {
                self.manage();
            }
            let sigs = self.signals.wait(self.tick());
            for sig in sigs {
                self.on_signal(sig);
            }
            self.reap();
            self.tend();
            self.watch();
            if self.phase == Phase::Running {
                self.recycle_aged();
            }
            self.tell_ready();
            if self.fatal.is_some() && self.phase == Phase::Running {
                // Stop the way SIGTERM stops: healthy workers finish their requests.
                self.begin_stop(true);
            }
            if let Phase::Stopping { deadline, .. } = self.phase {
                if self.children.is_empty() && self.reload_check.is_none() {
                    break;
                }
                if Instant::now() >= deadline {
                    self.kill_all();
                }
            }
            self.metrics.set_workers(self.app_count());
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(ExitCode::SUCCESS),
        }
    }

    /// Tells systemd (`READY=1`) once every worker of the current generation is
    /// ready and as many as wanted: at start, and after each reload.
    fn tell_ready(&mut self) {
        if self.told_ready || self.phase != Phase::Running {
            return;
        }
        let mut ready = 0;
        for c in self.children.values() {
            if c.kind != WorkerKind::App || c.stopping_since.is_some() {
                continue;
            }
            if c.generation < self.generation || c.ready_at.is_none() {
                return;
            }
            ready += 1;
        }
        if ready >= self.target {
            self.told_ready = true;
            crate::notify::ready(ready);
        }
    }

    fn app_count(&self) -> usize {
        self.children
            .values()
            .filter(|c| c.kind == WorkerKind::App)
            .count()
    }

    fn on_signal(&mut self, sig: Signal) {
        let running = self.phase == Phase::Running;
        match sig {
            Signal::SIGCHLD => {} // reaped right after
            Signal::SIGTERM => {
                info!(signal = sig.as_str(), "graceful shutdown requested");
                self.begin_stop(true);
            }
            Signal::SIGINT | Signal::SIGQUIT => {
                info!(signal = sig.as_str(), "quick shutdown requested");
                self.begin_stop(false);
            }
            Signal::SIGHUP => self.reload(),
            Signal::SIGTTIN if running && self.target < MAX_APP_WORKERS => {
                self.target += 1;
                info!(workers = self.target, "scale up (SIGTTIN)");
            }
            Signal::SIGTTOU if running && self.target > 1 => {
                self.target -= 1;
                info!(workers = self.target, "scale down (SIGTTOU)");
            }
            Signal::SIGTTIN | Signal::SIGTTOU if running => {
                info!(
                    signal = sig.as_str(),
                    workers = self.target,
                    "scaling ignored: the worker count is at its limit"
                );
            }
            _ => {}
        }
    }

    /// SIGHUP: recompute the configuration (re-reading the files). A web config with
    /// credentials is checked for weak passwords in a forked child, so bcrypt never
    /// stalls the loop; the reload completes when that child exits
    /// ([`Supervisor::finish_reload`]).
    fn reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if self.reload_check.is_some() {
            info!("reload: a reload is being checked already; this one is merged into it");
            return;
        }
        let mut new = match self.config.reload() {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "reload: keeping the old configuration");
                let (config, web) = (self.config.clone(), self.web.clone());
                self.finish_reload(config, web);
                return;
            }
        };
        if new.bind != self.config.bind || new.metrics_bind != self.config.metrics_bind {
            warn!("reload: listen addresses cannot change without a restart; keeping the old ones");
        }
        let dir_changed = new
            .multiproc_dir
            .as_ref()
            .is_some_and(|d| Some(d) != self.config.multiproc_dir.as_ref());
        if dir_changed || new.pid != self.config.pid {
            warn!(
                "reload: the multiprocess directory and pid file cannot change without a restart"
            );
        }
        new.bind = self.config.bind.clone();
        new.metrics_bind = self.config.metrics_bind.clone();
        new.multiproc_dir = self.config.multiproc_dir.clone();
        new.pid = self.config.pid.clone();
        let web = match &new.web_config_file {
            None => None,
            Some(path) => match WebConfig::load_unchecked(path) {
                Ok(w) => Some(Arc::new(w)),
                Err(e) => {
                    error!(error = %e, "reload: keeping the old configuration");
                    let (config, web) = (self.config.clone(), self.web.clone());
                    self.finish_reload(config, web);
                    return;
                }
            },
        };
        match web.as_ref().filter(|w| w.has_basic_auth()) {
            None => self.finish_reload(new, web),
            Some(w) => {
                let allow = new.allow_weak_credentials;
                let check = Arc::clone(w);
                let forked = fork_child(self.supervisor_pid, |_| match check.check_weak(allow) {
                    Ok(()) => 0,
                    Err(e) => {
                        error!(error = %e, "reload: keeping the old configuration");
                        2
                    }
                });
                match forked {
                    Ok(pid) => {
                        info!(
                            pid = pid.as_raw(),
                            "reload: checking the new credentials in a child process"
                        );
                        self.reload_check = Some(ReloadCheck {
                            pid,
                            config: new,
                            web,
                        });
                    }
                    Err(why) => {
                        self.fork_refused(why);
                        error!("reload: cannot check the new credentials; keeping the old configuration");
                    }
                }
            }
        }
    }

    /// Puts a reloaded configuration in force and starts replacing the workers.
    fn finish_reload(&mut self, config: Config, web: Option<Arc<WebConfig>>) {
        if self.phase != Phase::Running {
            return;
        }
        if let Some(w) = &web {
            if !web
                .as_ref()
                .zip(self.web.as_ref())
                .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
            {
                log_web_config(w);
            }
        }
        self.before_reload = Some((self.config.clone(), self.web.clone()));
        self.web = web;
        match open_access_log(&config) {
            Ok(log) => self.access_log = log,
            Err(e) => error!(error = %e, "reload: keeping the old access log"),
        }
        self.target = config.workers;
        self.config = config;
        let ctx = ServerContext {
            multiproc_dir: self.dir.clone(),
            config: self.config.clone(),
        };
        if let Err(e) = self.program.on_reload(&ctx) {
            error!(error = %e, "reload hook failed");
        }
        self.generation += 1;
        self.rolling = None;
        self.told_ready = false;
        crate::notify::reloading();
        info!(
            generation = self.generation,
            workers = self.target,
            "reload: replacing workers one at a time"
        );
    }

    /// A reload whose new workers keep dying before they are ready is rolled back
    /// while workers of the older generation still serve: they become the current
    /// generation again, the previous configuration is restored, and the new
    /// workers still booting are stopped. Returns false when there is nothing to
    /// roll back to (no older worker left).
    fn roll_back(&mut self) -> bool {
        let old: Vec<Pid> = self
            .children
            .iter()
            .filter(|(_, c)| {
                c.kind == WorkerKind::App
                    && c.generation < self.generation
                    && c.stopping_since.is_none()
            })
            .map(|(p, _)| *p)
            .collect();
        if old.is_empty() {
            return false;
        }
        error!(
            failures = self.boot_failures,
            generation = self.generation,
            "reload failed: the new workers keep dying before they are ready; rolling back \
             to the workers still running and the previous configuration"
        );
        let booting: Vec<Pid> = self
            .children
            .iter()
            .filter(|(p, c)| {
                c.kind == WorkerKind::App && c.stopping_since.is_none() && !old.contains(p)
            })
            .map(|(p, _)| *p)
            .collect();
        for pid in booting {
            self.stop_worker(pid, StopReason::ScaleDown);
        }
        for pid in &old {
            if let Some(c) = self.children.get_mut(pid) {
                c.generation = self.generation;
            }
        }
        if let Some((config, web)) = self.before_reload.take() {
            self.target = config.workers;
            self.config = config;
            self.web = web;
        }
        self.rolling = None;
        self.boot_failures = 0;
        true
    }

    /// Starts stopping every worker: gracefully (SIGTERM, then the graceful timeout)
    /// or quickly (SIGQUIT, then one second).
    fn begin_stop(&mut self, graceful: bool) {
        let now = Instant::now();
        match self.phase {
            Phase::Stopping {
                graceful: false, ..
            } => return,
            Phase::Stopping { graceful: true, .. } if graceful => return,
            _ => {}
        }
        crate::notify::stopping();
        let (sig, deadline) = if graceful {
            (Signal::SIGTERM, now + self.config.graceful_timeout)
        } else {
            (Signal::SIGQUIT, now + QUICK_STOP)
        };
        self.phase = Phase::Stopping { deadline, graceful };
        // Stop listening: once the workers close their copies too, new connections are
        // refused instead of queueing for nobody.
        self.app_listeners.clear();
        self.metrics_listener = None;
        if let Some(check) = &self.reload_check {
            let _ = kill(check.pid, Signal::SIGKILL);
        }
        for (pid, c) in self.children.iter_mut() {
            c.stop_reason = Some(StopReason::Shutdown);
            if c.stopping_since.is_none() || !graceful {
                c.stopping_since = Some(now);
                let _ = kill(*pid, sig);
            }
        }
    }

    fn kill_all(&mut self) {
        let group = self.program.process_group();
        for (pid, c) in self.children.iter_mut() {
            if !c.kill_sent {
                warn!(worker = %c.id, pid = pid.as_raw(), "worker did not stop in time; killing it");
                kill_hard(*pid, group && c.kind == WorkerKind::App);
                c.kill_sent = true;
            }
        }
    }

    /// Reaps every exited child.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.on_exit(pid, format!("exit code {code}"), Some(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_exit(pid, format!("killed by {}", sig.as_str()), None)
                }
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => break,
                Err(e) => {
                    warn!(error = %e, "waitpid failed");
                    break;
                }
            }
        }
    }

    fn on_exit(&mut self, pid: Pid, status: String, code: Option<i32>) {
        if self.reload_check.as_ref().is_some_and(|c| c.pid == pid) {
            if let Some(check) = self.reload_check.take() {
                if code == Some(0) {
                    self.finish_reload(check.config, check.web);
                } else {
                    let (config, web) = (self.config.clone(), self.web.clone());
                    self.finish_reload(config, web);
                }
            }
            return;
        }
        let Some(c) = self.children.remove(&pid) else {
            self.program.reaped(pid, None);
            return;
        };
        if c.kind == WorkerKind::App && self.program.process_group() {
            // What the command left behind (its forked children) goes with it.
            kill_hard(pid, true);
        }
        let slot = self.scoreboard.slot(c.slot);
        let state_at_exit = slot.map(|s| s.state());
        let ever_ready = c.ready_at.is_some()
            || matches!(
                state_at_exit,
                Some(SlotState::Ready) | Some(SlotState::Draining)
            );
        let self_drained = c.self_drained
            || (c.stop_reason.is_none() && state_at_exit == Some(SlotState::Draining));
        if let Some(s) = slot {
            s.set_state(SlotState::Free);
        }
        // Live gauges of the dead process vanish before anyone reuses the slot.
        if let Err(e) = muster_store::remove_live_gauge_files(&self.dir, &c.id) {
            warn!(worker = %c.id, error = %e, "cannot remove live gauge files");
        }
        if c.kind == WorkerKind::App {
            self.free_slots.push(c.slot);
            self.program.reaped(pid, Some(c.slot));
        }
        if self.rolling == Some(pid) {
            self.rolling = None;
        }
        let reason = if c.aborted_at.is_some() {
            ExitReason::Timeout
        } else if let Some(r) = c.stop_reason {
            match r {
                StopReason::Recycle => ExitReason::Recycle,
                StopReason::Reload => ExitReason::Reload,
                StopReason::ScaleDown => ExitReason::ScaleDown,
                StopReason::Shutdown => ExitReason::Shutdown,
            }
        } else if !ever_ready && code == Some(EXIT_BOOT_ERROR) {
            ExitReason::BootError
        } else if !ever_ready {
            ExitReason::BootFailure
        } else if self_drained && code == Some(EXIT_RECYCLED) {
            ExitReason::Recycle
        } else {
            ExitReason::Crash
        };
        let lived = c.spawned_at.elapsed();
        if reason.expected() {
            info!(worker = %c.id, pid = pid.as_raw(), %status, reason = reason.as_str(), "worker exited");
        } else {
            warn!(
                worker = %c.id, pid = pid.as_raw(), %status, reason = reason.as_str(),
                lived_ms = lived.as_millis() as u64, "worker exited"
            );
        }
        if self.phase != Phase::Running || reason.expected() && reason != ExitReason::Recycle {
            return;
        }
        self.metrics.restart(reason.as_str());
        match reason {
            ExitReason::BootError => {
                error!(
                    worker = %c.id, %status,
                    "a worker died before becoming ready with a boot error (exit code 3): \
                     retrying cannot help; stopping the server"
                );
                self.fatal = Some(ServerError::WorkerBootError {
                    worker: c.id.clone(),
                    last: status,
                });
                return;
            }
            // Dying before ever becoming ready (also when aborted for hanging at
            // boot) counts towards giving up.
            _ if !ever_ready => {
                self.boot_failures += 1;
                self.backoff_level += 1;
                if self.boot_failures >= self.config.max_boot_failures && self.roll_back() {
                    return;
                }
                if self.boot_failures >= self.config.max_boot_failures {
                    error!(
                        failures = self.boot_failures,
                        last = %status,
                        "workers keep dying before becoming ready; stopping the server"
                    );
                    self.fatal = Some(ServerError::WorkerBootFailed {
                        failures: self.boot_failures,
                        last: status,
                    });
                    return;
                }
            }
            ExitReason::Crash if lived < STABLE_AFTER => self.backoff_level += 1,
            _ => {}
        }
        if self.backoff_level > 0 {
            let delay = BACKOFF_BASE
                .saturating_mul(1 << (self.backoff_level - 1).min(16))
                .min(BACKOFF_MAX);
            self.next_spawn_at = Instant::now() + delay;
            info!(delay_ms = delay.as_millis() as u64, "respawn backoff");
        }
    }

    /// Lets the program report for its workers ([`WorkerProgram::tend`]).
    fn tend(&mut self) {
        let views: Vec<WorkerView<'_>> = self
            .children
            .iter()
            .filter(|(_, c)| c.kind == WorkerKind::App)
            .filter_map(|(pid, c)| {
                Some(WorkerView {
                    pid: *pid,
                    slot: c.slot,
                    board: self.scoreboard.slot(c.slot)?,
                    ready: c.ready_at.is_some(),
                    stopping: c.stopping_since.is_some(),
                })
            })
            .collect();
        self.program.tend(&views, &self.app_listeners);
    }

    /// Recycles a ready worker that lived longer than `--max-worker-lifetime` or whose
    /// process tree holds more memory than `--max-worker-memory`: stopped gracefully
    /// while a replacement starts at once; one at a time (the next once every worker
    /// is ready again).
    fn recycle_aged(&mut self) {
        let lifetime = self.config.max_worker_lifetime;
        let memory = self.config.max_worker_memory;
        if lifetime.is_zero() && memory == 0 {
            return;
        }
        let check_memory = memory > 0 && self.memory_checked_at.elapsed() >= MEMORY_CHECK_EVERY;
        if check_memory {
            self.memory_checked_at = Instant::now();
        }
        // One at a time: not while a worker is being recycled or booting, so that
        // workers started together do not all leave together.
        let busy = self.children.values().any(|c| {
            c.kind == WorkerKind::App
                && (c.stop_reason == Some(StopReason::Recycle)
                    || (c.ready_at.is_none() && c.stopping_since.is_none()))
        });
        if busy {
            return;
        }
        let group = self.program.process_group();
        let mut recycle = None;
        for (pid, c) in &self.children {
            if c.kind != WorkerKind::App || c.ready_at.is_none() || c.stopping_since.is_some() {
                continue;
            }
            if !lifetime.is_zero() && c.ready_at.is_some_and(|t| t.elapsed() >= lifetime) {
                info!(worker = %c.id, pid = pid.as_raw(), lifetime_s = lifetime.as_secs_f64(), "worker recycling (max worker lifetime reached)");
                recycle = Some(*pid);
                break;
            }
            if check_memory {
                let rss = crate::procmetrics::read_tree(pid.as_raw(), group)
                    .map_or(0.0, |s| s.resident_bytes);
                if rss > memory as f64 {
                    info!(worker = %c.id, pid = pid.as_raw(), rss_bytes = rss as u64, limit = memory, "worker recycling (max worker memory exceeded)");
                    recycle = Some(*pid);
                    break;
                }
            }
        }
        if let Some(pid) = recycle {
            self.stop_worker(pid, StopReason::Recycle);
        }
    }

    /// Notices readiness, self-draining, silence and overdue stops.
    fn watch(&mut self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let timeout_ms = self.config.timeout.as_millis() as u64;
        let graceful = self.config.graceful_timeout;
        let group = self.program.process_group();
        let mut stable = false;
        for (pid, c) in self.children.iter_mut() {
            let Some(slot) = self.scoreboard.slot(c.slot) else {
                continue;
            };
            let state = slot.state();
            if c.ready_at.is_none() && matches!(state, SlotState::Ready | SlotState::Draining) {
                c.ready_at = Some(now);
                self.boot_failures = 0;
                info!(
                    worker = %c.id, pid = pid.as_raw(),
                    boot_ms = c.spawned_at.elapsed().as_millis() as u64,
                    "worker ready"
                );
            }
            if c.ready_at
                .is_some_and(|t| now.duration_since(t) >= STABLE_AFTER)
            {
                stable = true;
            }
            if state == SlotState::Draining && c.stopping_since.is_none() {
                c.self_drained = true;
                c.stopping_since = Some(now);
                info!(worker = %c.id, pid = pid.as_raw(), requests = slot.requests(), "worker recycling (max requests reached)");
            }
            if c.kill_sent {
                continue;
            }
            if let Some(at) = c.aborted_at {
                if now.duration_since(at) > ABORT_GRACE {
                    warn!(worker = %c.id, pid = pid.as_raw(), "hung worker still alive after SIGABRT; killing it");
                    kill_hard(*pid, group && c.kind == WorkerKind::App);
                    c.kill_sent = true;
                }
                continue;
            }
            let silent = now_ms.saturating_sub(slot.last_beat_ms());
            if silent > timeout_ms {
                let (state, wchan) = where_is(*pid);
                if state.starts_with('T') {
                    // Stopped (SIGSTOP, a debugger): SIGABRT would wait for SIGCONT.
                    warn!(
                        worker = %c.id, pid = pid.as_raw(), silent_ms = silent, %state,
                        "worker silent for longer than the timeout; it is stopped, killing it"
                    );
                    kill_hard(*pid, group && c.kind == WorkerKind::App);
                    c.kill_sent = true;
                } else {
                    warn!(
                        worker = %c.id, pid = pid.as_raw(), silent_ms = silent, %state, %wchan,
                        "worker silent for longer than the timeout (hung); sending SIGABRT \
                         (it logs its backtrace), SIGKILL if it is still alive in {}s",
                        ABORT_GRACE.as_secs()
                    );
                    let _ = kill(*pid, Signal::SIGABRT);
                }
                c.aborted_at = Some(now);
                continue;
            }
            // (A shutdown has its own deadline, in run_loop.)
            if let Some(since) = c.stopping_since {
                if c.stop_reason != Some(StopReason::Shutdown)
                    && now.duration_since(since) > graceful
                {
                    warn!(worker = %c.id, pid = pid.as_raw(), "worker did not finish within the graceful timeout; killing it");
                    kill_hard(*pid, group && c.kind == WorkerKind::App);
                    c.kill_sent = true;
                }
            }
        }
        if stable && self.backoff_level > 0 {
            self.backoff_level = 0;
        }
    }

    /// Brings the set of workers to what it should be.
    fn manage(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        // The --metrics-bind process.
        if self.metrics_listener.is_some()
            && !self
                .children
                .values()
                .any(|c| c.kind == WorkerKind::Metrics)
            && Instant::now() >= self.next_spawn_at
        {
            self.spawn(WorkerKind::Metrics);
        }
        loop {
            if self.fatal.is_some() {
                return;
            }
            let active: Vec<(Pid, u64, usize, bool)> = self
                .children
                .iter()
                .filter(|(_, c)| c.kind == WorkerKind::App && c.stopping_since.is_none())
                .map(|(p, c)| (*p, c.generation, c.slot, c.ready_at.is_some()))
                .collect();
            let mut old: Vec<(Pid, usize)> = active
                .iter()
                .filter(|a| a.1 < self.generation)
                .map(|a| (a.0, a.2))
                .collect();
            old.sort_by_key(|o| o.1);
            if !old.is_empty() {
                // Rolling replacement after a reload.
                if let Some(p) = self.rolling {
                    let ready = self.children.get(&p).is_some_and(|c| c.ready_at.is_some());
                    if !ready {
                        return;
                    }
                    self.rolling = None;
                    let (old_pid, _) = old[0];
                    self.stop_worker(old_pid, StopReason::Reload);
                    continue;
                }
                let current = active.len() - old.len();
                if current < self.target {
                    if Instant::now() < self.next_spawn_at {
                        return;
                    }
                    if let Some(p) = self.spawn(WorkerKind::App) {
                        self.rolling = Some(p);
                    }
                    return;
                }
                let (old_pid, _) = old[0];
                self.stop_worker(old_pid, StopReason::Reload);
                continue;
            }
            if active.len() < self.target {
                if Instant::now() < self.next_spawn_at {
                    return;
                }
                if self.spawn(WorkerKind::App).is_none() {
                    return;
                }
                if self.backoff_level > 0 {
                    return; // one at a time while backing off
                }
                continue;
            }
            if active.len() > self.target {
                if let Some((pid, _, _, _)) = active.iter().max_by_key(|a| a.2) {
                    self.stop_worker(*pid, StopReason::ScaleDown);
                    continue;
                }
            }
            return;
        }
    }

    fn stop_worker(&mut self, pid: Pid, reason: StopReason) {
        if let Some(c) = self.children.get_mut(&pid) {
            info!(worker = %c.id, pid = pid.as_raw(), reason = ?reason, "stopping worker gracefully");
            c.stopping_since = Some(Instant::now());
            c.stop_reason = Some(reason);
            if let Err(e) = kill(pid, Signal::SIGTERM) {
                warn!(worker = %c.id, error = %e, "cannot signal worker");
            }
        }
    }

    fn alloc_slot(&mut self) -> Option<usize> {
        if let Some(s) = self.free_slots.pop() {
            return Some(s);
        }
        if self.next_fresh_slot < 2 * MAX_APP_WORKERS {
            let s = self.next_fresh_slot;
            self.next_fresh_slot += 1;
            return Some(s);
        }
        None
    }

    /// Records a refused or failed fork (see [`fork_child`]).
    fn fork_refused(&mut self, why: ForkError) {
        match why {
            ForkError::Threads(threads) => {
                error!(
                    threads,
                    "refusing to fork: the supervisor must be single-threaded, and a hook \
                     (before_fork, on_reload) left {} thread(s) running; stopping the server",
                    threads - 1
                );
                self.fatal
                    .get_or_insert(ServerError::NotSingleThreaded(threads));
            }
            ForkError::Failed(e) => error!(error = %e, "fork failed"),
        }
    }

    /// Forks one worker; returns its pid in the parent.
    fn spawn(&mut self, kind: WorkerKind) -> Option<Pid> {
        let (slot, id) = match kind {
            WorkerKind::App => match self.alloc_slot() {
                Some(s) => (s, format!("w{s}")),
                None => {
                    error!("no free worker slot");
                    return None;
                }
            },
            WorkerKind::Metrics => (METRICS_SLOT, "metrics".to_string()),
        };
        if let Some(s) = self.scoreboard.slot(slot) {
            s.reset(SlotState::Booting);
        }
        let mut params = WorkerParams {
            kind,
            slot,
            id: id.clone(),
            dir: self.dir.clone(),
            config: self.config.clone(),
            web: self.web.clone(),
            scoreboard: Arc::clone(&self.scoreboard),
            listeners: Vec::new(),
            supervisor_pid: self.supervisor_pid,
            access_log: self.access_log.clone(),
            signals: None,
        };
        let (app_listeners, metrics_listener, program) = (
            &mut self.app_listeners,
            &mut self.metrics_listener,
            &mut self.program,
        );
        let forked = fork_child(self.supervisor_pid, |signals| {
            // Before touching any metric: this process's files are `<type>_w<k>.db`.
            if let Err(e) = muster_store::set_process_id(&params.id) {
                error!(worker = %params.id, error = %e, "cannot set the metric process id");
                return EXIT_BOOT_ERROR;
            }
            // The child keeps only the listeners it serves.
            params.listeners = match params.kind {
                WorkerKind::App => std::mem::take(app_listeners),
                WorkerKind::Metrics => metrics_listener.take().into_iter().collect(),
            };
            app_listeners.clear();
            *metrics_listener = None;
            params.signals = Some(signals);
            program.run_worker(params)
        });
        match forked {
            Ok(child) => {
                if let Some(s) = self.scoreboard.slot(slot) {
                    s.set_pid(child.as_raw());
                }
                info!(worker = %id, pid = child.as_raw(), kind = ?kind, generation = self.generation, "worker spawned");
                self.children.insert(
                    child,
                    Child {
                        kind,
                        slot,
                        id,
                        generation: self.generation,
                        spawned_at: Instant::now(),
                        ready_at: None,
                        stopping_since: None,
                        stop_reason: None,
                        aborted_at: None,
                        kill_sent: false,
                        self_drained: false,
                    },
                );
                Some(child)
            }
            Err(why) => {
                self.fork_refused(why);
                if let Some(s) = self.scoreboard.slot(slot) {
                    s.set_state(SlotState::Free);
                }
                if kind == WorkerKind::App {
                    self.free_slots.push(slot);
                }
                self.backoff_level += 1;
                self.next_spawn_at = Instant::now() + BACKOFF_BASE;
                None
            }
        }
    }
}

/// SIGKILLs `pid`, and its whole process group when `group` (it leads one).
fn kill_hard(pid: Pid, group: bool) {
    if group {
        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Forks a short-lived helper process of the supervisor that runs `task` and exits
/// with its code; the supervisor reaps it like a worker and reports it to
/// [`WorkerProgram::reaped`]. `None` (logged) when forking is refused or fails.
pub(crate) fn fork_helper(what: &str, task: impl FnOnce() -> i32) -> Option<Pid> {
    match fork_child(getpid(), |signals| {
        signals.release();
        task()
    }) {
        Ok(pid) => Some(pid),
        Err(ForkError::Threads(n)) => {
            warn!(
                threads = n,
                "not forking the {what}: the supervisor is not single-threaded"
            );
            None
        }
        Err(ForkError::Failed(e)) => {
            warn!(error = %e, "cannot fork the {what}");
            None
        }
    }
}

/// Why [`fork_child`] did not fork.
enum ForkError {
    /// The process has this many threads: forking would copy one of them only.
    Threads(usize),
    /// fork(2) failed.
    Failed(Errno),
}

/// Forks a child that runs `child` and leaves with its exit code (never returns in
/// the child). Refuses while this process has more than one thread (a hook may have
/// started one).
///
/// The child blocks every signal first thing and gets the default dispositions back;
/// `child` receives what it needs to release them once its own handlers exist (see
/// [`ChildSignals`]).
fn fork_child(supervisor: Pid, child: impl FnOnce(ChildSignals) -> i32) -> Result<Pid, ForkError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(ForkError::Threads(threads));
    }
    // SAFETY: this process is single-threaded (checked just above), so the child is a
    // consistent copy.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let signals = ChildSignals::take_over();
            // Die with the supervisor, and close the race where it died before prctl.
            let code = if nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).is_err()
                || nix::unistd::getppid() != supervisor
            {
                1
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(signals)))
                    .unwrap_or(70)
            };
            // Not `exit`: the parent's atexit handlers and stdio buffers are not this
            // process's to run or flush.
            // SAFETY: ends this process; nothing after it runs.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(ForkError::Failed(e)),
    }
}

/// Where a process is: its state and the kernel function it sleeps in, from `/proc`.
fn where_is(pid: Pid) -> (String, String) {
    let state = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("State:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .ok()
        .filter(|w| !w.is_empty() && w != "0")
        .unwrap_or_else(|| "-".into());
    (state, wchan)
}

/// The pid file: written at start, removed at exit if it still names us.
struct PidFile {
    path: PathBuf,
}

impl PidFile {
    fn create(path: PathBuf) -> Result<PidFile, ServerError> {
        let content = format!("{}\n", std::process::id());
        std::fs::write(&path, content)
            .map_err(|e| ServerError::io(format!("cannot write pid file {}", path.display()), e))?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .map(|s| s.trim() == std::process::id().to_string())
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
