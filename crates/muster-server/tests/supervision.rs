//! The supervisor's edges (issue #10): what happens to signals, hung and draining
//! workers, and healthy workers when others keep failing. Each test runs the real
//! `demo_server` example (supervisor and forked workers), sends real signals and
//! requests, and waits for conditions with deadlines.

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

const BOOT: Duration = Duration::from_secs(20);

/// Starts `GET path` on its own thread.
fn in_background(
    server: &Server,
    path: &str,
) -> std::thread::JoinHandle<std::io::Result<(u16, String)>> {
    let (addr, path) = (server.addr, path.to_string());
    std::thread::spawn(move || request(addr, "GET", &path, None, &[]))
}

/// Waits until `/metrics` shows `n` requests in progress on the `/slow/{ms}` route.
fn wait_slow_in_progress(server: &Server, n: f64) {
    wait_for("slow requests in progress", BOOT, || {
        let m = server.metrics();
        (sample(&m, "http_requests_in_progress", &[("route", "/slow/{ms}")]) >= n).then_some(())
    });
}

/// Lines of the log that say a worker was spawned.
fn spawned(log: &str) -> usize {
    log.lines().filter(|l| l.contains("worker spawned")).count()
}

/// What happened when, with a request in flight on an old worker, the workers of a
/// rolling reload failed to boot because of `fault` (`--crash-boot-if` or
/// `--fail-boot-if`): the server's exit status, its log, the in-flight request's
/// answer, and how many workers were spawned after the reload.
struct FailedReload {
    code: Option<i32>,
    log: String,
    in_flight: std::io::Result<(u16, String)>,
    spawned_after: usize,
    group_left: Vec<i32>,
}

fn reload_into_failing_boots(fault: &str) -> FailedReload {
    let tmp = tempfile::tempdir().expect("tempdir");
    let flag = tmp.path().join("fault");
    let flag_s = flag.to_str().expect("utf-8");
    let mut server = Server::start(&["-w", "2", "--graceful-timeout", "20", fault, flag_s]);
    server.wait_workers(2, BOOT);
    let before = spawned(&server.log_text());
    let slow = in_background(&server, "/slow/4000");
    wait_slow_in_progress(&server, 1.0);
    std::fs::write(&flag, b"").expect("flag");
    server.signal(Signal::SIGHUP);
    if fault == "--crash-boot-if" {
        // Crashing boots roll the reload back; the server then stops on TERM.
        wait_for("the reload rolled back", Duration::from_secs(60), || {
            server.log_text().contains("reload failed").then_some(())
        });
        server.signal(Signal::SIGTERM);
    }
    let status = server.wait_exit(Duration::from_secs(60));
    let log = server.log_text();
    FailedReload {
        code: status.code(),
        spawned_after: spawned(&log) - before,
        log,
        in_flight: slow.join().expect("client"),
        group_left: group_members(server.pid().as_raw()),
    }
}

/// New workers of a reload that keep dying before they are ready roll the reload
/// back instead of stopping the server: the old, healthy workers keep serving (the
/// request in flight is answered) until the server is stopped.
#[test]
fn boot_failures_of_a_reload_roll_it_back() {
    let _g = serial();
    let r = reload_into_failing_boots("--crash-boot-if");
    let log = &r.log;
    assert_eq!(r.code, Some(0), "{log}");
    assert!(
        log.contains("died before becoming ready") || log.contains("boot_failure"),
        "{log}"
    );
    assert!(log.contains("rolling back"), "{log}");
    let (code, body) = r.in_flight.expect("the in-flight request must be answered");
    assert_eq!(code, 200, "{body}\n{log}");
    assert!(!log.contains("killed by SIGKILL"), "{log}");
    assert!(r.group_left.is_empty());
}

/// A worker exiting with code 3 (its boot is hopeless) stops the server at once, not
/// after `max_boot_failures` attempts, and still drains the healthy workers.
#[test]
fn a_worker_reporting_a_boot_error_halts_at_once() {
    let _g = serial();
    let r = reload_into_failing_boots("--fail-boot-if");
    let log = &r.log;
    assert_eq!(r.code, Some(3), "{log}");
    assert!(log.contains("failing on purpose (--fail-boot-if)"), "{log}");
    assert_eq!(r.spawned_after, 1, "one failed boot is enough:\n{log}");
    let (code, _) = r.in_flight.expect("answered");
    assert_eq!(code, 200, "{log}");
}

/// Runs `kill -SIG pid` as an operator's shell would, one process per signal.
fn kill_command(sig: &str, pid: Pid) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}: {status}");
}

/// Waits until `signal` is no longer pending for `pid` (`SigPnd`/`ShdPnd` in
/// `/proc/<pid>/status`): its handler took it. The kernel keeps one pending
/// instance of a standard signal, so a second one sent before that merges with it
/// whatever the receiver does.
fn wait_delivered(pid: Pid, signal: Signal) {
    let bit = 1u64 << (signal as i32 - 1);
    wait_for("the signal delivered", BOOT, || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let pending = status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
            .any(|mask| mask & bit != 0);
        (!pending).then_some(())
    });
}

/// Three `kill -TTIN` in a row add three workers, two `kill -TTOU` remove two,
/// also when they arrive while the supervisor is busy forking. Each is sent once
/// the kernel handed the previous one over (not once the supervisor acted on it):
/// two sent before would be one signal, to any process. (That signals taken
/// between two turns of the loop are counted, not flagged, is the unit test
/// `signals::tests::each_signal_between_two_turns_is_counted_up_to_the_limit`.)
#[test]
fn repeated_ttin_signals_are_counted() {
    let _g = serial();
    let server = Server::start(&["-w", "1"]);
    server.wait_workers(1, BOOT);
    for _ in 0..3 {
        kill_command("TTIN", server.pid());
        wait_delivered(server.pid(), Signal::SIGTTIN);
    }
    server.wait_workers(4, BOOT);
    for _ in 0..2 {
        kill_command("TTOU", server.pid());
        wait_delivered(server.pid(), Signal::SIGTTOU);
    }
    server.wait_workers(2, BOOT);
}

/// Workers do not inherit the supervisor's handlers: a SIGHUP sent to a worker has its
/// default effect (the worker ends and is replaced) instead of vanishing.
#[test]
fn workers_start_with_default_signal_dispositions() {
    let _g = serial();
    let server = Server::start(&["-w", "1"]);
    let before = server.wait_workers(1, BOOT);
    kill(Pid::from_raw(before[0]), Signal::SIGHUP).expect("signal worker");
    wait_for("the worker to end on SIGHUP", BOOT, || {
        server.log_text().contains("killed by SIGHUP").then_some(())
    });
    let after = server.wait_workers(1, BOOT);
    assert_ne!(before, after);
}

/// A SIGTERM that reaches a worker between fork and its runtime's handlers is not
/// lost: the worker stops as soon as it can, not after the graceful timeout.
#[test]
fn sigterm_during_worker_boot_is_not_lost() {
    let _g = serial();
    let server = Server::start(&[
        "-w",
        "1",
        "--post-fork-delay",
        "1500",
        "--graceful-timeout",
        "60",
    ]);
    let first = server.wait_workers(1, BOOT);
    server.signal(Signal::SIGTTIN);
    let booting = wait_for("a second worker", BOOT, || {
        server.workers().into_iter().find(|p| !first.contains(p))
    });
    kill(Pid::from_raw(booting), Signal::SIGTERM).expect("signal booting worker");
    wait_for(
        "the booting worker to stop",
        Duration::from_secs(15),
        || (!alive(booting)).then_some(()),
    );
}

/// A reload hook that leaves a thread running makes forking unsafe: the supervisor
/// refuses to fork, says why, and stops.
#[test]
fn a_thread_left_by_a_hook_stops_forking() {
    let _g = serial();
    let mut server = Server::start(&["-w", "1", "--thread-on-reload"]);
    server.wait_workers(1, BOOT);
    let before = spawned(&server.log_text());
    server.signal(Signal::SIGHUP);
    let status = server.wait_exit(Duration::from_secs(30));
    let log = server.log_text();
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(log.contains("single-threaded"), "{log}");
    assert_eq!(spawned(&log), before, "forked with threads:\n{log}");
}

/// A worker still draining at the graceful timeout exits by itself just before the
/// supervisor's deadline; SIGKILL is the last resort, not the rule.
#[test]
fn a_draining_worker_exits_before_the_kill_deadline() {
    let _g = serial();
    let mut server = Server::start(&["-w", "1", "--graceful-timeout", "2"]);
    server.wait_workers(1, BOOT);
    let slow = in_background(&server, "/slow/20000");
    wait_slow_in_progress(&server, 1.0);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    let log = server.log_text();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("graceful timeout reached"), "{log}");
    assert!(!log.contains("killed by SIGKILL"), "{log}");
    assert!(slow.join().expect("client").is_err());
}

/// A hung worker gets SIGABRT first, and the log says which worker hung and where
/// (its backtrace), before it is replaced.
#[test]
fn a_hung_worker_is_aborted_with_a_backtrace() {
    let _g = serial();
    let server = Server::start(&["-w", "1", "--timeout", "2"]);
    let before = server.wait_workers(1, BOOT);
    let spin = in_background(&server, "/spin/8000");
    wait_for("the abort to be logged", Duration::from_secs(20), || {
        let log = server.log_text();
        (log.contains("killed by SIGABRT") && log.contains("backtrace")).then_some(())
    });
    let log = server.log_text();
    assert!(log.contains("sending SIGABRT"), "{log}");
    assert!(log.contains(&format!("pid={}", before[0])), "{log}");
    // Where it hung: the request handler of the demo server.
    assert!(log.contains("demo_server"), "{log}");
    assert!(spin.join().expect("client").is_err());
    server.wait_workers(1, BOOT);
    assert_restarts(&server, "timeout", 1.0);
}

/// `--timeout` is the heartbeat of a hung worker: an async handler that waits longer
/// than it still answers. `--handler-timeout` bounds slow handlers with a 504.
#[test]
fn slow_handlers_are_bounded_by_the_handler_timeout_not_by_timeout() {
    let _g = serial();
    let server = Server::start(&["-w", "1", "--timeout", "1"]);
    server.wait_workers(1, BOOT);
    assert_eq!(server.get("/slow/2500").0, 200);
    drop(server);
    let server = Server::start(&["-w", "1", "--handler-timeout", "1"]);
    server.wait_workers(1, BOOT);
    let (status, body) = server.get("/slow/5000");
    assert_eq!(status, 504, "{body}");
    assert_eq!(server.get("/slow/10").0, 200);
    let m = server.metrics();
    assert_eq!(
        sample(
            &m,
            "http_requests_total",
            &[("route", "/slow/{ms}"), ("status", "504")]
        ),
        1.0,
        "{m}"
    );
}

/// A reload without `--multiproc-dir` (a private temporary directory) does not warn
/// that the directory cannot change.
#[test]
fn hup_without_a_directory_flag_does_not_warn() {
    let _g = serial();
    let server = Server::start_with(Options {
        args: &["-w", "1"],
        no_dir_flag: true,
        ..Options::default()
    });
    let before = server.wait_workers(1, BOOT);
    server.signal(Signal::SIGHUP);
    wait_for("the replacement", BOOT, || {
        let w = server.workers();
        (w.len() == 1 && w != before && logged_ready(&server.log_text(), &w)).then_some(())
    });
    let log = server.log_text();
    assert!(log.contains("reload: replacing workers"), "{log}");
    assert!(!log.contains("cannot change"), "{log}");
}

/// Checking the new credentials of a reload (bcrypt against the weak-password list)
/// does not stall the supervisor: a worker killed meanwhile is reaped first.
#[test]
fn hup_checks_credentials_without_stalling_reaping() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("muster.toml");
    std::fs::write(&conf, "workers = 1\n").expect("config");
    let web = tmp.path().join("web.yml");
    // Cost 12: the weak-password check takes seconds.
    let hash = bcrypt::hash_with_result("Zq7-uF2x-9kLp-w3Rt", 12)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).expect("web");
    let conf_s = conf.to_str().expect("utf-8");
    let server = Server::start(&["-c", conf_s]);
    let before = server.wait_workers(1, BOOT);
    std::fs::write(
        &conf,
        format!("workers = 1\nweb_config_file = \"{}\"\n", web.display()),
    )
    .expect("config");
    server.signal(Signal::SIGHUP);
    kill(Pid::from_raw(before[0]), Signal::SIGKILL).expect("kill worker");
    let log = wait_for("the new web config", Duration::from_secs(60), || {
        let log = server.log_text();
        log.contains("web config loaded").then_some(log)
    });
    let reaped = log.find("killed by SIGKILL").expect("reaped");
    let loaded = log.find("web config loaded").expect("loaded");
    assert!(reaped < loaded, "reaping waited for bcrypt:\n{log}");
}

/// Workers leave with `_exit`: handlers the parent registered with `atexit` run in
/// the supervisor only.
#[test]
fn workers_do_not_run_the_parents_atexit_handlers() {
    let _g = serial();
    let mut server = Server::start(&["-w", "2", "--atexit-marker", "--max-requests", "5"]);
    server.wait_workers(2, BOOT);
    for _ in 0..20 {
        assert_eq!(server.get("/").0, 200);
    }
    wait_for("a recycled worker", BOOT, || {
        server
            .log_text()
            .contains("reason=\"recycle\"")
            .then_some(())
    });
    server.signal(Signal::SIGTERM);
    server.wait_exit(BOOT);
    let log = server.log_text();
    let ran: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("atexit handler ran in pid"))
        .collect();
    assert_eq!(
        ran,
        vec![format!("atexit handler ran in pid {}", server.pid()).as_str()],
        "{log}"
    );
}
