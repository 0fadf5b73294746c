//! The on-disk layout shared with Python's `prometheus_client` (>= 0.18).
//!
//! A file is an 8-byte header (`i32 used`, 4 zero bytes) followed by entries:
//! `i32 len`, `len` bytes of UTF-8 key, 1 to 8 spaces of padding so the value
//! is 8-byte aligned, then `f64 value` and `f64 timestamp`. All integers and
//! floats are in native byte order.

use std::fmt;

/// Size of the file header (`i32 used` plus 4 bytes of padding).
pub const HEADER_SIZE: usize = 8;
/// Size Python gives a new file; we reserve the same amount up front.
pub const INITIAL_FILE_SIZE: usize = 1 << 16;
/// Largest file this crate writes or reads (`used` is an `i32`).
pub const MAX_FILE_SIZE: usize = 1 << 30;

/// Bytes of padding Python puts after a key of `key_len` bytes: 1 to 8, never 0.
pub const fn padding(key_len: usize) -> usize {
    8 - (key_len + 4) % 8
}

/// Offset of the value, relative to the start of an entry whose key has `key_len` bytes.
pub const fn value_offset(key_len: usize) -> usize {
    4 + key_len + padding(key_len)
}

/// Total size of an entry whose key has `key_len` bytes.
pub const fn entry_size(key_len: usize) -> usize {
    value_offset(key_len) + VALUE_PAYLOAD
}

/// Bytes after a key in Python's files (and muster's native files): the
/// value and the timestamp.
pub const VALUE_PAYLOAD: usize = 16;

/// Bytes after a key in an exemplar file: an exemplar slot (see
/// `muster_store::exemplar`): sequence word, value, timestamp, labels length
/// and [`EXEMPLAR_LABEL_BYTES`] of encoded labels.
pub const EXEMPLAR_PAYLOAD: usize = 32 + EXEMPLAR_LABEL_BYTES;

/// Room for an exemplar's encoded labels: each name and value as a 2-byte
/// length and its UTF-8 bytes. OpenMetrics allows 128 characters of names and
/// values together, which fits (128 characters of 4 bytes, or 64 labels of
/// one-character names).
pub const EXEMPLAR_LABEL_BYTES: usize = 768;

/// How a gauge's values from several processes are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GaugeMode {
    /// One series per process, labelled `pid`; kept after the process dies.
    All,
    /// Like `All`, but removed when the process dies.
    LiveAll,
    /// The minimum over processes.
    Min,
    /// The minimum over live processes.
    LiveMin,
    /// The maximum over processes.
    Max,
    /// The maximum over live processes.
    LiveMax,
    /// The sum over processes.
    Sum,
    /// The sum over live processes.
    LiveSum,
    /// The value with the latest timestamp.
    MostRecent,
    /// The value with the latest timestamp among live processes.
    LiveMostRecent,
}

impl GaugeMode {
    /// Every mode, in the order Python lists them.
    pub const ALL: [GaugeMode; 10] = [
        GaugeMode::All,
        GaugeMode::LiveAll,
        GaugeMode::Min,
        GaugeMode::LiveMin,
        GaugeMode::Max,
        GaugeMode::LiveMax,
        GaugeMode::Sum,
        GaugeMode::LiveSum,
        GaugeMode::MostRecent,
        GaugeMode::LiveMostRecent,
    ];

    /// The name used in file names and by Python (`livesum`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            GaugeMode::All => "all",
            GaugeMode::LiveAll => "liveall",
            GaugeMode::Min => "min",
            GaugeMode::LiveMin => "livemin",
            GaugeMode::Max => "max",
            GaugeMode::LiveMax => "livemax",
            GaugeMode::Sum => "sum",
            GaugeMode::LiveSum => "livesum",
            GaugeMode::MostRecent => "mostrecent",
            GaugeMode::LiveMostRecent => "livemostrecent",
        }
    }

    /// Parses a mode name as used in file names.
    pub fn parse(s: &str) -> Option<GaugeMode> {
        GaugeMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether values of this mode vanish when their process dies.
    pub const fn is_live(self) -> bool {
        matches!(
            self,
            GaugeMode::LiveAll
                | GaugeMode::LiveMin
                | GaugeMode::LiveMax
                | GaugeMode::LiveSum
                | GaugeMode::LiveMostRecent
        )
    }

    /// Whether the merge keeps one series per process (label `pid`).
    pub const fn is_per_process(self) -> bool {
        matches!(self, GaugeMode::All | GaugeMode::LiveAll)
    }
}

impl fmt::Display for GaugeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a file holds, as told by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `counter_<id>.db`
    Counter,
    /// `gauge_<mode>_<id>.db`
    Gauge(GaugeMode),
    /// `histogram_<id>.db`
    Histogram,
    /// `summary_<id>.db`
    Summary,
    /// `native_<id>.muster`: native histogram buckets, in muster's own file
    /// (Python's collector reads `*.db` only). Same entry layout as `*.db`.
    Native,
    /// `exemplar_<id>.muster`: exemplar slots (entries with a value area of
    /// [`EXEMPLAR_PAYLOAD`] bytes).
    Exemplar,
}

impl FileKind {
    /// The type name Python puts first in the file name.
    pub const fn type_name(self) -> &'static str {
        match self {
            FileKind::Counter => "counter",
            FileKind::Gauge(_) => "gauge",
            FileKind::Histogram => "histogram",
            FileKind::Summary => "summary",
            FileKind::Native => "native",
            FileKind::Exemplar => "exemplar",
        }
    }

    /// The file name for this kind and process id, e.g. `gauge_livesum_w3.db`.
    pub fn file_name(self, id: &str) -> String {
        match self {
            FileKind::Gauge(mode) => format!("gauge_{mode}_{id}.db"),
            FileKind::Native | FileKind::Exemplar => {
                format!("{}_{id}{MUSTER_SUFFIX}", self.type_name())
            }
            other => format!("{}_{id}.db", other.type_name()),
        }
    }

    /// Bytes after each entry's key in files of this kind.
    pub const fn payload_size(self) -> usize {
        match self {
            FileKind::Exemplar => EXEMPLAR_PAYLOAD,
            _ => VALUE_PAYLOAD,
        }
    }

    /// The kind of a muster-only file (`native_<id>.muster`,
    /// `exemplar_<id>.muster`) and its id; `None` for any other name.
    pub fn parse_muster_file(name: &str) -> Option<(FileKind, &str)> {
        let stem = name.strip_suffix(MUSTER_SUFFIX)?;
        let (kind, id) = stem.split_once('_')?;
        let kind = match kind {
            "native" => FileKind::Native,
            "exemplar" => FileKind::Exemplar,
            _ => return None,
        };
        Some((kind, id))
    }
}

/// The suffix of muster's own files, which Python's collector (it globs
/// `*.db`) never reads.
pub const MUSTER_SUFFIX: &str = ".muster";

/// A file name split into its kind and process id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName {
    /// What the file holds.
    pub kind: FileKind,
    /// The process id part (`pid` for Python, `w3` for a muster worker slot).
    pub id: String,
}

impl FileName {
    /// Parses a file name as Python's collector reads it: the name split on
    /// `_` gives the type (part 0) and, for a gauge, the mode (part 1) and
    /// the pid (part 2 without its last 3 characters: Python's `[:-3]`, meant
    /// for `.db`). So `gauge_all_1234.db` is pid `1234` and
    /// `gauge_all_node_7.db` pid `n`. Other types do not need a pid; their
    /// id is everything between the first `_` and `.db`. Names Python cannot
    /// read (another type, an unknown mode, a gauge without a part 2, no
    /// `.db`) are `None`: foreign files.
    pub fn parse(name: &str) -> Option<FileName> {
        let stem = name.strip_suffix(".db")?;
        let mut parts = name.split('_');
        let kind = match parts.next()? {
            "counter" => FileKind::Counter,
            "histogram" => FileKind::Histogram,
            "summary" => FileKind::Summary,
            "gauge" => FileKind::Gauge(GaugeMode::parse(parts.next()?)?),
            _ => return None,
        };
        let id = match kind {
            FileKind::Gauge(_) => {
                let part = parts.next()?;
                let keep = part.chars().count().saturating_sub(3);
                part.chars().take(keep).collect()
            }
            _ => stem.split_once('_')?.1.to_owned(),
        };
        Some(FileName { kind, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_matches_python_rule() {
        // Python: 8 - (len + 4) % 8, so 1..=8 and never 0.
        assert_eq!(padding(4), 8);
        assert_eq!(padding(3), 1);
        assert_eq!(padding(0), 4);
        for len in 0..64 {
            let p = padding(len);
            assert!((1..=8).contains(&p));
            assert_eq!((4 + len + p) % 8, 0);
        }
    }

    #[test]
    fn file_names_round_trip() {
        for mode in GaugeMode::ALL {
            let kind = FileKind::Gauge(mode);
            let parsed = FileName::parse(&kind.file_name("1234")).unwrap();
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.id, "1234");
        }
        let c = FileName::parse("counter_w3.db").unwrap();
        assert_eq!((c.kind, c.id.as_str()), (FileKind::Counter, "w3"));
        // Ids with `_`, read as Python's collector reads them.
        for (name, kind, id) in [
            ("counter_a_b.db", FileKind::Counter, "a_b"),
            ("counter_.db", FileKind::Counter, ""),
            ("gauge_all_node_7.db", FileKind::Gauge(GaugeMode::All), "n"),
            (
                "gauge_livesum_1234_x.db",
                FileKind::Gauge(GaugeMode::LiveSum),
                "1",
            ),
            ("gauge_max_ab.db", FileKind::Gauge(GaugeMode::Max), "ab"),
        ] {
            let parsed = FileName::parse(name).unwrap();
            assert_eq!((parsed.kind, parsed.id.as_str()), (kind, id), "{name}");
        }
        for kind in [FileKind::Native, FileKind::Exemplar] {
            let name = kind.file_name("w3");
            assert!(name.ends_with(".muster"), "{name}");
            assert_eq!(FileKind::parse_muster_file(&name), Some((kind, "w3")));
            assert_eq!(
                FileName::parse(&name),
                None,
                "Python's reader never sees it"
            );
        }
        for bad in [
            "gauge_bogus_1.db",
            "info_1.db",
            "counter_1.txt",
            "gauge_all.db",
        ] {
            assert_eq!(FileName::parse(bad), None, "{bad}");
        }
    }
}

/// Formats a float the way Python's `floatToGoString` does: `+Inf`, `-Inf`,
/// `NaN`, otherwise Python's shortest `repr` (`1.0`, `0.005`, `1e-05`) with
/// positive numbers of 7 or more integer digits in exponent form (`1e+06`).
/// Bucket bounds (`le`) are written with it, so a key is the same in both
/// languages.
pub fn float_to_go_string(value: f64) -> String {
    let mut out = String::new();
    write_go_float(&mut out, value);
    out
}

/// Appends [`float_to_go_string`]`(value)` to `out` without allocating.
pub fn write_go_float(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    // Fast path for whole numbers below 10^6 (counts, most bounds).
    if value.fract() == 0.0 && value.abs() < 1e6 && !(value == 0.0 && value.is_sign_negative()) {
        let _ = write!(out, "{}.0", value as i64);
        return;
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if value.is_sign_negative() {
        out.push('-');
    }
    // Python's repr uses fixed notation for -4 <= exp < 16; Go's rule (kept
    // by floatToGoString for positive numbers) switches at 7 integer digits.
    let fixed = (-4..16).contains(&exp) && !(value > 0.0 && exp >= 6);
    if fixed {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

#[cfg(test)]
mod float_tests {
    use super::float_to_go_string as go;

    #[test]
    fn matches_python_float_to_go_string() {
        // Expected strings are what prometheus_client.utils.floatToGoString
        // prints for the same floats.
        let cases: &[(f64, &str)] = &[
            (0.005, "0.005"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (3200.0, "3200.0"),
            (999999.0, "999999.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.5e7, "1.5e+07"),
            (-1e6, "-1000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (-1e16, "-1e+16"),
            (1e22, "1e+22"),
            (123.456, "123.456"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (value, want) in cases {
            assert_eq!(go(*value), *want, "{value:?}");
        }
    }
}
