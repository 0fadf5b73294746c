//! Parsing Prometheus text 0.0.4 and OpenMetrics 1.0 text back into a
//! [`MetricSet`]: the inverse of [`encode`](crate::encode).
//!
//! Hand-written here rather than taken from a crate because it has to be
//! the exact inverse of our own encoder — the escaping of HELP text and
//! label values in each format, text 0.0.4 naming a counter family after its
//! `_total` samples — and no well-kept crate parses both formats with their
//! escaping exactly. The round-trip property tests and the
//! `exposition_round_trip` fuzz target hold the two together: for every
//! [`MetricSet`] shaped like the collector's (family names distinct, also
//! as text 0.0.4 writes them), `parse(encode(set, f), f)` gives the set back
//! but for the gauges' merge mode, which no exposition carries; and for
//! every input this module accepts, encoding what it returned and parsing
//! that again gives the same result.
//!
//! The grammar followed is the Prometheus exposition-format document for
//! text 0.0.4 (lines end in `\n`, blanks and tabs between tokens, comments,
//! an optional trailing comma in label sets, integer millisecond timestamps)
//! and the OpenMetrics 1.0 ABNF (single spaces, no empty lines or comments,
//! float timestamps, exemplars, `# UNIT`, and a final `# EOF`). Where they
//! leave room, the choices are those of our encoder:
//!
//! - HELP text is everything after the one blank that follows the name,
//!   verbatim (so leading and trailing blanks of a help text survive).
//! - Text 0.0.4 escapes only `\\` and `\n` in HELP, and `\\`, `\"` and `\n`
//!   in label values; any other escape is an error. OpenMetrics also escapes
//!   `\"` in HELP and requires it there; following its ABNF, a backslash
//!   before any other character stands for itself.
//! - Numbers are decimal (no hexadecimal floats); `NaN`, `+Inf`, `-Inf` and
//!   `Infinity` in any case; a finite number too large for an `f64` is an
//!   error.

use std::collections::HashSet;
use std::sync::Arc;

use muster_store::GaugeMode;

use crate::encode::Format;
use crate::model::{Labels, MetricFamily, MetricKind, MetricSet, Sample};
use crate::names::{is_legacy_label_name, is_legacy_metric_name};

/// Why an exposition could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The line the problem is on, counted from 1.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

impl ParseError {
    fn at(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Parses an exposition in `format` into a [`MetricSet`]; never panics.
///
/// Families come out in the order of the input, each with the samples that
/// follow its metadata (none if none do); the family name is the name of
/// its metadata lines, except that a text 0.0.4 counter's `_total` is
/// removed, as [`encode`](crate::encode) adds it. The model keeps less
/// than the formats can say, so:
///
/// - every family needs a `# TYPE` of `counter`, `gauge`, `histogram` or
///   `summary` before its samples; untyped and OpenMetrics' `unknown`,
///   `info`, `stateset` and `gaugehistogram` families are errors;
/// - a gauge comes back as `MetricKind::Gauge(GaugeMode::All)`: the
///   exposition does not say how processes were merged;
/// - timestamps, exemplars and `# UNIT` lines are checked, then dropped.
///
/// Sample names must fit their family's type: `_total` for counters (in
/// text 0.0.4 also the bare name), `_bucket` with an `le` label, `_count` and
/// `_sum` for histograms, the bare name with a `quantile` label, `_count`
/// and `_sum` for summaries, plus `_created` for all three in OpenMetrics.
/// Values are not checked against their type (a counter may be `NaN`), nor
/// buckets for being cumulative.
///
/// ```
/// use muster_collect::{encode, parse, Format};
/// let text = "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{queue=\"a\\\"b\"} 3.0\n";
/// let set = parse(text, Format::Text)?;
/// assert_eq!(&*set.families[0].name, "jobs");
/// assert_eq!(set.value("jobs_total", &[("queue", "a\"b")]), Some(3.0));
/// assert_eq!(encode(&set, Format::Text), text);
/// assert!(parse(text, Format::OpenMetrics).is_err()); // no `# EOF`
/// # Ok::<(), muster_collect::ParseError>(())
/// ```
pub fn parse(input: impl AsRef<[u8]>, format: Format) -> Result<MetricSet, ParseError> {
    parse_bytes(input.as_ref(), format)
}

fn parse_bytes(input: &[u8], format: Format) -> Result<MetricSet, ParseError> {
    let text = std::str::from_utf8(input).map_err(|e| {
        let before = &input[..e.valid_up_to()];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        ParseError::at(line, "invalid UTF-8")
    })?;
    let mut parser = Parser {
        format,
        families: Vec::new(),
        current: None,
        names: HashSet::new(),
    };
    let om = format == Format::OpenMetrics;
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (line, next) = match rest.split_once('\n') {
            Some((line, next)) => (line, Some(next)),
            None => (rest, None),
        };
        if om && line == "# EOF" {
            if next.is_some_and(|next| !next.is_empty()) {
                return Err(ParseError::at(line_no + 1, "nothing may follow `# EOF`"));
            }
            return parser.finish();
        }
        let Some(next) = next else {
            return Err(ParseError::at(
                line_no,
                "the last line does not end with a line feed (truncated?)",
            ));
        };
        parser.line(line, line_no)?;
        rest = next;
    }
    if om {
        return Err(ParseError::at(
            line_no + 1,
            "missing `# EOF`: an OpenMetrics exposition ends with it",
        ));
    }
    parser.finish()
}

/// A family whose lines are being read.
struct Pending {
    /// The name in its metadata lines.
    raw: String,
    /// The line it began on.
    line: usize,
    help: Option<String>,
    kind: Option<MetricKind>,
    unit: bool,
    samples: Vec<Sample>,
}

/// What a metadata line says.
enum Meta {
    Help(String),
    Type(MetricKind),
    Unit,
}

struct Parser {
    format: Format,
    families: Vec<MetricFamily>,
    current: Option<Pending>,
    /// Names of finished families, and the names their metadata lines are
    /// encoded with: a family may not reuse either.
    names: HashSet<String>,
}

impl Parser {
    fn line(&mut self, line: &str, no: usize) -> Result<(), ParseError> {
        let err = |message: String| ParseError::at(no, message);
        match self.format {
            Format::Text => {
                let line = line.trim_start_matches(is_blank);
                if line.is_empty() {
                    Ok(())
                } else if let Some(comment) = line.strip_prefix('#') {
                    match text_metadata(comment).map_err(err)? {
                        Some((name, meta)) => self.metadata(name, meta, no),
                        None => Ok(()),
                    }
                } else {
                    let sample = sample_line(line, self.format).map_err(err)?;
                    self.sample(sample, no)
                }
            }
            Format::OpenMetrics => {
                if line.is_empty() {
                    Err(err("empty lines are not allowed in OpenMetrics".into()))
                } else if line.starts_with('#') {
                    let (name, meta) = om_metadata(line).map_err(err)?;
                    self.metadata(name, meta, no)
                } else {
                    let sample = sample_line(line, self.format).map_err(err)?;
                    self.sample(sample, no)
                }
            }
        }
    }

    fn metadata(&mut self, name: &str, meta: Meta, no: usize) -> Result<(), ParseError> {
        if self.current.as_ref().is_none_or(|f| f.raw != name) {
            self.finish_family()?;
        }
        let family = self.current.get_or_insert_with(|| Pending {
            raw: name.to_owned(),
            line: no,
            help: None,
            kind: None,
            unit: false,
            samples: Vec::new(),
        });
        if !family.samples.is_empty() {
            return Err(ParseError::at(
                no,
                format!("metadata for `{name}` after its samples"),
            ));
        }
        let (slot, what) = match meta {
            Meta::Help(help) => (family.help.replace(help).is_some(), "HELP"),
            Meta::Type(kind) => (family.kind.replace(kind).is_some(), "TYPE"),
            Meta::Unit => (std::mem::replace(&mut family.unit, true), "UNIT"),
        };
        if slot {
            return Err(ParseError::at(
                no,
                format!("a second `# {what}` line for `{name}`"),
            ));
        }
        Ok(())
    }

    fn sample(&mut self, sample: SampleLine<'_>, no: usize) -> Result<(), ParseError> {
        let format = self.format;
        let Some((family, kind)) = self
            .current
            .as_mut()
            .and_then(|f| f.kind.map(|kind| (f, kind)))
        else {
            return Err(ParseError::at(
                no,
                format!(
                    "sample `{}` has no `# TYPE` line before it (untyped metrics are not supported)",
                    sample.name
                ),
            ));
        };
        let base = family_name(&family.raw, kind, format);
        let Some(suffix) = sample_suffix(base, kind, sample.name, format) else {
            return Err(ParseError::at(
                no,
                format!(
                    "sample `{}` is not part of {} family `{base}` and has no `# TYPE` line of its own",
                    sample.name,
                    kind.type_name()
                ),
            ));
        };
        let needed = match (kind, suffix) {
            (MetricKind::Histogram, "_bucket") => Some("le"),
            (MetricKind::Summary, "") => Some("quantile"),
            _ => None,
        };
        if let Some(label) = needed {
            let Some((_, value)) = sample.labels.iter().find(|(n, _)| n == label) else {
                return Err(ParseError::at(
                    no,
                    format!("sample `{}` has no `{label}` label", sample.name),
                ));
            };
            number(value, format).map_err(|e| ParseError::at(no, format!("`{label}`: {e}")))?;
        }
        family.samples.push(Sample {
            name: sample.name.into(),
            labels: Arc::new(Labels::new(sample.labels)),
            value: sample.value,
            exemplar: None,
            native: None,
        });
        Ok(())
    }

    /// Adds the family being read to the result.
    fn finish_family(&mut self) -> Result<(), ParseError> {
        let Some(family) = self.current.take() else {
            return Ok(());
        };
        let Some(kind) = family.kind else {
            return Err(ParseError::at(
                family.line,
                format!(
                    "`{}` has no `# TYPE` line (untyped and unknown metrics are not supported)",
                    family.raw
                ),
            ));
        };
        let name = family_name(&family.raw, kind, self.format);
        let written = match (self.format, kind) {
            (Format::Text, MetricKind::Counter) => format!("{name}_total"),
            _ => name.to_owned(),
        };
        if self.names.contains(name) || self.names.contains(&written) {
            return Err(ParseError::at(
                family.line,
                format!("family `{name}` clashes with an earlier family of that name"),
            ));
        }
        self.names.insert(name.to_owned());
        self.names.insert(written);
        self.families.push(MetricFamily {
            name: name.into(),
            help: family.help.unwrap_or_default().into(),
            kind,
            samples: family.samples,
            utf8_names: None,
        });
        Ok(())
    }

    fn finish(mut self) -> Result<MetricSet, ParseError> {
        self.finish_family()?;
        Ok(MetricSet {
            families: self.families,
        })
    }
}

/// The family name for metadata lines naming `raw`: text 0.0.4 names a
/// counter family after its `_total` samples, the model does not.
fn family_name(raw: &str, kind: MetricKind, format: Format) -> &str {
    match (format, kind) {
        (Format::Text, MetricKind::Counter) => raw
            .strip_suffix("_total")
            .filter(|base| !base.is_empty())
            .unwrap_or(raw),
        _ => raw,
    }
}

/// The suffix of `sample` after `base` if a `kind` family may hold it.
fn sample_suffix<'a>(
    base: &str,
    kind: MetricKind,
    sample: &'a str,
    format: Format,
) -> Option<&'a str> {
    let om = format == Format::OpenMetrics;
    let suffix = sample.strip_prefix(base)?;
    let ok = match kind {
        MetricKind::Counter => matches!(
            (suffix, om),
            ("_total", _) | ("_created", true) | ("", false)
        ),
        MetricKind::Gauge(_) => suffix.is_empty(),
        MetricKind::Histogram => {
            matches!(suffix, "_bucket" | "_count" | "_sum") || (om && suffix == "_created")
        }
        MetricKind::Summary => {
            matches!(suffix, "" | "_count" | "_sum") || (om && suffix == "_created")
        }
    };
    ok.then_some(suffix)
}

/// A `# ...` line of text 0.0.4 (after the `#`): `HELP` or `TYPE`, or
/// `None` for a comment.
fn text_metadata(line: &str) -> Result<Option<(&str, Meta)>, String> {
    let (keyword, rest) = split_blank(line.trim_start_matches(is_blank));
    let (name, rest) = split_blank(rest.trim_start_matches(is_blank));
    match keyword {
        "HELP" => {
            metric_name(name)?;
            // `rest` is empty or starts with the blank after the name.
            let text = rest.strip_prefix(is_blank).unwrap_or(rest);
            Ok(Some((name, Meta::Help(unescape_help(text, Format::Text)?))))
        }
        "TYPE" => {
            metric_name(name)?;
            let (kind, rest) = split_blank(rest.trim_start_matches(is_blank));
            if !rest.trim_matches(is_blank).is_empty() {
                return Err(format!("unexpected text after the type: `{}`", rest.trim()));
            }
            Ok(Some((name, Meta::Type(metric_kind(kind)?))))
        }
        _ => Ok(None),
    }
}

/// A `#` line of OpenMetrics other than `# EOF`.
fn om_metadata(line: &str) -> Result<(&str, Meta), String> {
    let (keyword, rest) = if let Some(rest) = line.strip_prefix("# HELP ") {
        ("HELP", rest)
    } else if let Some(rest) = line.strip_prefix("# TYPE ") {
        ("TYPE", rest)
    } else if let Some(rest) = line.strip_prefix("# UNIT ") {
        ("UNIT", rest)
    } else {
        return Err(
            "a line starting with `#` must be `# HELP`, `# TYPE`, `# UNIT` or `# EOF`".into(),
        );
    };
    let Some((name, value)) = rest.split_once(' ') else {
        return Err(format!(
            "`# {keyword}` needs a metric name, a space and a value"
        ));
    };
    metric_name(name)?;
    let meta = match keyword {
        "HELP" => Meta::Help(unescape_help(value, Format::OpenMetrics)?),
        "TYPE" => Meta::Type(metric_kind(value)?),
        _ => {
            if !value.chars().all(is_name_char) {
                return Err(format!("invalid unit `{value}`"));
            }
            if !value.is_empty() && !name.ends_with(&format!("_{value}")) {
                return Err(format!(
                    "the name `{name}` does not end in `_{value}`, its unit"
                ));
            }
            Meta::Unit
        }
    };
    Ok((name, meta))
}

fn metric_kind(name: &str) -> Result<MetricKind, String> {
    match name {
        "counter" => Ok(MetricKind::Counter),
        "gauge" => Ok(MetricKind::Gauge(GaugeMode::All)),
        "histogram" => Ok(MetricKind::Histogram),
        "summary" => Ok(MetricKind::Summary),
        "untyped" | "unknown" | "info" | "stateset" | "gaugehistogram" => Err(format!(
            "type `{name}` is not supported (only counter, gauge, histogram and summary)"
        )),
        _ => Err(format!("unknown type `{name}`")),
    }
}

/// HELP text with its escapes resolved.
fn unescape_help(text: &str, format: Format) -> Result<String, String> {
    let om = format == Format::OpenMetrics;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(c) if unescape_into(&mut out, c, om, format) => {}
                Some(c) => {
                    return Err(format!(
                        "invalid escape `\\{c}` in HELP (text 0.0.4 has `\\\\` and `\\n`)"
                    ))
                }
                None => return Err("HELP text ends in a lone backslash".into()),
            },
            '"' if om => return Err("unescaped `\"` in HELP (OpenMetrics writes `\\\"`)".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Appends what the escape `\c` stands for: `\\` and `\n` always, `\"` when
/// `quote` (label values; HELP only in OpenMetrics), and in OpenMetrics any
/// other backslash stands for itself. `false` for an escape text 0.0.4 does
/// not have.
fn unescape_into(out: &mut String, c: char, quote: bool, format: Format) -> bool {
    match c {
        '\\' => out.push('\\'),
        'n' => out.push('\n'),
        '"' if quote => out.push('"'),
        c if format == Format::OpenMetrics => {
            out.push('\\');
            out.push(c);
        }
        _ => return false,
    }
    true
}

/// A sample line, lexed.
struct SampleLine<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Lexes a sample line (for text 0.0.4 without leading blanks).
fn sample_line(line: &str, format: Format) -> Result<SampleLine<'_>, String> {
    let text = format == Format::Text;
    let mut cur = Cursor { rest: line };
    let name = cur.take_while(is_name_char);
    metric_name(name)?;
    let blanks = if text { cur.skip_blanks() } else { 0 };
    let (labels, separated) = if cur.eat('{') {
        let labels = label_set(&mut cur, format)?;
        let separated = if text {
            cur.skip_blanks() > 0
        } else {
            cur.eat(' ')
        };
        (labels, separated)
    } else if text {
        (Vec::new(), blanks > 0)
    } else {
        (Vec::new(), cur.eat(' '))
    };
    if !separated {
        return Err(match cur.rest.chars().next() {
            None => format!("sample `{name}` has no value"),
            Some(c) => format!("unexpected `{c}` before the value of `{name}`"),
        });
    }
    let value = number(cur.take_while(|c| !is_separator(c, format)), format)?;
    if text {
        cur.skip_blanks();
        let timestamp = cur.take_while(|c| !is_blank(c));
        if !timestamp.is_empty() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("invalid timestamp `{timestamp}` (integer milliseconds)"))?;
        }
        cur.skip_blanks();
        if !cur.rest.is_empty() {
            return Err(format!("unexpected text after the sample: `{}`", cur.rest));
        }
    } else {
        om_sample_tail(&mut cur)?;
    }
    Ok(SampleLine {
        name,
        labels,
        value,
    })
}

/// What may follow an OpenMetrics sample's value: ` timestamp`, then
/// ` # {labels} value [timestamp]` (an exemplar).
fn om_sample_tail(cur: &mut Cursor<'_>) -> Result<(), String> {
    if cur.rest.is_empty() {
        return Ok(());
    }
    cur.eat(' ');
    if !cur.rest.starts_with('#') {
        om_timestamp(cur.take_while(|c| c != ' '))?;
        if !cur.eat(' ') {
            return Ok(());
        }
    }
    if !(cur.eat('#') && cur.eat(' ') && cur.eat('{')) {
        return Err("expected an exemplar (` # {labels} value`) after the sample".into());
    }
    label_set(cur, Format::OpenMetrics)?;
    if !cur.eat(' ') {
        return Err("expected a space before the exemplar's value".into());
    }
    number(cur.take_while(|c| c != ' '), Format::OpenMetrics)?;
    if cur.eat(' ') {
        om_timestamp(cur.take_while(|c| c != ' '))?;
    }
    if !cur.rest.is_empty() {
        return Err(format!(
            "unexpected text after the exemplar: `{}`",
            cur.rest
        ));
    }
    Ok(())
}

/// The labels after a `{`, through the `}`.
fn label_set(cur: &mut Cursor<'_>, format: Format) -> Result<Vec<(String, String)>, String> {
    let text = format == Format::Text;
    let mut pairs: Vec<(String, String)> = Vec::new();
    loop {
        if text {
            cur.skip_blanks();
        }
        if cur.eat('}') {
            if !text && !pairs.is_empty() {
                return Err("OpenMetrics allows no comma before `}`".into());
            }
            break;
        }
        let name = cur.take_while(is_name_char);
        if !is_legacy_label_name(name) {
            return Err(match cur.rest.chars().next() {
                _ if !name.is_empty() => format!("invalid label name `{name}`"),
                None => "unterminated label set".into(),
                Some(c) => format!("expected a label name, found `{c}`"),
            });
        }
        if text {
            cur.skip_blanks();
        }
        if !cur.eat('=') {
            return Err(format!("expected `=` after label name `{name}`"));
        }
        if text {
            cur.skip_blanks();
        }
        if !cur.eat('"') {
            return Err(format!("expected `\"` to open the value of label `{name}`"));
        }
        let value = label_value(cur, format)?;
        pairs.push((name.to_owned(), value));
        if text {
            cur.skip_blanks();
        }
        if cur.eat('}') {
            break;
        }
        if !cur.eat(',') {
            return Err(match cur.rest.chars().next() {
                None => "unterminated label set".into(),
                Some(c) => format!("expected `,` or `}}` after a label, found `{c}`"),
            });
        }
    }
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("label `{}` appears twice", pair[0]));
    }
    Ok(pairs)
}

/// A label value after its opening quote, through the closing one.
fn label_value(cur: &mut Cursor<'_>, format: Format) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let Some(end) = cur.rest.find(['"', '\\']) else {
            return Err("unterminated label value".into());
        };
        out.push_str(&cur.rest[..end]);
        cur.rest = &cur.rest[end..];
        if cur.eat('"') {
            return Ok(out);
        }
        cur.eat('\\');
        match cur.bump() {
            Some(c) if unescape_into(&mut out, c, true, format) => {}
            Some(c) => {
                return Err(format!(
                "invalid escape `\\{c}` in a label value (text 0.0.4 has `\\\\`, `\\\"` and `\\n`)"
            ))
            }
            None => return Err("unterminated label value".into()),
        }
    }
}

/// A sample value or label `le`/`quantile` value.
fn number(token: &str, format: Format) -> Result<f64, String> {
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    let infinity =
        unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity");
    let syntax_ok = match format {
        // Rust's grammar: Go's `ParseFloat` without hexadecimal floats.
        Format::Text => true,
        Format::OpenMetrics => {
            infinity || token.eq_ignore_ascii_case("nan") || is_real_number(token)
        }
    };
    let value = token
        .parse::<f64>()
        .ok()
        .filter(|_| syntax_ok)
        .ok_or_else(|| {
            if token.is_empty() {
                "missing number".to_owned()
            } else {
                format!("invalid number `{token}`")
            }
        })?;
    if value.is_infinite() && !infinity {
        return Err(format!("number `{token}` is out of range"));
    }
    Ok(value)
}

/// An OpenMetrics timestamp: a finite real number of seconds.
fn om_timestamp(token: &str) -> Result<(), String> {
    match token.parse::<f64>() {
        Ok(t) if t.is_finite() && is_real_number(token) => Ok(()),
        _ => Err(format!("invalid timestamp `{token}`")),
    }
}

/// OpenMetrics' `realnumber`: `[sign] digits [. digits] [e [sign] digits]`,
/// with digits on at least one side of the point.
fn is_real_number(token: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    digits(int)
        && digits(frac)
        && !(int.is_empty() && frac.is_empty())
        && exponent.is_none_or(|e| !e.is_empty() && digits(e))
}

fn metric_name(name: &str) -> Result<(), String> {
    if is_legacy_metric_name(name) {
        Ok(())
    } else if name.is_empty() {
        Err("expected a metric name".into())
    } else {
        Err(format!("invalid metric name `{name}`"))
    }
}

/// A character of a metric name (`[a-zA-Z0-9_:]`).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_separator(c: char, format: Format) -> bool {
    match format {
        Format::Text => is_blank(c),
        Format::OpenMetrics => c == ' ',
    }
}

/// Splits at the first blank: the token before, the rest from the blank.
fn split_blank(s: &str) -> (&str, &str) {
    s.split_at(s.find(is_blank).unwrap_or(s.len()))
}

/// The unread rest of a line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let mut chars = self.rest.chars();
        let c = chars.next()?;
        self.rest = chars.as_str();
        Some(c)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let (token, rest) = self
            .rest
            .split_at(self.rest.find(|c| !keep(c)).unwrap_or(self.rest.len()));
        self.rest = rest;
        token
    }

    fn skip_blanks(&mut self) -> usize {
        self.take_while(is_blank).len()
    }
}
