//! End-to-end tests: the `demo_server` example runs as a real supervisor with forked
//! workers; the tests send real requests and signals and read `/metrics`. Every wait
//! has a deadline; every process is killed (process group) when a test ends.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

const BOOT: Duration = Duration::from_secs(20);

#[test]
fn requests_over_four_workers_are_counted_exactly() {
    let _g = serial();
    let server = Server::start(&["-w", "4"]);
    server.wait_workers(4, BOOT);
    for _ in 0..400 {
        let (status, _) = server.get("/");
        assert_eq!(status, 200);
    }
    // A walk started on one worker can be completed on another (shared SQLite).
    let (status, body) = server.post("/walks", r#"{"walker":"ann","dog":"rex"}"#);
    assert_eq!(status, 201, "{body}");
    let id: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = id["id"].as_i64().expect("id");
    let (status, body) = server.post(&format!("/walks/{id}/complete"), r#"{"distance_m": 420}"#);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.post("/walks", r#"{"walker":"","dog":"rex"}"#);
    assert_eq!(status, 422);
    let (status, _) = server.post(&format!("/walks/{id}/complete"), r#"{"distance_m": 5}"#);
    assert_eq!(status, 409);
    let (status, _) = server.get("/no/such/path/123");
    assert_eq!(status, 404);

    let m = server.metrics();
    assert_eq!(
        sample(
            &m,
            "http_requests_total",
            &[("route", "/"), ("method", "GET"), ("status", "200")]
        ),
        400.0,
        "{m}"
    );
    assert_eq!(sample(&m, "walks_started_total", &[]), 1.0, "{m}");
    assert_eq!(sample(&m, "walks_completed_total", &[]), 1.0, "{m}");
    assert_eq!(sample(&m, "invalid_walks_total", &[]), 2.0, "{m}");
    assert_eq!(
        sample(&m, "walk_distance_meters_bucket", &[("le", "400.0")]),
        0.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "walk_distance_meters_bucket", &[("le", "800.0")]),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "walk_distance_meters_sum", &[]), 420.0, "{m}");
    // Route templates, never raw paths.
    assert_eq!(
        sample(
            &m,
            "http_requests_total",
            &[("route", "/walks/{id}/complete")]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "unmatched")]),
        1.0,
        "{m}"
    );
    assert!(
        !m.contains("/no/such/path"),
        "raw path leaked into labels:\n{m}"
    );
    assert!(
        !m.contains(&format!("/walks/{id}\"")),
        "raw path leaked:\n{m}"
    );
    assert_eq!(sample(&m, "muster_workers", &[]), 4.0, "{m}");
    assert!(has_sample(&m, "muster_worker_resident_memory_bytes"), "{m}");
    // The load really was spread: several workers wrote counters.
    let counter_files = server
        .files()
        .into_iter()
        .filter(|f| f.starts_with("counter_w"))
        .count();
    assert!(counter_files >= 2, "files: {:?}", server.files());
}

#[test]
fn killed_worker_is_replaced_and_no_counter_decreases() {
    let _g = serial();
    let server = Server::start(&["-w", "2"]);
    let before = server.wait_workers(2, BOOT);
    for _ in 0..100 {
        assert_eq!(server.get("/").0, 200);
    }
    let total = |m: &str| sample(m, "http_requests_total", &[("route", "/")]);
    assert_eq!(total(&server.metrics()), 100.0);
    let victim = before[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill worker");
    let after = wait_for("a replacement worker", BOOT, || {
        let w = server.workers();
        (w.len() == 2 && !w.contains(&victim)).then_some(w)
    });
    server.wait_workers(2, BOOT);
    // Scrape repeatedly while and after the supervisor cleans up: never below 100.
    for _ in 0..20 {
        let m = server.metrics();
        assert_eq!(total(&m), 100.0, "{m}");
    }
    for _ in 0..100 {
        assert_eq!(server.get("/").0, 200);
    }
    let m = server.metrics();
    assert_eq!(total(&m), 200.0, "{m}");
    assert_eq!(
        sample(&m, "muster_worker_restarts_total", &[("reason", "crash")]),
        1.0,
        "{m}"
    );
    // The other worker was left alone.
    assert!(
        after.contains(&before[1]),
        "workers before {before:?}, after {after:?}"
    );
    // Replacement adopted the slot: still at most two workers' files.
    let ids = server.worker_file_ids();
    assert_eq!(ids.len(), 2, "files: {:?}", server.files());
}

#[test]
fn hung_worker_is_killed_after_timeout() {
    let _g = serial();
    let server = Server::start(&["-w", "2", "--timeout", "2"]);
    let before = server.wait_workers(2, BOOT);
    let victim = before[1];
    kill(Pid::from_raw(victim), Signal::SIGSTOP).expect("stop worker");
    wait_for(
        "the hung worker to be killed",
        Duration::from_secs(10),
        || (!alive(victim)).then_some(()),
    );
    let after = server.wait_workers(2, BOOT);
    assert!(!after.contains(&victim));
    let log = server.log_text();
    assert!(log.contains("silent for longer than the timeout"), "{log}");
    assert_restarts(&server, "timeout", 1.0);
}

#[test]
fn failing_boot_stops_the_server_with_a_message() {
    let _g = serial();
    let mut server = Server::start_with(Options {
        args: &["-w", "2", "--fail-boot"],
        wait_listening: false,
        ..Options::default()
    });
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("failing on purpose"), "{log}");
    assert!(log.contains("died before becoming ready"), "{log}");
    assert!(group_members(server.pid().as_raw()).is_empty());
}

#[test]
fn sigterm_finishes_in_flight_requests_exits_zero_and_leaves_nothing() {
    let _g = serial();
    let pidfile = std::env::temp_dir().join(format!("muster-e2e-{}.pid", std::process::id()));
    let pidarg = pidfile.to_str().expect("utf-8 path").to_string();
    let mut server = Server::start(&["-w", "2", "--graceful-timeout", "10", "--pid", &pidarg]);
    let workers = server.wait_workers(2, BOOT);
    let written = std::fs::read_to_string(&pidfile).expect("pid file");
    assert_eq!(written.trim(), server.pid().to_string());
    let addr = server.addr;
    let clients: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/slow/700", None, &[])))
        .collect();
    wait_for("6 requests in progress", Duration::from_secs(10), || {
        let m = server.metrics();
        (sample(&m, "http_requests_in_progress", &[("route", "/slow/{ms}")]) >= 6.0).then_some(())
    });
    server.signal(Signal::SIGTERM);
    for c in clients {
        let r = c.join().expect("client thread");
        let (status, body) = r.expect("in-flight request must complete");
        assert_eq!(status, 200, "{body}");
    }
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    for w in workers {
        assert!(!alive(w), "worker {w} survived");
    }
    assert!(group_members(server.pid().as_raw()).is_empty());
    assert!(!pidfile.exists(), "pid file left behind");
}

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let _g = serial();
    let server = Server::start(&["-w", "2"]);
    server.wait_workers(2, BOOT);
    server.signal(Signal::SIGTTIN);
    server.wait_workers(3, BOOT);
    server.signal(Signal::SIGTTOU);
    server.wait_workers(2, BOOT);
    server.signal(Signal::SIGTTOU);
    server.wait_workers(1, BOOT);
    let m = wait_for("muster_workers = 1", Duration::from_secs(5), || {
        let m = server.metrics();
        (sample(&m, "muster_workers", &[]) == 1.0).then_some(m)
    });
    assert_eq!(sample(&m, "muster_workers", &[]), 1.0);
    // Live gauges of the stopped workers vanished: one worker's process metrics left.
    let rss_series = m
        .lines()
        .filter(|l| l.starts_with("muster_worker_resident_memory_bytes{"))
        .count();
    assert_eq!(rss_series, 1, "{m}");
    // Never below one worker: the supervisor says it ignored the signal.
    server.signal(Signal::SIGTTOU);
    wait_for(
        "the supervisor to ignore SIGTTOU at one worker",
        BOOT,
        || {
            server
                .log_text()
                .contains("scaling ignored: the worker count is at its limit")
                .then_some(())
        },
    );
    assert_eq!(server.get("/").0, 200);
    assert_eq!(server.workers().len(), 1);
    assert_eq!(sample(&server.metrics(), "muster_workers", &[]), 1.0);
}

#[test]
fn max_requests_recycles_with_bounded_files_and_exact_totals() {
    let _g = serial();
    let server = Server::start(&[
        "-w",
        "2",
        "--max-requests",
        "20",
        "--max-requests-jitter",
        "5",
    ]);
    server.wait_workers(2, BOOT);
    let mut max_files = 0;
    for i in 0..2000 {
        let (status, _) = server.get("/");
        assert_eq!(status, 200, "request {i}");
        if i % 100 == 0 {
            max_files = max_files.max(server.files().len());
        }
    }
    let m = server.metrics();
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        2000.0,
        "{m}"
    );
    let recycled = sample(&m, "muster_worker_restarts_total", &[("reason", "recycle")]);
    assert!(recycled >= 60.0, "only {recycled} recycles:\n{m}");
    // Bounded by the slots in use at once (2 workers + replacements booting while others
    // drain), not by the ~80 workers that lived: per slot a counter, a histogram, a
    // live gauge and the native-bucket and exemplar files of the duration histogram.
    let files = server.files();
    let ids = server.file_ids();
    assert!(ids.len() <= 5, "ids {ids:?}");
    assert!(
        files.len() <= 26 && max_files <= 26,
        "{max_files} / {files:?}"
    );
}

#[test]
fn sigkill_of_the_supervisor_takes_workers_down_within_a_second() {
    let _g = serial();
    let mut server = Server::start(&["-w", "3"]);
    let workers = server.wait_workers(3, BOOT);
    server.signal(Signal::SIGKILL);
    server.wait_exit(Duration::from_secs(5));
    wait_for("every worker to die", Duration::from_secs(1), || {
        workers.iter().all(|w| !alive(*w)).then_some(())
    });
}

#[test]
fn hup_replaces_every_worker_without_failed_requests() {
    let _g = serial();
    let server = Server::start(&["-w", "2"]);
    let before = server.wait_workers(2, BOOT);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let addr = server.addr;
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    match request(addr, "GET", "/", None, &[]) {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => return Err(format!("{other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    wait_for("traffic", Duration::from_secs(5), || {
        (ok.load(Ordering::Relaxed) > 20).then_some(())
    });
    server.signal(Signal::SIGHUP);
    let after = wait_for("all workers replaced", Duration::from_secs(30), || {
        let w = server.workers();
        (w.len() == 2 && w.iter().all(|p| !before.contains(p))).then_some(w)
    });
    server.wait_workers(2, BOOT);
    let seen = ok.load(Ordering::Relaxed);
    wait_for("traffic on the new workers", Duration::from_secs(5), || {
        (ok.load(Ordering::Relaxed) > seen + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .expect("client")
            .expect("no request may fail during a reload");
    }
    assert_eq!(after.len(), 2);
    let m = server.metrics();
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        ok.load(Ordering::Relaxed) as f64,
        "{m}"
    );
}

#[test]
fn metrics_bind_answers_while_every_worker_is_busy() {
    let _g = serial();
    let server = Server::start(&["-w", "1", "--metrics-bind", "127.0.0.1:0"]);
    let maddr = server.metrics_addr.expect("metrics address in the log");
    // The app worker plus the metrics process.
    wait_for("2 children", BOOT, || {
        (server.workers().len() == 2).then_some(())
    });
    assert_eq!(server.get("/").0, 200);
    let addr = server.addr;
    let busy = std::thread::spawn(move || request(addr, "GET", "/spin/4000", None, &[]));
    wait_for("the worker to be busy", Duration::from_secs(5), || {
        let (s, m) = request(maddr, "GET", "/metrics", None, &[]).ok()?;
        (s == 200 && sample(&m, "http_requests_in_progress", &[("route", "/spin/{ms}")]) == 1.0)
            .then_some(())
    });
    let (s, m) = request(
        maddr,
        "GET",
        "/metrics",
        None,
        &[("Accept-Encoding", "identity")],
    )
    .expect("scrape");
    assert_eq!(s, 200);
    // Answered while the only app worker is still stuck in its request.
    assert!(!busy.is_finished(), "the scrape waited for the busy worker");
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        request(maddr, "GET", "/-/healthy", None, &[])
            .expect("healthy")
            .0,
        200
    );
    assert_eq!(
        request(maddr, "GET", "/", None, &[]).expect("app route").0,
        404
    );
    assert_eq!(busy.join().expect("busy").expect("spin").0, 200);
}

#[test]
fn sigint_stops_quickly_without_waiting_for_requests() {
    let _g = serial();
    let mut server = Server::start(&["-w", "2", "--graceful-timeout", "30"]);
    server.wait_workers(2, BOOT);
    let addr = server.addr;
    let client = std::thread::spawn(move || request(addr, "GET", "/slow/20000", None, &[]));
    wait_for("a request in progress", Duration::from_secs(10), || {
        let m = server.metrics();
        (sample(&m, "http_requests_in_progress", &[("route", "/slow/{ms}")]) >= 1.0).then_some(())
    });
    let t = std::time::Instant::now();
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        client.join().expect("client").is_err(),
        "the slow request cannot have completed"
    );
    assert!(group_members(server.pid().as_raw()).is_empty());
}

#[test]
fn unusable_multiproc_dir_is_an_error_before_any_fork() {
    let _g = serial();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let path = file.path().to_str().expect("utf-8").to_string();
    let mut server = Server::start_with(Options {
        args: &["-w", "2", "--multiproc-dir", &path],
        wait_listening: false,
        no_dir_flag: true,
        ..Options::default()
    });
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("multiprocess directory"), "{log}");
    assert!(log.contains(&path), "{log}");
    assert!(!log.contains("worker spawned"), "{log}");
}

#[test]
fn env_multiproc_dir_is_used_and_cleared_of_old_files() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    std::fs::write(dir.join("counter_12345.db"), b"stale").expect("stale file");
    let dir_s = dir.to_str().expect("utf-8").to_string();
    let server = Server::start_with(Options {
        args: &["-w", "1"],
        env: &[("PROMETHEUS_MULTIPROC_DIR", &dir_s)],
        no_dir_flag: true,
        ..Options::default()
    });
    server.wait_workers(1, BOOT);
    assert_eq!(server.get("/").0, 200);
    assert!(
        !dir.join("counter_12345.db").exists(),
        "stale file not cleared"
    );
    wait_for("the worker's counter file", Duration::from_secs(5), || {
        dir.join("counter_w0.db").exists().then_some(())
    });
    let m = server.metrics();
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        1.0,
        "{m}"
    );
}

#[test]
fn systemd_socket_activation_serves_the_inherited_socket() {
    let _g = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::start_with(Options {
        args: &["-w", "2"],
        systemd_socket: Some(listener),
        ..Options::default()
    });
    assert_eq!(server.addr, addr, "{}", server.log_text());
    assert!(server.log_text().contains("LISTEN_FDS"));
    server.wait_workers(2, BOOT);
    for _ in 0..10 {
        assert_eq!(
            request(addr, "GET", "/", None, &[]).expect("request").0,
            200
        );
    }
}

#[test]
fn hup_rereads_the_config_file() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("muster.toml");
    std::fs::write(&conf, "workers = 2\n").expect("write config");
    let conf_s = conf.to_str().expect("utf-8").to_string();
    let server = Server::start(&["-c", &conf_s]);
    let before = server.wait_workers(2, BOOT);
    std::fs::write(&conf, "workers = 3\n").expect("write config");
    server.signal(Signal::SIGHUP);
    let after = wait_for("3 new workers", Duration::from_secs(30), || {
        let w = server.workers();
        (w.len() == 3 && w.iter().all(|p| !before.contains(p))).then_some(w)
    });
    server.wait_workers(3, BOOT);
    assert_eq!(after.len(), 3);
    // A broken file keeps the old configuration.
    std::fs::write(&conf, "workers = \"many\"\n").expect("write config");
    server.signal(Signal::SIGHUP);
    wait_for(
        "the reload error in the log",
        Duration::from_secs(10),
        || {
            server
                .log_text()
                .contains("keeping the old configuration")
                .then_some(())
        },
    );
    server.wait_workers(3, BOOT);
}

#[test]
fn scrapes_never_decrease_while_workers_are_killed_under_load() {
    let _g = serial();
    let server = Server::start(&["-w", "3"]);
    server.wait_workers(3, BOOT);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match request(addr, "GET", "/", None, &[]) {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let scraper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<usize, String> {
            let mut last = 0.0;
            let mut scrapes = 0;
            while !stop.load(Ordering::Relaxed) {
                // A scrape may land on a worker that is being killed; only answers count.
                let Ok((200, m)) = request(addr, "GET", "/metrics", None, &[]) else {
                    continue;
                };
                let total = sample(&m, "http_requests_total", &[("route", "/")]);
                if total < last {
                    return Err(format!("http_requests_total went from {last} to {total}"));
                }
                last = total;
                scrapes += 1;
            }
            Ok(scrapes)
        })
    };
    for round in 0..5 {
        let seen = ok.load(Ordering::Relaxed);
        wait_for("traffic", Duration::from_secs(10), || {
            (ok.load(Ordering::Relaxed) > seen + 30).then_some(())
        });
        let workers = server.wait_workers(3, BOOT);
        let victim = workers[round % workers.len()];
        kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill worker");
        wait_for("the victim to be reaped", Duration::from_secs(10), || {
            (!server.workers().contains(&victim)).then_some(())
        });
    }
    server.wait_workers(3, BOOT);
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let scrapes = scraper
        .join()
        .expect("scraper thread")
        .expect("monotonic scrapes");
    assert!(scrapes > 10, "only {scrapes} scrapes");
    let m = server.metrics();
    let total = sample(&m, "http_requests_total", &[("route", "/")]);
    let (ok, failed) = (
        ok.load(Ordering::Relaxed) as f64,
        failed.load(Ordering::Relaxed) as f64,
    );
    // A request can be counted and its worker killed before the answer went out.
    assert!(
        total >= ok && total <= ok + failed,
        "total {total}, ok {ok}, failed {failed}"
    );
    assert_eq!(
        sample(&m, "muster_worker_restarts_total", &[("reason", "crash")]),
        5.0,
        "{m}"
    );
    let ids = server.worker_file_ids();
    assert_eq!(ids.len(), 3, "files: {:?}", server.files());
}

/// One HTTP/1.1 keep-alive client: sends `GET /` on one connection until the
/// server says `Connection: close`, then opens a new one. Returns (requests
/// answered, connections the server closed without answering a request).
fn keep_alive_requests(addr: std::net::SocketAddr, n: usize) -> (usize, usize) {
    use std::io::{BufRead, BufReader, Read, Write};
    let (mut answered, mut dropped) = (0, 0);
    let mut conn: Option<BufReader<std::net::TcpStream>> = None;
    while answered + dropped < n {
        let reader = conn.get_or_insert_with(|| {
            let s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            BufReader::new(s)
        });
        let sent = reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_ok();
        let mut status = String::new();
        if !sent || reader.read_line(&mut status).unwrap_or(0) == 0 {
            dropped += 1;
            conn = None;
            continue;
        }
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            close |= line == "connection: close";
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        assert!(status.contains(" 200 "), "{status}");
        answered += 1;
        if close {
            conn = None;
        }
    }
    (answered, dropped)
}

#[test]
fn recycling_never_drops_a_request_sent_on_a_kept_alive_connection() {
    let _g = serial();
    let server = Server::start(&["-w", "2", "--max-requests", "25"]);
    server.wait_workers(2, BOOT);
    // Four clients at once: a worker recycles because of one connection's request
    // while the others sit idle between two of theirs, with no `Connection: close`
    // yet; their next request must still be answered.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || keep_alive_requests(addr, 200))
        })
        .collect();
    for c in clients {
        let (answered, dropped) = c.join().expect("client thread");
        assert_eq!(dropped, 0, "requests lost when a worker recycled");
        assert_eq!(answered, 200);
    }
    let m = server.metrics();
    assert!(
        sample(&m, "muster_worker_restarts_total", &[("reason", "recycle")]) >= 10.0,
        "{m}"
    );
}
