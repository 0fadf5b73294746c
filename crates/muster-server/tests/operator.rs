//! What operators reach for (issue #10): the access log with gunicorn's format,
//! `--forwarded-allow-ips`, `--log-level`, `--check-config`, `--print-config`,
//! `--no-metrics-on-app-port` with `--metrics-bind`, and `--user`/`--group`/
//! `--umask`/`--chdir`. The real `demo_server` binary, real requests.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

const BOOT: Duration = Duration::from_secs(20);

/// Runs the demo server with `args` to completion (for the flags that exit at once).
fn run_to_end(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    Command::new(binary())
        .args(args)
        .env("MUSTER_DEMO_DB", tmp.path().join("walks.sqlite3"))
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .output()
        .expect("run demo_server")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn access_log_lines_use_gunicorns_format_and_trusted_forwarded_addresses() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("access.log");
    let log_s = log.to_str().expect("utf-8");
    let server = Server::start(&["-w", "2", "--access-logfile", log_s]);
    server.wait_workers(2, BOOT);
    let addr = server.addr;
    assert_eq!(
        request(
            addr,
            "GET",
            "/walks/999?x=1",
            None,
            &[("User-Agent", "probe/1")]
        )
        .expect("request")
        .0,
        404
    );
    // From 127.0.0.1, trusted by default: the forwarded client is logged.
    request(
        addr,
        "GET",
        "/",
        None,
        &[("X-Forwarded-For", "203.0.113.5")],
    )
    .expect("request");
    // muster's own endpoints are not application requests.
    server.metrics();
    let lines = wait_for("two access log lines", BOOT, || {
        let t = std::fs::read_to_string(&log).ok()?;
        (t.lines().count() >= 2).then_some(t)
    });
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // gunicorn: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
    let first = lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains(" +0000] \"GET /walks/999?x=1 HTTP/1.1\" 404 "),
        "{first}"
    );
    assert!(first.ends_with(" \"-\" \"probe/1\""), "{first}");
    assert!(lines[1].starts_with("203.0.113.5 - - ["), "{}", lines[1]);
    drop(server);

    // An untrusted peer's X-Forwarded-For is ignored; a custom format.
    let log2 = tmp.path().join("access2.log");
    let log2_s = log2.to_str().expect("utf-8");
    let server = Server::start(&[
        "-w",
        "1",
        "--access-logfile",
        log2_s,
        "--access-logformat",
        "%(h)s %(m)s %(U)s %(s)s %({x-forwarded-for}i)s",
        "--forwarded-allow-ips",
        "10.0.0.0/8",
    ]);
    server.wait_workers(1, BOOT);
    request(
        server.addr,
        "GET",
        "/",
        None,
        &[("X-Forwarded-For", "203.0.113.5")],
    )
    .expect("request");
    let line = wait_for("an access log line", BOOT, || {
        std::fs::read_to_string(&log2)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(line, "127.0.0.1 GET / 200 203.0.113.5\n");
}

#[test]
fn log_level_filters_the_servers_log() {
    let _g = serial();
    let failing_boot_log = |level: &str| {
        let out = run_to_end(&[
            "-w",
            "1",
            "-b",
            "127.0.0.1:0",
            "--fail-boot",
            "--log-level",
            level,
        ]);
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{log}");
        assert!(log.contains("failing on purpose"), "{log}");
        log
    };
    let log = failing_boot_log("warn");
    assert!(!log.contains(" INFO "), "{log}");
    assert!(failing_boot_log("debug").contains(" INFO "));
}

#[test]
fn check_config_and_print_config_exit_without_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run_to_end(&["-w", "3", "-b", "127.0.0.1:0", "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK"));
    assert!(!text(&out.stderr).contains("worker spawned"));

    let out = run_to_end(&[
        "-w",
        "3",
        "--handler-timeout",
        "7",
        "-b",
        "unix:/run/app.sock",
        "--print-config",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("workers = 3"), "{printed}");
    assert!(printed.contains("handler_timeout = 7.0"), "{printed}");
    // What it prints is a config file muster reads back.
    let conf = tmp.path().join("printed.toml");
    std::fs::write(&conf, &printed).expect("write");
    let conf_s = conf.to_str().expect("utf-8");
    let out = run_to_end(&["-c", conf_s, "--print-config"]);
    assert_eq!(text(&out.stdout), printed);

    // Mistakes: exit 2 with a message naming them.
    let out = run_to_end(&[
        "--web-config-file",
        "/nonexistent/web.yml",
        "--check-config",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/web.yml"));
    let out = run_to_end(&["-b", "unix:/nonexistent/dir/app.sock", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/dir"));
    let out = run_to_end(&["--user", "no-such-user-here", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-user-here"));
    let out = run_to_end(&["--no-metrics-on-app-port", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--metrics-bind"));
}

#[test]
fn metrics_move_off_the_app_port() {
    let _g = serial();
    let server = Server::start(&[
        "-w",
        "1",
        "--metrics-bind",
        "127.0.0.1:0",
        "--no-metrics-on-app-port",
    ]);
    // The app worker and the metrics process.
    server.wait_workers(2, BOOT);
    let maddr = server.metrics_addr.expect("metrics address");
    assert_eq!(server.get("/").0, 200);
    // On the app port these paths are the application's (the demo has none: 404).
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        assert_eq!(server.get(path).0, 404, "{path}");
    }
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(
            request(maddr, "GET", path, None, &[]).expect("probe").0,
            200
        );
    }
    let (status, m) = wait_for("the metrics process", BOOT, || {
        request(maddr, "GET", "/metrics", None, &[]).ok()
    });
    assert_eq!(status, 200);
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "unmatched")]),
        3.0,
        "{m}"
    );
}

fn uid_of(pid: i32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}"))
        .expect("proc")
        .uid()
}

#[test]
fn user_group_umask_and_chdir() {
    let _g = serial();
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("the nobody user");
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test switches users: run it as root (CI does)"
    );
    // A directory the unprivileged user may write to (the server's own files go here).
    let base = tempfile::Builder::new()
        .prefix("muster-user-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let work = base.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    nix::unistd::chown(&work, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    let sock = base.path().join("app.sock");
    let (sock_s, work_s) = (
        format!("unix:{}", sock.display()),
        work.to_str().expect("utf-8").to_string(),
    );
    let db = work.join("walks.sqlite3");
    let db_s = db.to_str().expect("utf-8");
    let mut server = Server::start_with(Options {
        args: &[
            "-w",
            "2",
            "-b",
            &sock_s,
            "--user",
            "nobody",
            "--group",
            &nobody.gid.to_string(),
            "--umask",
            "077",
            "--chdir",
            &work_s,
            // Relative: resolved in --chdir.
            "--multiproc-dir",
            "metrics",
        ],
        env: &[("MUSTER_DEMO_DB", db_s)],
        no_dir_flag: true,
        ..Options::default()
    });
    let workers = server.wait_workers(2, BOOT);
    for pid in workers.iter().copied().chain([server.pid().as_raw()]) {
        assert_eq!(uid_of(pid), nobody.uid.as_raw(), "process {pid}");
    }
    assert_eq!(server.get("/").0, 200);
    let dir = work.join("metrics");
    let meta = std::fs::metadata(&dir).expect("the directory, created in --chdir");
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    // --umask 077: the socket is the owner's only; it belongs to the user now.
    let meta = std::fs::metadata(&sock).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o700, "{:o}", meta.mode());
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOOT).code(), Some(0));
    assert!(!sock.exists(), "the user removed its socket at exit");
}
