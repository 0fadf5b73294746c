//! `muster run -- COMMAND` with a small stdlib Python server
//! (tests/python/apps/small_server.py) as the workers: the sockets and environment
//! a worker gets, readiness, the signals (TERM drains, HUP replaces one at a time,
//! TTIN/TTOU, a SIGKILLed worker is replaced), and the clear failures (a command
//! that exits at once, a command that does not exist).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http, http_get, muster, python, root, run_with_input, wait_until, Proc};

const LIMIT: Duration = Duration::from_secs(30);

fn small_server() -> PathBuf {
    root().join("tests/python/apps/small_server.py")
}

/// `muster run` with `flags` (listening on 127.0.0.1:0 unless they say `-b`), then
/// `-- python small_server.py ARGS`, logging at info.
fn start(tmp: &Path, name: &str, flags: &[&str], args: &[&str]) -> Proc {
    start_on(tmp, name, &tmp.join(format!("{name}-metrics")), flags, args)
}

/// [`start`] on the multiprocess directory `dir`.
fn start_on(tmp: &Path, name: &str, dir: &Path, flags: &[&str], args: &[&str]) -> Proc {
    let mut cmd = muster();
    cmd.arg("run");
    if !flags.contains(&"-b") {
        cmd.args(["-b", "127.0.0.1:0"]);
    }
    cmd.args(["--log-level", "info", "--graceful-timeout", "10"])
        .arg("--multiproc-dir")
        .arg(dir)
        .args(flags)
        .arg("--")
        .arg(python())
        .arg(small_server())
        .args(args);
    Proc::start(name, &mut cmd, &tmp.join(format!("{name}.log")))
}

/// The workers of supervisor `parent` (their command line mentions small_server.py).
fn workers_of(parent: i32) -> BTreeSet<i32> {
    common::command_children(parent, "small_server.py")
        .into_iter()
        .collect()
}

/// `GET /env` of whichever worker accepts.
fn env_of_some_worker(addr: SocketAddr) -> serde_json::Value {
    let answer = http_get(addr, "/env");
    assert_eq!(answer.status, 200, "{}", answer.text());
    serde_json::from_slice(&answer.body).expect("JSON from /env")
}

/// Waits until `sup` logged `n` workers ready (panicking with its log if it exits).
fn wait_ready(sup: &mut Proc, n: usize) {
    wait_until(&format!("{n} workers ready"), LIMIT, || {
        sup.assert_running();
        (count(&sup.log_text(), "worker ready") >= n).then_some(())
    });
}

/// How often `what` occurs in the log.
fn count(log: &str, what: &str) -> usize {
    // Occurrences, not lines: two processes writing at once can share a line.
    log.matches(what).count()
}

#[test]
fn workers_get_the_sockets_and_environment_and_term_drains() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(
        tmp.path(),
        "env",
        &["-w", "2", "--metrics-bind", "127.0.0.1:0"],
        &[],
    );
    let addr = sup.wait_addr("listening addr=", LIMIT);
    let metrics = sup.wait_addr("metrics listening addr=", LIMIT);
    wait_ready(&mut sup, 2);
    let dir = tmp.path().join("env-metrics");
    // Both workers answer, each with its own slot; connections are spread by the
    // kernel, so ask until both were seen.
    let mut seen = BTreeMap::new();
    wait_until("answers from both workers", LIMIT, || {
        let env = env_of_some_worker(addr);
        seen.insert(
            env["MUSTER_WORKER_ID"].as_str().unwrap_or("?").to_string(),
            env,
        );
        (seen.len() >= 2).then_some(())
    });
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["0", "1"]);
    for (slot, env) in &seen {
        let pid = env["pid"].as_i64().expect("pid");
        assert_eq!(env["LISTEN_FDS"], "1", "slot {slot}: {env}");
        assert_eq!(
            env["LISTEN_PID"],
            pid.to_string(),
            "slot {slot}: LISTEN_PID is the worker's own pid"
        );
        assert_eq!(env["LISTEN_FDNAMES"], "listener0", "slot {slot}: {env}");
        assert_eq!(
            env["fd3_listening"], true,
            "slot {slot}: fd 3 is the listening socket"
        );
        assert_eq!(
            env["PROMETHEUS_MULTIPROC_DIR"].as_str().map(PathBuf::from),
            Some(dir.clone()),
            "slot {slot}"
        );
        assert!(
            env["NOTIFY_SOCKET"]
                .as_str()
                .is_some_and(|s| s.starts_with('@')),
            "slot {slot}: {env}"
        );
        assert_eq!(
            env["WATCHDOG_USEC"], "30000000",
            "slot {slot}: --timeout in µs"
        );
        // Each worker leads its own process group (so its whole tree is signalled).
        // SAFETY: getpgid(2) only reads.
        assert_eq!(
            unsafe { libc::getpgid(pid as i32) },
            pid as i32,
            "slot {slot}"
        );
    }
    // The supervisor's /metrics: the worker count and each worker's process metrics.
    let text = wait_until("per-worker process metrics", LIMIT, || {
        let text = http_get(metrics, "/metrics").text();
        (text.contains("muster_worker_resident_memory_bytes{worker=\"w1\"}")).then_some(text)
    });
    assert!(text.contains("muster_workers 2"), "{text}");
    let rss: f64 = text
        .lines()
        .find(|l| l.starts_with("muster_worker_resident_memory_bytes{worker=\"w0\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("w0 RSS");
    assert!(rss > 1e6, "a Python worker holds more than 1 MB: {rss}");

    // TERM: forwarded to the workers, which drain; the supervisor exits 0.
    sup.stop_cleanly(LIMIT);
    assert_eq!(
        count(&sup.log_text(), "small_server: pid"),
        4,
        "each worker drained:\n{}",
        sup.log_text()
    );
    assert_eq!(count(&sup.log_text(), "drained"), 2, "{}", sup.log_text());
}

#[test]
fn killed_workers_are_replaced_and_ttin_ttou_hup_resize_and_replace() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(tmp.path(), "signals", &["-w", "2"], &[]);
    let addr = sup.wait_addr("listening addr=", LIMIT);
    let sup_pid = sup.pid();
    wait_ready(&mut sup, 2);
    let first = workers_of(sup_pid);
    assert_eq!(first.len(), 2, "{first:?}");

    // A client keeps asking through everything below; no request may fail
    // except one the SIGKILLed worker was serving.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match http(addr, "GET", "/", &[], b"") {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    // SIGKILL one worker: it is replaced.
    let victim = *first.iter().next().expect("a worker");
    // SAFETY: kill(2) on a worker this test's supervisor started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    wait_until("the killed worker replaced", LIMIT, || {
        sup.assert_running();
        let now = workers_of(sup_pid);
        (now.len() == 2 && !now.contains(&victim)).then_some(())
    });
    assert!(
        sup.log_text().contains("killed by SIGKILL"),
        "{}",
        sup.log_text()
    );
    // A request the killed worker was serving fails; from here on none may.
    failed.store(0, Ordering::Relaxed);

    // TTIN: one more; TTOU: one fewer.
    sup.signal(libc::SIGTTIN);
    wait_until("3 workers after TTIN", LIMIT, || {
        (workers_of(sup_pid).len() == 3).then_some(())
    });
    sup.signal(libc::SIGTTOU);
    wait_until("2 workers after TTOU", LIMIT, || {
        (workers_of(sup_pid).len() == 2).then_some(())
    });

    // HUP: every worker replaced, one at a time, each old one stopped only once its
    // replacement is ready.
    let before = workers_of(sup_pid);
    let log_len = sup.log_text().len();
    sup.signal(libc::SIGHUP);
    let mut most = 0;
    wait_until("every worker replaced after HUP", LIMIT, || {
        sup.assert_running();
        let now = workers_of(sup_pid);
        most = most.max(now.len());
        (now.len() == 2 && now.is_disjoint(&before)).then_some(())
    });
    assert!(
        most <= 4,
        "at most the old and new worker of two slots at once: {most}"
    );
    // The reload's events: its workers (generation 1) spawned and ready, and the
    // old ones stopped. (A worker spawned before the HUP may become ready during it.)
    let log = sup.log_text();
    let tail = &log[log_len..];
    let pid_of = |l: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .map(str::to_string)
    };
    let new_pids: BTreeSet<String> = tail
        .lines()
        .filter(|l| l.contains("worker spawned") && l.contains("generation=1"))
        .filter_map(pid_of)
        .collect();
    let events: Vec<&str> = tail
        .lines()
        .filter_map(|l| {
            let new = pid_of(l).is_some_and(|p| new_pids.contains(&p));
            if l.contains("worker spawned") && new {
                Some("worker spawned")
            } else if l.contains("worker ready") && new {
                Some("worker ready")
            } else if l.contains("stopping worker gracefully") && l.contains("reason=Reload") {
                Some("stopping worker gracefully")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        events[..6],
        [
            "worker spawned",
            "worker ready",
            "stopping worker gracefully",
            "worker spawned",
            "worker ready",
            "stopping worker gracefully"
        ],
        "a reload replaces one worker at a time, gated on readiness:\n{}",
        &log[log_len..]
    );

    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    assert!(ok.load(Ordering::Relaxed) > 10, "the client was served");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed:\n{}",
        sup.log_text()
    );
    sup.stop_cleanly(LIMIT);
}

#[test]
fn readiness_by_notify_and_lifetime_recycling() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(
        tmp.path(),
        "notify",
        &["-w", "1", "--ready", "notify", "--max-worker-lifetime", "2"],
        &["--notify"],
    );
    let addr = sup.wait_addr("listening addr=", LIMIT);
    // Ready by READY=1, and recycled every 2 s: three workers in a row become ready.
    wait_ready(&mut sup, 3);
    let log = sup.log_text();
    assert!(count(&log, "max worker lifetime reached") >= 2, "{log}");
    assert_eq!(http_get(addr, "/").status, 200);
    sup.stop_cleanly(LIMIT);
}

#[test]
fn a_master_that_says_ready_and_recycles_busy_workers_is_ready_by_auto() {
    // What gunicorn with --max-requests 1 under load shows of itself: a master that
    // said READY=1 and inner workers that are never caught waiting for a
    // connection. Observation alone would never call it ready (`--ready auto`,
    // the default); an inner worker replaced while the master lives does.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(tmp.path(), "busy", &["-w", "1"], &["--busy-children"]);
    wait_ready(&mut sup, 1);
    sup.stop_cleanly(LIMIT);
}

#[test]
fn a_unix_socket_is_passed_too() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("app.sock");
    let bind = format!("unix:{}", path.display());
    let mut sup = start(tmp.path(), "unix", &["-w", "1", "-b", &bind], &[]);
    wait_ready(&mut sup, 1);
    let mut conn = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    conn.set_read_timeout(Some(LIMIT)).expect("timeout");
    conn.write_all(b"GET /env HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let env: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(env["fd3_listening"], true, "{env}");
    assert_eq!(env["LISTEN_FDS"], "1", "{env}");
    assert_eq!(env["MUSTER_WORKER_ID"], "0", "{env}");
    sup.stop_cleanly(LIMIT);
}

#[test]
fn a_worker_whose_watchdog_pings_stop_is_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(
        tmp.path(),
        "watchdog",
        &["-w", "1", "--timeout", "1"],
        &["--watchdog-once"],
    );
    // It sent WATCHDOG=1 once: from then on only WATCHDOG=1 keeps it alive.
    wait_until("the silent worker aborted and replaced", LIMIT, || {
        sup.assert_running();
        let log = sup.log_text();
        (log.contains("worker silent for longer than the timeout")
            && log.contains("reason=\"timeout\"")
            && count(&log, "worker spawned") >= 2)
            .then_some(())
    });
    sup.stop_cleanly(LIMIT);
}

#[test]
fn a_reload_whose_workers_keep_dying_is_rolled_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken");
    let mut sup = start(
        tmp.path(),
        "rollback",
        &["-w", "2", "--max-boot-failures", "3"],
        &["--fail-if", broken.to_str().expect("utf-8 path")],
    );
    let addr = sup.wait_addr("listening addr=", LIMIT);
    wait_ready(&mut sup, 2);
    let before = workers_of(sup.pid());
    // The deployment breaks the app, then the service is reloaded.
    std::fs::write(&broken, b"").expect("break the app");
    sup.signal(libc::SIGHUP);
    wait_until("the reload rolled back", LIMIT, || {
        sup.assert_running();
        sup.log_text().contains("reload failed").then_some(())
    });
    // The old workers still serve; the server did not stop.
    assert_eq!(workers_of(sup.pid()), before, "{}", sup.log_text());
    for _ in 0..10 {
        assert_eq!(http_get(addr, "/").status, 200);
    }
    sup.assert_running();
    sup.stop_cleanly(LIMIT);
}

#[test]
fn a_command_that_exits_at_once_is_reported_and_gives_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sup = start(
        tmp.path(),
        "exits",
        &["-w", "2", "--max-boot-failures", "3"],
        &["--exit", "4"],
    );
    let status = sup.wait_exit(LIMIT).expect("gives up");
    let log = sup.log_text();
    assert_eq!(status.code(), Some(3), "boot failure exit code:\n{log}");
    assert!(
        log.contains("workers keep dying before becoming ready"),
        "{log}"
    );
    assert!(log.contains("exit code 4"), "{log}");
    // Backoff, not a busy loop: a handful of attempts.
    let spawned = count(&log, "worker spawned");
    assert!(
        (3..=6).contains(&spawned),
        "{spawned} workers spawned:\n{log}"
    );
}

#[test]
fn a_missing_command_is_a_clear_error() {
    let out = run_with_input(
        muster().args([
            "run",
            "-b",
            "127.0.0.1:0",
            "--",
            "no-such-command-muster-test",
        ]),
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("command not found or not executable: no-such-command-muster-test"),
        "{err}"
    );
    // No command at all: a usage error.
    let out = run_with_input(muster().args(["run", "-w", "1"]), b"", LIMIT);
    assert_eq!(out.status.code(), Some(2));
    // --max-requests cannot be counted for a command: refused with the way out.
    let out = run_with_input(
        muster().args(["run", "--max-requests", "10", "--", "true"]),
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-worker-lifetime"));
}

/// Names and inodes of the files in `dir`.
fn files_of(dir: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("list the directory")
        .flatten()
        .map(|e| {
            let ino = e.metadata().expect("stat").ino();
            (e.file_name().to_string_lossy().into_owned(), ino)
        })
        .collect()
}

#[test]
fn a_second_run_on_the_same_directory_is_refused_and_touches_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dir = t.join("shared-metrics");
    let flags = ["-w", "1", "--metrics-bind", "127.0.0.1:0"];
    let mut first = start_on(t, "first", &dir, &flags, &[]);
    let addr = first.wait_addr("listening addr=", LIMIT);
    let metrics = first.wait_addr("metrics listening addr=", LIMIT);
    wait_ready(&mut first, 1);
    assert_eq!(http_get(addr, "/").status, 200);
    let before = files_of(&dir);
    assert!(
        before.keys().any(|n| n.ends_with(".db")),
        "the first supervisor writes its own metrics there: {before:?}"
    );

    // An overlapping deployment (another port) and a typo (the same port): both
    // exit 2 and name why, and the first one's files are the ones still there.
    let refused = |name: &str, bind: &str| {
        let mut flags = vec!["-w", "1", "-b", bind];
        flags.extend(["--metrics-bind", "127.0.0.1:0"]);
        let mut p = start_on(t, name, &dir, &flags, &[]);
        let status = p
            .wait_exit(LIMIT)
            .unwrap_or_else(|| panic!("{name} was not refused:\n{}", p.log_text()));
        assert_eq!(status.code(), Some(2), "{name}:\n{}", p.log_text());
        p.log_text()
    };
    let log = refused("other-port", "127.0.0.1:0");
    assert!(
        log.contains("is in use by another muster server")
            && log.contains(&format!("pid {}", first.pid())),
        "the message names the holder: {log}"
    );
    let log = refused("same-port", &addr.to_string());
    assert!(log.contains("cannot listen"), "{log}");
    let after = files_of(&dir);
    for (name, ino) in before.iter().filter(|(n, _)| n.ends_with(".db")) {
        assert_eq!(after.get(name), Some(ino), "{name} was removed or replaced");
    }

    // The first one still serves its application and its metrics.
    first.assert_running();
    assert_eq!(http_get(addr, "/").status, 200);
    let text = http_get(metrics, "/metrics").text();
    assert!(
        text.contains("muster_worker_resident_memory_bytes"),
        "{text}"
    );
    first.stop_cleanly(LIMIT);
}

#[test]
fn too_few_descriptors_is_a_clear_error_never_a_panic() {
    // `ulimit -n` from 8 to 20: the supervisor and its workers either run, or stop
    // with an error exit code and say which descriptor they could not get. (tokio's
    // signal driver panics when it cannot make its socket pair; the workers check
    // for room first.)
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (mut ran, mut refused) = (0, 0);
    for n in 8..=20u64 {
        let name = format!("nofile-{n}");
        let mut cmd = muster();
        cmd.args(["run", "-w", "2", "-b", "127.0.0.1:0"])
            .args(["--metrics-bind", "127.0.0.1:0", "--log-level", "info"])
            .arg("--multiproc-dir")
            .arg(t.join(&name))
            .arg("--")
            .arg(python())
            .arg(small_server());
        common::limit_descriptors(&mut cmd, n);
        let mut sup = Proc::start(&name, &mut cmd, &t.join(format!("{name}.log")));
        let exited = wait_until("it runs or stops", LIMIT, || {
            if let Some(status) = sup.try_exit() {
                return Some(Some(status));
            }
            // Two application workers and the metrics process.
            (count(&sup.log_text(), "worker ready") >= 3).then_some(None)
        });
        let status = match exited {
            Some(status) => status,
            None => {
                ran += 1;
                sup.signal(libc::SIGTERM);
                sup.wait_exit(LIMIT).expect("stops on TERM")
            }
        };
        let log = sup.log_text();
        assert!(!log.contains("panicked"), "ulimit -n {n}:\n{log}");
        if exited.is_some() {
            refused += 1;
            assert!(
                status.code().is_some_and(|c| c != 0),
                "ulimit -n {n}: {status:?}\n{log}"
            );
            assert!(
                log.contains("Too many open files"),
                "ulimit -n {n}: the error names the cause:\n{log}"
            );
        } else {
            assert_eq!(status.code(), Some(0), "ulimit -n {n}:\n{log}");
        }
    }
    assert!(ran > 0 && refused > 0, "{ran} ran, {refused} refused");
}

#[test]
fn a_worker_that_never_serves_its_socket_is_reported_with_its_own_address() {
    // The likeliest mistake with muster run: a command that opens a port of its
    // own (`uvicorn app:app` without `--fd 3`). Clients of muster's socket would
    // wait forever; after --timeout the log says why, and where it listens.
    const OWN_PORT: &str = "import socket, sys, time\n\
        s = socket.socket()\n\
        s.bind(('127.0.0.1', 0))\n\
        s.listen()\n\
        print('own port', s.getsockname()[1], file=sys.stderr, flush=True)\n\
        time.sleep(60)\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let run = |name: &str, command: &[&str]| {
        let mut cmd = muster();
        cmd.args(["run", "-w", "1", "-b", "127.0.0.1:0", "--timeout", "4"])
            .args(["--log-level", "info", "--multiproc-dir"])
            .arg(t.join(name))
            .arg("--")
            .args(command);
        Proc::start(name, &mut cmd, &t.join(format!("{name}.log")))
    };
    let python = python();
    let python = python.to_str().expect("UTF-8 path");
    let mut own = run("own-port", &[python, "-c", OWN_PORT]);
    let port = wait_until("the worker's own port", LIMIT, || {
        own.assert_running();
        let log = own.log_text();
        let rest = log.split("own port ").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    });
    let log = wait_until("the not-ready warning", LIMIT, || {
        own.assert_running();
        let log = own.log_text();
        log.contains("worker not ready").then_some(log)
    });
    assert!(
        log.contains("listens on an address of its own")
            && log.contains(&format!("listens_on=127.0.0.1:{port}"))
            && log.contains("uvicorn --fd 3"),
        "{log}"
    );
    own.stop_cleanly(LIMIT);

    // A command that listens nowhere is reported too, without an address.
    let mut silent = run("silent", &["sleep", "60"]);
    let log = wait_until("the not-ready warning", LIMIT, || {
        silent.assert_running();
        let log = silent.log_text();
        log.contains("worker not ready yet").then_some(log)
    });
    assert!(!log.contains("listens_on"), "{log}");
    silent.stop_cleanly(LIMIT);
}
