//! Content negotiation as Prometheus 3 does it: which exposition a scraper
//! gets for its `Accept` header, and the exact `Content-Type` of the answer.
//!
//! Every place muster serves or prints metrics (a worker's `/metrics`,
//! `muster exporter`, `muster scrape --format`) goes through
//! [`Exposition::negotiate`] or [`Exposition::new`], then
//! [`Exposition::encode`] and [`Exposition::content_type`].
//!
//! The rules:
//! - Media ranges are read with their `q` (default 1; 0, or a `q` that is
//!   not a number from 0 to 1, is "not acceptable"). The highest `q` wins;
//!   between equal ones, the order of preference is PrometheusProto,
//!   OpenMetrics 1.0.0, OpenMetrics 0.0.1, text 1.0.0, text 0.0.4.
//!   (client_golang's `expfmt.Negotiate` sorts by `q` and, on ties, keeps
//!   roughly the header's order; Prometheus sends distinct `q` values, so
//!   the two agree on every header Prometheus sends.)
//! - `application/vnd.google.protobuf` needs
//!   `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`.
//! - `application/openmetrics-text` with `version=1.0.0` is OpenMetrics
//!   1.0.0; with `version=0.0.1` or no version, 0.0.1 (as client_golang);
//!   other versions are not served.
//! - `text/plain` with `version=1.0.0` is text 1.0.0; with `version=0.0.4`
//!   or none, text 0.0.4; `text/*` and `*/*` are text 0.0.4.
//! - `escaping=` of the chosen range (`allow-utf-8`, `underscores`, `dots`,
//!   `values`) picks how names are shown, in every format (as client_golang
//!   does); absent or unknown, `underscores`, which is what Python's
//!   exposition shows too.
//! - Nothing acceptable (no header, or only types muster does not serve):
//!   text 0.0.4, which every Prometheus server reads.
//! - The `Content-Type` always names the version, the charset (text formats)
//!   and the escaping scheme, as client_golang's answers do.

use crate::names::Escaping;

/// A wire format muster serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// Prometheus text 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
    /// Prometheus text 1.0.0 (`text/plain; version=1.0.0`): 0.0.4 plus
    /// quoted UTF-8 names.
    Text100,
    /// OpenMetrics 0.0.1 (`application/openmetrics-text; version=0.0.1`).
    OpenMetrics001,
    /// OpenMetrics 1.0.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics100,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl MediaType {
    /// Every media type, most preferred first (the order that breaks ties
    /// between equal `q` values).
    pub const BY_PREFERENCE: [MediaType; 5] = [
        MediaType::Protobuf,
        MediaType::OpenMetrics100,
        MediaType::OpenMetrics001,
        MediaType::Text100,
        MediaType::Text004,
    ];

    /// Whether this is one of the OpenMetrics text formats.
    pub fn is_openmetrics(self) -> bool {
        matches!(self, MediaType::OpenMetrics001 | MediaType::OpenMetrics100)
    }

    fn preference(self) -> usize {
        MediaType::BY_PREFERENCE
            .iter()
            .position(|m| *m == self)
            .unwrap_or(MediaType::BY_PREFERENCE.len())
    }
}

/// What an answer carries: a media type and how names are escaped in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exposition {
    /// The wire format.
    pub media: MediaType,
    /// How metric and label names outside the legacy sets are shown.
    pub escaping: Escaping,
}

impl Default for Exposition {
    /// Text 0.0.4 with `underscores`: what a scraper that states no
    /// preference gets, and what Python shows.
    fn default() -> Exposition {
        Exposition::new(MediaType::Text004, Escaping::Underscores)
    }
}

/// The protobuf media type's `proto` parameter.
const PROTO_MESSAGE: &str = "io.prometheus.client.MetricFamily";

impl Exposition {
    /// An exposition of `media` with names escaped by `escaping`.
    pub fn new(media: MediaType, escaping: Escaping) -> Exposition {
        Exposition { media, escaping }
    }

    /// The exposition an `Accept` header asks for (see the module
    /// documentation for the rules); never fails: anything unreadable is
    /// "not acceptable", and with nothing acceptable the answer is text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let mut best: Option<(f32, MediaType, Escaping)> = None;
        for range in accept.unwrap_or("").split(',') {
            let Some((q, media, escaping)) = read_range(range) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((bq, bm, _)) => q > bq || (q == bq && media.preference() < bm.preference()),
            };
            if better {
                best = Some((q, media, escaping));
            }
        }
        best.map_or_else(Exposition::default, |(_, media, escaping)| {
            Exposition::new(media, escaping)
        })
    }

    /// The exact `Content-Type` of an answer in this exposition.
    pub fn content_type(self) -> &'static str {
        macro_rules! with_escaping {
            ($base:literal) => {
                match self.escaping {
                    Escaping::AllowUtf8 => concat!($base, "; escaping=allow-utf-8"),
                    Escaping::Underscores => concat!($base, "; escaping=underscores"),
                    Escaping::Dots => concat!($base, "; escaping=dots"),
                    Escaping::Values => concat!($base, "; escaping=values"),
                }
            };
        }
        match self.media {
            MediaType::Text004 => with_escaping!("text/plain; version=0.0.4; charset=utf-8"),
            MediaType::Text100 => with_escaping!("text/plain; version=1.0.0; charset=utf-8"),
            MediaType::OpenMetrics001 => {
                with_escaping!("application/openmetrics-text; version=0.0.1; charset=utf-8")
            }
            MediaType::OpenMetrics100 => {
                with_escaping!("application/openmetrics-text; version=1.0.0; charset=utf-8")
            }
            MediaType::Protobuf => with_escaping!(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            ),
        }
    }
}

/// One media range of an `Accept` header: its quality and what muster would
/// serve for it; `None` when muster serves nothing for it or it is not
/// acceptable (`q=0`, or a `q` that does not read as a quality).
fn read_range(range: &str) -> Option<(f32, MediaType, Escaping)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    let mut q = 1.0f32;
    let (mut version, mut proto, mut encoding, mut escaping) = (None, None, None, None);
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        match key.trim().to_ascii_lowercase().as_str() {
            "q" => q = value.parse().ok().filter(|q| (0.0..=1.0).contains(q))?,
            "version" => version = Some(value),
            "proto" => proto = Some(value),
            "encoding" => encoding = Some(value),
            "escaping" => escaping = Escaping::parse(value),
            _ => {}
        }
    }
    if q <= 0.0 {
        return None;
    }
    let served = match media.as_str() {
        "application/vnd.google.protobuf"
            if proto == Some(PROTO_MESSAGE) && encoding == Some("delimited") =>
        {
            MediaType::Protobuf
        }
        "application/openmetrics-text" => match version {
            Some("1.0.0") => MediaType::OpenMetrics100,
            Some("0.0.1") | None => MediaType::OpenMetrics001,
            Some(_) => return None,
        },
        "text/plain" => match version {
            Some("1.0.0") => MediaType::Text100,
            Some("0.0.4") | None => MediaType::Text004,
            Some(_) => return None,
        },
        "text/*" | "*/*" => MediaType::Text004,
        _ => return None,
    };
    Some((q, served, escaping.unwrap_or(Escaping::Underscores)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Escaping::*;
    use MediaType::*;

    /// The headers Prometheus sends, and what each must get.
    #[test]
    fn negotiates_what_prometheus_asks_for() {
        let table: &[(&str, MediaType, Escaping)] = &[
            // Prometheus 3, default scrape_protocols.
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics100,
                AllowUtf8,
            ),
            // Prometheus 3 with PrometheusProto first.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                Protobuf,
                AllowUtf8,
            ),
            // Prometheus 3, scrape_protocols: [PrometheusText1.0.0].
            ("text/plain;version=1.0.0;escaping=underscores", Text100, Underscores),
            // Prometheus 2.42 with --enable-feature=native-histograms.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Protobuf,
                Underscores,
            ),
            // Prometheus 2.42 default.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics100,
                Underscores,
            ),
        ];
        for (accept, media, escaping) in table {
            assert_eq!(
                Exposition::negotiate(Some(accept)),
                Exposition::new(*media, *escaping),
                "{accept}"
            );
        }
    }

    #[test]
    fn negotiation_table() {
        let table: &[(Option<&str>, MediaType, Escaping)] = &[
            (None, Text004, Underscores),
            (Some(""), Text004, Underscores),
            (Some("text/plain"), Text004, Underscores),
            (Some("*/*"), Text004, Underscores),
            (Some("text/*;escaping=dots"), Text004, Dots),
            (Some("application/json"), Text004, Underscores),
            (Some("application/openmetrics-text"), OpenMetrics001, Underscores),
            (Some("Application/OpenMetrics-Text; Version=1.0.0"), OpenMetrics100, Underscores),
            (Some("application/openmetrics-text;version=2.0.0"), Text004, Underscores),
            (Some("application/openmetrics-text; q=0"), Text004, Underscores),
            (Some("text/plain;version=9.9.9"), Text004, Underscores),
            (Some("text/plain;version=1.0.0;escaping=values"), Text100, Values),
            (Some("text/plain;version=1.0.0;escaping=\"dots\""), Text100, Dots),
            (Some("text/plain;version=1.0.0;escaping=bogus"), Text100, Underscores),
            // Highest q wins, whatever the order.
            (Some("text/plain;q=0.9,application/openmetrics-text;version=1.0.0;q=0.8"), Text004, Underscores),
            // Equal q: the order of preference.
            (Some("text/plain,text/plain;version=1.0.0,application/openmetrics-text"), OpenMetrics001, Underscores),
            (Some("*/*,application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1"), OpenMetrics100, Underscores),
            (
                Some("text/plain;version=1.0.0,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
                Protobuf,
                Underscores,
            ),
            // Protobuf other than delimited MetricFamily is not served.
            (Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"), Text004, Underscores),
            (Some("application/vnd.google.protobuf;encoding=delimited"), Text004, Underscores),
            // The escaping of the chosen range, not of another.
            (Some("text/plain;escaping=dots;q=0.1,application/openmetrics-text;version=1.0.0"), OpenMetrics100, Underscores),
            // Unreadable quality: that range is not acceptable.
            (Some("application/openmetrics-text;q=x,text/plain;version=1.0.0;q=0.1"), Text100, Underscores),
            (Some("application/openmetrics-text;q=2"), Text004, Underscores),
            (Some("garbage;;;q=x,"), Text004, Underscores),
            (Some(",,;=,=;"), Text004, Underscores),
        ];
        for (accept, media, escaping) in table {
            assert_eq!(
                Exposition::negotiate(*accept),
                Exposition::new(*media, *escaping),
                "{accept:?}"
            );
        }
    }

    #[test]
    fn content_types_are_exact() {
        assert_eq!(
            Exposition::default().content_type(),
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            Exposition::new(Text100, AllowUtf8).content_type(),
            "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        );
        assert_eq!(
            Exposition::new(OpenMetrics001, Dots).content_type(),
            "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=dots"
        );
        assert_eq!(
            Exposition::new(OpenMetrics100, Values).content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=values"
        );
        assert_eq!(
            Exposition::new(Protobuf, Underscores).content_type(),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; escaping=underscores"
        );
        // Every content type negotiates back to its own exposition.
        for media in MediaType::BY_PREFERENCE {
            for escaping in Escaping::ALL {
                let e = Exposition::new(media, escaping);
                assert_eq!(Exposition::negotiate(Some(e.content_type())), e);
            }
        }
    }
}
