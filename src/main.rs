//! The `muster` command line.

mod exporter;
mod one_shot;
mod push;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use muster_collect::{Collector, Escaping, Exposition, MediaType};
use muster_store::reader::{entries, MappedFile};

/// muster: pre-fork server runtime with Prometheus multiprocess metrics.
#[derive(Parser)]
#[command(name = "muster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the merged exposition of a multiprocess directory.
    Scrape {
        /// The multiprocess directory (as PROMETHEUS_MULTIPROC_DIR).
        #[arg(long, env = "PROMETHEUS_MULTIPROC_DIR")]
        dir: PathBuf,
        /// Exposition format (`protobuf`: length-delimited
        /// io.prometheus.client.MetricFamily messages, as served for
        /// Prometheus' PrometheusProto).
        #[arg(long, value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
        /// How metric and label names outside the legacy character sets are
        /// shown (Prometheus' `escaping=`); `underscores` is what Python shows.
        #[arg(long, value_enum, default_value_t = EscapingArg::Underscores)]
        escaping: EscapingArg,
    },
    /// List the raw entries of a metric file (also muster's native_*.muster and
    /// exemplar_*.muster), or of every *.db file in a directory.
    Inspect {
        /// A *.db file or a multiprocess directory.
        path: PathBuf,
    },
    /// Serve the merged metrics of a multiprocess directory (Python gunicorn's
    /// included) over HTTP, as a long-lived process: /metrics, /-/healthy, /-/ready.
    Exporter(exporter::ExporterArgs),
    /// Push the merged metrics of a multiprocess directory to a Prometheus
    /// Pushgateway (for batch jobs).
    Push(push::PushArgs),
    /// Run the demo dog-walking service under the pre-fork server
    /// (gunicorn's flags: -w, -b, --timeout, --max-requests, ...).
    Demo {
        #[command(flatten)]
        server: Box<muster_server::ServerArgs>,
    },
    /// Supervise COMMAND as the workers (gunicorn, uvicorn, any socket-activation
    /// aware program) with the pre-fork server's flags: muster run [FLAGS] -- COMMAND
    /// [ARGS...]. Sockets on fds 3.. (LISTEN_FDS), MUSTER_WORKER_ID,
    /// PROMETHEUS_MULTIPROC_DIR; /metrics on --metrics-bind.
    Run(Box<muster_server::command::RunArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Prometheus text format 0.0.4.
    Text,
    /// Prometheus text format 1.0.0 (quoted UTF-8 names with `--escaping allow-utf-8`).
    #[value(name = "text-1.0.0")]
    Text100,
    /// OpenMetrics 1.0.0.
    Openmetrics,
    /// OpenMetrics 0.0.1.
    #[value(name = "openmetrics-0.0.1")]
    Openmetrics001,
    /// Protobuf, length-delimited MetricFamily messages (binary).
    Protobuf,
}

impl FormatArg {
    fn media(self) -> MediaType {
        match self {
            FormatArg::Text => MediaType::Text004,
            FormatArg::Text100 => MediaType::Text100,
            FormatArg::Openmetrics => MediaType::OpenMetrics100,
            FormatArg::Openmetrics001 => MediaType::OpenMetrics001,
            FormatArg::Protobuf => MediaType::Protobuf,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum EscapingArg {
    /// Names as they are (quoted in the text formats when outside the legacy set).
    #[value(name = "allow-utf-8")]
    AllowUtf8,
    /// Characters outside the legacy set become `_`.
    Underscores,
    /// `_` becomes `__`, `.` becomes `_dot_`, others `__`.
    Dots,
    /// `U__` and the name with other characters as `_<hex>_`.
    Values,
}

impl EscapingArg {
    fn escaping(self) -> Escaping {
        match self {
            EscapingArg::AllowUtf8 => Escaping::AllowUtf8,
            EscapingArg::Underscores => Escaping::Underscores,
            EscapingArg::Dots => Escaping::Dots,
            EscapingArg::Values => Escaping::Values,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `demo` and `run` set their logging up themselves (--log-level).
    if !matches!(cli.command, Command::Demo { .. } | Command::Run(_)) {
        muster_server::init_logging(&std::env::var("MUSTER_LOG").unwrap_or_else(|_| "info".into()));
    }
    if matches!(
        cli.command,
        Command::Scrape { .. } | Command::Exporter(_) | Command::Push(_)
    ) {
        raise_open_file_limit();
    }
    if matches!(cli.command, Command::Scrape { .. } | Command::Push(_)) {
        one_shot::grow_heap_in_huge_pages();
    }
    // Each command's error: the prefix of its message, the exit code and the message.
    let usage = |message: String| (2, message);
    let (prefix, result) = match cli.command {
        // The server forks: nothing before it may start a thread.
        Command::Demo { server } => return muster_demo::run_demo(&server),
        Command::Run(args) => return args.main(),
        Command::Exporter(args) => (
            "muster exporter",
            exporter::run(&args)
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| (e.exit_code(), e.to_string())),
        ),
        Command::Push(args) => ("muster push", push::run(&args).map(|()| ExitCode::SUCCESS)),
        Command::Scrape {
            dir,
            format,
            escaping,
        } => (
            "muster",
            scrape(&dir, format, escaping)
                .map(|()| ExitCode::SUCCESS)
                .map_err(usage),
        ),
        Command::Inspect { path } => (
            "muster",
            inspect(&path).map(|()| ExitCode::SUCCESS).map_err(usage),
        ),
    };
    result.unwrap_or_else(|(code, message)| {
        eprintln!("{prefix}: {message}");
        ExitCode::from(code)
    })
}

/// Raises the soft limit on open files to the hard one: reading a directory
/// keeps each of its files open and mapped, and the usual soft limit (1024
/// under systemd) is below what a gunicorn directory can hold (files a
/// collector cannot open are reported and tried again at each scrape, but
/// never counted). This process does not use `select`, which the low soft
/// limit protects.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let soft = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!(soft, "cannot raise the limit on open files");
            }
        }
    }
}

fn scrape(dir: &Path, format: FormatArg, escaping: EscapingArg) -> Result<(), String> {
    let exposition = Exposition::new(format.media(), escaping.escaping());
    let mut collector = Collector::once(dir);
    let mut set = collector.collect().map_err(|e| e.to_string())?;
    collector.append_own_metrics(&mut set);
    let printed = print_stdout(|out| exposition.write_to(&set, out));
    // The process exits now: freeing the merge state (every key, series and
    // mapping) would only make a one-shot scrape slower.
    std::mem::forget((collector, set));
    printed
}

/// Writes to standard output with `write`.
fn print_stdout(
    write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        // A closed pipe (`muster scrape | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write output: {e}"))
        }
        _ => Ok(()),
    }
}

fn inspect(path: &Path) -> Result<(), String> {
    // A file shrunk while it is read shows zeros rather than killing this.
    let _reading = muster_store::shrunk::reading();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let listing = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read directory {}: {e}", path.display()))?;
        for entry in listing.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".db") {
                files.push(entry.path());
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut out = String::new();
    for file in &files {
        inspect_file(file, &mut out);
    }
    print_stdout(|stdout| std::io::Write::write_all(stdout, out.as_bytes()))
}

/// The slots of an `exemplar_<id>.muster` file: each key and its exemplar.
fn inspect_exemplars(map: &MappedFile, used: usize, out: &mut String) {
    use std::fmt::Write;
    let payload = muster_store::format::EXEMPLAR_PAYLOAD;
    let all = muster_store::reader::entries_sized(
        map.bytes(),
        muster_store::format::HEADER_SIZE,
        used,
        payload,
    );
    for entry in all {
        match entry {
            Ok(entry) => {
                let key = String::from_utf8_lossy(entry.key);
                let _ = match map.load_exemplar(entry.value_pos) {
                    Some(e) => writeln!(
                        out,
                        "  offset={} exemplar={:?} value={} timestamp={} key={key}",
                        entry.offset,
                        e.labels,
                        muster_store::float_to_go_string(e.value),
                        e.timestamp,
                    ),
                    None => writeln!(out, "  offset={} exemplar=none key={key}", entry.offset),
                };
            }
            Err(e) => {
                let _ = writeln!(out, "  error: {e}");
            }
        }
    }
}

fn inspect_file(path: &Path, out: &mut String) {
    use std::fmt::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let map = match MappedFile::open(path) {
        Ok(map) => map,
        Err(e) => {
            let _ = writeln!(out, "{name}: error: {e}");
            return;
        }
    };
    let used = match map.used() {
        Ok(used) => used,
        Err(e) => {
            let _ = writeln!(out, "{name}: error: {e}");
            return;
        }
    };
    let _ = writeln!(out, "{name}: {used} of {} bytes used", map.bytes().len());
    let kind = muster_store::FileKind::parse_muster_file(&name).map(|(kind, _)| kind);
    if kind == Some(muster_store::FileKind::Exemplar) {
        inspect_exemplars(&map, used, out);
        return;
    }
    for entry in entries(map.bytes(), muster_store::format::HEADER_SIZE, used) {
        match entry {
            Ok(entry) => {
                let (value, timestamp) = map.load(entry.value_pos);
                let _ = writeln!(
                    out,
                    "  offset={} value={} timestamp={} key={}",
                    entry.offset,
                    muster_store::float_to_go_string(value),
                    timestamp,
                    String::from_utf8_lossy(entry.key)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  error: {e}");
            }
        }
    }
}
