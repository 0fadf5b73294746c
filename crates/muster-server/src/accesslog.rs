//! The access log (`--access-logfile`, off by default), one line per application
//! request in gunicorn's `--access-logformat` language. Atoms:
//!
//! | atom | what |
//! |---|---|
//! | `%(h)s` | client address (after `--forwarded-allow-ips`; `-` if unknown) |
//! | `%(l)s` | `-` |
//! | `%(u)s` | user name of basic auth, else `-` |
//! | `%(t)s` | time of the request, `[10/Oct/2000:13:55:36 +0000]` (UTC) |
//! | `%(r)s` | request line, `GET /path?q HTTP/1.1` |
//! | `%(m)s` `%(U)s` `%(q)s` `%(H)s` | method, path, query string, protocol |
//! | `%(s)s` | status |
//! | `%(B)s` / `%(b)s` | response length (`Content-Length`), `0` / `-` if unknown |
//! | `%(f)s` `%(a)s` | referer, user agent |
//! | `%(T)s` `%(M)s` `%(D)s` `%(L)s` | time to the response head: seconds, milliseconds, microseconds, decimal seconds |
//! | `%(p)s` | worker process id |
//! | `%({name}i)s` / `%({name}o)s` | a request / response header |
//!
//! Each worker appends whole lines with one `write(2)` each to the same file, opened
//! with `O_APPEND`, so lines of different workers never interleave.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::ServerError;

/// gunicorn's default `--access-logformat`.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Client,
    Dash,
    User,
    Time,
    RequestLine,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    LengthZero,
    LengthDash,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    Pid,
    RequestHeader(http::HeaderName),
    ResponseHeader(http::HeaderName),
}

/// A parsed access log format.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    parts: Vec<Part>,
}

impl Format {
    /// Parses gunicorn's `%(x)s` atoms; an unknown atom is an error naming it.
    pub(crate) fn parse(text: &str) -> Result<Format, ServerError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(i) = rest.find("%(") {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after.find(")s").ok_or_else(|| {
                ServerError::Config(format!(
                    "access_logformat: {:?} is not closed with \")s\"",
                    &rest[i..]
                ))
            })?;
            let name = &after[..end];
            let part = atom(name).ok_or_else(|| {
                ServerError::Config(format!(
                    "access_logformat: unknown atom %({name})s (see docs/operations.md)"
                ))
            })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[end + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Format { parts })
    }
}

fn atom(name: &str) -> Option<Part> {
    let header = |n: &str| http::HeaderName::from_bytes(n.as_bytes()).ok();
    if let Some(h) = name.strip_prefix('{') {
        if let Some(n) = h.strip_suffix("}i") {
            return header(n).map(Part::RequestHeader);
        }
        if let Some(n) = h.strip_suffix("}o") {
            return header(n).map(Part::ResponseHeader);
        }
        return None;
    }
    Some(match name {
        "h" => Part::Client,
        "l" => Part::Dash,
        "u" => Part::User,
        "t" => Part::Time,
        "r" => Part::RequestLine,
        "m" => Part::Method,
        "U" => Part::Path,
        "q" => Part::Query,
        "H" => Part::Protocol,
        "s" => Part::Status,
        "B" => Part::LengthZero,
        "b" => Part::LengthDash,
        "f" => Part::Referer,
        "a" => Part::UserAgent,
        "T" => Part::Seconds,
        "M" => Part::Millis,
        "D" => Part::Micros,
        "L" => Part::DecimalSeconds,
        "p" => Part::Pid,
        _ => return None,
    })
}

/// What is known about a request when its response head is ready.
pub(crate) struct Entry<'a> {
    pub client: Option<IpAddr>,
    pub user: Option<&'a str>,
    pub start: SystemTime,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub request_headers: &'a HeaderMap,
    pub status: StatusCode,
    pub response_headers: &'a HeaderMap,
    pub elapsed: Duration,
}

fn header_text(h: &HeaderMap, name: impl http::header::AsHeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn time_text(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[[[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000]"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "[-]".into())
}

impl Format {
    /// One log line (with its newline).
    pub(crate) fn render(&self, e: &Entry<'_>) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(160);
        let length = e
            .response_headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok());
        for part in &self.parts {
            let _ = match part {
                Part::Text(t) => write!(out, "{t}"),
                Part::Client => match e.client {
                    Some(ip) => write!(out, "{ip}"),
                    None => write!(out, "-"),
                },
                Part::Dash => write!(out, "-"),
                Part::User => write!(out, "{}", e.user.unwrap_or("-")),
                Part::Time => write!(out, "{}", time_text(e.start)),
                Part::RequestLine => write!(
                    out,
                    "{} {} {}",
                    e.method,
                    e.uri.path_and_query().map_or("/", |p| p.as_str()),
                    version_text(e.version)
                ),
                Part::Method => write!(out, "{}", e.method),
                Part::Path => write!(out, "{}", e.uri.path()),
                Part::Query => write!(out, "{}", e.uri.query().unwrap_or("")),
                Part::Protocol => write!(out, "{}", version_text(e.version)),
                Part::Status => write!(out, "{}", e.status.as_u16()),
                Part::LengthZero => write!(out, "{}", length.unwrap_or("0")),
                Part::LengthDash => write!(out, "{}", length.unwrap_or("-")),
                Part::Referer => write!(
                    out,
                    "{}",
                    header_text(e.request_headers, http::header::REFERER)
                ),
                Part::UserAgent => {
                    write!(
                        out,
                        "{}",
                        header_text(e.request_headers, http::header::USER_AGENT)
                    )
                }
                Part::Seconds => write!(out, "{}", e.elapsed.as_secs()),
                Part::Millis => write!(out, "{}", e.elapsed.as_millis()),
                Part::Micros => write!(out, "{}", e.elapsed.as_micros()),
                Part::DecimalSeconds => write!(out, "{:.6}", e.elapsed.as_secs_f64()),
                Part::Pid => write!(out, "<{}>", std::process::id()),
                Part::RequestHeader(h) => write!(out, "{}", header_text(e.request_headers, h)),
                Part::ResponseHeader(h) => write!(out, "{}", header_text(e.response_headers, h)),
            };
        }
        out.push('\n');
        out
    }
}

/// Where access log lines go.
pub(crate) struct AccessLog {
    format: Format,
    out: Sink,
}

enum Sink {
    Stdout,
    File(std::fs::File),
}

impl AccessLog {
    /// Opens `path` for appending (`-` = standard output).
    pub(crate) fn open(path: &Path, format: &str) -> Result<Arc<AccessLog>, ServerError> {
        let format = Format::parse(format)?;
        let out = if path == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        ServerError::Config(format!("access log file {}: {e}", path.display()))
                    })?,
            )
        };
        Ok(Arc::new(AccessLog { format, out }))
    }

    /// Writes the line of one request (one `write(2)`; errors are dropped: a full disk
    /// must not fail requests).
    pub(crate) fn log(&self, e: &Entry<'_>) {
        let line = self.format.render(e);
        let _ = match &self.out {
            Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Sink::File(f) => (&*f).write_all(line.as_bytes()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorns_default_format_renders_like_gunicorn() {
        let f = Format::parse(DEFAULT_FORMAT).expect("default parses");
        let mut req = HeaderMap::new();
        req.insert(http::header::USER_AGENT, "curl/8".parse().expect("ua"));
        let mut resp = HeaderMap::new();
        resp.insert(http::header::CONTENT_LENGTH, "42".parse().expect("len"));
        let uri: Uri = "/walks/7?x=1".parse().expect("uri");
        let e = Entry {
            client: Some("198.51.100.7".parse().expect("ip")),
            user: None,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136),
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            request_headers: &req,
            status: StatusCode::OK,
            response_headers: &resp,
            elapsed: Duration::from_micros(1500),
        };
        assert_eq!(
            f.render(&e),
            "198.51.100.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /walks/7?x=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\"\n"
        );
        let f =
            Format::parse("%(M)s %(D)s %({user-agent}i)s %({content-length}o)s %(U)s").expect("ok");
        assert_eq!(f.render(&e), "1 1500 curl/8 42 /walks/7\n");
        assert!(Format::parse("%(zz)s").is_err());
        assert!(Format::parse("%(h").is_err());
    }
}
