//! What an entry's key says: its JSON parsed, with metric and label names
//! as Python's exposition shows them.
//!
//! Keys are the JSON Python's `mmap_key` writes (`json.dumps([family,
//! sample, {labels}, help], sort_keys=True)`: separators `", "` and `": "`,
//! ASCII only), and muster writes the same bytes. A key spelled exactly that
//! way is read by a small parser made for it; any other spelling (other
//! blanks, other separators) and any error goes to `serde_json` through
//! [`muster_store::Key::parse`], which decides and words the error. A cold
//! scrape parses every distinct key once, so this is part of its cost.

use std::borrow::Cow;
use std::sync::Arc;

use hashbrown::HashSet;

use muster_store::Key;

use crate::model::LabelPair;
use crate::names::{escape_label_name, escape_metric_name};

/// A key's JSON, parsed, with names as Python's exposition shows them;
/// strings without escapes are borrowed from the key's bytes.
pub(crate) struct ParsedKey<'a> {
    pub(crate) family: Cow<'a, str>,
    pub(crate) sample: Cow<'a, str>,
    /// All labels, sorted by name.
    pub(crate) labels: Vec<LabelPair>,
    pub(crate) help: Cow<'a, str>,
    /// The family name as written, when escaping changed it.
    pub(crate) utf8_family: Option<String>,
    /// The label names escaping changed: (as shown, as written).
    pub(crate) utf8_labels: Vec<(String, String)>,
    /// Where `le` is in `labels`.
    pub(crate) le: Option<usize>,
    /// Where `pid` is in `labels`.
    pub(crate) pid: Option<usize>,
}

/// Label names and values met in keys, each kept once and shared: the keys
/// of a directory repeat a few of them (`method`, `GET`, `le`, `0.005`), and
/// a first scrape parses thousands of keys.
#[derive(Default)]
pub(crate) struct Strings(HashSet<Arc<str>, foldhash::fast::RandomState>);

impl Strings {
    /// `text`, shared.
    pub(crate) fn get(&mut self, text: &str) -> Arc<str> {
        self.0.get_or_insert_with(text, |t| Arc::from(t)).clone()
    }
}

/// Parses a key's bytes, taking label names and values from `strings`;
/// the error says what is wrong with them.
pub(crate) fn parse_key<'a>(
    raw: &'a [u8],
    strings: &mut Strings,
) -> Result<ParsedKey<'a>, Arc<str>> {
    let key = match parse_python_spelling(raw) {
        Some(key) => key,
        None => {
            let key = Key::parse(raw)
                .map_err(|e| format!("key is not valid JSON of the expected shape: {e}"))?;
            Spelled {
                family: key.family.into(),
                sample: key.sample.into(),
                labels: key
                    .labels
                    .into_iter()
                    .map(|(n, v)| (n.into(), v.into()))
                    .collect(),
                help: key.help.into(),
            }
        }
    };
    if key.family.is_empty() || key.sample.is_empty() {
        return Err("key has an empty metric or sample name".into());
    }
    let mut labels = Vec::with_capacity(key.labels.len());
    let mut utf8_labels = Vec::new();
    for (name, value) in key.labels {
        if name.is_empty() {
            return Err("key has an empty label name".into());
        }
        let shown = escape_label_name(Cow::Borrowed(&name));
        if *shown != *name {
            utf8_labels.push((shown.to_string(), name.to_string()));
        }
        labels.push((strings.get(&shown), strings.get(&value)));
    }
    labels.sort_unstable_by(|a: &LabelPair, b| a.0.cmp(&b.0));
    if let Some(pair) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("two labels are shown as {:?}", pair[0].0).into());
    }
    let family = escape_metric_name(key.family.clone());
    let utf8_family = (family != key.family).then(|| key.family.into_owned());
    Ok(ParsedKey {
        family,
        utf8_family,
        utf8_labels,
        sample: escape_metric_name(key.sample),
        le: labels.iter().position(|(n, _)| &**n == "le"),
        pid: labels.iter().position(|(n, _)| &**n == "pid"),
        labels,
        help: key.help,
    })
}

/// A key's four parts as spelled, before names are escaped.
#[derive(Debug, PartialEq)]
struct Spelled<'a> {
    family: Cow<'a, str>,
    sample: Cow<'a, str>,
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    help: Cow<'a, str>,
}

/// Parses a key spelled exactly as Python writes it; `None` for anything
/// else, including every error (label names appearing twice too, which
/// JSON leaves to the reader).
fn parse_python_spelling(raw: &[u8]) -> Option<Spelled<'_>> {
    let mut cur = Cursor { rest: raw };
    cur.eat(b"[")?;
    let family = cur.string()?;
    cur.eat(b", ")?;
    let sample = cur.string()?;
    cur.eat(b", {")?;
    let mut labels: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    if cur.eat(b"}").is_none() {
        loop {
            let name = cur.string()?;
            cur.eat(b": ")?;
            let value = cur.string()?;
            // `sort_keys=True`: names come sorted and once each.
            if labels.last().is_some_and(|(last, _)| *last >= name) {
                return None;
            }
            labels.push((name, value));
            if cur.eat(b"}").is_some() {
                break;
            }
            cur.eat(b", ")?;
        }
    }
    cur.eat(b", ")?;
    let help = cur.string()?;
    cur.eat(b"]")?;
    cur.rest.is_empty().then_some(Spelled {
        family,
        sample,
        labels,
        help,
    })
}

/// The unread part of a key.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, token: &[u8]) -> Option<()> {
        self.rest = self.rest.strip_prefix(token)?;
        Some(())
    }

    /// A JSON string with its escapes resolved (borrowed when it has none).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', self.rest)?;
        let (plain, rest) = self.rest.split_at(end);
        let mut out = Cow::Borrowed(std::str::from_utf8(plain).ok()?);
        self.rest = rest;
        loop {
            match self.rest.split_first()? {
                (b'"', rest) => {
                    self.rest = rest;
                    return Some(out);
                }
                (b'\\', rest) => {
                    self.rest = rest;
                    let c = self.escape()?;
                    out.to_mut().push(c);
                }
                _ => {
                    let end = memchr::memchr2(b'"', b'\\', self.rest)?;
                    let (plain, rest) = self.rest.split_at(end);
                    out.to_mut().push_str(std::str::from_utf8(plain).ok()?);
                    self.rest = rest;
                }
            }
        }
    }

    /// The character an escape (after its `\`) stands for.
    fn escape(&mut self) -> Option<char> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xd800..=0xdbff => {
                        // A surrogate pair; a lone surrogate is left to serde_json.
                        self.eat(b"\\u")?;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return None;
                        }
                        let c = 0x10000
                            + ((u32::from(unit) - 0xd800) << 10)
                            + (u32::from(low) - 0xdc00);
                        char::from_u32(c)?
                    }
                    _ => char::from_u32(u32::from(unit))?,
                }
            }
            _ => return None,
        })
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.rest.get(..4)?;
        let text = std::str::from_utf8(digits).ok()?;
        let unit = u16::from_str_radix(text, 16).ok()?;
        self.rest = &self.rest[4..];
        Some(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owned(s: Spelled<'_>) -> Key {
        Key {
            family: s.family.into_owned(),
            sample: s.sample.into_owned(),
            labels: s
                .labels
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
            help: s.help.into_owned(),
        }
    }

    proptest! {
        /// Every key muster (or Python) writes is read by the fast parser,
        /// exactly as serde_json reads it.
        #[test]
        fn any_written_key_reads_as_serde_json_reads_it(
            family in "\\PC*", sample in "\\PC*", help in "\\PC*",
            labels in prop::collection::vec(("\\PC*", "\\PC*"), 0..4),
        ) {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let key = muster_store::encode_key(&family, &sample, &pairs, &help);
            let fast = parse_python_spelling(key.as_bytes()).map(owned);
            prop_assert_eq!(fast, Some(Key::parse(key.as_bytes()).unwrap()));
        }
    }

    /// Whatever the fast parser reads, it reads as serde_json does.
    #[test]
    fn reads_python_keys_as_serde_json_does() {
        let keys = [
            muster_store::encode_key("x", "x_total", &[], "help"),
            muster_store::encode_key(
                "http.requests",
                "http.requests_total",
                &[
                    ("route", "/a\"b\\c\nd"),
                    ("m\u{e9}thod", "caf\u{e9} \u{1F600}"),
                    ("le", "+Inf"),
                ],
                "Help with \\ and \"quotes\"\n\u{1F600}.",
            ),
            r#"["a", "b", {"k": "\/\b\f\r\t"}, ""]"#.to_owned(),
        ];
        for key in keys {
            let fast = parse_python_spelling(key.as_bytes()).expect("Python's spelling");
            assert_eq!(owned(fast), Key::parse(key.as_bytes()).unwrap(), "{key}");
        }
    }

    /// Other spellings and every doubtful case go to serde_json.
    #[test]
    fn leaves_other_spellings_to_serde_json() {
        for key in [
            r#"["a","b",{},"h"]"#,
            r#"["a", "b", {"y": "1", "x": "2"}, "h"]"#,
            r#"["a", "b", {"x": "1", "x": "2"}, "h"]"#,
            r#"["a", "b", {}, "\ud800"]"#,
            r#"["a", "b", {}, "h"] "#,
            r#"["a", "b", {}, "\q"]"#,
            r#"["a", "b", {}, "h""#,
        ] {
            assert!(parse_python_spelling(key.as_bytes()).is_none(), "{key}");
        }
        // Both parsers agree on what serde_json accepts.
        let other = parse_key(
            br#"["a","b",{"y":"1","x":"2"},"h"]"#,
            &mut Strings::default(),
        )
        .unwrap();
        assert_eq!(
            other.labels,
            [("x".into(), "2".into()), ("y".into(), "1".into())]
        );
        assert!(parse_key(br#"["a", "b", {}, "\q"]"#, &mut Strings::default()).is_err());
    }
}
