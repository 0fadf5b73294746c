//! Pushing merged metrics to a Prometheus [Pushgateway], for batch jobs: merge the
//! job's multiprocess directory when it ends and push the result.
//!
//! The request follows the Pushgateway API:
//!
//! - the grouping key is in the path, `/metrics/job/<job>{/<label>/<value>}`; a job
//!   name or label value that is empty or contains `/` is sent as
//!   `<label>@base64/<url-safe base64>` (an empty value as `@base64/=`), anything
//!   else is percent-encoded;
//! - [`PushMethod::Put`] replaces every metric of the group, [`PushMethod::Post`]
//!   replaces only the metrics with the names in the push;
//! - the body is the Prometheus text format 0.0.4;
//! - an answer other than 2xx is a [`PushError::Status`] with the status and the
//!   gateway's message.
//!
//! ```no_run
//! use muster_collect::push::{push, PushMethod};
//! let mut collector = muster_collect::Collector::new("/run/myjob/metrics");
//! let set = collector.collect()?;
//! push(&set, "http://pushgateway:9091", "nightly_backup", &[("instance", "db-1")], PushMethod::Put)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [Pushgateway]: https://github.com/prometheus/pushgateway

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;

use crate::names::is_legacy_label_name;
use crate::{encode, Format, MetricSet};

/// How a push treats the metrics already in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PushMethod {
    /// HTTP PUT: the push replaces every metric of the grouping key.
    #[default]
    Put,
    /// HTTP POST: the push replaces only the metrics with the same names.
    Post,
}

impl PushMethod {
    fn as_str(self) -> &'static str {
        match self {
            PushMethod::Put => "PUT",
            PushMethod::Post => "POST",
        }
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The gateway URL, job name or grouping key is unusable.
    #[error("invalid push: {0}")]
    Invalid(String),
    /// The gateway could not be reached or the exchange failed.
    #[error("cannot reach the Pushgateway at {url}: {reason}")]
    Transport {
        /// The request URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The gateway answered with a status other than 2xx.
    #[error("the Pushgateway answered {method} {url} with {status}: {body}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the gateway's answer (it says what it rejected).
        body: String,
    },
}

/// A Pushgateway client: its base URL, an HTTP agent with timeouts and optional basic
/// credentials.
#[derive(Clone)]
pub struct Pushgateway {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl std::fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushgateway")
            .field("base", &self.base)
            .field("basic_auth", &self.auth.is_some())
            .finish()
    }
}

/// Default time a whole request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Pushgateway {
    /// A client for the gateway at `url` (`http://host:9091`, `https://...`; a bare
    /// `host:port` means `http://`). A path in the URL is kept as a prefix (for a
    /// gateway behind a proxy at `/pushgateway`).
    pub fn new(url: &str) -> Result<Pushgateway, PushError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(PushError::Invalid("the Pushgateway URL is empty".into()));
        }
        let base = if url.contains("://") {
            let scheme = &url[..url.find("://").unwrap_or(0)];
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(PushError::Invalid(format!(
                    "the Pushgateway URL {url:?} must start with http:// or https://"
                )));
            }
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        if base.contains(['?', '#']) || base.chars().any(|c| c.is_whitespace()) {
            return Err(PushError::Invalid(format!(
                "the Pushgateway URL {url:?} must not contain a query, a fragment or spaces"
            )));
        }
        let host = base.split_once("://").map(|(_, r)| r).unwrap_or("");
        if host.is_empty() || host.starts_with('/') {
            return Err(PushError::Invalid(format!(
                "the Pushgateway URL {url:?} has no host"
            )));
        }
        Ok(Pushgateway {
            base: base.trim_end_matches('/').to_owned(),
            agent: agent(DEFAULT_TIMEOUT),
            auth: None,
        })
    }

    /// Sets the time a whole request may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Pushgateway {
        self.agent = agent(timeout);
        self
    }

    /// Sends HTTP basic credentials with every request.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Pushgateway {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auth = Some(format!("Basic {token}"));
        self
    }

    /// The URL of a group: `<base>/metrics/job/<job>{/<label>/<value>}`.
    pub fn group_url(&self, job: &str, grouping: &[(&str, &str)]) -> Result<String, PushError> {
        Ok(format!("{}{}", self.base, grouping_path(job, grouping)?))
    }

    /// Pushes `set` (encoded as text 0.0.4) to the group of `job` and `grouping`.
    pub fn push(
        &self,
        set: &MetricSet,
        job: &str,
        grouping: &[(&str, &str)],
        method: PushMethod,
    ) -> Result<(), PushError> {
        let url = self.group_url(job, grouping)?;
        let body = encode(set, Format::Text);
        let mut req = match method {
            PushMethod::Put => self.agent.put(&url),
            PushMethod::Post => self.agent.post(&url),
        }
        .header("Content-Type", Format::Text.content_type());
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send(body.as_bytes());
        check(method.as_str(), &url, resp)
    }

    /// Deletes every metric of the group of `job` and `grouping`.
    pub fn delete(&self, job: &str, grouping: &[(&str, &str)]) -> Result<(), PushError> {
        let url = self.group_url(job, grouping)?;
        let mut req = self.agent.delete(&url);
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        check("DELETE", &url, req.call())
    }
}

fn check(
    method: &'static str,
    url: &str,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(), PushError> {
    let mut resp = resp.map_err(|e| PushError::Transport {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let trimmed = body.trim_end().len();
    body.truncate(trimmed);
    if body.len() > 2000 {
        let mut cut = 2000;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push_str("...");
    }
    if body.is_empty() {
        body.push_str("(empty answer)");
    }
    Err(PushError::Status {
        method,
        url: url.to_owned(),
        status,
        body,
    })
}

/// Pushes `set` to the gateway at `gateway` (see [`Pushgateway::new`]) for `job` and
/// the extra grouping labels `grouping`, with `method`.
pub fn push(
    set: &MetricSet,
    gateway: &str,
    job: &str,
    grouping: &[(&str, &str)],
    method: PushMethod,
) -> Result<(), PushError> {
    Pushgateway::new(gateway)?.push(set, job, grouping, method)
}

/// One `/<name>/<value>` pair of a grouping key path, with `@base64` where needed.
fn push_pair(path: &mut String, name: &str, value: &str) {
    if value.is_empty() {
        let _ = write!(path, "/{name}@base64/=");
    } else if value.contains('/') {
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        let _ = write!(path, "/{name}@base64/{encoded}");
    } else {
        path.push('/');
        path.push_str(name);
        path.push('/');
        percent_encode_into(path, value);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The path of a group: `/metrics/job/<job>{/<label>/<value>}`, with `@base64` for a
/// value that is empty or contains `/`. The job name must not be empty; label names
/// must be valid, not `job`, not start with `__`, and appear once.
pub fn grouping_path(job: &str, grouping: &[(&str, &str)]) -> Result<String, PushError> {
    if job.is_empty() {
        return Err(PushError::Invalid("the job name is empty".into()));
    }
    let mut path = String::from("/metrics");
    push_pair(&mut path, "job", job);
    let mut seen: Vec<&str> = Vec::with_capacity(grouping.len());
    for (name, value) in grouping {
        if !is_legacy_label_name(name) {
            return Err(PushError::Invalid(format!(
                "grouping label name {name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            )));
        }
        if *name == "job" {
            return Err(PushError::Invalid(
                "the grouping key has `job` as a label: give it as the job name".into(),
            ));
        }
        if name.starts_with("__") {
            return Err(PushError::Invalid(format!(
                "grouping label name {name:?} starts with `__`, which Prometheus reserves"
            )));
        }
        if seen.contains(name) {
            return Err(PushError::Invalid(format!(
                "grouping label {name:?} is given twice"
            )));
        }
        seen.push(name);
        push_pair(&mut path, name, value);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_pushgateway_api() {
        assert_eq!(grouping_path("backup", &[]).unwrap(), "/metrics/job/backup");
        assert_eq!(
            grouping_path("backup", &[("instance", "db-1"), ("env", "prod")]).unwrap(),
            "/metrics/job/backup/instance/db-1/env/prod"
        );
        // Values with '/' (and the job name too) use URL-safe base64.
        assert_eq!(
            grouping_path("a/b", &[("path", "/var/tmp")]).unwrap(),
            "/metrics/job@base64/YS9i/path@base64/L3Zhci90bXA="
        );
        // URL-safe alphabet: '-' and '_' instead of '+' and '/'.
        assert_eq!(
            grouping_path("j", &[("v", "/??>")]).unwrap(),
            "/metrics/job/j/v@base64/Lz8_Pg=="
        );
        assert_eq!(
            grouping_path("j", &[("empty", "")]).unwrap(),
            "/metrics/job/j/empty@base64/="
        );
        assert_eq!(
            grouping_path("j", &[("v", "a b%c\u{e9}")]).unwrap(),
            "/metrics/job/j/v/a%20b%25c%C3%A9"
        );
    }

    #[test]
    fn bad_grouping_keys_are_errors() {
        for (job, grouping) in [
            ("", vec![]),
            ("j", vec![("1x", "v")]),
            ("j", vec![("job", "v")]),
            ("j", vec![("__name__", "v")]),
            ("j", vec![("a", "1"), ("a", "2")]),
            ("j", vec![("a-b", "v")]),
        ] {
            let e = grouping_path(job, &grouping).expect_err("must be refused");
            assert!(matches!(e, PushError::Invalid(_)), "{e}");
        }
    }

    #[test]
    fn gateway_urls() {
        assert_eq!(
            Pushgateway::new("localhost:9091")
                .unwrap()
                .group_url("j", &[])
                .unwrap(),
            "http://localhost:9091/metrics/job/j"
        );
        assert_eq!(
            Pushgateway::new("https://pg.example/prefix/")
                .unwrap()
                .group_url("j", &[])
                .unwrap(),
            "https://pg.example/prefix/metrics/job/j"
        );
        for bad in ["", "ftp://x", "http://", "http://x/?q", "http://a b"] {
            assert!(Pushgateway::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_unreachable_gateway_is_a_transport_error() {
        // Port 1 on loopback: nothing listens there.
        let e = Pushgateway::new("127.0.0.1:1")
            .unwrap()
            .timeout(Duration::from_secs(5))
            .push(&MetricSet::default(), "j", &[], PushMethod::Put)
            .expect_err("nothing listens on port 1");
        assert!(matches!(e, PushError::Transport { .. }), "{e}");
    }
}
