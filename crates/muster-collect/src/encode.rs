//! Exposition in the text formats: Prometheus text 0.0.4 and 1.0.0 and
//! OpenMetrics, with names shown by any [`Escaping`] scheme; [`Format`] for
//! the two text syntaxes muster reads back ([`crate::parse`]) and the choice
//! between them muster had before negotiation ([`crate::Exposition`]).

use std::borrow::Cow;

use muster_store::write_go_float;

use std::fmt::Write;

use crate::model::{escape_into, Exemplar, Labels, MetricFamily, MetricKind, MetricSet};
use crate::names::{escape_name, needs_quotes, Escaping};
use crate::negotiate::{Exposition, MediaType};

/// A text exposition syntax (what [`crate::parse`] reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a body in this format (as `muster push` sends
    /// it; answers to scrapes use [`Exposition::content_type`]).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes `set` in `format` with the default `underscores` escaping: the
/// output Python's exposition gives for the same directory.
pub fn encode(set: &MetricSet, format: Format) -> String {
    encode_text(set, format == Format::OpenMetrics, Escaping::Underscores)
}

impl Exposition {
    /// Encodes `set` in this exposition: text (UTF-8) or protobuf bytes, to
    /// be sent with [`Exposition::content_type`].
    pub fn encode(self, set: &MetricSet) -> Vec<u8> {
        match self.media {
            MediaType::Protobuf => crate::protobuf::encode_protobuf(set, self.escaping),
            media => encode_text(set, media.is_openmetrics(), self.escaping).into_bytes(),
        }
    }

    /// Writes `set` in this exposition to `out`, text in pieces of about
    /// 64 KiB: the body of a big directory (a megabyte for
    /// 64 gunicorn workers) is never held whole, which spares a one-shot
    /// `muster scrape` that much fresh memory.
    pub fn write_to(self, set: &MetricSet, out: &mut impl std::io::Write) -> std::io::Result<()> {
        match self.media {
            MediaType::Protobuf => {
                out.write_all(&crate::protobuf::encode_protobuf(set, self.escaping))
            }
            media => {
                let mut piece = String::with_capacity(2 * WRITE_PIECE);
                text_to(
                    set,
                    media.is_openmetrics(),
                    self.escaping,
                    &mut piece,
                    WRITE_PIECE,
                    |piece| {
                        out.write_all(piece.as_bytes())?;
                        piece.clear();
                        Ok(())
                    },
                )
            }
        }
    }
}

/// The text [`Exposition::write_to`] gathers before it writes.
const WRITE_PIECE: usize = 64 << 10;

/// Encodes `set` in the text format (`om`: OpenMetrics), names shown by
/// `escaping` (quoted where `allow-utf-8` leaves them outside the legacy
/// set). Text 0.0.4 and 1.0.0 differ only in allowing quoted names, and
/// OpenMetrics 0.0.1 and 1.0.0 not at all for what the merge produces.
pub(crate) fn encode_text(set: &MetricSet, om: bool, escaping: Escaping) -> String {
    let samples: usize = set.families.iter().map(|f| f.samples.len()).sum();
    let mut out = String::with_capacity(samples * 96 + set.families.len() * 128);
    let Ok(()) = text_to(set, om, escaping, &mut out, usize::MAX, |_| {
        Ok::<(), std::convert::Infallible>(())
    });
    out
}

/// [`encode_text`] into `out`, handing `out` to `flush` after each line
/// that leaves it `flush_at` bytes or more, and at the end; `flush` writes
/// it out and empties it (or keeps it all).
fn text_to<E>(
    set: &MetricSet,
    om: bool,
    escaping: Escaping,
    out: &mut String,
    flush_at: usize,
    mut flush: impl FnMut(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    // The names shown are Python's `underscores` escaping of the names as
    // written: any other scheme starts from the names as written.
    let written = escaping != Escaping::Underscores;
    let mut family_name = String::new();
    for family in &set.families {
        // Text 0.0.4 names a counter family after its samples (`x_total`);
        // OpenMetrics names it without the suffix.
        family_name.clear();
        family_name.push_str(if written {
            family.written_name()
        } else {
            &family.name
        });
        if !om && family.kind == MetricKind::Counter {
            family_name.push_str("_total");
        }
        out.push_str("# HELP ");
        push_name(out, &family_name, escaping, true);
        out.push(' ');
        escape_into(out, &family.help, om);
        out.push_str("\n# TYPE ");
        push_name(out, &family_name, escaping, true);
        out.push(' ');
        out.push_str(family.kind.type_name());
        out.push('\n');
        // Label text rendered once per label set serves when the scheme
        // shows the family's (legacy) label names as they are.
        let rendered = escaping.keeps_legacy_names() && !(written && family.has_utf8_labels());
        for sample in &family.samples {
            let name = if written {
                family.written_sample_name(&sample.name)
            } else {
                Cow::Borrowed(&*sample.name)
            };
            let name = escape_name(&name, escaping, true);
            let labels = &sample.labels;
            let push_labels = |out: &mut String| {
                if rendered {
                    out.push_str(labels.rendered());
                } else {
                    push_labels(out, family, labels, escaping);
                }
            };
            let labelled = !labels.pairs().is_empty();
            if needs_quotes(&name, escaping, true) {
                // `{"name",labels}`: a name outside the legacy set goes
                // inside the braces.
                out.push('{');
                push_quoted(out, &name);
                if labelled {
                    out.push(',');
                    push_labels(out);
                }
                out.push('}');
            } else {
                out.push_str(&name);
                if labelled {
                    out.push('{');
                    push_labels(out);
                    out.push('}');
                }
            }
            out.push(' ');
            write_go_float(out, sample.value);
            if let (true, Some(exemplar)) = (om, &sample.exemplar) {
                write_exemplar(out, exemplar);
            }
            out.push('\n');
            if out.len() >= flush_at {
                flush(out)?;
            }
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    flush(out)
}

/// Writes a metric (`metric`) or label name as `escaping` shows it, quoted
/// when it stays outside the legacy set.
fn push_name(out: &mut String, name: &str, escaping: Escaping, metric: bool) {
    let name = escape_name(name, escaping, metric);
    if needs_quotes(&name, escaping, metric) {
        push_quoted(out, &name);
    } else {
        out.push_str(&name);
    }
}

fn push_quoted(out: &mut String, name: &str) {
    out.push('"');
    escape_into(out, name, true);
    out.push('"');
}

/// Writes `name="value",...` with the label names as written, shown by
/// `escaping`.
fn push_labels(out: &mut String, family: &MetricFamily, labels: &Labels, escaping: Escaping) {
    for (i, (name, value)) in labels.pairs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = if escaping == Escaping::Underscores {
            name
        } else {
            family.written_label_name(name)
        };
        push_name(out, name, escaping, false);
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    }
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

    fn set() -> MetricSet {
        MetricSet {
            families: vec![MetricFamily {
                name: "walks".into(),
                help: "a \\ b\nc \"q\"".into(),
                kind: MetricKind::Counter,
                samples: vec![Sample {
                    name: "walks_total".into(),
                    labels: Arc::new(Labels::new([("route", "a\"b\\c\nd")])),
                    value: 3.0,
                    exemplar: None,
                    native: None,
                }],
                utf8_names: None,
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

    /// What `muster scrape` prints, written in pieces, is the body a scrape
    /// answer holds, in every format, across piece boundaries.
    #[test]
    fn written_in_pieces_is_the_whole_body() {
        let mut big = set();
        // One family of many samples, and many families.
        for i in 0..2500 {
            let mut sample = big.families[0].samples[0].clone();
            sample.labels = Arc::new(Labels::new([("route", format!("/r{i}"))]));
            big.families[0].samples.push(sample);
        }
        let one = big.families[0].samples[0].clone();
        for i in 0..5000 {
            let mut family = big.families[0].clone();
            family.samples = vec![one.clone()];
            family.name = format!("walks{i}").into();
            family.samples[0].name = format!("walks{i}_total").into();
            big.families.push(family);
        }
        let media = [
            MediaType::Text004,
            MediaType::Text100,
            MediaType::OpenMetrics001,
            MediaType::OpenMetrics100,
            MediaType::Protobuf,
        ];
        for media in media {
            let exposition = Exposition::new(media, Escaping::Underscores);
            let whole = exposition.encode(&big);
            assert!(whole.len() > 3 * WRITE_PIECE, "{media:?}");
            let mut written = Vec::new();
            exposition.write_to(&big, &mut written).unwrap();
            assert!(written == whole, "{media:?}");
        }
    }

    #[test]
    fn openmetrics_escapes_quotes_in_help_and_ends_with_eof() {
        assert_eq!(
            encode(&set(), Format::OpenMetrics),
            "# HELP walks a \\\\ b\\nc \\\"q\\\"\n# TYPE walks counter\nwalks_total{route=\"a\\\"b\\\\c\\nd\"} 3.0\n# EOF\n"
        );
    }
}
