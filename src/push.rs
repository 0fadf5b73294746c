//! `muster push`: merge a multiprocess directory once and push the result to a
//! Prometheus Pushgateway (see [`muster_collect::push`]), for batch jobs that end
//! before Prometheus could scrape them.

use std::path::PathBuf;
use std::time::Duration;

use muster_collect::push::{PushError, PushMethod, Pushgateway};
use muster_collect::Collector;

/// What `muster push` is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The multiprocess directory to merge (as PROMETHEUS_MULTIPROC_DIR).
    #[arg(long, env = "PROMETHEUS_MULTIPROC_DIR")]
    pub dir: PathBuf,
    /// The Pushgateway's URL (`http://host:9091`; a bare `host:port` means http).
    #[arg(long)]
    pub gateway: String,
    /// The job name: the first part of the grouping key.
    #[arg(long)]
    pub job: String,
    /// A further grouping label, `name=value` (repeatable; the value may be empty or
    /// contain `/`).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// `put` replaces every metric of the group; `post` only those with the same names.
    #[arg(long, value_enum, default_value_t = MethodArg::Put)]
    pub method: MethodArg,
    /// Seconds the request may take.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// User name for HTTP basic authentication (the password comes from
    /// --password-file).
    #[arg(long, requires = "password_file")]
    pub username: Option<String>,
    /// File holding the basic-auth password (its first line).
    #[arg(long, requires = "username")]
    pub password_file: Option<PathBuf>,
}

/// The HTTP method of a push.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MethodArg {
    /// Replace the whole group.
    Put,
    /// Replace only the metrics with the same names.
    Post,
}

/// Parses `name=value` grouping labels.
fn parse_labels(labels: &[String]) -> Result<Vec<(String, String)>, String> {
    labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--label {l:?}: expected NAME=VALUE"))
        })
        .collect()
}

/// Runs `muster push`; an error is (exit code, message): 2 for a usage, directory or
/// grouping-key problem, 1 when the gateway could not be reached or refused the push.
pub fn run(args: &PushArgs) -> Result<(), (u8, String)> {
    let usage = |m: String| (2u8, m);
    let labels = parse_labels(&args.labels).map_err(usage)?;
    let grouping: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if args.timeout == 0 {
        return Err(usage("--timeout must be at least 1 second".into()));
    }
    let mut gateway = Pushgateway::new(&args.gateway)
        .map_err(|e| usage(e.to_string()))?
        .timeout(Duration::from_secs(args.timeout));
    if let (Some(user), Some(file)) = (&args.username, &args.password_file) {
        let text = std::fs::read_to_string(file).map_err(|e| {
            usage(format!(
                "cannot read the password file {}: {e}",
                file.display()
            ))
        })?;
        let password = text.lines().next().unwrap_or("");
        gateway = gateway.basic_auth(user, password);
    }
    // Check the grouping key before reading anything.
    gateway
        .group_url(&args.job, &grouping)
        .map_err(|e| usage(e.to_string()))?;
    crate::exporter::check_dir(&args.dir).map_err(|e| usage(e.to_string()))?;
    let mut collector = Collector::once(&args.dir);
    let mut set = collector.collect().map_err(|e| usage(e.to_string()))?;
    collector.append_own_metrics(&mut set);
    let method = match args.method {
        MethodArg::Put => PushMethod::Put,
        MethodArg::Post => PushMethod::Post,
    };
    gateway
        .push(&set, &args.job, &grouping, method)
        .map_err(|e| match e {
            PushError::Invalid(m) => (2, m),
            other => (1, other.to_string()),
        })?;
    tracing::info!(
        job = %args.job,
        families = set.families.len(),
        "pushed to {}",
        args.gateway
    );
    // The process exits now: freeing the merge state would only take time.
    std::mem::forget((collector, set));
    Ok(())
}
