//! The acceptance for `muster run`, with the real Python stacks installed by
//! `scripts/test` (tests/python/apps): a Flask app under `gunicorn --bind fd://3 -w 1`
//! and a FastAPI app under `uvicorn --fd 3`, each as `muster run -w 3`, under load,
//! with worker SIGKILLs, lifetime recycling and a HUP. Checked: the merged request
//! counter equals the requests served, no counter ever decreases across scrapes of
//! the supervisor's `/metrics` taken every 100 ms, the directory stays bounded (slot
//! files, archives, and the files of live processes only), and a real Prometheus
//! scraping it sees `resets() == 0`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, http_get, muster, python, root, wait_until, Proc};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// One stack under test.
struct Stack {
    name: &'static str,
    /// The worker command after `--` (its program found next to MUSTER_PYTHON).
    command: &'static [&'static str],
    /// Extra `muster run` flags.
    flags: &'static [&'static str],
    /// Process replacements to reach (muster's and, for gunicorn, the master's own).
    replacements: usize,
    /// How long the chaos may take to reach them.
    chaos_limit: Duration,
    /// Worker SIGKILLs sent by the test.
    kills: usize,
}

/// The venv's console script `name` (gunicorn, uvicorn), next to MUSTER_PYTHON.
fn venv_bin(name: &str) -> String {
    let py = python();
    let bin = py.parent().expect("python's directory").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test (it installs tests/python/requirements.txt)",
        bin.display()
    );
    bin.display().to_string()
}

/// The samples of an exposition: `name{labels}` to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Whether a sample only ever grows (counters, histogram counts, sums, buckets).
fn monotonic(key: &str) -> bool {
    let name = key.split('{').next().unwrap_or(key);
    (name.starts_with("app_") || name.starts_with("muster_worker_restarts"))
        && (name.ends_with("_total")
            || name.ends_with("_count")
            || name.ends_with("_sum")
            || name.ends_with("_bucket"))
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// The directory's metric files that break the bound: anything but slot files
/// (`w0`..`w5` for 3 workers: a reload or recycle uses a second slot per worker),
/// archives, the supervisor's and metrics process's own, and files of live pids.
fn unbounded_files(dir: &Path) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".db") else {
            continue;
        };
        total += 1;
        let id = stem.rsplit('_').next().unwrap_or("");
        let ok = match id {
            "archive" | "supervisor" | "metrics" => true,
            _ if id.starts_with('w') => id[1..].parse::<usize>().is_ok_and(|k| k < 6),
            _ => id.parse::<i32>().is_ok_and(pid_alive),
        };
        if !ok {
            bad.push(name);
        }
    }
    bad.sort();
    (bad, total)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The single value of a Prometheus instant query, if it has exactly one.
fn prom_scalar(prom: SocketAddr, q: &str) -> Option<f64> {
    let a = http_get(prom, &format!("/api/v1/query?query={}", percent_encode(q)));
    assert_eq!(a.status, 200, "query {q}: {}", a.text());
    let v: Value = serde_json::from_slice(&a.body).expect("query JSON");
    let result = v["data"]["result"].as_array()?;
    (result.len() == 1)
        .then(|| result[0]["value"][1].as_str()?.parse().ok())
        .flatten()
}

fn count(log: &str, what: &str) -> usize {
    // Occurrences, not lines: two processes writing at once can share a line.
    log.matches(what).count()
}

/// `muster run -b 127.0.0.1:0 --log-level info --multiproc-dir DIR FLAGS --
/// COMMAND`, the command's program found in the venv, run in the apps'
/// directory with muster's Python helpers importable.
fn muster_run(dir: &Path, flags: &[&str], command: &[&str]) -> std::process::Command {
    let mut cmd = muster();
    cmd.arg("run")
        .args([
            "-b",
            "127.0.0.1:0",
            "--log-level",
            "info",
            "--multiproc-dir",
        ])
        .arg(dir)
        .args(flags)
        .arg("--")
        .arg(venv_bin(command[0]))
        .args(&command[1..])
        .current_dir(root().join("tests/python/apps"))
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                root().join("python").display(),
                root().join("tests/python/apps").display()
            ),
        );
    cmd
}

fn run_stack(stack: &Stack) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dir = t.join("metrics");
    let mut cmd = muster_run(
        &dir,
        &[
            &[
                "-w",
                "3",
                "--metrics-bind",
                "127.0.0.1:0",
                "--graceful-timeout",
                "5",
            ],
            stack.flags,
        ]
        .concat(),
        stack.command,
    );
    let mut sup = Proc::start(stack.name, &mut cmd, &t.join("muster.log"));
    let addr = sup.wait_addr("listening addr=", LIMIT);
    let metrics = sup.wait_addr("metrics listening addr=", LIMIT);
    wait_until("3 workers ready", LIMIT, || {
        sup.assert_running();
        (count(&sup.log_text(), "worker ready worker=w") >= 3).then_some(())
    });

    // Load: clients asking all along; scrapes every 100 ms, checking that nothing
    // that only grows ever goes down.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut threads = Vec::new();
    for c in 0..4u64 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i += 4;
                match http(addr, "GET", &format!("/items/{i}"), &[], b"") {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let decreases = Arc::new(Mutex::new(Vec::<String>::new()));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (stop, decreases, scrapes) = (stop.clone(), decreases.clone(), scrapes.clone());
        std::thread::spawn(move || {
            let mut last: BTreeMap<String, f64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(a) = http(metrics, "GET", "/metrics", &[], b"") {
                    assert_eq!(a.status, 200, "/metrics: {}", a.text());
                    for (key, value) in samples(&a.text()) {
                        if !monotonic(&key) {
                            continue;
                        }
                        if let Some(before) = last.get(&key) {
                            if value < *before {
                                decreases
                                    .lock()
                                    .expect("lock")
                                    .push(format!("{key}: {before} -> {value}"));
                            }
                        }
                        last.insert(key, value);
                    }
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Meanwhile, a real Prometheus scraping the supervisor's /metrics every second.
    let prom_config = t.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .expect("prometheus config");
    let (_prom_proc, prom) = common::start_prometheus(t, &prom_config);

    // Chaos until enough processes were replaced: SIGKILLs, one HUP half-way, and
    // the lifetime recycling of the flags.
    let sup_pid = sup.pid();
    let replacements = |log: &str| {
        count(log, "worker exited worker=w")
            + count(log, "Booting worker with pid").saturating_sub(3)
    };
    let deadline = Instant::now() + stack.chaos_limit;
    let (mut kills, mut hup) = (0, false);
    let recycled = |log: &str| count(log, "max worker lifetime reached") > 0;
    while replacements(&sup.log_text()) < stack.replacements
        || kills < stack.kills
        || !hup
        || !recycled(&sup.log_text())
    {
        sup.assert_running();
        assert!(
            Instant::now() < deadline,
            "only {} of {} replacements ({kills} kills, hup {hup}, workers {:?}) in time:\n{}",
            replacements(&sup.log_text()),
            stack.replacements,
            common::command_children(sup_pid, stack.command[0]),
            sup.log_text()
        );
        let live = common::command_children(sup_pid, stack.command[0]);
        if kills < stack.kills && live.len() >= 3 {
            // SAFETY: kill(2) on a worker of this test's supervisor.
            unsafe { libc::kill(live[kills % live.len()], libc::SIGKILL) };
            kills += 1;
        } else if !hup && kills >= stack.kills / 2 {
            sup.signal(libc::SIGHUP);
            hup = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    scraper.join().expect("scraper");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        ok >= 10,
        "the clients were served: {ok} ok, {failed} failed"
    );
    assert!(scrapes.load(Ordering::Relaxed) > 50, "scraped every 100 ms");
    let decreases = decreases.lock().expect("lock").clone();
    assert!(
        decreases.is_empty(),
        "counters went down across scrapes: {decreases:?}"
    );

    // Every request served is counted once: those answered, and at most those whose
    // worker was killed after counting but before answering.
    let served = |text: &str| -> f64 {
        samples(text)
            .iter()
            .filter(|(k, _)| k.starts_with("app_requests_total{"))
            .map(|(_, v)| v)
            .sum()
    };
    let total = served(&http_get(metrics, "/metrics").text());
    assert!(
        total >= ok as f64 && total <= (ok + failed) as f64,
        "app_requests_total {total}: {ok} answered, {failed} failed"
    );

    // Bounded: once the dead are compacted, only slot files, archives and the files
    // of live processes are left.
    let (bad, files) = wait_until(
        "dead workers' files compacted",
        Duration::from_secs(20),
        || {
            let (bad, total) = unbounded_files(&dir);
            bad.is_empty().then_some((bad, total))
        },
    );
    assert!(bad.is_empty());
    assert!(files <= 6 * 3 + 3 * 3 + 8, "{files} files");
    // The compaction kept every value: the total did not move.
    assert_eq!(served(&http_get(metrics, "/metrics").text()), total);

    // Prometheus saw the final total and never a reset.
    wait_until(
        "Prometheus sees the final total",
        Duration::from_secs(20),
        || (prom_scalar(prom, "sum(app_requests_total)") == Some(total)).then_some(()),
    );
    let scraped = prom_scalar(prom, "sum(count_over_time(app_requests_total[10m]))")
        .expect("samples in Prometheus");
    assert!(scraped >= 5.0, "Prometheus scraped the run: {scraped}");
    assert_eq!(
        prom_scalar(prom, "sum(resets(app_requests_total[10m]))"),
        Some(0.0)
    );
    assert_eq!(
        prom_scalar(prom, "sum(resets(app_request_duration_seconds_count[10m]))"),
        Some(0.0)
    );

    sup.stop_cleanly(LIMIT);
}

#[test]
fn flask_under_gunicorn() {
    run_stack(&Stack {
        name: "gunicorn",
        // --preload and --max-requests: gunicorn's master replaces its own worker
        // after every request (pid-named files, compacted by muster).
        command: &[
            "gunicorn",
            "--bind",
            "fd://3",
            "-w",
            "1",
            "--no-control-socket",
            "--preload",
            "--max-requests",
            "1",
            "flask_app:app",
        ],
        // Readiness `auto` (the default): under continuous load a worker that
        // serves one request and exits is seldom caught waiting or holding a
        // connection, so what makes it ready is its master's READY=1 followed by
        // the exit of a served inner worker (docs/python.md).
        flags: &["--max-worker-lifetime", "5"],
        // The 200: gunicorn 27 replaces a worker in about 350 ms on a
        // loaded 2-core machine (measured without muster too), three masters at
        // once; each muster replacement boots Flask again.
        replacements: 200,
        kills: 4,
        chaos_limit: Duration::from_secs(150),
    });
}

#[test]
fn fastapi_under_uvicorn() {
    run_stack(&Stack {
        name: "uvicorn",
        command: &["uvicorn", "--fd", "3", "fastapi_app:app"],
        flags: &["--max-worker-lifetime", "2"],
        // Each replacement is a new uvicorn process that imports FastAPI again
        // (about 1.3 s of CPU): 30 is what two cores do in well under a minute.
        // The files stay per slot (python/muster_worker.py) however many there are.
        replacements: 30,
        kills: 3,
        chaos_limit: Duration::from_secs(120),
    });
}

/// The likeliest mistake of a Python team: `uvicorn app:app` without
/// `--fd 3`. uvicorn then listens on a port of its own, and muster's socket
/// is never served; after `--timeout` the log names uvicorn's own address
/// and the fix.
#[test]
fn uvicorn_without_fd_3_is_reported_with_its_own_port() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    // A port free a moment ago, for uvicorn to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let mut cmd = muster_run(
        &t.join("metrics"),
        // Long enough for uvicorn to import FastAPI and listen on a busy
        // machine before muster looks at what it listens on.
        &["-w", "1", "--timeout", "10"],
        &[
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "fastapi_app:app",
        ],
    );
    let mut sup = Proc::start("uvicorn-own-port", &mut cmd, &t.join("muster.log"));
    let log = wait_until("the not-ready warning", LIMIT, || {
        sup.assert_running();
        let log = sup.log_text();
        log.contains("worker not ready").then_some(log)
    });
    assert!(
        log.contains(&format!("listens_on=127.0.0.1:{port}")) && log.contains("uvicorn --fd 3"),
        "{log}"
    );
    sup.stop_cleanly(LIMIT);
}
