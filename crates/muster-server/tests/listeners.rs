//! Listeners gunicorn users expect, judged by real peers: `--bind unix:PATH`,
//! `--bind fd://N`, socket activation by systemd's own `systemd-socket-activate`
//! (TCP and Unix sockets), `sd_notify` readiness to a datagram socket the test binds
//! as `NOTIFY_SOCKET`, and the systemd units in `deploy/systemd` checked by
//! `systemd-analyze verify`. A missing systemd tool is a failure, never a skip
//! (`scripts/test` installs Debian's `systemd` package).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

const BOOT: Duration = Duration::from_secs(20);

/// `GET path` over the Unix socket at `sock`; returns (status, body).
fn unix_get(sock: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {raw:?}")))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Ok((status, body.unwrap_or_default()))
}

/// The path of a systemd tool, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is missing: install Debian's `systemd` package (scripts/test does)")
    })
}

#[test]
fn unix_socket_bind_serves_and_is_removed_at_exit() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("app.sock");
    let bind = format!("unix:{}", sock.display());
    let mut server = Server::start(&["-w", "2", "-b", &bind]);
    server.wait_workers(2, BOOT);
    assert!(server.log_text().contains(&format!("addr={bind}")));
    for _ in 0..20 {
        assert_eq!(unix_get(&sock, "/").expect("unix request").0, 200);
    }
    // The TCP listener of the same server counted the Unix requests too.
    let m = server.metrics();
    assert_eq!(
        sample(&m, "http_requests_total", &[("route", "/")]),
        20.0,
        "{m}"
    );
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOOT).code(), Some(0));
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn fd_bind_serves_an_inherited_socket() {
    let _g = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::start_with(Options {
        args: &["-w", "1", "-b", "fd://7"],
        inherit_fd: Some((listener.into(), 7)),
        ..Options::default()
    });
    server.wait_workers(1, BOOT);
    let log = server.log_text();
    assert!(log.contains(&format!("listening addr={addr}")), "{log}");
    for _ in 0..5 {
        assert_eq!(
            request(addr, "GET", "/", None, &[]).expect("request").0,
            200
        );
    }
}

#[test]
fn socket_activation_by_systemd_socket_activate_tcp_and_unix() {
    let _g = serial();
    let activate = tool("systemd-socket-activate");
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("activated.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let activate_s = activate.to_str().expect("utf-8");
    let sock_s = sock.to_str().expect("utf-8");
    let server = Server::start_with(Options {
        args: &["-w", "2"],
        launcher: &[activate_s, "-l", &tcp, "-l", sock_s],
        wait_listening: false,
        ..Options::default()
    });
    // systemd-socket-activate starts the server on the first connection; that
    // connection waits in the backlog until a worker accepts it.
    let addr: std::net::SocketAddr = tcp.parse().expect("addr");
    let (status, _) = wait_for("the first request", BOOT, || {
        request(addr, "GET", "/", None, &[]).ok()
    });
    assert_eq!(status, 200);
    let log = server.log_text();
    assert!(
        log.contains("LISTEN_FDS") && log.contains("count=2"),
        "{log}"
    );
    assert!(
        log.contains(&format!("addr=unix:{}", sock.display())),
        "{log}"
    );
    server.wait_workers(2, BOOT);
    assert_eq!(unix_get(&sock, "/").expect("unix request").0, 200);
    assert_eq!(request(addr, "GET", "/", None, &[]).expect("tcp").0, 200);
}

#[test]
fn sd_notify_says_ready_once_every_worker_is_ready_and_stopping_at_the_end() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&path).expect("bind notify socket");
    notify.set_read_timeout(Some(BOOT)).expect("read timeout");
    let path_s = path.to_str().expect("utf-8");
    let mut server = Server::start_with(Options {
        args: &["-w", "3"],
        env: &[("NOTIFY_SOCKET", path_s)],
        ..Options::default()
    });
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = recv();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", server.pid())),
        "{ready}"
    );
    // Ready means every worker: all three are logged ready already.
    let workers = server.workers();
    assert_eq!(workers.len(), 3);
    assert!(
        logged_ready(&server.log_text(), &workers),
        "{}",
        server.log_text()
    );
    server.signal(Signal::SIGHUP);
    assert!(recv().contains("RELOADING=1"));
    let again = recv();
    assert!(again.contains("READY=1"), "{again}");
    server.signal(Signal::SIGTERM);
    assert!(recv().contains("STOPPING=1"));
    assert_eq!(server.wait_exit(BOOT).code(), Some(0));
}

#[test]
fn the_systemd_units_in_deploy_pass_systemd_analyze_verify() {
    let analyze = tool("systemd-analyze");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd");
    let tmp = tempfile::tempdir().expect("tempdir");
    // ExecStart must name an existing executable: the real muster binary when it is
    // built, else this test's own demo server (same flags).
    let muster = binary()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("muster"))
        .filter(|p| p.is_file())
        .unwrap_or_else(binary);
    for name in ["muster.socket", "muster.service"] {
        let text = std::fs::read_to_string(deploy.join(name)).expect("unit");
        let text = text.replace(
            "/usr/local/bin/muster demo",
            &format!("{} ", muster.display()),
        );
        std::fs::write(tmp.path().join(name), text).expect("write unit");
    }
    let out = Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .arg(tmp.path().join("muster.socket"))
        .arg(tmp.path().join("muster.service"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // It prints problems without failing for some of them: none may mention our units.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("muster.")).collect();
    assert!(ours.is_empty(), "{stderr}");
    // The operations guide shows the same units.
    let ops = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md"),
    )
    .expect("operations.md");
    assert!(ops.contains("Type=notify") && ops.contains("ListenStream="));
}
