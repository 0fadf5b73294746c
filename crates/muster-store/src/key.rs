//! Entry keys: the JSON text Python's `mmap_key` writes, and its parse.
//!
//! Python writes `json.dumps([family, sample, {labels}, help], sort_keys=True)`:
//! separators `", "` and `": "`, labels sorted by name, and every character
//! outside printable ASCII escaped as `\uXXXX` (lowercase hex, surrogate pairs
//! above U+FFFF). We write byte-identical keys so that a key means the same
//! thing whichever language wrote it.

use std::collections::BTreeMap;
use std::io;

use serde_json::ser::Formatter;

/// A parsed key: which family and sample a value belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The family (metric) name, e.g. `walks_started`.
    pub family: String,
    /// The sample name, e.g. `walks_started_total`.
    pub sample: String,
    /// Label pairs, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The family's help text.
    pub help: String,
}

impl Key {
    /// Parses the JSON text of a key. Errors describe what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Key, serde_json::Error> {
        let (family, sample, labels, help): (String, String, BTreeMap<String, String>, String) =
            serde_json::from_slice(bytes)?;
        Ok(Key {
            family,
            sample,
            labels: labels.into_iter().collect(),
            help,
        })
    }
}

/// Encodes a key exactly as Python's `mmap_key` does.
///
/// `labels` need not be sorted; they are sorted here by name.
pub fn encode_key(family: &str, sample: &str, labels: &[(&str, &str)], help: &str) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let mut out = Vec::with_capacity(family.len() + sample.len() + help.len() + 32);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(&(family, sample, sorted, help), &mut ser)
        .expect("serializing strings into memory cannot fail");
    // The formatter emits ASCII only.
    String::from_utf8(out).expect("the formatter writes ASCII")
}

/// `json.dumps` defaults: `", "` and `": "` separators, `ensure_ascii=True`.
struct PythonFormatter;

/// Python's item separator, before every item but the first.
fn separator<W: ?Sized + io::Write>(w: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_layout() {
        assert_eq!(
            encode_key(
                "walks_started",
                "walks_started_total",
                &[],
                "number of walks started"
            ),
            r#"["walks_started", "walks_started_total", {}, "number of walks started"]"#
        );
        assert_eq!(
            encode_key("h", "h_bucket", &[("route", "/a"), ("le", "0.5")], "x"),
            r#"["h", "h_bucket", {"le": "0.5", "route": "/a"}, "x"]"#
        );
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        let key = encode_key("m", "m", &[("v", "q\"b\\n\nü😀\u{7f}\u{1}")], "");
        assert_eq!(
            key,
            r#"["m", "m", {"v": "q\"b\\n\n\u00fc\ud83d\ude00\u007f\u0001"}, ""]"#
        );
        let parsed = Key::parse(key.as_bytes()).unwrap();
        assert_eq!(parsed.labels[0].1, "q\"b\\n\nü😀\u{7f}\u{1}");
    }

    #[test]
    fn parse_rejects_wrong_shapes() {
        for bad in [
            &b"[]"[..],
            b"[\"a\", \"b\", {}, 3]",
            b"{}",
            b"[\"a\", \"b\", {\"x\": 1}, \"h\"]",
            b"\xff",
        ] {
            assert!(Key::parse(bad).is_err());
        }
    }
}
