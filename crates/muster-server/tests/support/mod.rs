//! Helpers for the end-to-end tests: run the `demo_server` example as a real process
//! tree in its own process group (killed on drop), talk HTTP/1.1 to it, read
//! `/metrics`, and wait for conditions with deadlines.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The tests share two cores: run one server at a time so that timing-based checks
/// (heartbeats, timeouts) are not starved by the other tests. A mutex for the threads
/// of `cargo test`, and a file lock for test runners that use one process per test
/// (nextest).
static SERIAL: Mutex<()> = Mutex::new(());

pub struct Serial {
    _thread: MutexGuard<'static, ()>,
    _process: Option<Flock<std::fs::File>>,
}

pub fn serial() -> Serial {
    let thread = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let path = std::env::temp_dir().join("muster-server-e2e.lock");
    let process = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    Serial {
        _thread: thread,
        _process: process,
    }
}

pub fn binary() -> PathBuf {
    example_binary("demo_server")
}

/// The built example `name`, refused when older than the sources it is built from.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("examples").join(name);
    let hint = "run `cargo test -p muster-server` (which builds the examples) or \
                `cargo build -p muster-server --examples` first";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {hint}", bin.display()));
    // `cargo test --test prefork` alone does not rebuild examples: refuse a binary older
    // than the sources it is built from.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in [
        "muster-server/src",
        "muster-server/examples",
        "muster-demo/src",
        "muster-store/src",
        "muster-metrics/src",
        "muster-collect/src",
    ] {
        if let Some(newest) = newest_mtime(&crates.join(dir)) {
            assert!(
                newest <= built,
                "{} is older than {dir}: {hint}",
                bin.display()
            );
        }
    }
    bin
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Server {
    pub child: Child,
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    exited: Option<ExitStatus>,
}

pub struct Options<'a> {
    pub args: &'a [&'a str],
    /// Wait for the listening address (false for servers expected to fail at boot).
    pub wait_listening: bool,
    /// Extra environment.
    pub env: &'a [(&'a str, &'a str)],
    /// Hand this socket over as systemd would (fd 3, LISTEN_FDS=1, LISTEN_PID).
    pub systemd_socket: Option<std::net::TcpListener>,
    /// Leave out the default `--multiproc-dir`.
    pub no_dir_flag: bool,
    /// Run the server under this command (e.g. `systemd-socket-activate -l ...`);
    /// `-b 127.0.0.1:0` is then not added.
    pub launcher: &'a [&'a str],
    /// Hand this socket over as descriptor N (for `--bind fd://N`).
    pub inherit_fd: Option<(std::os::fd::OwnedFd, i32)>,
    /// The example program to run.
    pub example: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            args: &[],
            wait_listening: true,
            env: &[],
            systemd_socket: None,
            no_dir_flag: false,
            launcher: &[],
            inherit_fd: None,
            example: "demo_server",
        }
    }
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(Options {
            args,
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options<'_>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("multiproc");
        let log = tmp.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = match &opts.systemd_socket {
            // The shell's pid is the server's after `exec`, as LISTEN_PID requires.
            Some(_) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
                    .arg(example_binary(opts.example));
                c
            }
            None if !opts.launcher.is_empty() => {
                let mut c = Command::new(opts.launcher[0]);
                c.args(&opts.launcher[1..])
                    .arg(example_binary(opts.example));
                c
            }
            None => Command::new(example_binary(opts.example)),
        };
        if opts.launcher.is_empty() {
            cmd.args(["-b", "127.0.0.1:0"]);
        }
        if !opts.no_dir_flag {
            cmd.arg("--multiproc-dir").arg(&dir);
        }
        cmd.args(opts.args)
            .env("MUSTER_DEMO_DB", tmp.path().join("walks.sqlite3"))
            .env("RUST_LOG", "info")
            .env_remove("PROMETHEUS_MULTIPROC_DIR")
            .env_remove("WEB_CONCURRENCY")
            .envs(opts.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(l) = &opts.systemd_socket {
            use std::os::fd::AsRawFd;
            let fd = l.as_raw_fd();
            // SAFETY: dup2 is async-signal-safe; the closure only calls it.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if fd == 3 {
                        // Already in place: only clear close-on-exec.
                        if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some((fd, target)) = &opts.inherit_fd {
            use std::os::fd::AsRawFd;
            let (fd, target) = (fd.as_raw_fd(), *target);
            // SAFETY: dup2 and fcntl are async-signal-safe; the closure only calls them.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if fd == target {
                        if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn demo_server");
        let mut server = Server {
            child,
            tmp,
            dir,
            log,
            addr: "127.0.0.1:1".parse().expect("addr"),
            metrics_addr: None,
            exited: None,
        };
        if opts.wait_listening {
            let addr = wait_for(
                "the listening address in the log",
                Duration::from_secs(20),
                || {
                    if let Some(st) = server.try_exit() {
                        panic!("server exited early with {st}:\n{}", server.log_text());
                    }
                    find_addr(&server.log_text(), "supervisor: listening addr=")
                },
            );
            server.addr = addr;
            server.metrics_addr = find_addr(&server.log_text(), "metrics listening addr=");
        }
        server
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal supervisor");
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for("the supervisor to exit", timeout, || self.try_exit())
    }

    /// Live (non-zombie) children of the supervisor.
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.child.id() as i32)
    }

    /// Waits until exactly `n` workers exist and the supervisor has logged each one
    /// as ready (seen through the shared scoreboard).
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Vec<i32> {
        wait_for(&format!("{n} workers"), timeout, || {
            let w = self.workers();
            (w.len() == n && logged_ready(&self.log_text(), &w)).then_some(w)
        })
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.addr, "GET", path, None, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        request(self.addr, "POST", path, Some(body), &[])
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }

    /// The process ids in the metric file names (`counter_w0.db` -> `w0`).
    pub fn file_ids(&self) -> std::collections::BTreeSet<String> {
        self.files()
            .iter()
            .filter_map(|f| f.strip_suffix(".db")?.rsplit('_').next().map(String::from))
            .collect()
    }

    /// The worker slots (`w0`, `w1`, ...) among [`Server::file_ids`].
    pub fn worker_file_ids(&self) -> std::collections::BTreeSet<String> {
        self.file_ids()
            .into_iter()
            .filter(|id| id.starts_with('w'))
            .collect()
    }

    /// Files in the multiprocess directory.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Everything we started is in the process group led by the supervisor.
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log_text());
        }
    }
}

/// Whether the supervisor's `log` says each of `pids` is a ready worker.
pub fn logged_ready(log: &str, pids: &[i32]) -> bool {
    pids.iter().all(|pid| {
        let tag = format!("pid={pid} ");
        log.lines()
            .any(|l| l.contains("worker ready") && l.contains(&tag))
    })
}

/// The first address after `marker` in `log`.
pub fn find_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// (state, ppid, pgid) of a process from /proc.
pub fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgid = it.next()?.parse().ok()?;
    Some((state, ppid, pgid))
}

pub fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = all_pids()
        .into_iter()
        .filter(|p| matches!(proc_stat(*p), Some((s, pp, _)) if pp == ppid && s != 'Z' && s != 'X'))
        .collect();
    v.sort();
    v
}

/// Live processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| matches!(proc_stat(*p), Some((s, _, g)) if g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        req.push_str("Content-Type: application/json\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sum of the samples named `name` whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbl) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| lbl.contains(&format!("{k}=\"{v}\"")));
            if !ok {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// Asserts `muster_worker_restarts_total{reason}` of a scrape of `server`.
pub fn assert_restarts(server: &Server, reason: &str, want: f64) {
    let m = server.metrics();
    assert_eq!(
        sample(&m, "muster_worker_restarts_total", &[("reason", reason)]),
        want,
        "{m}"
    );
}

/// Whether any sample named `name` exists.
pub fn has_sample(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        !l.starts_with('#')
            && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
    })
}
