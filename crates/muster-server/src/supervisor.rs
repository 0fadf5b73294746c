//! The supervisor: a single-threaded loop that forks workers and keeps them alive.
//!
//! Signal handlers only record (see `signals`); the loop wakes on a signal or every
//! tick, then, in order: acts on recorded signals, reaps every exited child with
//! `waitpid(-1, WNOHANG)`, notices readiness and silence (heartbeats in the shared
//! [`Scoreboard`]), and brings the set of workers to what it should be (spawning with
//! backoff, rolling replacement after SIGHUP, scaling after TTIN/TTOU).
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

use crate::config::Config;
use crate::instruments::SupervisorMetrics;
use crate::listeners;
use crate::mpdir::MultiprocDir;
use crate::scoreboard::{now_ms, Scoreboard, SlotState, MAX_APP_WORKERS, METRICS_SLOT};
use crate::signals::{self, SignalState};
use crate::webconfig::WebConfig;
use crate::worker::{self, WorkerKind, WorkerParams};
use crate::{AppFactory, ServerContext, ServerError};

/// Exit code of a worker that stopped because it reached `max_requests`.
pub(crate) const EXIT_RECYCLED: i32 = 0;
/// Exit code of a worker whose application failed to build.
pub(crate) const EXIT_BOOT_ERROR: i32 = 3;

/// A worker living this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long quick-stopping workers get before SIGKILL.
const QUICK_STOP: Duration = Duration::from_secs(1);

/// Runs the server until it is stopped: binds the listeners, takes over the multiprocess
/// directory, forks the workers and supervises them. Returns `ExitCode::SUCCESS` after
/// SIGTERM, SIGINT or SIGQUIT, and an error when startup fails or workers keep dying
/// before becoming ready.
///
/// Must be called while the process is single-threaded (before any tokio runtime or
/// thread is started): it forks.
pub fn run<A: AppFactory>(config: Config, mut app: A) -> Result<ExitCode, ServerError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(ServerError::NotSingleThreaded(threads));
    }
    config.validate()?;
    // The web config (TLS files, credentials, weak-password check) before anything else:
    // a mistake there is a configuration error, not a surprise at the first scrape.
    let web = load_web_config(&config)?;

    // Listeners first: before any fork, and before the directory is touched.
    let app_listeners = match listeners::from_systemd()? {
        Some(l) => {
            info!(
                count = l.len(),
                "using sockets passed by systemd (LISTEN_FDS)"
            );
            l
        }
        None => config
            .bind
            .iter()
            .map(|a| listeners::bind_addr(a))
            .collect::<Result<Vec<_>, _>>()?,
    };
    for l in &app_listeners {
        if let Ok(a) = l.local_addr() {
            info!(addr = %a, "listening");
        }
    }
    let metrics_listener = match &config.metrics_bind {
        Some(a) => {
            let l = listeners::bind_addr(a)?;
            if let Ok(a) = l.local_addr() {
                info!(addr = %a, "metrics listening");
            }
            Some(l)
        }
        None => None,
    };

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
    app.before_fork(&ctx)
        .map_err(|e| ServerError::App(e.to_string()))?;

    let pidfile = match &config.pid {
        Some(p) => Some(PidFile::create(p.clone())?),
        None => None,
    };

    let scoreboard =
        Arc::new(Scoreboard::new().map_err(|e| ServerError::io("shared scoreboard", e))?);
    let signals = SignalState::install().map_err(|e| ServerError::io("signal handlers", e))?;
    let metrics = SupervisorMetrics::new();

    let mut sup = Supervisor {
        target: config.workers,
        config,
        web,
        app,
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
        phase: Phase::Running,
        backoff_level: 0,
        boot_failures: 0,
        next_spawn_at: Instant::now(),
        fatal: None,
        supervisor_pid: getpid(),
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
    info!(
        file = %path.display(),
        tls = web.tls.is_some(),
        client_auth = ?web.client_auth,
        basic_auth = web.has_basic_auth(),
        protect_health = web.protect_health,
        "web config loaded"
    );
    Ok(Some(Arc::new(web)))
}

fn thread_count() -> usize {
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
    killed_for_timeout: bool,
    kill_sent: bool,
    /// It started draining by itself (max_requests).
    self_drained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { deadline: Instant, graceful: bool },
}

struct Supervisor<A: AppFactory> {
    config: Config,
    web: Option<Arc<WebConfig>>,
    target: usize,
    app: A,
    dir: PathBuf,
    scoreboard: Arc<Scoreboard>,
    signals: SignalState,
    metrics: SupervisorMetrics,
    app_listeners: Vec<std::net::TcpListener>,
    metrics_listener: Option<std::net::TcpListener>,
    children: HashMap<Pid, Child>,
    /// Freed application slots; the most recently freed is reused first.
    free_slots: Vec<usize>,
    next_fresh_slot: usize,
    generation: u64,
    /// During a reload: the new worker we wait for before stopping an old one.
    rolling: Option<Pid>,
    phase: Phase,
    backoff_level: u32,
    boot_failures: u32,
    next_spawn_at: Instant,
    fatal: Option<ServerError>,
    supervisor_pid: Pid,
}

impl<A: AppFactory> Supervisor<A> {
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
            self.watch();
            if self.fatal.is_some() {
                if let Phase::Running = self.phase {
                    self.begin_stop(false, true);
                }
            }
            if let Phase::Stopping { deadline, .. } = self.phase {
                if self.children.is_empty() {
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

    fn app_count(&self) -> usize {
        self.children
            .values()
            .filter(|c| c.kind == WorkerKind::App)
            .count()
    }

    fn on_signal(&mut self, sig: i32) {
        use signal_hook::consts::signal::*;
        match sig {
            SIGCHLD => {} // reaped right after
            SIGTERM => {
                info!(signal = signals::name(sig), "graceful shutdown requested");
                self.begin_stop(true, false);
            }
            SIGINT | SIGQUIT => {
                info!(signal = signals::name(sig), "quick shutdown requested");
                self.begin_stop(false, false);
            }
            SIGHUP => self.reload(),
            SIGTTIN if self.phase == Phase::Running && self.target < MAX_APP_WORKERS => {
                self.target += 1;
                info!(workers = self.target, "scale up (SIGTTIN)");
            }
            SIGTTOU if self.phase == Phase::Running && self.target > 1 => {
                self.target -= 1;
                info!(workers = self.target, "scale down (SIGTTOU)");
            }
            SIGTTIN | SIGTTOU if self.phase == Phase::Running => {
                info!(
                    signal = signals::name(sig),
                    workers = self.target,
                    "scaling ignored: the worker count is at its limit"
                );
            }
            _ => {}
        }
    }

    fn reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let reloaded = self
            .config
            .reload()
            .and_then(|c| load_web_config(&c).map(|w| (c, w)));
        match reloaded {
            Ok((mut new, web)) => {
                self.web = web;
                if new.bind != self.config.bind || new.metrics_bind != self.config.metrics_bind {
                    warn!("reload: listen addresses cannot change without a restart; keeping the old ones");
                }
                if new.multiproc_dir != self.config.multiproc_dir || new.pid != self.config.pid {
                    warn!("reload: the multiprocess directory and pid file cannot change without a restart");
                }
                new.bind = self.config.bind.clone();
                new.metrics_bind = self.config.metrics_bind.clone();
                new.multiproc_dir = self.config.multiproc_dir.clone();
                new.pid = self.config.pid.clone();
                self.target = new.workers;
                self.config = new;
            }
            Err(e) => error!(error = %e, "reload: keeping the old configuration"),
        }
        let ctx = ServerContext {
            multiproc_dir: self.dir.clone(),
            config: self.config.clone(),
        };
        if let Err(e) = self.app.on_reload(&ctx) {
            error!(error = %e, "reload hook failed");
        }
        self.generation += 1;
        self.rolling = None;
        info!(
            generation = self.generation,
            workers = self.target,
            "reload: replacing workers one at a time"
        );
    }

    fn begin_stop(&mut self, graceful: bool, fatal: bool) {
        let now = Instant::now();
        match self.phase {
            Phase::Stopping {
                graceful: false, ..
            } => return,
            Phase::Stopping { graceful: true, .. } if graceful => return,
            _ => {}
        }
        let (sig, deadline) = if fatal {
            (Signal::SIGKILL, now)
        } else if graceful {
            (Signal::SIGTERM, now + self.config.graceful_timeout)
        } else {
            (Signal::SIGQUIT, now + QUICK_STOP)
        };
        self.phase = Phase::Stopping { deadline, graceful };
        // Stop listening: once the workers close their copies too, new connections are
        // refused instead of queueing for nobody.
        self.app_listeners.clear();
        self.metrics_listener = None;
        for (pid, c) in self.children.iter_mut() {
            c.stop_reason = Some(StopReason::Shutdown);
            if c.stopping_since.is_none() || !graceful {
                c.stopping_since = Some(now);
                if kill(*pid, sig).is_ok() && sig == Signal::SIGKILL {
                    c.kill_sent = true;
                }
            }
        }
    }

    fn kill_all(&mut self) {
        for (pid, c) in self.children.iter_mut() {
            if !c.kill_sent {
                warn!(worker = %c.id, pid = pid.as_raw(), "worker did not stop in time; killing it");
                let _ = kill(*pid, Signal::SIGKILL);
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
        let Some(c) = self.children.remove(&pid) else {
            return;
        };
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
        }
        if self.rolling == Some(pid) {
            self.rolling = None;
        }
        let reason = if c.killed_for_timeout {
            "timeout"
        } else if let Some(r) = c.stop_reason {
            match r {
                StopReason::Reload => "reload",
                StopReason::ScaleDown => "scale_down",
                StopReason::Shutdown => "shutdown",
            }
        } else if !ever_ready {
            "boot_failure"
        } else if self_drained && code == Some(EXIT_RECYCLED) {
            "recycle"
        } else {
            "crash"
        };
        let lived = c.spawned_at.elapsed();
        match reason {
            "recycle" | "reload" | "scale_down" | "shutdown" => info!(
                worker = %c.id, pid = pid.as_raw(), %status, reason,
                "worker exited"
            ),
            _ => warn!(
                worker = %c.id, pid = pid.as_raw(), %status, reason,
                lived_ms = lived.as_millis() as u64, "worker exited"
            ),
        }
        if self.phase != Phase::Running {
            return;
        }
        match reason {
            "timeout" | "crash" | "recycle" | "boot_failure" => {
                self.metrics.restart(reason);
            }
            _ => return,
        }
        // Dying before ever becoming ready (also when killed for hanging at boot)
        // counts towards giving up.
        if !ever_ready {
            self.boot_failures += 1;
            self.backoff_level += 1;
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
        } else if reason == "crash" && lived < STABLE_AFTER {
            self.backoff_level += 1;
        }
        if self.backoff_level > 0 {
            let delay = BACKOFF_BASE
                .saturating_mul(1 << (self.backoff_level - 1).min(16))
                .min(BACKOFF_MAX);
            self.next_spawn_at = Instant::now() + delay;
            info!(delay_ms = delay.as_millis() as u64, "respawn backoff");
        }
    }

    /// Notices readiness, self-draining, silence and overdue stops.
    fn watch(&mut self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let timeout_ms = self.config.timeout.as_millis() as u64;
        let graceful = self.config.graceful_timeout;
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
            let silent = now_ms.saturating_sub(slot.last_beat_ms());
            if silent > timeout_ms {
                warn!(
                    worker = %c.id, pid = pid.as_raw(), silent_ms = silent,
                    "worker silent for longer than the timeout; killing it"
                );
                let _ = kill(*pid, Signal::SIGKILL);
                c.kill_sent = true;
                c.killed_for_timeout = true;
                continue;
            }
            // (A shutdown has its own deadline, in run_loop.)
            if let Some(since) = c.stopping_since {
                if c.stop_reason != Some(StopReason::Shutdown)
                    && now.duration_since(since) > graceful
                {
                    warn!(worker = %c.id, pid = pid.as_raw(), "worker did not finish within the graceful timeout; killing it");
                    let _ = kill(*pid, Signal::SIGKILL);
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
                    match self.spawn(WorkerKind::App) {
                        Some(p) => self.rolling = Some(p),
                        None => return,
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

    /// Forks one worker; returns its pid in the parent (never returns in the child).
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
        // SAFETY: the supervisor is single-threaded (checked at start, and it never
        // starts threads), so the child is a consistent copy.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => self.child(kind, slot, id),
            Ok(ForkResult::Parent { child }) => {
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
                        killed_for_timeout: false,
                        kill_sent: false,
                        self_drained: false,
                    },
                );
                Some(child)
            }
            Err(e) => {
                error!(error = %e, "fork failed");
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

    /// The child side of a fork: never returns.
    fn child(&mut self, kind: WorkerKind, slot: usize, id: String) -> ! {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Die with the supervisor, and close the race where it died before prctl.
            if nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).is_err()
                || nix::unistd::getppid() != self.supervisor_pid
            {
                return 1;
            }
            self.signals.forget_in_child();
            // Before touching any metric: this process's files are `<type>_w<k>.db`.
            if let Err(e) = muster_store::set_process_id(&id) {
                error!(worker = %id, error = %e, "cannot set the metric process id");
                return EXIT_BOOT_ERROR;
            }
            let listeners = match kind {
                WorkerKind::App => std::mem::take(&mut self.app_listeners),
                WorkerKind::Metrics => self.metrics_listener.take().into_iter().collect(),
            };
            self.app_listeners.clear();
            self.metrics_listener = None;
            let params = WorkerParams {
                kind,
                slot,
                id,
                dir: self.dir.clone(),
                config: self.config.clone(),
                web: self.web.clone(),
                scoreboard: Arc::clone(&self.scoreboard),
                listeners,
                supervisor_pid: self.supervisor_pid,
            };
            worker::run_worker(params, &self.app)
        }))
        .unwrap_or(70);
        std::process::exit(code)
    }
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
