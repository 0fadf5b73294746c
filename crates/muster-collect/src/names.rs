//! Metric and label names: the legacy character sets of the exposition
//! formats, and the escaping prometheus_client 0.26 applies to any other
//! name before it shows it.
//!
//! Python accepts names such as `http.requests` or `café` and, with the
//! default `underscores` escaping of both of its exposition formats, shows
//! every character outside the legacy set as `_` (one per character) and a
//! leading digit as `_`: `http.requests` is `http_requests`, `0digit` is
//! `_digit`. The merge applies the same escaping, so a directory written by
//! Python shows the names Python would show.
//!
//! One difference: Python's OpenMetrics encoder also replaces `:` in sample
//! names (not in `# HELP`/`# TYPE`), so its own parser reads a family `a:b`
//! without samples and a second, untyped family `a_b_total`. muster keeps `:`
//! in both formats, as its text format and OpenMetrics allow.
//!
//! A scraper may ask for another scheme with the `escaping=` parameter of
//! its `Accept` header ([`Escaping`]); [`escape_name`] applies it, with the
//! rules of client_golang's `model.EscapeName` (which prometheus_client 0.26
//! follows too).

use std::borrow::Cow;
use std::fmt::Write as _;

/// How names outside the legacy character sets are shown: the values of the
/// `escaping=` media type parameter Prometheus 3 sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Escaping {
    /// `allow-utf-8`: names as they are; the text formats quote a name
    /// outside the legacy set (`{"my.metric",label="x"}`).
    AllowUtf8,
    /// `underscores` (the default): every character outside the legacy set
    /// becomes `_`; legacy names are kept.
    Underscores,
    /// `dots`: `_` becomes `__`, `.` becomes `_dot_`, any other character
    /// outside the legacy set `__`; applied to every name, legacy ones too.
    Dots,
    /// `values`: a name outside the legacy set becomes `U__` followed by the
    /// name with `_` doubled and any other character outside the set written
    /// as `_<hex code point>_`; legacy names are kept.
    Values,
}

impl Escaping {
    /// Every scheme, in the order of [`Escaping::as_str`]'s documentation.
    pub const ALL: [Escaping; 4] = [
        Escaping::AllowUtf8,
        Escaping::Underscores,
        Escaping::Dots,
        Escaping::Values,
    ];

    /// The parameter value: `allow-utf-8`, `underscores`, `dots`, `values`.
    pub fn as_str(self) -> &'static str {
        match self {
            Escaping::AllowUtf8 => "allow-utf-8",
            Escaping::Underscores => "underscores",
            Escaping::Dots => "dots",
            Escaping::Values => "values",
        }
    }

    /// The scheme a parameter value names (exactly, as client_golang compares).
    pub fn parse(value: &str) -> Option<Escaping> {
        Escaping::ALL.into_iter().find(|e| e.as_str() == value)
    }

    /// Whether every legacy name is shown as it is (all but `dots`).
    pub(crate) fn keeps_legacy_names(self) -> bool {
        self != Escaping::Dots
    }
}

/// `name` (a metric name when `metric`, else a label name) as `escaping`
/// shows it, unquoted: what protobuf carries, and what the text formats
/// write (quoted by them when [`needs_quotes`]).
pub(crate) fn escape_name(name: &str, escaping: Escaping, metric: bool) -> Cow<'_, str> {
    let keep = |c: char, i: usize| {
        if metric {
            metric_char(c, i)
        } else {
            label_char(c, i)
        }
    };
    let legacy = || !name.is_empty() && is_shown_as_is(name, metric);
    match escaping {
        Escaping::AllowUtf8 => Cow::Borrowed(name),
        Escaping::Underscores | Escaping::Values if legacy() => Cow::Borrowed(name),
        Escaping::Underscores => Cow::Owned(escape(name.to_owned(), metric)),
        Escaping::Dots => {
            let mut out = String::with_capacity(name.len() + 8);
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    '.' => out.push_str("_dot_"),
                    c if keep(c, i) => out.push(c),
                    _ => out.push_str("__"),
                }
            }
            Cow::Owned(out)
        }
        Escaping::Values => {
            let mut out = String::with_capacity(name.len() * 2 + 3);
            out.push_str("U__");
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    c if keep(c, i) => out.push(c),
                    // A `char` is always a valid code point: no `_FFFD_` case.
                    c => {
                        let _ = write!(out, "_{:x}_", c as u32);
                    }
                }
            }
            Cow::Owned(out)
        }
    }
}

/// Whether the text formats must write `name` (as [`escape_name`] returned
/// it) in quotes: only `allow-utf-8` leaves names outside the legacy set.
pub(crate) fn needs_quotes(name: &str, escaping: Escaping, metric: bool) -> bool {
    escaping == Escaping::AllowUtf8
        && !name.is_empty()
        && !if metric {
            is_legacy_metric_name(name)
        } else {
            is_legacy_label_name(name)
        }
}

/// Whether `name` is a metric name of the legacy set `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_legacy_metric_name(name: &str) -> bool {
    !name.is_empty() && is_shown_as_is(name, true)
}

/// Whether `name` is a label name of the legacy set `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_legacy_label_name(name: &str) -> bool {
    !name.is_empty() && is_shown_as_is(name, false)
}

/// `name` as Python's exposition shows a metric name: characters outside
/// `[a-zA-Z_:]` (and digits at the start) replaced by `_`.
pub(crate) fn escape_metric_name(name: Cow<'_, str>) -> Cow<'_, str> {
    if is_shown_as_is(&name, true) {
        return name;
    }
    Cow::Owned(escape(name.into_owned(), true))
}

/// `name` as Python's exposition shows a label name: characters outside
/// `[a-zA-Z_]` (and digits at the start) replaced by `_`.
pub(crate) fn escape_label_name(name: Cow<'_, str>) -> Cow<'_, str> {
    if is_shown_as_is(&name, false) {
        return name;
    }
    Cow::Owned(escape(name.into_owned(), false))
}

/// Whether every character of `name` (a metric name when `metric`, else a
/// label name) is kept as it is; true for an empty name. Checked on bytes,
/// which is enough: a byte of a non-ASCII character is never kept. Every
/// key's names and every sample's name go through here, so it is a table
/// look-up per byte rather than the character rules.
fn is_shown_as_is(name: &str, metric: bool) -> bool {
    let (first, rest) = if metric {
        (&METRIC_FIRST, &METRIC_REST)
    } else {
        (&LABEL_FIRST, &LABEL_REST)
    };
    match name.as_bytes() {
        [] => true,
        [head, tail @ ..] => first[*head as usize] && tail.iter().all(|&b| rest[b as usize]),
    }
}

/// The bytes kept as they are: a name's first (`first`) or any other byte,
/// of a metric name (`metric`) or a label name.
const fn kept_bytes(metric: bool, first: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        // A byte of 128 or more is never kept: as a char it is not ASCII.
        table[b] = kept(b as u8 as char, first, metric);
        b += 1;
    }
    table
}

static METRIC_FIRST: [bool; 256] = kept_bytes(true, true);
static METRIC_REST: [bool; 256] = kept_bytes(true, false);
static LABEL_FIRST: [bool; 256] = kept_bytes(false, true);
static LABEL_REST: [bool; 256] = kept_bytes(false, false);

/// `name` with every character not kept at its place replaced by `_`.
fn escape(name: String, metric: bool) -> String {
    if is_shown_as_is(&name, metric) {
        return name;
    }
    let keep = if metric { metric_char } else { label_char };
    name.chars()
        .enumerate()
        .map(|(i, c)| if keep(c, i) { c } else { '_' })
        .collect()
}

/// A character a label name may have at position `i`.
fn label_char(c: char, i: usize) -> bool {
    kept(c, i == 0, false)
}

/// A character a metric name may have at position `i`.
fn metric_char(c: char, i: usize) -> bool {
    kept(c, i == 0, true)
}

/// The legacy sets: whether a name (a metric name when `metric`, else a
/// label name) may have `c` first (`first`) or after, as it is.
const fn kept(c: char, first: bool, metric: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (metric && c == ':') || (!first && c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_check_agrees_with_the_character_rules() {
        // Every one- and two-character name over ASCII and some of Latin-1
        // and beyond, and each inside a longer name.
        let chars: Vec<char> = (0u32..0x250)
            .filter_map(char::from_u32)
            .chain(['😀', '€'])
            .collect();
        for &a in &chars {
            for &b in &chars {
                for name in [format!("{a}"), format!("{a}{b}"), format!("x{a}y{b}z")] {
                    for metric in [true, false] {
                        let keep = if metric { metric_char } else { label_char };
                        let by_chars = name.chars().enumerate().all(|(i, c)| keep(c, i));
                        assert_eq!(
                            is_shown_as_is(&name, metric),
                            by_chars,
                            "{name:?} metric={metric}"
                        );
                    }
                }
            }
        }
        assert!(is_shown_as_is("", true) && is_shown_as_is("", false));
    }

    #[test]
    fn escapes_like_prometheus_client() {
        // What prometheus_client 0.26's `escape_metric_name` and
        // `escape_label_name` return for the same names.
        for (name, metric, label) in [
            ("http_requests", "http_requests", "http_requests"),
            ("http.requests", "http_requests", "http_requests"),
            ("a:b", "a:b", "a_b"),
            ("café", "caf_", "caf_"),
            ("s😀", "s_", "s_"),
            ("0digit", "_digit", "_digit"),
            ("ünï", "_n_", "_n_"),
            ("kind-of", "kind_of", "kind_of"),
            ("__reserved", "__reserved", "__reserved"),
            ("", "", ""),
        ] {
            assert_eq!(escape_metric_name(name.into()), metric, "metric {name:?}");
            assert_eq!(escape_label_name(name.into()), label, "label {name:?}");
        }
    }

    #[test]
    fn escaping_schemes_like_prometheus_client() {
        // prometheus_client 0.26's `escape_metric_name(name, scheme)` and
        // `escape_label_name(name, scheme)` for the same names.
        let cases: [(&str, Escaping, &str, &str); 12] = [
            ("my.metric", Escaping::AllowUtf8, "my.metric", "my.metric"),
            ("a_b", Escaping::AllowUtf8, "a_b", "a_b"),
            ("my.metric", Escaping::Underscores, "my_metric", "my_metric"),
            ("a:b", Escaping::Underscores, "a:b", "a_b"),
            (
                "my.metric",
                Escaping::Dots,
                "my_dot_metric",
                "my_dot_metric",
            ),
            ("a_b", Escaping::Dots, "a__b", "a__b"),
            ("a:b", Escaping::Dots, "a:b", "a__b"),
            ("café", Escaping::Dots, "caf__", "caf__"),
            (
                "my.metric",
                Escaping::Values,
                "U__my_2e_metric",
                "U__my_2e_metric",
            ),
            ("a_b", Escaping::Values, "a_b", "a_b"),
            (
                "s😀_x",
                Escaping::Values,
                "U__s_1f600___x",
                "U__s_1f600___x",
            ),
            ("0a", Escaping::Values, "U___30_a", "U___30_a"),
        ];
        for (name, scheme, metric, label) in cases {
            assert_eq!(
                escape_name(name, scheme, true),
                metric,
                "{name:?} {scheme:?}"
            );
            assert_eq!(
                escape_name(name, scheme, false),
                label,
                "{name:?} {scheme:?}"
            );
        }
        assert!(needs_quotes("my.metric", Escaping::AllowUtf8, true));
        assert!(!needs_quotes("a:b", Escaping::AllowUtf8, true));
        assert!(needs_quotes("a:b", Escaping::AllowUtf8, false));
        assert!(!needs_quotes("my.metric", Escaping::Underscores, true));
        for e in Escaping::ALL {
            assert_eq!(Escaping::parse(e.as_str()), Some(e));
        }
        assert_eq!(Escaping::parse("Dots"), None);
    }

    #[test]
    fn legacy_sets() {
        assert!(is_legacy_metric_name("a:b_c9"));
        assert!(!is_legacy_metric_name("9a"));
        assert!(!is_legacy_metric_name(""));
        assert!(is_legacy_label_name("_x9"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(!is_legacy_label_name("é"));
    }
}
