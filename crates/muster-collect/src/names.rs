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

use std::borrow::Cow;

/// Whether `name` is a metric name of the legacy set `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_legacy_metric_name(name: &str) -> bool {
    !name.is_empty() && name.chars().enumerate().all(|(i, c)| metric_char(c, i))
}

/// Whether `name` is a label name of the legacy set `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_legacy_label_name(name: &str) -> bool {
    !name.is_empty() && name.chars().enumerate().all(|(i, c)| label_char(c, i))
}

/// `name` as Python's exposition shows a metric name: characters outside
/// `[a-zA-Z_:]` (and digits at the start) replaced by `_`.
pub(crate) fn escape_metric_name(name: Cow<'_, str>) -> Cow<'_, str> {
    if is_shown_as_is(&name, metric_char) {
        return name;
    }
    Cow::Owned(escape(name.into_owned(), metric_char))
}

/// `name` as Python's exposition shows a label name: characters outside
/// `[a-zA-Z_]` (and digits at the start) replaced by `_`.
pub(crate) fn escape_label_name(name: String) -> String {
    escape(name, label_char)
}

/// Whether every character of `name` is kept (checked on bytes, which is
/// enough for the usual all-ASCII name: a non-ASCII byte is never kept).
fn is_shown_as_is(name: &str, keep: impl Fn(char, usize) -> bool) -> bool {
    name.bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii() && keep(b as char, i))
}

fn escape(name: String, keep: impl Fn(char, usize) -> bool) -> String {
    if is_shown_as_is(&name, &keep) {
        return name;
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| if keep(c, i) { c } else { '_' })
        .collect()
}

/// A character a label name may have at position `i`.
fn label_char(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())
}

/// A character a metric name may have at position `i`.
fn metric_char(c: char, i: usize) -> bool {
    label_char(c, i) || c == ':'
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn legacy_sets() {
        assert!(is_legacy_metric_name("a:b_c9"));
        assert!(!is_legacy_metric_name("9a"));
        assert!(!is_legacy_metric_name(""));
        assert!(is_legacy_label_name("_x9"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(!is_legacy_label_name("é"));
    }
}
