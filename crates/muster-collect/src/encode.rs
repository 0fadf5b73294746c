//! Exposition: Prometheus text 0.0.4 and OpenMetrics 1.0, and choosing
//! between them from an `Accept` header.

use muster_store::write_go_float;

use std::fmt::Write;

use crate::model::{escape_into, Exemplar, MetricKind, MetricSet};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format an `Accept` header prefers: OpenMetrics when it is
    /// accepted with a quality at least that of plain text, else text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for range in accept.split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut quality = 1.0f32;
            let mut version = None;
            for p in params {
                if let Some((k, v)) = p.split_once('=') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => quality = v.trim().parse().unwrap_or(0.0),
                        "version" => version = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|v| v.starts_with("1.") || v.starts_with("0.0.1")) =>
                {
                    openmetrics = openmetrics.max(quality)
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// Parses `text` or `openmetrics` (for command-line flags).
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "text" => Some(Format::Text),
            "openmetrics" => Some(Format::OpenMetrics),
            _ => None,
        }
    }
}

/// Encodes `set` in `format`.
pub fn encode(set: &MetricSet, format: Format) -> String {
    let samples: usize = set.families.iter().map(|f| f.samples.len()).sum();
    let mut out = String::with_capacity(samples * 96 + set.families.len() * 128);
    let om = format == Format::OpenMetrics;
    for family in &set.families {
        // Text 0.0.4 names a counter family after its samples (`x_total`);
        // OpenMetrics names it without the suffix.
        let total = !om && family.kind == MetricKind::Counter;
        out.push_str("# HELP ");
        out.push_str(&family.name);
        if total {
            out.push_str("_total");
        }
        out.push(' ');
        escape_into(&mut out, &family.help, om);
        out.push_str("\n# TYPE ");
        out.push_str(&family.name);
        if total {
            out.push_str("_total");
        }
        out.push(' ');
        out.push_str(family.kind.type_name());
        out.push('\n');
        for sample in &family.samples {
            out.push_str(&sample.name);
            let labels = sample.labels.rendered();
            if !labels.is_empty() {
                out.push('{');
                out.push_str(labels);
                out.push('}');
            }
            out.push(' ');
            write_go_float(&mut out, sample.value);
            if let (true, Some(exemplar)) = (om, &sample.exemplar) {
                write_exemplar(&mut out, exemplar);
            }
            out.push('\n');
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

/// OpenMetrics' exemplar after a sample's value:
/// ` # {trace_id="abc"} 0.5 1700000000.123`.
fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {");
    for (i, (name, value)) in exemplar.labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    }
    out.push_str("} ");
    write_go_float(out, exemplar.value);
    // Seconds with their fraction, never in exponent form.
    let _ = write!(out, " {}", exemplar.timestamp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, MetricFamily, Sample};
    use std::sync::Arc;

    #[test]
    fn negotiates_like_prometheus_expects() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("garbage;;;q=x,")), Format::Text);
    }

    fn set() -> MetricSet {
        MetricSet {
            families: vec![MetricFamily {
                name: "walks".into(),
                help: "a \\ b\nc \"q\"".into(),
                kind: MetricKind::Counter,
                samples: vec![Sample {
                    name: "walks_total".into(),
                    labels: Arc::new(Labels::new(vec![("route".into(), "a\"b\\c\nd".into())])),
                    value: 3.0,
                    exemplar: None,
                    native: None,
                }],
            }],
        }
    }

    #[test]
    fn text_escapes_and_names_counters_with_total() {
        assert_eq!(
            encode(&set(), Format::Text),
            "# HELP walks_total a \\\\ b\\nc \"q\"\n# TYPE walks_total counter\nwalks_total{route=\"a\\\"b\\\\c\\nd\"} 3.0\n"
        );
    }

    #[test]
    fn openmetrics_escapes_quotes_in_help_and_ends_with_eof() {
        assert_eq!(
            encode(&set(), Format::OpenMetrics),
            "# HELP walks a \\\\ b\\nc \\\"q\\\"\n# TYPE walks counter\nwalks_total{route=\"a\\\"b\\\\c\\nd\"} 3.0\n# EOF\n"
        );
    }
}
