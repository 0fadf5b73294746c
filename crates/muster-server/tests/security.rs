//! End-to-end security tests (issue 4): the `demo_server` example runs with a web config
//! file; real clients (curl and a rustls client) check basic auth and TLS, and raw
//! sockets check the HTTP limits. Certificates are generated at test time (rcgen).
//! curl, openssl-linked curl and promtool must be installed (Debian: `curl`,
//! `prometheus`); a missing tool fails the test, it is never skipped.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;

const BOOT: Duration = Duration::from_secs(20);
const USER: &str = "prometheus";
const PASSWORD: &str = "Zq7-uF2x-9kLp-w3Rt";

/// A bcrypt hash in htpasswd's `$2y$` form (cost 5 keeps debug-build tests quick;
/// `htpasswd -nBC 10` differs only in the cost field).
fn htpasswd(password: &str) -> String {
    bcrypt::hash_with_result(password, 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

/// One HTTP/1.1 request; returns (status, head, body).
fn raw_request(addr: SocketAddr, req: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String, String)> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_request(addr, &req).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Runs curl (which must exist) with `args`; returns (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl must be installed (Debian package `curl`)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `curl -w '%{http_code}'` of a URL: (exit code, status code text, output).
fn curl_status(args: &[&str]) -> (i32, String) {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    curl(&all)
}

fn write_web_config(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("web.yml");
    std::fs::write(&p, yaml).expect("write web config");
    p
}

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    client_cert: CertificateDer<'static>,
    client_key: PrivateKeyDer<'static>,
    rogue_cert: CertificateDer<'static>,
    rogue_key: PrivateKeyDer<'static>,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A CA, a server certificate for localhost/127.0.0.1, a client certificate from the
/// same CA, and a "rogue" client certificate from another CA; PEM files in a temp dir.
fn make_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("pem");
    let ca_params = || {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "muster test CA");
        p
    };
    let ca =
        CertifiedIssuer::self_signed(ca_params(), KeyPair::generate().expect("key")).expect("ca");
    let rogue_ca =
        CertifiedIssuer::self_signed(ca_params(), KeyPair::generate().expect("key")).expect("ca");
    write("ca.pem", &ca.pem());

    let server_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = p.signed_by(&server_key, &ca).expect("server cert");
    write("server.pem", &server.pem());
    write("server.key", &server_key.serialize_pem());

    let client = |issuer: &CertifiedIssuer<'_, KeyPair>, stem: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "scraper");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, issuer).expect("client cert");
        write(&format!("{stem}.pem"), &cert.pem());
        write(&format!("{stem}.key"), &key.serialize_pem());
        (
            cert.der().clone(),
            PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        )
    };
    let (client_cert, client_key) = client(&ca, "client");
    let (rogue_cert, rogue_key) = client(&rogue_ca, "rogue");
    Pki {
        ca: ca.der().clone(),
        dir,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// A GET over TLS with rustls; `Err` when the handshake or the exchange fails.
fn tls_get(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    client: Option<(&CertificateDer<'static>, &PrivateKeyDer<'static>)>,
    path: &str,
    auth: Option<&str>,
) -> Result<(u16, String), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some((c, k)) => b
            .with_client_auth_cert(vec![c.clone()], k.clone_key())
            .map_err(|e| e.to_string())?,
        None => b.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let err = loop {
        match tls.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e.to_string()),
        }
    };
    match parse_response(&raw) {
        Ok((status, _, body)) => Ok((status, body)),
        Err(e) => Err(err.unwrap_or_else(|| e.to_string())),
    }
}

fn start_secured(web: &Path, extra: &[&str]) -> Server {
    let web = web.display().to_string();
    let mut args = vec!["-w", "1", "--web-config-file", web.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    // With --metrics-bind, the metrics process is a child too.
    let children = if extra.contains(&"--metrics-bind") {
        2
    } else {
        1
    };
    server.wait_workers(children, BOOT);
    server
}

#[test]
fn basic_auth_protects_metrics_and_leaves_health_open() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let web = write_web_config(
        tmp.path(),
        &format!("basic_auth_users:\n  {USER}: {}\n", htpasswd(PASSWORD)),
    );
    let server = start_secured(&web, &["--metrics-bind", "127.0.0.1:0"]);
    let metrics_addr = server.metrics_addr.expect("metrics address in the log");
    for addr in [server.addr, metrics_addr] {
        let url = format!("http://{addr}/metrics");
        // No credentials: 401 with the challenge.
        let (status, head, _) = get(addr, "/metrics", &[]);
        assert_eq!(status, 401, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"muster\""),
            "{head}"
        );
        // Wrong password, unknown user (curl).
        let (rc, code) = curl_status(&["-u", &format!("{USER}:wrong"), &url]);
        assert_eq!((rc, code.as_str()), (0, "401"));
        let (rc, code) = curl_status(&["-u", &format!("nobody:{PASSWORD}"), &url]);
        assert_eq!((rc, code.as_str()), (0, "401"));
        // Malformed Authorization headers.
        for bad in [
            "Basic",
            "Basic !!!not-base64!!!",
            "Basic cHJvbWV0aGV1cw==", // "prometheus", no colon
            "Bearer abc.def",
            "Digest username=\"prometheus\"",
        ] {
            let (status, _, _) = get(addr, "/metrics", &[("Authorization", bad)]);
            assert_eq!(status, 401, "{bad}");
        }
        // The right credentials (curl, then raw), several times: cached after the first.
        let (rc, code) = curl_status(&["-u", &format!("{USER}:{PASSWORD}"), &url]);
        assert_eq!((rc, code.as_str()), (0, "200"));
        let t = Instant::now();
        for _ in 0..20 {
            let (status, _, body) = get(
                addr,
                "/metrics",
                &[("Authorization", &basic(USER, PASSWORD))],
            );
            assert_eq!(status, 200);
            assert!(body.contains("# TYPE"), "{body}");
        }
        eprintln!("20 authenticated scrapes on {addr}: {:?}", t.elapsed());
        // Health stays open for probes.
        for path in ["/-/healthy", "/-/ready"] {
            let (rc, code) = curl_status(&[&format!("http://{addr}{path}")]);
            assert_eq!((rc, code.as_str()), (0, "200"), "{path}");
        }
    }
    // The application's routes are not muster's to protect.
    assert_eq!(get(server.addr, "/", &[]).0, 200);
}

#[test]
fn sighup_rereads_the_web_config_and_keeps_the_old_one_when_bad() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let yaml = |password: &str| format!("basic_auth_users:\n  {USER}: {}\n", htpasswd(password));
    let web = write_web_config(tmp.path(), &yaml(PASSWORD));
    let server = start_secured(&web, &[]);
    let status = |password: &str| {
        let auth = basic(USER, password);
        get(server.addr, "/metrics", &[("Authorization", &auth)]).0
    };
    assert_eq!(status(PASSWORD), 200);
    let rotated = "Hn3-rotated-Pw8-xQ2v";
    write_web_config(tmp.path(), &yaml(rotated));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the rotated password to work", BOOT, || {
        (status(rotated) == 200 && status(PASSWORD) == 401).then_some(())
    });
    // A bad file on reload: logged, the old configuration stays.
    write_web_config(tmp.path(), "basic_auth_users:\n  metrics: not-a-hash\n");
    server.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload error in the log", BOOT, || {
        server
            .log_text()
            .contains("reload: keeping the old configuration")
            .then_some(())
    });
    server.wait_workers(1, BOOT);
    for _ in 0..5 {
        assert_eq!(status(rotated), 200);
        assert_eq!(status(PASSWORD), 401);
    }
}

#[test]
fn protect_health_requires_credentials_for_probes_too() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let web = write_web_config(
        tmp.path(),
        &format!(
            "basic_auth_users:\n  {USER}: {}\nmuster:\n  protect_health: true\n",
            htpasswd(PASSWORD)
        ),
    );
    let server = start_secured(&web, &[]);
    for path in ["/-/healthy", "/-/ready", "/metrics"] {
        assert_eq!(get(server.addr, path, &[]).0, 401, "{path}");
        let auth = basic(USER, PASSWORD);
        assert_eq!(
            get(server.addr, path, &[("Authorization", &auth)]).0,
            200,
            "{path}"
        );
    }
}

#[test]
fn tls_with_a_required_client_certificate() {
    let _g = serial();
    let pki = make_pki();
    let web = write_web_config(
        pki.dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             basic_auth_users:\n  {USER}: {}\n",
            htpasswd(PASSWORD)
        ),
    );
    let server = start_secured(&web, &[]);
    let addr = server.addr;
    let client = Some((&pki.client_cert, &pki.client_key));
    // rustls client: with the certificate, health open and /metrics behind basic auth.
    assert_eq!(
        tls_get(addr, &pki.ca, client, "/-/healthy", None).map(|r| r.0),
        Ok(200)
    );
    assert_eq!(
        tls_get(addr, &pki.ca, client, "/metrics", None).map(|r| r.0),
        Ok(401)
    );
    let (status, body) = tls_get(
        addr,
        &pki.ca,
        client,
        "/metrics",
        Some(&basic(USER, PASSWORD)),
    )
    .expect("authorized scrape over TLS");
    assert_eq!(status, 200);
    assert!(
        body.contains("http_requests_total") || body.contains("# TYPE"),
        "{body}"
    );
    // Without a certificate, or with one from another CA: no HTTP at all.
    let r = tls_get(addr, &pki.ca, None, "/-/healthy", None);
    assert!(r.is_err(), "no client cert was accepted: {r:?}");
    let r = tls_get(
        addr,
        &pki.ca,
        Some((&pki.rogue_cert, &pki.rogue_key)),
        "/-/healthy",
        None,
    );
    assert!(r.is_err(), "a rogue client cert was accepted: {r:?}");
    // curl, the same way.
    let url = format!("https://localhost:{}/metrics", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let ca = pki.path("ca.pem");
    let (rc, out) = curl_status(&["--resolve", &resolve, "--cacert", &ca, &url]);
    assert_ne!(rc, 0, "curl without a client cert succeeded: {out}");
    let (rc, code) = curl_status(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
        "-u",
        &format!("{USER}:{PASSWORD}"),
        &url,
    ]);
    assert_eq!((rc, code.as_str()), (0, "200"));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_request(addr, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        !matches!(plain, Ok((200, _, _))),
        "plain HTTP answered on the TLS port: {plain:?}"
    );
    // The server still serves after the failed handshakes.
    assert_eq!(
        tls_get(addr, &pki.ca, client, "/-/ready", None).map(|r| r.0),
        Ok(200)
    );
}

#[test]
fn tls_without_client_certificates_and_min_version() {
    let _g = serial();
    let pki = make_pki();
    let web = write_web_config(
        pki.dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let server = start_secured(&web, &["--metrics-bind", "127.0.0.1:0"]);
    for addr in [server.addr, server.metrics_addr.expect("metrics addr")] {
        assert_eq!(
            tls_get(addr, &pki.ca, None, "/metrics", None).map(|r| r.0),
            Ok(200)
        );
        let url = format!("https://localhost:{}/metrics", addr.port());
        let resolve = format!("localhost:{}:127.0.0.1", addr.port());
        let ca = pki.path("ca.pem");
        let (rc, code) = curl_status(&["--resolve", &resolve, "--cacert", &ca, &url]);
        assert_eq!((rc, code.as_str()), (0, "200"));
        // HTTP/2 over ALPN works too.
        let (rc, code) = curl_status(&["--http2", "--resolve", &resolve, "--cacert", &ca, &url]);
        assert_eq!((rc, code.as_str()), (0, "200"));
        // TLS 1.2 is below min_version.
        let (rc, out) = curl_status(&[
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--resolve",
            &resolve,
            "--cacert",
            &ca,
            &url,
        ]);
        assert_ne!(rc, 0, "TLS 1.2 accepted despite min_version TLS13: {out}");
    }
}

fn expect_startup_error(args: &[&str], wanted: &[&str]) -> String {
    let mut server = Server::start_with(Options {
        args,
        wait_listening: false,
        ..Options::default()
    });
    let status = server.wait_exit(Duration::from_secs(60));
    let log = server.log_text();
    assert_eq!(status.code(), Some(2), "exit status {status}:\n{log}");
    for w in wanted {
        assert!(log.contains(w), "log lacks {w:?}:\n{log}");
    }
    assert!(
        !log.contains("worker spawned"),
        "a worker was forked before the error:\n{log}"
    );
    log
}

#[test]
fn weak_credentials_are_refused_at_startup() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    for (user, password, why) in [
        ("metrics", "secret", "\"secret\""),
        ("ann", "", "empty"),
        ("scraper", "scraper", "user name"),
        ("bob", "changeme", "\"changeme\""),
        ("carl", "prometheus", "\"prometheus\""),
    ] {
        let web = write_web_config(
            tmp.path(),
            &format!(
                "basic_auth_users:\n  {USER}: {}\n  {user}: '{}'\n",
                htpasswd(PASSWORD),
                htpasswd(password)
            ),
        );
        let web = web.display().to_string();
        expect_startup_error(
            &["--web-config-file", &web],
            &[
                "weak credentials refused",
                &format!("basic_auth_users.{user}"),
                why,
                "--allow-weak-credentials",
            ],
        );
    }
    // The explicit override starts the server (with a warning), and the weak password works.
    let web = write_web_config(
        tmp.path(),
        &format!("basic_auth_users:\n  metrics: '{}'\n", htpasswd("secret")),
    );
    let web = web.display().to_string();
    let server = start_secured(Path::new(&web), &["--allow-weak-credentials"]);
    assert!(server.log_text().contains("weak credentials allowed"));
    let auth = basic("metrics", "secret");
    assert_eq!(
        get(server.addr, "/metrics", &[("Authorization", &auth)]).0,
        200
    );
}

#[test]
fn malformed_web_config_is_a_startup_error_naming_the_field() {
    let _g = serial();
    let pki = make_pki();
    let cases: &[(&str, &[&str])] = &[
        ("basic_auth_userz:\n  a: b\n", &["basic_auth_userz"]),
        ("basic_auth_users:\n  ann: hunter2\n", &["basic_auth_users.ann", "not a bcrypt hash"]),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: Sometimes\n",
            &["client_auth_type", "Sometimes"],
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n",
            &["tls_server_config.cert_file", "missing.pem"],
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n",
            &["tls_server_config.key_file"],
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n",
            &["tls_server_config.key_file"],
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            &["tls_server_config.client_ca_file"],
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS10\n",
            &["tls_server_config.min_version"],
        ),
        ("muster:\n  protect_health: perhaps\n", &["protect_health"]),
        ("basic_auth_users: [a, b]\n", &["basic_auth_users"]),
    ];
    for (yaml, wanted) in cases {
        let web = write_web_config(pki.dir.path(), yaml);
        let web = web.display().to_string();
        expect_startup_error(&["--web-config-file", &web], wanted);
    }
    // A missing file, and the TOML key.
    expect_startup_error(
        &["--web-config-file", "/nonexistent/web.yml"],
        &["/nonexistent/web.yml"],
    );
    let toml = pki.dir.path().join("muster.toml");
    std::fs::write(&toml, "web_config_file = \"/nonexistent/web2.yml\"\n").expect("toml");
    let toml = toml.display().to_string();
    expect_startup_error(&["-c", &toml], &["/nonexistent/web2.yml"]);
}

#[test]
fn slowloris_clients_do_not_stop_other_requests() {
    let _g = serial();
    let server = Server::start(&[
        "-w",
        "1",
        "--header-read-timeout",
        "2",
        "--keep-alive",
        "2",
        "--handler-timeout",
        "3",
    ]);
    server.wait_workers(1, BOOT);
    let addr = server.addr;
    // 150 connections that trickle header bytes, 50 that send nothing at all.
    let mut slow: Vec<(TcpStream, Option<Instant>)> = (0..200)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            if i < 150 {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .expect("write");
            }
            s.set_nonblocking(true).expect("nonblocking");
            (s, None)
        })
        .collect();
    let opened = Instant::now();
    let mut served = 0;
    let mut worst = Duration::ZERO;
    while opened.elapsed() < Duration::from_secs(8) {
        // One more byte on every trickling connection; notice closed ones.
        for (i, (s, closed)) in slow.iter_mut().enumerate() {
            if closed.is_some() {
                continue;
            }
            let write_failed = i < 150
                && matches!(s.write(b"a"), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
            let read_closed = match s.read(&mut [0u8; 64]) {
                Ok(_) => true, // EOF, or an error response: either way the server let go
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if write_failed || read_closed {
                *closed = Some(Instant::now());
            }
        }
        // Normal requests keep being answered quickly meanwhile.
        let t = Instant::now();
        let (status, _, _) = get(addr, "/", &[]);
        assert_eq!(status, 200);
        worst = worst.max(t.elapsed());
        served += 1;
        if slow.iter().all(|(_, c)| c.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("served {served} normal requests, slowest {worst:?}");
    assert!(served >= 10, "only {served} normal requests were tried");
    assert!(
        worst < Duration::from_secs(1),
        "a normal request took {worst:?}"
    );
    let open = slow.iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} slow connections still open after 8 s (header timeout 2 s)"
    );
    let first = slow.iter().filter_map(|(_, c)| *c).min().expect("closed");
    let latest = slow.iter().filter_map(|(_, c)| *c).max().expect("closed");
    eprintln!(
        "slow connections closed between {:?} and {:?}",
        first.duration_since(opened),
        latest.duration_since(opened)
    );
    // They were held (not refused at once), and dropped at the header read timeout.
    assert!(
        first.duration_since(opened) >= Duration::from_millis(1500),
        "slow connections were closed before the header timeout"
    );
    assert!(
        latest.duration_since(opened) < Duration::from_secs(5),
        "slow connections closed only after {:?}",
        latest.duration_since(opened)
    );
    // An idle keep-alive connection is closed after --keep-alive.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t = Instant::now();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "idle connection kept {:?}",
        t.elapsed()
    );
    // A half-open client: a request whose body never comes is answered 504 after
    // --handler-timeout (the handler is still waiting for the body) and closed.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(b"POST /walks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"walker\"")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let t = Instant::now();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let held = t.elapsed();
    assert!(
        held >= Duration::from_secs(2) && held < Duration::from_secs(8),
        "a stalled request was held {held:?} (--handler-timeout 3)"
    );
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 504"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(get(addr, "/", &[]).0, 200);
    assert_eq!(server.workers().len(), 1);
}

#[test]
fn header_body_and_keepalive_limits() {
    let _g = serial();
    let server = Server::start(&["-w", "1", "--max-requests-per-connection", "2"]);
    server.wait_workers(1, BOOT);
    let addr = server.addr;
    // Too many header fields, too large a header: 431.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_request(addr, &many).expect("response").0, 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let t = Instant::now();
    let r = raw_request(addr, &big);
    assert!(matches!(r, Ok((431, _, _))), "{r:?}");
    eprintln!("big header: {:?}", t.elapsed());
    // A body over the demo's 64 KiB limit: 413.
    let body = format!(
        "{{\"walker\": \"{}\", \"dog\": \"rex\"}}",
        "a".repeat(100_000)
    );
    let req = format!(
        "POST /walks HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let t = Instant::now();
    let r = raw_request(addr, &req);
    assert!(matches!(r, Ok((413, _, _))), "{r:?}");
    eprintln!("big body: {:?}", t.elapsed());
    // Keep-alive: the second request on a connection is its last.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.1 200").count(), 2, "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // The server is fine afterwards.
    assert_eq!(get(addr, "/", &[]).0, 200);
}

#[test]
fn symlinks_planted_in_the_directory_are_not_followed() {
    let _g = serial();
    let server = Server::start(&["-w", "1"]);
    server.wait_workers(1, BOOT);
    for _ in 0..5 {
        assert_eq!(server.get("/").0, 200);
    }
    let victim = server.tmp.path().join("victim.txt");
    std::fs::write(&victim, "do not touch\n").expect("victim");
    // A symlink where the next worker's counter file will be, one the scrape will list,
    // and a FIFO (which would block a reader that opened it blindly).
    std::os::unix::fs::symlink(&victim, server.dir.join("counter_w1.db")).expect("symlink");
    std::os::unix::fs::symlink(&victim, server.dir.join("gauge_all_evil.db")).expect("symlink");
    nix::unistd::mkfifo(
        &server.dir.join("histogram_fifo.db"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let m = server.metrics();
    assert!(m.contains("http_requests_total"), "{m}");
    // A second worker (slot w1) opens its files with O_NOFOLLOW.
    server.signal(nix::sys::signal::Signal::SIGTTIN);
    server.wait_workers(2, BOOT);
    for _ in 0..40 {
        assert_eq!(server.get("/").0, 200);
    }
    let m = server.metrics();
    assert!(m.contains("http_requests_total"), "{m}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "do not touch\n",
        "the symlink target was written through"
    );
    let meta = std::fs::symlink_metadata(server.dir.join("gauge_all_evil.db")).expect("meta");
    assert!(meta.file_type().is_symlink());
    assert!(
        sample(&m, "muster_scrape_errors_total", &[]) >= 1.0,
        "planted files were not reported:\n{m}"
    );
    let log = server.log_text();
    for l in log
        .lines()
        .filter(|l| l.contains("follow") || l.contains("symlink") || l.contains("w1.db"))
    {
        eprintln!("{l}");
    }
    // Both sides reported it: the scrape skipped the files, the new worker refused to
    // write through the symlink.
    assert!(log.contains("not followed"), "{log}");
    assert!(log.contains("refusing to write through"), "{log}");
}

#[test]
fn unsafe_multiproc_directories_are_refused_before_any_fork() {
    use std::os::unix::fs::PermissionsExt;
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    // World-writable without the sticky bit.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).expect("chmod");
    // Owned by another user (the tests may run as root; then chown works).
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    nix::unistd::chown(
        &foreign,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown to another user needs root: run the suite as root (as CI does)");
    let cases = vec![
        (open.clone(), "writable by other users"),
        (foreign.clone(), "owned by uid 65534"),
    ];
    for (dir, why) in cases {
        let d = dir.display().to_string();
        let mut server = Server::start_with(Options {
            args: &["-w", "1", "--multiproc-dir", &d],
            wait_listening: false,
            no_dir_flag: true,
            ..Options::default()
        });
        let status = server.wait_exit(Duration::from_secs(20));
        let log = server.log_text();
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.contains(why) && log.contains(&d), "{log}");
        assert!(!log.contains("worker spawned"), "{log}");
    }
    // A missing directory is created private to the user.
    let fresh = tmp.path().join("a/b/metrics");
    let f = fresh.display().to_string();
    let server = Server::start_with(Options {
        args: &["-w", "1", "--multiproc-dir", &f],
        no_dir_flag: true,
        ..Options::default()
    });
    server.wait_workers(1, BOOT);
    let mode = std::fs::metadata(&fresh)
        .expect("created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
}

#[test]
fn hostile_label_values_stay_bounded_and_valid_for_promtool() {
    // In-process: the metrics API writes into a directory, the collector reads it back.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mp");
    muster_store::prepare_dir(&dir).expect("prepare dir");
    muster_store::configure(dir.clone());
    let family = muster_metrics::Counter::family(
        "hostile_requests",
        "requests labelled with client-controlled text",
        &["value"],
    )
    .expect("family");
    let huge = "x\"\\\n".repeat(256 * 1024); // 1 MiB of quotes, backslashes, newlines
    let dir_size = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let mut size_at_20k = 0;
    for i in 0..100_000u32 {
        let v = match i % 5 {
            0 => format!("quote\"{i}\"\\"),
            1 => format!("new\nline\r\n{i}"),
            2 => format!("{i}{}", &huge[..(i as usize % 7) * 1024 + 1]),
            3 => format!("\u{0}\u{7f}\u{2028}é{i}"),
            _ if i % 1000 == 4 => format!("{i}{huge}"),
            _ => format!("{i}\\\\\"\"\n\n"),
        };
        family.with_label_values(&[&v]).inc();
        if i == 20_000 {
            size_at_20k = dir_size(&dir);
        }
    }
    let size = dir_size(&dir);
    eprintln!("directory: {size_at_20k} bytes after 20k values, {size} after 100k");
    assert_eq!(
        size, size_at_20k,
        "files grew after the label-set bound was reached"
    );
    assert!(size < 256 << 20, "files hold {size} bytes");

    let mut collector = muster_collect::Collector::new(&dir);
    let set = collector.collect().expect("collect");
    let text = muster_collect::encode(&set, muster_collect::Format::Text);
    assert!(
        text.contains("muster_label_sets_dropped_total"),
        "no dropped counter"
    );
    let dropped = sample(
        &text,
        "muster_label_sets_dropped_total",
        &[("family", "hostile_requests")],
    );
    assert!(dropped >= 90_000.0, "dropped {dropped}");
    assert!(text.contains("__overflow__"), "no overflow series");
    // OpenMetrics too: every sample line parses (escapes only \\, \" and \n), and the
    // exposition ends with `# EOF`.
    assert!(parses_as_sample(r#"a_total{b="x\"y",c="\n"} 1"#));
    assert!(!parses_as_sample(r#"a_total{b="x"y"} 1"#));
    assert!(!parses_as_sample(r#"a_total{b="x\ty"} 1"#));
    let om = muster_collect::encode(&set, muster_collect::Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "no # EOF");
    let mut samples = 0;
    for line in om.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            parses_as_sample(line),
            "bad OpenMetrics line: {:.200}",
            line
        );
        samples += 1;
    }
    assert!(samples >= 10_000, "{samples} samples");
    let file = tmp.path().join("exposition.txt");
    std::fs::write(&file, &text).expect("write exposition");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool must be installed (Debian package `prometheus`)");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `line` is `name{label="value",...} number`, with label values using only the
/// escapes `\\`, `\"` and `\n`.
fn parses_as_sample(line: &str) -> bool {
    let Some(open) = line.find(['{', ' ']) else {
        return false;
    };
    let name = &line[..open];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return false;
    }
    let mut rest = &line[open..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let Some(eq) = rest.find("=\"") else {
                return false;
            };
            let mut chars = rest[eq + 2..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        _ => return false,
                    },
                    '"' => {
                        end = Some(eq + 2 + i + 1);
                        break;
                    }
                    '\n' => return false,
                    _ => {}
                }
            }
            let Some(end) = end else {
                return false;
            };
            rest = &rest[end..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest.split_whitespace();
    let value_ok = fields
        .next()
        .is_some_and(|v| v.parse::<f64>().is_ok() || matches!(v, "+Inf" | "-Inf" | "NaN"));
    value_ok && fields.all(|f| f.parse::<f64>().is_ok())
}
