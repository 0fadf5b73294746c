//! The server's multiprocess directory on a small, full tmpfs: workers keep
//! serving, nothing dies of SIGBUS, the error is logged, and scrapes export it
//! as `muster_store_write_errors_total`.
//!
//! The server runs in a private mount namespace (unshare + a private `/` +
//! a 640 KiB tmpfs, set up between fork and exec), so the mount exists only
//! for the server's processes and vanishes with them: it never leaks, whatever
//! happens to the test. The test reads the directory through
//! `/proc/<supervisor>/root`. Mounting needs root (CI runs as root): without
//! it the test fails and says so.
//!
//! The demo's routes give many label sets (method x route template x status,
//! about 70 per worker, each a histogram of 13 buckets), enough to need more
//! space than the tmpfs has once the seven initial 64 KiB files are in it.

#[path = "../../../tests/private_tmpfs/mod.rs"]
mod private_tmpfs;
mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use support::{find_addr, group_members, logged_ready, request, sample, serial, wait_for};

const TMPFS_SIZE: &str = "size=640k,mode=0700";
const WRITE_ERROR_LOG: &str = "cannot write it to its file";

/// The server process tree, SIGKILLed as a group on drop.
struct Guard {
    child: Child,
    log: PathBuf,
}

impl Guard {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log_text());
        }
    }
}

/// Starts the demo server in its own mount namespace with a small tmpfs
/// mounted at `mnt`; its multiprocess directory is `mnt/multiproc`.
fn start(tmp: &Path, mnt: &Path, args: &[&str]) -> Guard {
    let log = tmp.join("server.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let dir = mnt.join("multiproc");
    let mut cmd = Command::new(support::binary());
    cmd.args(["-b", "127.0.0.1:0", "--multiproc-dir"])
        .arg(&dir)
        .args(args)
        .env("MUSTER_DEMO_DB", tmp.join("walks.sqlite3"))
        .env("RUST_LOG", "info")
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("WEB_CONCURRENCY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0);
    private_tmpfs::mount_private_tmpfs(&mut cmd, mnt, TMPFS_SIZE);
    let child = cmd.spawn().expect("spawn demo_server in a mount namespace");
    Guard { child, log }
}

/// Free bytes of the tmpfs as the server sees it.
fn free_bytes(server: &Guard, mnt: &Path) -> u64 {
    let inside = private_tmpfs::seen_by(server.pid(), mnt);
    let st = nix::sys::statvfs::statvfs(&inside).expect("statvfs of the tmpfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// Requests that make distinct (method, route, status) label sets.
fn label_set_requests() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "FOO",
    ];
    let paths = [
        "/slow/0",
        "/spin/0",
        "/",
        "/walks",
        "/walks/1",
        "/walks/1/complete",
        "/no/such/route",
    ];
    let mut v = Vec::new();
    for m in methods {
        for p in paths {
            v.push((m, p, None));
        }
    }
    v.extend([
        ("POST", "/walks", Some(r#"{"walker": "ann", "dog": "rex"}"#)),
        ("POST", "/walks", Some("{")),
        ("POST", "/walks", Some(r#"{"walker": "", "dog": "rex"}"#)),
        ("GET", "/walks/999999", None),
        ("GET", "/walks/x", None),
        ("POST", "/walks/1/complete", Some(r#"{"distance_m": 5}"#)),
        ("POST", "/walks/1/complete", Some(r#"{"distance_m": 6}"#)),
        (
            "POST",
            "/walks/999999/complete",
            Some(r#"{"distance_m": 5}"#),
        ),
        ("POST", "/walks/1/complete", Some(r#"{"distance_m": -1}"#)),
        ("POST", "/walks/1/complete", Some("{")),
    ]);
    v
}

/// App workers: children of the supervisor (no --metrics-bind here).
fn workers(server: &Guard) -> Vec<i32> {
    support::children_of(server.pid())
}

#[test]
fn full_tmpfs_workers_keep_serving_and_the_condition_is_exported() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a small tmpfs in a private mount namespace and needs root; \
         run the suite as root (scripts/test does in CI)"
    );
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut server = start(tmp.path(), &mnt, &["-w", "2", "--timeout", "10"]);

    let addr = wait_for("the listening address", Duration::from_secs(30), || {
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("server exited at start with {st}:\n{}", server.log_text());
        }
        find_addr(&server.log_text(), "supervisor: listening addr=")
    });
    let pids = wait_for("2 ready workers", Duration::from_secs(30), || {
        let w = workers(&server);
        (w.len() == 2 && logged_ready(&server.log_text(), &w)).then_some(w)
    });
    // The mount is the server's alone.
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "the tmpfs is visible outside the server's mount namespace"
    );
    let free_at_start = free_bytes(&server, &mnt);

    // Fill it: distinct label sets until a worker cannot place a new entry.
    let requests = label_set_requests();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut rounds = 0;
    let mut sent = 0u64;
    while !server.log_text().contains(WRITE_ERROR_LOG) {
        assert!(
            Instant::now() < deadline && rounds < 60,
            "no write error after {rounds} rounds of {} requests; {} bytes free of the tmpfs \
             ({free_at_start} at start)",
            requests.len(),
            free_bytes(&server, &mnt)
        );
        for (method, path, body) in &requests {
            let r = request(addr, method, path, *body, &[]);
            assert!(r.is_ok(), "{method} {path}: {r:?}");
            sent += 1;
        }
        rounds += 1;
    }
    let free_when_full = free_bytes(&server, &mnt);
    // A clear error: which file, and why.
    let first = server
        .log_text()
        .lines()
        .find(|l| l.contains(WRITE_ERROR_LOG))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        first.contains("ERROR")
            && first.contains("No space left on device")
            // A Python-format file or muster's own (native buckets).
            && (first.contains(".db") || first.contains(".muster")),
        "the write error does not say what and why: {first}"
    );

    // Workers keep serving, also requests with label sets new to them.
    for i in 0..200 {
        let (method, path, body) = requests[i % requests.len()];
        let (status, _) = request(addr, method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path} after the tmpfs filled: {e}"));
        assert!(
            status < 500,
            "{method} {path} answered {status} on a full tmpfs"
        );
        let (status, body) = request(addr, "GET", "/slow/0", None, &[]).expect("GET /slow/0");
        assert_eq!(status, 200, "GET /slow/0 on a full tmpfs: {body}");
        sent += 2;
    }

    // Nothing died: the same two workers, no exit of any kind, no SIGBUS.
    assert_eq!(
        workers(&server),
        pids,
        "workers were replaced while serving"
    );
    let log = server.log_text();
    assert!(
        !log.contains("worker exited"),
        "a worker exited on a full tmpfs:\n{}",
        log.lines()
            .filter(|l| l.contains("worker exited"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!log.contains("panicked"), "a panic on a full tmpfs");

    // Scrapes still work and export the condition.
    let (status, text) = request(addr, "GET", "/metrics", None, &[]).expect("GET /metrics");
    assert_eq!(status, 200, "/metrics on a full tmpfs: {text}");
    assert_eq!(
        sample(
            &text,
            "muster_worker_restarts_total",
            &[("reason", "crash")]
        ),
        0.0
    );
    let counted = sample(&text, "http_requests_total", &[]);
    assert!(
        counted > 0.0 && counted <= sent as f64,
        "http_requests_total = {counted} after {sent} requests"
    );
    assert!(
        support::has_sample(&text, "muster_store_write_errors_total"),
        "the full tmpfs is logged ({WRITE_ERROR_LOG:?}) but scrapes do not export \
         muster_store_write_errors_total; free {free_when_full} of {free_at_start} bytes"
    );
    // Workers publish their count with the heartbeat (every second or so).
    let errors = wait_for(
        "muster_store_write_errors_total >= 1",
        Duration::from_secs(15),
        || {
            let (status, text) = request(addr, "GET", "/metrics", None, &[]).ok()?;
            assert_eq!(status, 200, "/metrics on a full tmpfs: {text}");
            let v = sample(&text, "muster_store_write_errors_total", &[]);
            (v >= 1.0).then_some(v)
        },
    );
    eprintln!(
        "tmpfs full after {sent} requests ({free_when_full} of {free_at_start} bytes free); \
         muster_store_write_errors_total = {errors}"
    );

    // New processes on the full tmpfs: one more worker (its files cannot be
    // created) and a replacement for a killed one (it adopts its slot's
    // files) both boot and serve.
    nix::sys::signal::kill(Pid::from_raw(server.pid()), Signal::SIGTTIN).expect("SIGTTIN");
    nix::sys::signal::kill(Pid::from_raw(pids[0]), Signal::SIGKILL).expect("SIGKILL");
    let now = wait_for("3 ready workers", Duration::from_secs(30), || {
        let w = workers(&server);
        (w.len() == 3 && !w.contains(&pids[0]) && logged_ready(&server.log_text(), &w)).then_some(w)
    });
    for i in 0..150 {
        let (method, path, body) = requests[(i * 7) % requests.len()];
        let (status, _) = request(addr, method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path} with new workers: {e}"));
        assert!(status < 500, "{method} {path} answered {status}");
        let (status, _) = request(addr, "GET", "/slow/0", None, &[]).expect("GET /slow/0");
        assert_eq!(status, 200);
    }
    let exits: Vec<String> = server
        .log_text()
        .lines()
        .filter(|l| l.contains("worker exited"))
        .map(str::to_string)
        .collect();
    assert_eq!(exits.len(), 1, "only the killed worker exits: {exits:#?}");
    assert!(
        exits[0].contains(&format!("pid={} ", pids[0])),
        "{exits:#?}"
    );
    assert_eq!(workers(&server), now, "a worker died on the full tmpfs");
    let (status, text) = request(addr, "GET", "/metrics", None, &[]).expect("GET /metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    let inside = private_tmpfs::seen_by(server.pid(), &mnt).join("multiproc");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&inside)
        .expect("the directory, seen from inside")
        .flatten()
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    files.sort();
    eprintln!(
        "files: {files:?}\nscrape errors: {}",
        sample(&text, "muster_scrape_errors_total", &[])
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(mnt.to_str().unwrap()),
        "the tmpfs is mounted in the test's namespace too"
    );
    assert_eq!(
        sample(
            &text,
            "muster_worker_restarts_total",
            &[("reason", "crash")]
        ),
        1.0,
        "restarts: only the worker the test killed"
    );

    // A graceful stop still works; nothing is left behind.
    nix::sys::signal::kill(Pid::from_raw(server.pid()), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_for("the supervisor to exit", Duration::from_secs(40), || {
        server.child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "exit after SIGTERM: {status}");
    wait_for(
        "the process group to empty",
        Duration::from_secs(10),
        || group_members(server.pid()).is_empty().then_some(()),
    );
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "the mount leaked"
    );

    // The server must not leave empty metric files behind. A file that could
    // not get its first 64 KiB on the full tmpfs would be 0 bytes: muster's
    // scrapes would count it as a bad file on every scrape, and Python's
    // MultiProcessCollector, reading the same directory, would fail the whole
    // scrape on it. The writer creates a file aside and links it into place
    // only once its space is reserved, so none appears.
    let empty: Vec<&String> = files
        .iter()
        .filter(|(_, len)| *len == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(
        empty.is_empty(),
        "the server left empty metric files on the full tmpfs: {empty:?} (all: {files:?})"
    );
}
