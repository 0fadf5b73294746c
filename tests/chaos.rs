//! The short chaos and soak runs: `scripts/chaos` and `scripts/soak` against
//! the `muster` binary under test, for 20 seconds each (the long runs are the
//! scripts alone: 300 s of chaos, 600 s of soak).
//!
//! The script puts `muster demo` under wrk load while it SIGKILLs workers,
//! SIGSTOPs one past `--timeout`, sends HUP/TTIN/TTOU and plants bad files,
//! scraping `/metrics` every 50 ms; it exits 0 only if no counter, bucket,
//! `_count` or `_sum` ever went down, every scrape succeeded, the final
//! `http_requests_total` lies between the requests wrk saw succeed and those
//! it sent, and no process outlived the run. The soak script recycles workers
//! with `--max-requests 100` under wrk load and exits 0 only if the
//! supervisor's memory and fds, the directory's file count and the /metrics
//! time stay flat. wrk is required: a missing wrk fails the test (scripts/test
//! installs it).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn wrk_on_path() -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("wrk").is_file())
}

/// Runs `scripts/NAME` in its own process group; on timeout kills the group
/// (the server follows the script through PR_SET_PDEATHSIG). Returns the
/// status and everything it printed.
fn run_script(name: &str, args: &[&str], limit: Duration) -> (Option<ExitStatus>, String) {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    // One open file description for both, so they share the offset.
    let sink = out.reopen().expect("reopen");
    let mut child = Command::new(script(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(sink.try_clone().expect("clone"))
        .stderr(sink)
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script(name).display()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group we created.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = String::new();
    let _ = out.reopen().expect("reopen").read_to_string(&mut text);
    (status, text)
}

#[test]
fn the_checker_catches_what_it_should() {
    let (status, text) = run_script("chaos", &["--self-test"], Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "scripts/chaos --self-test failed ({status:?}):\n{text}"
    );
}

/// Holds the lock the server's end-to-end tests take (crates/muster-server/
/// tests/support), so the chaos run, which loads both cores, does not starve
/// their heartbeat and timeout checks when a runner runs tests in parallel.
fn serial_with_server_tests() -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join("muster-server-e2e.lock"))
        .expect("lock file");
    // SAFETY: flock(2) on a file we own; released when it is closed.
    let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

fn require_wrk() {
    assert!(
        wrk_on_path(),
        "wrk is not installed: `apt-get install wrk` (scripts/test installs it); the chaos \
         and soak tests need it to load the server"
    );
}

#[test]
fn short_chaos_run_keeps_every_invariant() {
    let _lock = serial_with_server_tests();
    require_wrk();
    let duration = "20";
    let (status, text) = run_script(
        "chaos",
        &[
            "--duration",
            duration,
            "--workers",
            "3",
            "--muster",
            env!("CARGO_BIN_EXE_muster"),
        ],
        Duration::from_secs(240),
    );
    // The summary is useful in CI logs even when the run passes.
    eprintln!("{text}");
    match status {
        None => panic!("scripts/chaos did not finish within 240 s; killed it:\n{text}"),
        Some(s) => assert!(s.success(), "scripts/chaos failed ({s}):\n{text}"),
    }
    assert!(
        text.contains("OK: every invariant held"),
        "no verdict in the output:\n{text}"
    );
}

#[test]
fn short_soak_keeps_memory_files_and_scrape_time_flat() {
    let _lock = serial_with_server_tests();
    require_wrk();
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let out_path = out.path().to_str().expect("utf-8 temp path");
    let (status, text) = run_script(
        "soak",
        &[
            "--duration",
            "20",
            "--muster",
            env!("CARGO_BIN_EXE_muster"),
            "--out",
            out_path,
        ],
        Duration::from_secs(120),
    );
    eprintln!("{text}");
    match status {
        None => panic!("scripts/soak did not finish within 120 s; killed it:\n{text}"),
        Some(s) => assert!(s.success(), "scripts/soak failed ({s}):\n{text}"),
    }
    // The figures file holds the samples the verdict was made from.
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path()).expect("soak figures")).expect("JSON");
    let samples = figures["samples"].as_array().expect("samples");
    assert!(samples.len() >= 8, "{} samples", samples.len());
    let last = samples.last().expect("a sample");
    assert!(last["restarts"].as_f64() >= Some(10.0), "{last}");
    assert_eq!(figures["failures"].as_array().map(Vec::len), Some(0));
}
