//! python/muster_worker.py with real Python processes and prometheus_client: files
//! named by the slot in MUSTER_WORKER_ID, continued by a replacement worker, never
//! shared by two live processes; Python's MultiProcessCollector and muster agree on
//! the directory; the sd_notify helpers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_matches_python, output_text, python, root, run_with_input, Children};

/// A Python command with `python/` on the path, writing into `dir`.
fn py(dir: &Path, slot: Option<&str>, code: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(code)
        .env("PYTHONPATH", root().join("python"))
        .env("PROMETHEUS_MULTIPROC_DIR", dir)
        .env_remove("MUSTER_WORKER_ID")
        .env_remove("NOTIFY_SOCKET");
    if let Some(slot) = slot {
        cmd.env("MUSTER_WORKER_ID", slot);
    }
    cmd
}

/// Runs `cmd`, which must succeed; returns stdout and stderr.
fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> (String, String) {
    let cmd = cmd.borrow_mut();
    let out = run_with_input(cmd, b"", Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        output_text(&out)
    );
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A worker: imports the module, counts `n` requests and observes latencies,
/// sets a live gauge, and prints its file id.
const WORKER: &str = r#"
import sys, muster_worker
from prometheus_client import Counter, Gauge, Histogram
n = int(sys.argv[1])
Counter("served", "Requests served.", ["route"]).labels("/").inc(n)
h = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
for i in range(n):
    h.observe(0.05 * i)
Gauge("busy", "Busy.", multiprocess_mode="livesum").set(n)
Gauge("last", "Last.").set(n)
print(muster_worker.file_id())
"#;

fn worker(dir: &Path, slot: &str, n: u32) -> String {
    run(py(dir, Some(slot), WORKER).arg(n.to_string())).0
}

fn db_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".db"))
        .collect();
    names.sort();
    names
}

fn value(dir: &Path, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    muster_collect::Collector::new(dir)
        .collect()
        .unwrap()
        .value(name, labels)
}

#[test]
fn a_replacement_worker_continues_its_slots_counters_and_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(worker(d, "0", 5), "w0");
    assert_eq!(worker(d, "0", 7), "w0");
    assert_eq!(worker(d, "1", 2), "w1");
    assert_eq!(
        db_files(d),
        [
            "counter_w0.db",
            "counter_w1.db",
            "gauge_all_w0.db",
            "gauge_all_w1.db",
            "gauge_livesum_w0.db",
            "gauge_livesum_w1.db",
            "histogram_w0.db",
            "histogram_w1.db",
        ]
    );
    assert_eq!(value(d, "served_total", &[("route", "/")]), Some(14.0));
    assert_eq!(value(d, "latency_seconds_count", &[]), Some(14.0));
    // The dead holder's live gauge went when its slot was claimed again.
    assert_eq!(value(d, "busy", &[]), Some(7.0 + 2.0));
    // `all` gauges are labelled by slot: one series per slot.
    assert_eq!(value(d, "last", &[("pid", "w0")]), Some(7.0));
    assert_matches_python(d, &["text", "openmetrics"], "slot-named Python files");
}

#[test]
fn a_slot_is_never_shared_by_two_live_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut children = Children::default();
    // The first holder stays alive until its stdin closes.
    let holder = children.push(
        py(
            d,
            Some("3"),
            &format!("{WORKER}\nimport sys; sys.stdout.flush(); sys.stdin.read()"),
        )
        .arg("4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "w3");
    // Same slot by mistake while the holder lives: pid-named files, a warning.
    let (id, stderr) = run(py(d, Some("3"), WORKER).arg("6"));
    assert!(id.parse::<u32>().is_ok(), "second process got id {id}");
    assert!(
        stderr.contains("slot w3 is held by another live process"),
        "{stderr}"
    );
    assert!(d.join(format!("counter_{id}.db")).exists());
    assert_eq!(value(d, "served_total", &[("route", "/")]), Some(10.0));
    // A forked child of the holder does not write its parent's files either.
    let (ids, _) = run(py(
        d,
        Some("4"),
        "import os, muster_worker\nfrom prometheus_client import Counter\n\
         c = Counter('forked', 'F.'); c.inc()\npid = os.fork()\n\
         if pid == 0:\n    c.inc(10); print(muster_worker.file_id(), flush=True); os._exit(0)\n\
         os.waitpid(pid, 0); print(muster_worker.file_id())",
    ));
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].parse::<u32>().is_ok(), "the child took {}", ids[0]);
    assert_eq!(ids[1], "w4");
    assert_eq!(value(d, "forked_total", &[]), Some(11.0));
    drop(children);
}

#[test]
fn the_slot_goes_to_the_process_that_creates_metrics_not_the_one_that_imports() {
    // A gunicorn master imports its config (and this module), then forks the
    // worker that loads the app and creates the metrics.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ids, _) = run(py(
        d,
        Some("0"),
        "import os, muster_worker\npid = os.fork()\n\
         if pid == 0:\n    from prometheus_client import Counter\n    Counter('app', 'A.').inc(3)\n\
         \x20   print(muster_worker.file_id(), flush=True); os._exit(0)\n\
         os.waitpid(pid, 0)",
    ));
    assert_eq!(ids, "w0");
    assert_eq!(db_files(d), ["counter_w0.db"]);
}

#[test]
fn an_unusable_worker_id_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["a_b", "w 1", "é"] {
        let out = run_with_input(
            &mut py(dir.path(), Some(bad), "import muster_worker"),
            b"",
            Duration::from_secs(30),
        );
        let text = output_text(&out);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(
            text.contains("ValueError") && text.contains("MUSTER_WORKER_ID"),
            "{bad:?}: {text}"
        );
    }
    assert!(db_files(dir.path()).is_empty());
}

#[test]
fn notify_helpers_send_sd_notify_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (printed, _) = run(py(
        dir.path(),
        None,
        "import muster_worker as m\nprint(m.mark_ready(), m.watchdog(), m.stopping(), m.watchdog_interval())",
    )
    .env("NOTIFY_SOCKET", &path)
    .env("WATCHDOG_USEC", "3000000"));
    assert_eq!(printed, "True True True 1.5");
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = socket.recv(&mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, ["READY=1", "WATCHDOG=1", "STOPPING=1"]);
    // Without NOTIFY_SOCKET: nothing to tell, no error.
    let (printed, _) = run(py(
        dir.path(),
        None,
        "import muster_worker as m\nprint(m.mark_ready(), m.watchdog_interval())",
    ));
    assert_eq!(printed, "False None");
}
