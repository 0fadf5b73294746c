//! One owner per multiprocess directory, checked against the real binary.
//!
//! An operator starts a second `muster demo` on a directory a server already
//! uses (an overlapping restart, a typo), or on a directory a Python
//! application writes: the newcomer is refused with exit code 2 and a message
//! naming the holder, and nothing in the directory is touched. A directory
//! whose writers are dead is cleared and used.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BOOT: Duration = Duration::from_secs(30);
const REFUSED_WITHIN: Duration = Duration::from_secs(30);

/// The samples of a scrape, parsed by prometheus_client's parser: canonical
/// `name{labels}` to value.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let answer = http_get(addr, "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.text());
    python_parse("text", &answer.body, &[])
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("canonical sample");
            let value = v[2].as_str().and_then(|s| s.parse().ok()).expect("a value");
            (format!("{}{}", v[0], v[1]), value)
        })
        .collect()
}

/// Counters, histogram buckets, counts and sums: what must never decrease.
fn monotonic(samples: &BTreeMap<String, f64>) -> BTreeMap<&str, f64> {
    samples
        .iter()
        .filter(|(k, _)| {
            let name = k.split('{').next().unwrap_or("");
            ["_total\"", "_bucket\"", "_count\"", "_sum\""]
                .iter()
                .any(|s| name.ends_with(s))
        })
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

fn assert_nothing_decreased(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    let (before, after) = (monotonic(before), monotonic(after));
    assert!(before.len() > 5, "too few samples to compare: {before:?}");
    for (series, old) in &before {
        let new = after.get(series).copied();
        assert!(
            new.is_some_and(|n| n >= *old),
            "{series} went from {old} to {new:?}"
        );
    }
}

fn walks_started(samples: &BTreeMap<String, f64>) -> f64 {
    samples
        .iter()
        .find(|(k, _)| k.starts_with("\"walks_started_total\""))
        .map_or(0.0, |(_, v)| *v)
}

fn start_walks(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let a = http(
            addr,
            "POST",
            "/walks",
            &[("Content-Type", "application/json")],
            br#"{"walker": "ann", "dog": "rex"}"#,
        )
        .expect("POST /walks");
        assert_eq!(a.status, 201, "{}", a.text());
    }
}

/// Names and inodes of the `*.db` files in `dir`.
fn db_files(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .expect("list the directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .map(|e| {
            let ino = e.metadata().expect("stat").ino();
            (e.file_name().to_string_lossy().into_owned(), ino)
        })
        .collect()
}

/// `muster demo` with `bind` on `dir`; its log in `log`.
fn demo(tmp: &Path, name: &str, bind: &str, dir: &Path) -> Proc {
    let mut cmd = muster();
    cmd.env("MUSTER_LOG", "info")
        .env("MUSTER_DEMO_DB", tmp.join(format!("{name}.sqlite3")))
        .args(["demo", "-w", "2", "-b", bind, "--multiproc-dir"])
        .arg(dir);
    Proc::start(name, &mut cmd, &tmp.join(format!("{name}.log")))
}

/// Starts a demo that must be refused: its exit code is 2; returns its log.
fn refused_demo(tmp: &Path, name: &str, bind: &str, dir: &Path) -> String {
    let mut p = demo(tmp, name, bind, dir);
    let status = p
        .wait_exit(REFUSED_WITHIN)
        .unwrap_or_else(|| panic!("{name} was not refused:\n{}", p.log_text()));
    assert_eq!(status.code(), Some(2), "{name}:\n{}", p.log_text());
    p.log_text()
}

#[test]
fn a_second_server_on_the_same_directory_is_refused_and_the_first_keeps_its_counters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dir = t.join("mp");
    let mut first = demo(t, "first", "127.0.0.1:0", &dir);
    let addr = first.wait_addr("listening addr=", BOOT);
    first.wait_ready(addr, BOOT);
    start_walks(addr, 5);
    let before = scrape(addr);
    assert_eq!(walks_started(&before), 5.0);
    let files = db_files(&dir);

    // The same address: it cannot bind, and must not have touched the directory.
    let log = refused_demo(t, "same-port", &addr.to_string(), &dir);
    assert!(log.contains("cannot listen"), "{log}");
    let after = scrape(addr);
    assert_nothing_decreased(&before, &after);

    // Another address: it binds, then finds the directory held by the first.
    let log = refused_demo(t, "other-port", "127.0.0.1:0", &dir);
    assert!(
        log.contains("is in use by another muster server")
            && log.contains(&format!("pid {}", first.pid())),
        "the message names the holder: {log}"
    );
    let after = scrape(addr);
    assert_nothing_decreased(&before, &after);

    // The first server's files are still the ones in the directory, and its
    // workers still count into them.
    let now = db_files(&dir);
    for (name, ino) in &files {
        assert_eq!(now.get(name), Some(ino), "{name} was removed or replaced");
    }
    start_walks(addr, 3);
    assert_eq!(walks_started(&scrape(addr)), 8.0);

    // Readers take no lock: a one-shot scrape of the held directory works.
    let text = String::from_utf8(muster_scrape(&dir, "text")).expect("UTF-8");
    assert!(text.contains("walks_started_total 8.0"), "{text}");
    first.assert_running();
}

/// A Python process writing metrics into `dir` (prometheus_client in
/// multiprocess mode), alive until its stdin closes; waits until it wrote.
fn python_writer(dir: &Path) -> std::process::Child {
    const APP: &str = "import sys\n\
        from prometheus_client import Counter\n\
        Counter('py_jobs', 'jobs done').inc()\n\
        print('ready', flush=True)\n\
        sys.stdin.read()\n";
    std::fs::create_dir_all(dir).expect("create the directory");
    let mut child = Command::new(python())
        .args(["-c", APP])
        .env("PROMETHEUS_MULTIPROC_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read python's output");
    assert_eq!(line.trim(), "ready", "the Python writer did not start");
    child
}

fn python_file(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("counter_{pid}.db"))
}

#[test]
fn a_directory_with_a_live_python_writer_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dir = t.join("mp");
    let mut children = Children::default();
    let writer = children.push(python_writer(&dir));
    let pid = writer.id();
    let file = python_file(&dir, pid);
    let ino = std::fs::metadata(&file).expect("python's file").ino();

    let log = refused_demo(t, "over-python", "127.0.0.1:0", &dir);
    assert!(
        log.contains(&format!("counter_{pid}.db")) && log.contains(&format!("pid {pid}")),
        "the message names Python's file and process: {log}"
    );
    assert_eq!(
        std::fs::metadata(&file).map(|m| m.ino()).ok(),
        Some(ino),
        "Python's file was touched"
    );
}

#[test]
fn a_directory_whose_python_writer_is_dead_is_cleared_and_used() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dir = t.join("mp");
    let mut writer = python_writer(&dir);
    let file = python_file(&dir, writer.id());
    drop(writer.stdin.take());
    assert!(writer.wait().expect("python exits").success());
    assert!(file.exists());

    let mut server = demo(t, "after-python", "127.0.0.1:0", &dir);
    let addr = server.wait_addr("listening addr=", BOOT);
    server.wait_ready(addr, BOOT);
    assert!(!file.exists(), "the dead writer's file was not cleared");
    start_walks(addr, 2);
    let samples = scrape(addr);
    assert_eq!(walks_started(&samples), 2.0);
    assert!(
        !samples.keys().any(|k| k.contains("py_jobs")),
        "the dead writer's values are still served"
    );
}
