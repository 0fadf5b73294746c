//! `muster run -- COMMAND`: workers that exec a foreign command.
//!
//! [`RunCommand`] is a [`WorkerProgram`]: the supervisor's loop (signals, rolling
//! reloads with rollback, scaling, backoff, timeouts, recycling) is the same as for
//! Rust workers; only what the forked child does and how its readiness and liveness
//! are known differ.
//!
//! In the child, before `exec`: its own process group (so the whole tree it forks
//! can be signalled), the application's listening sockets on descriptors 3, 4, ...
//! (blocking, close-on-exec cleared on those only), and the environment:
//! `LISTEN_FDS`, `LISTEN_PID` (its own pid), `LISTEN_FDNAMES` (systemd's socket
//! activation, see [`ListenEnv`]), `MUSTER_WORKER_ID` (the slot: `0`, `1`, ...),
//! `PROMETHEUS_MULTIPROC_DIR`, `NOTIFY_SOCKET` and `WATCHDOG_USEC` (`--timeout`).
//!
//! In the supervisor, on every turn of its loop ([`WorkerProgram::tend`]):
//! - readiness, by [`ReadyRule`]: `READY=1` on the notify socket, or the worker
//!   observed waiting for connections on a listening socket, or holding one it
//!   accepted ([`crate::accepting`]);
//! - liveness: a worker that sent `WATCHDOG=1` once must keep sending it within
//!   `--timeout`; one that never did is alive while it lives;
//! - per-worker process metrics of the whole process group (CPU, RSS, descriptors),
//!   labelled `worker="w<k>"`, in the supervisor's metric files;
//! - dead-worker hygiene: the pids it reaped (workers, and their orphaned children
//!   adopted as subreaper) are handed to the compaction
//!   ([`muster_collect::compact`]), run in a short-lived forked process so the loop
//!   never blocks; a pass every few seconds also folds pid-named files of dead
//!   processes it did not reap (a gunicorn master's recycled workers).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::accepting::{self, Observation};
use crate::instruments::ProcessGauges;
use crate::scoreboard::SlotState;
use crate::supervisor::{WorkerProgram, WorkerView};
use crate::workernotify::NotifySocket;
use crate::{
    BoxError, Config, Listener, ServerArgs, ServerContext, ServerError, WorkerContext, WorkerKind,
    WorkerParams,
};

/// How often the per-worker process metrics are refreshed.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// How often pid-named files of dead processes nobody reported are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Exit code of a worker whose command could not be executed (the shell's).
const EXIT_NOT_EXECUTED: i32 = 127;

/// When a `muster run` worker counts as ready (`--ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadyRule {
    /// Observed waiting for connections on a listening socket (or holding one it
    /// accepted); `READY=1` counts only when that cannot be observed (no right to read the worker's `/proc`),
    /// or once a process of the worker's group exited after it (a program that
    /// recycles its own workers, as gunicorn with `--max-requests`, does so only
    /// once one served). Right for gunicorn, whose master says `READY=1` before
    /// its worker has loaded the application.
    Auto,
    /// `READY=1` on `NOTIFY_SOCKET` (programs that notify once they serve).
    Notify,
    /// Observed waiting for connections only.
    Accept,
}

/// Whether the worker gets systemd's socket-activation variables (`--listen-env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListenEnv {
    /// Always, except for gunicorn given an `fd://` bind: gunicorn 27 then takes
    /// the descriptor twice (from `--bind` and from `LISTEN_FDS`) and fails.
    Auto,
    /// Always set `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`.
    Always,
    /// Never; the sockets are still on descriptors 3, 4, ... (`fd://3`, `--fd 3`).
    Never,
}

/// The `muster run` command line: the server's flags, then `-- COMMAND [ARGS...]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The server's flags.
    #[command(flatten)]
    pub server: ServerArgs,
    /// When a worker is ready: auto (observed accepting on a listening socket, or
    /// READY=1 and then an inner worker recycled), notify (READY=1 on
    /// NOTIFY_SOCKET), accept
    #[arg(long, value_enum, default_value_t = ReadyRule::Auto)]
    pub ready: ReadyRule,
    /// Pass LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES: auto (always, except gunicorn with
    /// an fd:// bind), always, never
    #[arg(long, value_enum, default_value_t = ListenEnv::Auto)]
    pub listen_env: ListenEnv,
    /// The command each worker runs, and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// Runs the supervisor with `COMMAND` as every worker: what `muster run` does.
    pub fn main(&self) -> std::process::ExitCode {
        self.server.main(|config| {
            let program = RunCommand::new(self.command.clone(), self.ready, self.listen_env)?;
            program.check(&config)?;
            crate::supervise(config, program)
        })
    }
}

/// What a worker's processes said or showed, as the supervisor keeps it.
#[derive(Debug, Default)]
struct Tended {
    /// It sent `READY=1`.
    said_ready: bool,
    /// It sent `WATCHDOG=1` at least once: from then on only `WATCHDOG=1` keeps it
    /// alive.
    watchdog: bool,
    /// The other processes of its group at the last look.
    others: Vec<i32>,
    /// When it was first seen not ready.
    booting_since: Option<Instant>,
    /// Whether it was reported as slow to become ready.
    said_slow: bool,
}

impl Tended {
    /// Notes the processes of the worker's group now (`members`, the worker
    /// `leader` among them); whether one seen before is gone while the worker
    /// lives: a program that recycles its own workers (gunicorn's
    /// `--max-requests`) let one go, which it does once that one has served.
    fn inner_worker_left(&mut self, leader: i32, members: &[i32]) -> bool {
        let left = self.others.iter().any(|pid| !members.contains(pid));
        self.others.clear();
        self.others
            .extend(members.iter().copied().filter(|&pid| pid != leader));
        left
    }
}

/// The spawn strategy of `muster run`: every application worker execs the command.
pub struct RunCommand {
    argv: Vec<OsString>,
    ready: ReadyRule,
    listen_env: bool,
    dir: PathBuf,
    notify: Option<NotifySocket>,
    timeout: Duration,
    tended: HashMap<Pid, Tended>,
    /// Pids reaped since the last compaction started.
    reaped: Vec<u32>,
    compaction: Option<Pid>,
    swept_at: Instant,
    /// Process metrics of each worker's whole process group (a dead worker's are
    /// set to 0 until its slot is used again).
    metrics: Option<ProcessGauges>,
    metrics_at: Instant,
}

impl RunCommand {
    /// A program running `argv` (a command and its arguments); an error when it is
    /// empty or names no executable file.
    pub fn new(
        argv: Vec<OsString>,
        ready: ReadyRule,
        listen_env: ListenEnv,
    ) -> Result<RunCommand, ServerError> {
        let Some(program) = argv.first() else {
            return Err(ServerError::Config(
                "no command given: muster run [FLAGS] -- COMMAND [ARGS...]".into(),
            ));
        };
        if find_executable(Path::new(program)).is_none() {
            return Err(ServerError::Config(format!(
                "command not found or not executable: {}",
                program.to_string_lossy()
            )));
        }
        let listen_env = match listen_env {
            ListenEnv::Always => true,
            ListenEnv::Never => false,
            ListenEnv::Auto => !is_gunicorn_with_fd_bind(&argv),
        };
        Ok(RunCommand {
            argv,
            ready,
            listen_env,
            dir: PathBuf::new(),
            notify: None,
            timeout: Duration::from_secs(30),
            tended: HashMap::new(),
            reaped: Vec::new(),
            compaction: None,
            swept_at: Instant::now(),
            metrics: None,
            metrics_at: Instant::now(),
        })
    }

    /// Refuses settings a foreign command cannot honour.
    fn check(&self, config: &Config) -> Result<(), ServerError> {
        if config.max_requests > 0 {
            return Err(ServerError::Config(
                "--max-requests needs workers that report their requests to muster, which a \
                 command does not: use the command's own option (gunicorn --max-requests) or \
                 --max-worker-lifetime / --max-worker-memory"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The child's side: never returns when the command runs.
    fn exec(&self, params: WorkerParams) -> i32 {
        // Its own process group: the supervisor signals the whole tree.
        if let Err(e) = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)) {
            eprintln!(
                "muster: worker {}: cannot create its process group: {e}",
                params.id
            );
            return crate::EXIT_BOOT_ERROR;
        }
        let count = params.listeners.len();
        if let Err(e) = place_listeners(&params.listeners) {
            eprintln!(
                "muster: worker {}: cannot pass the listening sockets: {e}",
                params.id
            );
            return crate::EXIT_BOOT_ERROR;
        }
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env("MUSTER_WORKER_ID", params.slot.to_string())
            .env("PROMETHEUS_MULTIPROC_DIR", &params.dir)
            .env("WATCHDOG_USEC", self.timeout.as_micros().to_string())
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
        match &self.notify {
            Some(n) => cmd.env("NOTIFY_SOCKET", n.address()),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        if self.listen_env {
            let names: Vec<String> = (0..count).map(|i| format!("listener{i}")).collect();
            cmd.env("LISTEN_FDS", count.to_string())
                .env("LISTEN_PID", std::process::id().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        }
        // The command starts with every signal unblocked (blocked since the fork);
        // a stop requested meanwhile takes its default effect now.
        params.unblock_signals();
        // Only returns on failure.
        let e = cmd.exec();
        eprintln!(
            "muster: worker {}: cannot run {}: {e}",
            params.id,
            self.argv[0].to_string_lossy()
        );
        EXIT_NOT_EXECUTED
    }

    /// Reads the notify socket and records what each worker said.
    fn receive(&mut self, workers: &[WorkerView<'_>]) {
        let Some(socket) = &self.notify else {
            return;
        };
        for message in socket.receive() {
            // The sender is the worker, or a process of its group.
            let group = nix::unistd::getpgid(Some(Pid::from_raw(message.pid)))
                .map(|g| g.as_raw())
                .unwrap_or(message.pid);
            let Some(w) = workers
                .iter()
                .find(|w| w.pid.as_raw() == group || w.pid.as_raw() == message.pid)
            else {
                debug!(
                    pid = message.pid,
                    "notify message from a process that is no worker"
                );
                continue;
            };
            let t = self.tended.entry(w.pid).or_default();
            if message.says("READY=1") && !t.said_ready {
                t.said_ready = true;
                debug!(worker = w.slot, pid = message.pid, "worker said READY=1");
            }
            if message.says("WATCHDOG=1") {
                t.watchdog = true;
                w.board.beat();
            }
        }
    }

    /// Forks a compaction of what was reaped (and of abandoned pid-named files).
    fn compact(&mut self) {
        if self.compaction.is_some() {
            return;
        }
        let sweep = self.swept_at.elapsed() >= SWEEP_EVERY;
        if self.reaped.is_empty() && !sweep {
            return;
        }
        if sweep {
            self.swept_at = Instant::now();
        }
        if !has_dead_pid_files(&self.dir) {
            self.reaped.clear();
            return;
        }
        let reaped = std::mem::take(&mut self.reaped);
        let dir = self.dir.clone();
        self.compaction = crate::supervisor::fork_helper("compaction", move || {
            let mut run = muster_collect::compact::Compaction::new(&dir)
                .abandoned()
                .lock_wait(Duration::from_secs(5));
            for pid in &reaped {
                run = run.reaped(*pid);
            }
            match run.run() {
                Ok(report) => {
                    if !report.absorbed.is_empty() || !report.removed.is_empty() {
                        info!(
                            absorbed = report.absorbed.len(),
                            removed = report.removed.len(),
                            kept = report.kept.len(),
                            "compacted dead workers' files"
                        );
                    }
                    0
                }
                Err(e) => {
                    warn!(error = %e, "compaction did not run; it is retried");
                    1
                }
            }
        });
    }
}

impl WorkerProgram for RunCommand {
    fn before_fork(&mut self, ctx: &ServerContext) -> Result<(), BoxError> {
        self.dir = ctx.multiproc_dir.clone();
        self.timeout = ctx.config.timeout;
        // Orphans of a worker's tree (a gunicorn master's workers when the master
        // dies) are re-parented here and reaped by the loop.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot become a subreaper: {e}"))?;
        self.notify = Some(NotifySocket::bind().map_err(|e| format!("notify socket: {e}"))?);
        self.metrics = match ProcessGauges::new() {
            Ok(m) => Some(m),
            Err(e) => {
                warn!(error = %e, "per-worker process metrics unavailable");
                None
            }
        };
        info!(
            command = ?self.argv,
            ready = ?self.ready,
            listen_env = self.listen_env,
            "workers run a command"
        );
        Ok(())
    }

    fn on_reload(&mut self, ctx: &ServerContext) -> Result<(), BoxError> {
        self.timeout = ctx.config.timeout;
        Ok(())
    }

    fn run_worker(&mut self, params: WorkerParams) -> i32 {
        match params.kind() {
            WorkerKind::App => self.exec(params),
            // The --metrics-bind process is muster's own.
            WorkerKind::Metrics => crate::worker::run_worker(params, &MetricsOnly),
        }
    }

    fn process_group(&self) -> bool {
        true
    }

    fn tend(&mut self, workers: &[WorkerView<'_>], listeners: &[Listener]) {
        self.receive(workers);
        let live: HashSet<Pid> = workers.iter().map(|w| w.pid).collect();
        self.tended.retain(|pid, _| live.contains(pid));
        let booting = workers.iter().any(|w| !w.ready && !w.stopping);
        let metrics_due = self.metrics_at.elapsed() >= METRICS_EVERY;
        // One scan of /proc per turn, and only when something needs it.
        let (sockets, groups) = if booting || metrics_due {
            let sockets = if booting {
                accepting::Sockets::of(listeners)
            } else {
                accepting::Sockets::default()
            };
            (sockets, crate::procmetrics::process_groups())
        } else {
            Default::default()
        };
        let members = |pid: Pid| groups.get(&pid.as_raw()).map_or(&[][..], Vec::as_slice);
        for w in workers {
            let t = self.tended.entry(w.pid).or_default();
            if !t.watchdog {
                w.board.beat();
            }
            if w.ready || w.stopping {
                continue;
            }
            let ready = match self.ready {
                ReadyRule::Notify => t.said_ready,
                ReadyRule::Accept => {
                    accepting::observe(members(w.pid), &sockets) == Observation::Accepting
                }
                ReadyRule::Auto => match accepting::observe(members(w.pid), &sockets) {
                    Observation::Accepting => true,
                    Observation::Unobservable => t.said_ready,
                    // Never idle (gunicorn `--max-requests 1` under load): its
                    // master said READY=1 and has since replaced a worker.
                    Observation::NotYet => {
                        let left = t.inner_worker_left(w.pid.as_raw(), members(w.pid));
                        t.said_ready && left
                    }
                },
            };
            if ready {
                w.board.set_state(SlotState::Ready);
            } else {
                let since = *t.booting_since.get_or_insert_with(Instant::now);
                if !t.said_slow && since.elapsed() >= self.timeout {
                    t.said_slow = true;
                    let own = accepting::own_listening_addresses(members(w.pid), &sockets);
                    report_not_ready(w, self.ready, self.timeout, &own);
                }
            }
        }
        if metrics_due {
            self.metrics_at = Instant::now();
            if let Some(m) = &self.metrics {
                for w in workers {
                    let stats = crate::procmetrics::read_group(w.pid.as_raw(), members(w.pid));
                    m.set(&format!("w{}", w.slot), &stats.unwrap_or_default());
                }
            }
        }
        self.compact();
    }

    fn reaped(&mut self, pid: Pid, slot: Option<usize>) {
        if self.compaction == Some(pid) {
            self.compaction = None;
            return;
        }
        self.tended.remove(&pid);
        if let (Some(slot), Some(m)) = (slot, &self.metrics) {
            m.set(&format!("w{slot}"), &Default::default());
        }
        if let Ok(raw) = u32::try_from(pid.as_raw()) {
            self.reaped.push(raw);
        }
    }
}

/// Says in the log why worker `w` is not ready after `timeout`: most often a
/// command that listens on an address of its own (`own`) instead of the socket it
/// was given.
fn report_not_ready(w: &WorkerView<'_>, rule: ReadyRule, timeout: Duration, own: &[String]) {
    if own.is_empty() {
        warn!(
            worker = %format!("w{}", w.slot),
            pid = w.pid.as_raw(),
            after = ?timeout,
            ready = ?rule,
            "worker not ready yet: not seen waiting for connections on the sockets it was \
             given (descriptor 3 and on, LISTEN_FDS){}",
            if rule == ReadyRule::Notify { ", and no READY=1" } else { "" }
        );
    } else {
        warn!(
            worker = %format!("w{}", w.slot),
            pid = w.pid.as_raw(),
            after = ?timeout,
            listens_on = %own.join(", "),
            "worker not ready: it listens on an address of its own, not on the socket \
             muster gave it; serve descriptor 3 instead (`uvicorn --fd 3`, `gunicorn \
             --bind fd://3`, or systemd socket activation via LISTEN_FDS)"
        );
    }
}

/// Puts `listeners` on descriptors 3, 4, ... (blocking, inherited across `exec`).
fn place_listeners(listeners: &[Listener]) -> std::io::Result<()> {
    const FIRST: RawFd = 3;
    let count = listeners.len() as RawFd;
    // First above the target range, so that no listener is overwritten before it
    // is moved; dup2 then clears close-on-exec on the targets only.
    let mut moved = Vec::new();
    for l in listeners {
        let fd = nix::fcntl::fcntl(
            l.as_fd(),
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(FIRST + count),
        )
        .map_err(std::io::Error::from)?;
        moved.push(fd);
    }
    for (i, fd) in moved.into_iter().enumerate() {
        let target = FIRST + i as RawFd;
        // SAFETY: dup2 onto a descriptor number this process reserves for the
        // command; whatever was there (a close-on-exec descriptor of ours) is
        // closed, which nothing in this process relies on before exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: closing the temporary duplicate made above.
        unsafe { libc::close(fd) };
        // The socket is shared with the other workers: systemd passes blocking
        // sockets, and servers make theirs non-blocking themselves.
        // SAFETY: fcntl on the descriptor just placed.
        let flags = unsafe { libc::fcntl(target, libc::F_GETFL) };
        if flags >= 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(target, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        }
    }
    Ok(())
}

/// The executable `program` names: a path, or a name looked up in `PATH`.
fn find_executable(program: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if program.as_os_str().is_empty() {
        return None;
    }
    if program.components().count() > 1 || program.is_absolute() {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// gunicorn (`gunicorn ...` or `python -m gunicorn ...`) given an `fd://` bind.
fn is_gunicorn_with_fd_bind(argv: &[OsString]) -> bool {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let gunicorn = words
        .iter()
        .take(3)
        .any(|w| Path::new(w).file_name().is_some_and(|n| n == "gunicorn"));
    gunicorn && words.iter().any(|w| w.contains("fd://"))
}

/// Whether `dir` holds a pid-named metric file of a process that is not running.
fn has_dead_pid_files(dir: &Path) -> bool {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return false;
    };
    listing.flatten().any(|e| {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        let Some(stem) = name.strip_suffix(".db") else {
            return false;
        };
        // `<kind>_<pid>.db`, or a file a compaction claimed (`<kind>_<pid>-c<gen>.db`).
        let id = stem.rsplit('_').next().unwrap_or("");
        let pid = id.split("-c").next().unwrap_or("");
        match pid.parse::<i32>() {
            Ok(pid) => id.contains("-c") || !crate::procmetrics::is_running(pid),
            Err(_) => false,
        }
    })
}

/// The `--metrics-bind` process of `muster run`: muster's endpoints only.
struct MetricsOnly;

/// Answers 404: the metrics process serves no application.
#[derive(Clone)]
struct NotFound;

impl tower_service::Service<http::Request<hyper::body::Incoming>> for NotFound {
    type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<hyper::body::Incoming>) -> Self::Future {
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        std::future::ready(Ok(response))
    }
}

impl crate::AppFactory for MetricsOnly {
    type Service = NotFound;
    fn build(
        &self,
        _: &WorkerContext,
    ) -> impl std::future::Future<Output = Result<NotFound, BoxError>> {
        std::future::ready(Ok(NotFound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn recognises_gunicorn_with_an_fd_bind() {
        assert!(is_gunicorn_with_fd_bind(&argv(&[
            "gunicorn", "--bind", "fd://3", "app:app"
        ])));
        assert!(is_gunicorn_with_fd_bind(&argv(&[
            "/venv/bin/gunicorn",
            "-b=fd://3",
            "a:b"
        ])));
        assert!(is_gunicorn_with_fd_bind(&argv(&[
            "python3", "-m", "gunicorn", "-b", "fd://3"
        ])));
        assert!(!is_gunicorn_with_fd_bind(&argv(&[
            "gunicorn", "-w", "1", "app:app"
        ])));
        assert!(!is_gunicorn_with_fd_bind(&argv(&[
            "uvicorn", "--fd", "3", "app:app"
        ])));
    }

    #[test]
    fn a_missing_command_is_a_clear_error() {
        let e = RunCommand::new(
            argv(&["no-such-command-xyz"]),
            ReadyRule::Auto,
            ListenEnv::Auto,
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("no-such-command-xyz"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(RunCommand::new(Vec::new(), ReadyRule::Auto, ListenEnv::Auto).is_err());
        assert!(find_executable(Path::new("sh")).is_some());
    }

    #[test]
    fn finds_dead_pid_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("counter_w0.db"), b"").expect("write");
        std::fs::write(
            dir.path()
                .join(format!("counter_{}.db", std::process::id())),
            b"",
        )
        .expect("write");
        assert!(!has_dead_pid_files(dir.path()));
        std::fs::write(dir.path().join("histogram_2147483600.db"), b"").expect("write");
        assert!(has_dead_pid_files(dir.path()));
    }
}
