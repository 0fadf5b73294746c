//! Helpers shared by the end-to-end tests: the real `muster` binary, the
//! Python reference (`tests/python/*.py` with prometheus_client), promtool,
//! and the Rust writer example (`crates/muster-metrics/examples/write_fixture.rs`).
//!
//! Nothing here skips a test: a missing tool is a loud failure that says how
//! to get it (`scripts/test` installs everything).

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `muster` binary under test.
pub fn muster() -> Command {
    muster_from(Path::new(env!("CARGO_BIN_EXE_muster")))
}

/// `program` (the `muster` binary or a copy of it) with the environment
/// every test runs it in.
fn muster_from(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .env("MUSTER_LOG", "warn");
    cmd
}

/// The Python with prometheus_client==0.26.0, from `MUSTER_PYTHON`.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let path = match std::env::var_os("MUSTER_PYTHON") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => panic!(
                    "MUSTER_PYTHON is not set. These tests compare muster with the real Python \
                     prometheus_client; run them with `scripts/test`, which creates .venv and \
                     exports MUSTER_PYTHON=$PWD/.venv/bin/python"
                ),
            };
            let out = Command::new(&path)
                .args([
                    "-c",
                    "import prometheus_client, importlib.metadata as m; \
                     print(m.version('prometheus_client'))",
                ])
                .output()
                .unwrap_or_else(|e| panic!("MUSTER_PYTHON={} cannot run: {e}", path.display()));
            assert!(
                out.status.success(),
                "MUSTER_PYTHON={} cannot import prometheus_client (run scripts/test): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert_eq!(
                version,
                REFERENCE_VERSION,
                "MUSTER_PYTHON={} has prometheus_client {version}; the reference is \
                 {REFERENCE_VERSION} (tests/python/requirements.txt)",
                path.display()
            );
            path
        })
        .clone()
}

/// The prometheus_client version the tests compare with.
pub const REFERENCE_VERSION: &str = "0.26.0";

/// `promtool`, from `MUSTER_PROMTOOL` or `PATH`.
pub fn promtool() -> PathBuf {
    debian_tool("promtool", "MUSTER_PROMTOOL", "prometheus")
}

/// A script in `tests/python/`.
pub fn py_script(name: &str) -> PathBuf {
    root().join("tests/python").join(name)
}

/// Runs `cmd` with `stdin`, killing it if it runs past `limit`.
pub fn run_with_input(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    // Feed stdin and drain the outputs on threads, so no pipe can fill up.
    let mut input = child.stdin.take().expect("piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_deadline(&mut child, limit)
        .unwrap_or_else(|| panic!("{description} did not finish within {limit:?}; killed it"));
    writer.join().expect("stdin writer");
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Waits for `child` until `limit`; on timeout kills it and returns `None`.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished command printed: stdout, then stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `promtool check config CONFIG`: (passed, what promtool printed).
pub fn promtool_check_config(config: &Path) -> (bool, String) {
    let out = run_with_input(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(config),
        b"",
        Duration::from_secs(60),
    );
    (out.status.success(), output_text(&out))
}

/// Runs `cmd` and insists on success; returns stdout.
pub fn run_ok(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let description = format!("{cmd:?}");
    let out = run_with_input(cmd, stdin, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{description} failed ({}):\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes `dir` with the real prometheus_client (tests/python/write_dir.py).
pub fn python_write(dir: &Path, scenarios: &[&str]) {
    run_ok(
        Command::new(python())
            .arg(py_script("write_dir.py"))
            .arg(dir)
            .args(scenarios),
        b"",
    );
}

/// One canonical sample per entry: `["name", {labels}, "value"]`, sorted.
pub type Samples = Vec<String>;

fn canonical(json: &[u8], what: &str) -> Samples {
    let values: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap_or_else(|e| {
        panic!(
            "{what} printed no canonical JSON ({e}):\n{}",
            String::from_utf8_lossy(json)
        )
    });
    let mut lines: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    lines.sort();
    lines
}

/// Python MultiProcessCollector's merged samples for `dir`.
pub fn python_collect(dir: &Path) -> Samples {
    let out = run_ok(
        Command::new(python()).arg(py_script("collect.py")).arg(dir),
        b"",
    );
    canonical(&out, "collect.py")
}

/// Python MultiProcessCollector's families for `dir`: `[name, type, help]`.
pub fn python_collect_meta(dir: &Path) -> Samples {
    let out = run_ok(
        Command::new(python())
            .arg(py_script("collect.py"))
            .arg(dir)
            .arg("--meta"),
        b"",
    );
    canonical(&out, "collect.py --meta")
}

/// Parses an exposition with prometheus_client's parser for `format`
/// (`text` or `openmetrics`); panics with the exposition if it does not parse.
pub fn python_parse(format: &str, exposition: &[u8], extra: &[&str]) -> Samples {
    let out = run_with_input(
        Command::new(python())
            .arg(py_script("parse.py"))
            .arg(format)
            .args(extra),
        exposition,
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "prometheus_client's {format} parser rejected the exposition:\n{}\n--- exposition ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(exposition)
    );
    canonical(&out.stdout, "parse.py")
}

/// `muster scrape --dir DIR --format FORMAT`, which must succeed; stdout.
pub fn muster_scrape(dir: &Path, format: &str) -> Vec<u8> {
    run_ok(
        muster()
            .args(["scrape", "--dir"])
            .arg(dir)
            .args(["--format", format]),
        b"",
    )
}

/// Asserts two sample lists are equal, showing only the differences.
pub fn assert_same(expected: &Samples, actual: &Samples, context: &str) {
    if expected == actual {
        return;
    }
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for s in expected {
        *counts.entry(s).or_default() += 1;
    }
    for s in actual {
        *counts.entry(s).or_default() -= 1;
    }
    let mut report = String::new();
    for (s, n) in counts.iter().filter(|(_, n)| **n != 0) {
        let sign = if *n > 0 { "- expected" } else { "+ got     " };
        report.push_str(&format!("{sign} {s} (x{})\n", n.abs()));
    }
    panic!(
        "{context}: {} expected vs {} actual samples differ:\n{report}",
        expected.len(),
        actual.len()
    );
}

/// The Rust writer example, built on first use in this process.
pub fn fixture_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| example_bin("muster-metrics", "write_fixture", "MUSTER_WRITE_FIXTURE"))
        .clone()
}

/// An example program of `package`: the path in `env_var` if set (scripts/test
/// builds the examples first), else built now with cargo.
pub fn example_bin(package: &str, name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "-p", package, "--example", name])
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the {name} example: {e}"));
    assert!(out.status.success(), "building the {name} example failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

/// Runs the writer example in `fixture` mode as one process with file id `id`.
pub fn rust_write(dir: &Path, id: &str, index: u32) {
    run_ok(
        Command::new(fixture_bin())
            .arg("fixture")
            .arg(dir)
            .arg(id)
            .arg(index.to_string()),
        b"",
    );
}

/// Child processes that are killed and reaped when the guard is dropped
/// (also when a test panics).
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    pub fn push(&mut self, child: Child) -> &mut Child {
        self.0.push(child);
        self.0.last_mut().expect("just pushed")
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Compares muster's scrape of `dir`, in both formats, with Python's
/// MultiProcessCollector: samples and families (name, type, help).
pub fn assert_matches_python(dir: &Path, formats: &[&str], context: &str) {
    let expected = python_collect(dir);
    assert!(
        expected.len() > 5,
        "{context}: the reference saw only {} samples; the writers did not write",
        expected.len()
    );
    let expected_meta = python_collect_meta(dir);
    for format in formats {
        let exposition = muster_scrape(dir, format);
        let got = python_parse(format, &exposition, &[]);
        assert_same(&expected, &got, &format!("{context}, {format} samples"));
        let got_meta = python_parse(format, &exposition, &["--meta"]);
        assert_same(
            &expected_meta,
            &got_meta,
            &format!("{context}, {format} families (name, type, help)"),
        );
    }
}

// ---------------------------------------------------------------------------
// Long-running processes (exporter, demo, Pushgateway, Prometheus) and HTTP.
// ---------------------------------------------------------------------------

/// A process started in its own process group; the whole group is SIGKILLed and
/// the leader reaped on drop (also when a test panics). Its stderr goes to `log`.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` in a new process group with stdout and stderr appended to `log`.
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let file2 = file.try_clone().expect("clone log file");
        std::os::unix::process::CommandExt::process_group(cmd, 0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            child,
            log: log.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and asserts a clean exit (code 0) within `limit`.
    pub fn stop_cleanly(&mut self, limit: Duration) {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(limit).and_then(|s| s.code());
        assert_eq!(
            code,
            Some(0),
            "{} after SIGTERM:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Its exit status if it has exited (it is left running otherwise).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Waits for the address logged after `marker` (e.g. `listening addr=`).
    pub fn wait_addr(&mut self, marker: &str, limit: Duration) -> std::net::SocketAddr {
        let what = format!("{} to log {marker:?}", self.name);
        wait_until(&what, limit, || {
            self.assert_running();
            find_addr(&self.log_text(), marker)
        })
    }

    /// Waits until `GET /-/ready` on `addr` answers 200; panics (with the log) if the
    /// process exits first.
    pub fn wait_ready(&mut self, addr: std::net::SocketAddr, limit: Duration) {
        let what = format!("{} to be ready on {addr}", self.name);
        wait_until(&what, limit, || {
            self.assert_running();
            http(addr, "GET", "/-/ready", &[], b"")
                .ok()
                .filter(|a| a.status == 200)
        });
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we started.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the exit status, killing the group after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_deadline(&mut self.child, limit)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the group this guard's process leads.
        unsafe {
            libc::killpg(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

/// The first `host:port` after `marker` in `log`.
pub fn find_addr(log: &str, marker: &str) -> Option<std::net::SocketAddr> {
    log.lines().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        let word = rest.split(|c: char| c.is_whitespace() || c == '"').next()?;
        word.parse().ok()
    })
}

/// Polls `f` every 50 ms until it returns `Some`; panics after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago (for tools that need a fixed port).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// An HTTP/1.1 answer: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close` (bounded by a 30 s timeout).
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpAnswer> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers in the answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| std::io::Error::other(format!("bad chunk size: {e}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(std::io::Error::other("short chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `GET path`, which must answer; panics with the error otherwise.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> HttpAnswer {
    http(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// A Debian tool that scripts/test installs (`prometheus`, `prometheus-pushgateway`):
/// its path, from `env_var` or `PATH`; panics saying how to get it.
pub fn debian_tool(name: &str, env_var: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env_var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} not found ({env_var} unset and not on PATH); \
                 `apt-get install {package}`, or run scripts/test which installs it"
            )
        });
    assert!(path.is_file(), "{name} {} does not exist", path.display());
    path
}

/// Starts a real Pushgateway on a free loopback port and waits until it answers.
pub fn start_pushgateway(tmp: &Path) -> (Proc, std::net::SocketAddr) {
    let bin = debian_tool(
        "prometheus-pushgateway",
        "MUSTER_PUSHGATEWAY",
        "prometheus-pushgateway",
    );
    start_on_free_port("pushgateway", tmp, Duration::from_secs(20), |_, listen| {
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--web.listen-address={listen}"))
            // Memory only: Debian's default persists to /var/lib/prometheus.
            .arg("--persistence.file=");
        cmd
    })
}

/// Starts Debian's `prometheus` with `config` on a free loopback port, its TSDB in
/// `tmp`, and waits until it is ready (a few ports are tried).
pub fn start_prometheus(tmp: &Path, config: &Path) -> (Proc, std::net::SocketAddr) {
    start_prometheus_with(tmp, config, &[])
}

/// [`start_prometheus`] with extra command-line arguments (such as
/// `--enable-feature=native-histograms`).
pub fn start_prometheus_with(
    tmp: &Path,
    config: &Path,
    extra: &[&str],
) -> (Proc, std::net::SocketAddr) {
    let bin = debian_tool("prometheus", "MUSTER_PROMETHEUS", "prometheus");
    start_on_free_port(
        "prometheus",
        tmp,
        Duration::from_secs(60),
        |attempt, listen| {
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    tmp.join(format!("tsdb-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={listen}"))
                .arg("--storage.tsdb.retention.time=1h")
                .arg("--log.level=warn")
                .args(extra);
            cmd
        },
    )
}

/// Starts the command `make(attempt, listen_address)` gives, logging to
/// `tmp/NAME-ATTEMPT.log`, and waits until its `GET /-/ready` answers 200 within
/// `limit`. A port picked here can be taken before the tool binds it, so a few
/// ports are tried.
fn start_on_free_port(
    name: &str,
    tmp: &Path,
    limit: Duration,
    mut make: impl FnMut(u32, std::net::SocketAddr) -> Command,
) -> (Proc, std::net::SocketAddr) {
    for attempt in 0..5 {
        let addr: std::net::SocketAddr =
            format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = tmp.join(format!("{name}-{attempt}.log"));
        let mut proc = Proc::start(name, &mut make(attempt, addr), &log);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = proc.child.try_wait() {
                break;
            }
            if http(addr, "GET", "/-/ready", &[], b"").is_ok_and(|a| a.status == 200) {
                return (proc, addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{name} attempt {attempt} failed:\n{}", proc.log_text());
    }
    panic!("could not start {name} on a free port");
}

/// The samples of a protobuf exposition (length-delimited
/// `io.prometheus.client.MetricFamily` messages, decoded with the
/// `prometheus-client` crate's data model) as sorted lines
/// `name{labels in name order} value`: histograms and summaries spelled out
/// as their `_bucket` (with the implied `+Inf` bucket), `_count`, `_sum` and
/// quantile samples; bounds and values in Go float syntax. Compare with
/// [`text_sample_lines`] of a text exposition of the same metrics.
pub fn protobuf_sample_lines(mut body: &[u8]) -> Vec<String> {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
    use prost::Message;
    let go = muster_store::float_to_go_string;
    let mut lines = Vec::new();
    let mut push =
        |name: String, labels: &[pb::LabelPair], extra: Option<(&str, f64)>, value: f64| {
            let mut pairs: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            if let Some((n, v)) = extra {
                pairs.push((n.to_owned(), go(v)));
            }
            lines.push(sample_line(&name, pairs, value));
        };
    while !body.is_empty() {
        let family = pb::MetricFamily::decode_length_delimited(&mut body)
            .expect("a length-delimited MetricFamily");
        let name = family.name.clone();
        for m in &family.metric {
            if let Some(c) = &m.counter {
                push(name.clone(), &m.label, None, c.value);
            } else if let Some(g) = &m.gauge {
                push(name.clone(), &m.label, None, g.value);
            } else if let Some(u) = &m.untyped {
                push(name.clone(), &m.label, None, u.value);
            } else if let Some(h) = &m.histogram {
                let count = if h.sample_count_float > 0.0 {
                    h.sample_count_float
                } else {
                    h.sample_count as f64
                };
                for b in &h.bucket {
                    let c = if b.cumulative_count_float > 0.0 {
                        b.cumulative_count_float
                    } else {
                        b.cumulative_count as f64
                    };
                    push(
                        format!("{name}_bucket"),
                        &m.label,
                        Some(("le", b.upper_bound)),
                        c,
                    );
                }
                if h.bucket
                    .last()
                    .is_none_or(|b| b.upper_bound != f64::INFINITY)
                {
                    push(
                        format!("{name}_bucket"),
                        &m.label,
                        Some(("le", f64::INFINITY)),
                        count,
                    );
                }
                push(format!("{name}_count"), &m.label, None, count);
                push(format!("{name}_sum"), &m.label, None, h.sample_sum);
            } else if let Some(s) = &m.summary {
                for q in &s.quantile {
                    push(
                        name.clone(),
                        &m.label,
                        Some(("quantile", q.quantile)),
                        q.value,
                    );
                }
                push(
                    format!("{name}_count"),
                    &m.label,
                    None,
                    s.sample_count as f64,
                );
                push(format!("{name}_sum"), &m.label, None, s.sample_sum);
            } else {
                panic!("{name}: a Metric with no value");
            }
        }
    }
    lines.sort();
    lines
}

/// The samples of a text 0.0.4 exposition (read by muster's parser) as
/// [`protobuf_sample_lines`] writes them.
pub fn text_sample_lines(body: &[u8]) -> Vec<String> {
    let set = muster_collect::parse(body, muster_collect::Format::Text)
        .unwrap_or_else(|e| panic!("{e}:\n{}", String::from_utf8_lossy(body)));
    let mut lines: Vec<String> = set
        .families
        .iter()
        .flat_map(|f| &f.samples)
        .map(|s| {
            let pairs = s
                .labels
                .pairs()
                .iter()
                .map(|(n, v)| {
                    // Bounds as numbers: `1` and `1.0` are the same bound.
                    let v = match (&**n, &**v) {
                        ("le" | "quantile", "+Inf") => {
                            muster_store::float_to_go_string(f64::INFINITY)
                        }
                        ("le" | "quantile", v) => v
                            .parse::<f64>()
                            .map(muster_store::float_to_go_string)
                            .unwrap_or_else(|_| v.to_owned()),
                        _ => v.to_string(),
                    };
                    (n.to_string(), v)
                })
                .collect();
            sample_line(&s.name, pairs, s.value)
        })
        .collect();
    lines.sort();
    lines
}

fn sample_line(name: &str, mut pairs: Vec<(String, String)>, value: f64) -> String {
    pairs.sort();
    let labels: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!(
        "{name}{{{}}} {}",
        labels.join(","),
        muster_store::float_to_go_string(value)
    )
}

/// The live children of supervisor `parent` whose command line mentions
/// `program`: the workers of `muster run`, less its `--metrics-bind` process (a
/// fork of muster, whose command line holds the worker command too).
pub fn command_children(parent: i32, program: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.get(1) != Some(&parent.to_string().as_str()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "muster" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(program) {
            out.push(pid);
        }
    }
    out
}

/// Makes `cmd` start with at most `n` open descriptors (soft and hard limit), as
/// an operator's too-small `ulimit -n` or `LimitNOFILE=` would.
pub fn limit_descriptors(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || set_limit(libc::RLIMIT_NOFILE, n));
    }
}

/// The `muster` binary under test, run with at most `n` tasks (processes
/// and threads) for its user, as a container's reached `pids.max` or an
/// operator's `ulimit -u` would leave it. The limit binds every user but
/// root, so when the tests run as root it runs as `nobody` (65534), from a
/// link or copy in `tmp`: the tree it was built in need not be open to others. `tmp`
/// is made readable by all; so must be what it reads.
pub fn muster_with_task_limit(tmp: &Path, n: u64) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(tmp, open.clone()).expect("chmod the test directory");
    // SAFETY: geteuid only reads this process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let copy = tmp.join("muster");
        let built = env!("CARGO_BIN_EXE_muster");
        if std::fs::hard_link(built, &copy).is_err() {
            std::fs::copy(built, &copy).expect("copy muster");
        }
        std::fs::set_permissions(&copy, open).expect("chmod the copy");
        muster_from(&copy)
    } else {
        muster()
    };
    cmd.current_dir(tmp);
    // SAFETY: set*id and setrlimit are async-signal-safe; nothing else runs
    // in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::geteuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            set_limit(libc::RLIMIT_NPROC, n)
        });
    }
    cmd
}

/// Sets both the soft and the hard `resource` limit of this process to `n`
/// (async-signal-safe: for `pre_exec`).
pub fn set_limit(resource: libc::__rlimit_resource_t, n: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(resource, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
