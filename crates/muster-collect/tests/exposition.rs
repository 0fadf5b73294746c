//! `parse` against `encode`: every set the collector can produce comes back
//! from both formats unchanged; every input `parse` accepts is a fixed point
//! of encode-then-parse; malformed input is an error with its line, never a
//! panic.

use std::sync::Arc;

use muster_collect::{encode, parse, Format, Labels, MetricFamily, MetricKind, MetricSet, Sample};
use muster_store::{float_to_go_string, GaugeMode};
use proptest::prelude::*;

const FORMATS: [Format; 2] = [Format::Text, Format::OpenMetrics];

/// One line per family and per sample, floats in their canonical encoding
/// (so NaN equals NaN, and -0.0 differs from 0.0), for comparing sets.
fn canonical(set: &MetricSet) -> Vec<String> {
    let mut out = Vec::new();
    for family in &set.families {
        out.push(format!(
            "family {:?} {:?} help={:?}",
            family.name, family.kind, family.help
        ));
        for s in &family.samples {
            out.push(format!(
                "  {}{:?} {}",
                s.name,
                s.labels.pairs(),
                float_to_go_string(s.value)
            ));
        }
    }
    out
}

/// What `parse` gives back for `set`: gauges lose their merge mode.
fn as_parsed(set: &MetricSet) -> MetricSet {
    let mut set = set.clone();
    for family in &mut set.families {
        if let MetricKind::Gauge(_) = family.kind {
            family.kind = MetricKind::Gauge(GaugeMode::All);
        }
    }
    set
}

// --- generators --------------------------------------------------------------

/// Strings full of what needs escaping, and any other character.
fn hostile_string() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        Just('"'),
        Just('\\'),
        Just('\n'),
        Just(' '),
        Just('\t'),
        Just('\r'),
        Just('n'),
        Just('#'),
        Just('{'),
        Just('}'),
        Just(','),
        Just('='),
        Just('é'),
        Just('😀'),
        Just('\0'),
        any::<char>(),
    ];
    prop_oneof![
        1 => Just(String::new()),
        6 => proptest::collection::vec(c, 0..12).prop_map(|v| v.into_iter().collect()),
        1 => any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => -1e7..1e7f64,
        1 => (0u32..1000).prop_map(f64::from),
        1 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            0.0,
            1e-300,
            1e21,
            1e6,
            123_456_789.125,
        ]),
    ]
}

fn metric_name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,8}",
        prop::sample::select(vec![
            "", "", "", "_total", "_count", "_sum", "_bucket", "_created",
        ]),
    )
        .prop_map(|(base, suffix)| base + suffix)
}

fn label_set() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("le and quantile are added by kind", |n| {
        n != "le" && n != "quantile"
    });
    proptest::collection::vec((name, hostile_string()), 0..4).prop_map(|mut pairs| {
        let mut seen = std::collections::HashSet::new();
        pairs.retain(|(n, _)| seen.insert(n.clone()));
        pairs
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge(GaugeMode),
    Histogram,
    Summary,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Counter),
        prop::sample::select(GaugeMode::ALL.to_vec()).prop_map(Kind::Gauge),
        Just(Kind::Histogram),
        Just(Kind::Summary),
    ]
}

fn sample(
    name: String,
    mut labels: Vec<(String, String)>,
    extra: Option<(&str, f64)>,
    value: f64,
) -> Sample {
    if let Some((label, bound)) = extra {
        labels.push((label.to_owned(), float_to_go_string(bound)));
    }
    Sample {
        name: name.into(),
        labels: Arc::new(Labels::new(labels)),
        value,
        exemplar: None,
        native: None,
    }
}

/// A family as the collector builds them: the sample names and the `le` /
/// `quantile` labels its kind has.
fn family() -> impl Strategy<Value = MetricFamily> {
    let series = proptest::collection::vec(
        (label_set(), proptest::collection::vec(value(), 0..4)),
        0..4,
    );
    (
        metric_name(),
        hostile_string(),
        kind(),
        series,
        proptest::collection::vec(value(), 24),
    )
        .prop_map(|(name, help, kind, series, values)| {
            let mut values = values.into_iter().cycle();
            let mut next = move || values.next().unwrap_or(0.0);
            let mut samples = Vec::new();
            for (labels, bounds) in series {
                match kind {
                    Kind::Counter => {
                        samples.push(sample(format!("{name}_total"), labels, None, next()))
                    }
                    Kind::Gauge(_) => samples.push(sample(name.clone(), labels, None, next())),
                    Kind::Histogram | Kind::Summary => {
                        let (suffix, label) = match kind {
                            Kind::Histogram => ("_bucket", "le"),
                            _ => ("", "quantile"),
                        };
                        for bound in bounds {
                            let name = format!("{name}{suffix}");
                            samples.push(sample(
                                name,
                                labels.clone(),
                                Some((label, bound)),
                                next(),
                            ));
                        }
                        samples.push(sample(
                            format!("{name}_count"),
                            labels.clone(),
                            None,
                            next(),
                        ));
                        samples.push(sample(format!("{name}_sum"), labels, None, next()));
                    }
                }
            }
            MetricFamily {
                name: name.into(),
                help: help.into(),
                kind: match kind {
                    Kind::Counter => MetricKind::Counter,
                    Kind::Gauge(mode) => MetricKind::Gauge(mode),
                    Kind::Histogram => MetricKind::Histogram,
                    Kind::Summary => MetricKind::Summary,
                },
                samples,
                utf8_names: None,
            }
        })
}

/// Families with distinct names, also as text 0.0.4 writes them (a counter
/// `x` is `x_total` there).
fn metric_set() -> impl Strategy<Value = MetricSet> {
    proptest::collection::vec(family(), 0..6).prop_map(|families| {
        let mut names = std::collections::HashSet::new();
        let families = families
            .into_iter()
            .filter(|f| {
                let written = match f.kind {
                    MetricKind::Counter => format!("{}_total", f.name),
                    _ => f.name.to_string(),
                };
                // For all but counters `written` is the name itself, so both
                // are checked before either is recorded.
                let free = !names.contains(&*f.name) && !names.contains(&written);
                if free {
                    names.insert(f.name.to_string());
                    names.insert(written);
                }
                free
            })
            .collect();
        MetricSet { families }
    })
}

/// Text made of pieces of expositions: valid ones and near misses.
fn exposition_like() -> impl Strategy<Value = String> {
    prop_oneof![token_soup(), mutated_exposition()]
}

/// Pieces of expositions strung together.
fn token_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..60).prop_map(|t| t.concat())
}

/// An encoded set with a few pieces inserted, removed or replaced.
fn mutated_exposition() -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0..3u8, token(), 0..8usize);
    let edits = proptest::collection::vec(edit, 1..4);
    (metric_set(), any::<bool>(), edits).prop_map(|(set, om, edits)| {
        let format = if om {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        let mut text = encode(&set, format);
        for (at, op, token, len) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            match op {
                0 => text.insert_str(at, token),
                1 => text.replace_range(at..end, ""),
                _ => text.replace_range(at..end, token),
            }
        }
        text
    })
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "# HELP ",
        "# TYPE ",
        "# UNIT ",
        "# EOF",
        "#",
        "\n",
        " ",
        "\t",
        "a",
        "a_total",
        "a_bucket",
        "a_count",
        "a_sum",
        "a_created",
        "b",
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "{",
        "}",
        "le",
        "quantile",
        "x",
        "=",
        "\"",
        ",",
        "\\",
        "\\n",
        "\\\"",
        "1",
        "1.5",
        "-2e3",
        "+Inf",
        "-Inf",
        "NaN",
        "inf",
        "é",
        "0x1",
        "1e999",
        " # {x=\"1\"} 1",
    ])
}

/// Where to cut `text` for truncation tests: every character boundary of a
/// short text, about 400 of a long one.
fn cuts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let stride = (text.len() / 400).max(1);
    (0..text.len())
        .step_by(stride)
        .filter(|&i| text.is_char_boundary(i))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn encoded_sets_parse_back_unchanged(set in metric_set()) {
        let expected = canonical(&as_parsed(&set));
        for format in FORMATS {
            let text = encode(&set, format);
            let parsed = parse(&text, format)
                .map_err(|e| TestCaseError::fail(format!("{format:?}: {e}\n{text}")))?;
            prop_assert_eq!(canonical(&parsed), expected.clone(), "{:?}:\n{}", format, text);
        }
    }

    #[test]
    fn truncated_expositions_are_errors(set in metric_set()) {
        // Text: a cut that is not at a line feed is an error on the last
        // line (an empty exposition is valid).
        let text = encode(&set, Format::Text);
        for cut in cuts(&text) {
            let prefix = &text[..cut];
            if !prefix.is_empty() && !prefix.ends_with('\n') {
                let err = parse(prefix, Format::Text).expect_err(prefix);
                prop_assert_eq!(err.line, prefix.lines().count(), "{:?}", prefix);
            }
        }
        // OpenMetrics: every cut is an error, but for the final line feed,
        // which is optional.
        let om = encode(&set, Format::OpenMetrics);
        for cut in cuts(&om).filter(|&cut| cut + 1 < om.len()) {
            prop_assert!(parse(&om[..cut], Format::OpenMetrics).is_err(), "{:?}", &om[..cut]);
        }
        prop_assert!(parse(&om[..om.len() - 1], Format::OpenMetrics).is_ok());
    }

    #[test]
    fn whatever_parses_is_a_fixed_point(input in exposition_like()) {
        for format in FORMATS {
            if let Ok(first) = parse(&input, format) {
                let text = encode(&first, format);
                let second = parse(&text, format).map_err(|e| {
                    TestCaseError::fail(format!("{format:?}: {e}\ninput:\n{input}\nre-encoded:\n{text}"))
                })?;
                prop_assert_eq!(canonical(&second), canonical(&first), "{:?}, input:\n{}", format, input);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_are_errors_or_fixed_points(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for format in FORMATS {
            if let Ok(first) = parse(&bytes, format) {
                let second = parse(encode(&first, format), format);
                prop_assert_eq!(second.map(|s| canonical(&s)), Ok(canonical(&first)));
            }
        }
    }
}

// --- what is accepted ----------------------------------------------------------

#[test]
fn reads_python_style_text_with_comments_blanks_and_timestamps() {
    let text = concat!(
        "# A comment, and a blank line.\n",
        "\n",
        "# HELP http_requests_total Requests, \\\\ and \\n \"quoted\".\n",
        "# TYPE http_requests_total counter\n",
        "http_requests_total{method=\"GET\",route=\"/a\\\"b\\\\c\\nd\",} 3 1700000000000\n",
        "  http_requests_total { method = \"POST\" }\t+Inf  \n",
        "# TYPE legacy counter\n",
        "legacy 7\n",
        "# TYPE temperature gauge\n",
        "temperature{} -1.5e-3\n",
        "temperature{room=\"\"} NaN\n",
        "# HELP latency_seconds Latency.\n",
        "# TYPE latency_seconds histogram\n",
        "latency_seconds_bucket{le=\"0.005\"} 1.0\n",
        "latency_seconds_bucket{le=\"+Inf\"} 2.0\n",
        "latency_seconds_count 2.0\n",
        "latency_seconds_sum 0.25\n",
        "# TYPE rpc summary\n",
        "rpc{quantile=\"0.5\"} -Inf\n",
        "rpc_count 1\n",
        "rpc_sum 4\n",
    );
    let set = parse(text, Format::Text).unwrap();
    let names: Vec<&str> = set.families.iter().map(|f| &*f.name).collect();
    assert_eq!(
        names,
        [
            "http_requests",
            "legacy",
            "temperature",
            "latency_seconds",
            "rpc"
        ]
    );
    let requests = set.family("http_requests").unwrap();
    assert_eq!(&*requests.help, "Requests, \\ and \n \"quoted\".");
    assert_eq!(requests.kind, MetricKind::Counter);
    assert_eq!(
        set.value(
            "http_requests_total",
            &[("method", "GET"), ("route", "/a\"b\\c\nd")]
        ),
        Some(3.0)
    );
    assert_eq!(
        set.value("http_requests_total", &[("method", "POST")]),
        Some(f64::INFINITY)
    );
    assert_eq!(set.value("legacy", &[]), Some(7.0));
    assert_eq!(
        set.family("temperature").unwrap().kind,
        MetricKind::Gauge(GaugeMode::All)
    );
    assert_eq!(set.value("temperature", &[]), Some(-1.5e-3));
    assert!(set.value("temperature", &[("room", "")]).unwrap().is_nan());
    assert_eq!(
        set.value("latency_seconds_bucket", &[("le", "+Inf")]),
        Some(2.0)
    );
    assert_eq!(
        set.value("rpc", &[("quantile", "0.5")]),
        Some(f64::NEG_INFINITY)
    );
    assert_eq!(set.family("rpc").unwrap().samples.len(), 3);
    // What encode writes for it parses to the same set.
    let again = parse(encode(&set, Format::Text), Format::Text).unwrap();
    assert_eq!(canonical(&again), canonical(&set));
}

#[test]
fn reads_openmetrics_with_units_exemplars_created_and_timestamps() {
    let text = concat!(
        "# TYPE jobs counter\n",
        "# HELP jobs Jobs \\\"run\\\", \\q kept.\n",
        "jobs_total{queue=\"a\"} 17 1520879607.789 # {trace_id=\"x\\\\y\"} 1.0 1520879607.7\n",
        "jobs_created{queue=\"a\"} 1520430000.123\n",
        "# TYPE run_seconds histogram\n",
        "# UNIT run_seconds seconds\n",
        "run_seconds_bucket{le=\"1e-3\"} 0 # {} 0.5\n",
        "run_seconds_bucket{le=\"+inf\"} 1\n",
        "run_seconds_count 1\n",
        "run_seconds_sum .5\n",
        "# TYPE empty gauge\n",
        "# EOF",
    );
    let set = parse(text, Format::OpenMetrics).unwrap();
    let jobs = set.family("jobs").unwrap();
    assert_eq!(&*jobs.help, "Jobs \"run\", \\q kept.");
    assert_eq!(set.value("jobs_total", &[("queue", "a")]), Some(17.0));
    assert_eq!(
        set.value("jobs_created", &[("queue", "a")]),
        Some(1520430000.123)
    );
    assert_eq!(set.value("run_seconds_sum", &[]), Some(0.5));
    assert!(set.family("empty").unwrap().samples.is_empty());
    let again = parse(encode(&set, Format::OpenMetrics), Format::OpenMetrics).unwrap();
    assert_eq!(canonical(&again), canonical(&set));
}

#[test]
fn help_and_label_values_survive_exactly() {
    let help = "  lead\ttrail \\ \\n \" \n é😀 \\\"  ";
    let value = "\"\\\n\\n\\\"\u{0}é, }{=";
    let set = MetricSet {
        families: vec![MetricFamily {
            name: "x".into(),
            help: help.into(),
            kind: MetricKind::Counter,
            samples: vec![sample(
                "x_total".into(),
                vec![("l".into(), value.into())],
                None,
                1.0,
            )],
            utf8_names: None,
        }],
    };
    for format in FORMATS {
        let parsed = parse(encode(&set, format), format).unwrap();
        assert_eq!(&*parsed.families[0].help, help, "{format:?}");
        assert_eq!(
            parsed.value("x_total", &[("l", value)]),
            Some(1.0),
            "{format:?}"
        );
    }
}

#[test]
fn a_counter_named_like_its_suffix_keeps_its_name() {
    for name in ["_total", "x_total", "x_total_total"] {
        let mut set = MetricSet::default();
        set.push_simple(name, "", MetricKind::Counter, &format!("{name}_total"), 1.0);
        for format in FORMATS {
            let parsed = parse(encode(&set, format), format).unwrap();
            assert_eq!(&*parsed.families[0].name, name, "{format:?}");
        }
    }
}

// --- what is rejected -----------------------------------------------------------

/// `(format, input, line, part of the message)`.
const MALFORMED: &[(Format, &str, usize, &str)] = &[
    // Truncation.
    (Format::Text, "# TYPE a counter\na_total 1", 2, "line feed"),
    (
        Format::Text,
        "# TYPE a counter\na_total{x=\"1\n",
        2,
        "unterminated label value",
    ),
    (
        Format::Text,
        "# TYPE a counter\na_total{x=\"1\"\n",
        2,
        "unterminated label set",
    ),
    (Format::Text, "# TYPE a counter\na_total\n", 2, "no value"),
    (
        Format::OpenMetrics,
        "# TYPE a counter\na_total 1\n",
        3,
        "missing `# EOF`",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a counter\na_total 1\n# EO",
        3,
        "line feed",
    ),
    (Format::OpenMetrics, "", 1, "missing `# EOF`"),
    // Escapes.
    (
        Format::Text,
        "# HELP a bad \\q\n",
        1,
        "invalid escape `\\q`",
    ),
    (Format::Text, "# HELP a bad \\\"\n", 1, "invalid escape"),
    (Format::Text, "# HELP a trailing \\\n", 1, "lone backslash"),
    (
        Format::OpenMetrics,
        "# HELP a trailing \\\n# EOF\n",
        1,
        "lone backslash",
    ),
    (
        Format::OpenMetrics,
        "# HELP a bare \" quote\n# EOF\n",
        1,
        "unescaped",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",
        2,
        "invalid escape `\\t`",
    ),
    // `# EOF` must be there, and last.
    (
        Format::OpenMetrics,
        "# EOF\n# TYPE a gauge\n",
        2,
        "nothing may follow",
    ),
    (Format::OpenMetrics, "# EOF\n\n", 2, "nothing may follow"),
    // OpenMetrics is strict about spacing and comments.
    (Format::OpenMetrics, "\n# EOF\n", 1, "empty lines"),
    (
        Format::OpenMetrics,
        "# a comment\n# EOF\n",
        1,
        "must be `# HELP`",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na  1\n# EOF\n",
        2,
        "missing number",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na{x=\"1\",} 1\n# EOF\n",
        2,
        "no comma",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na 1 \n# EOF\n",
        2,
        "invalid timestamp",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na 1 # {} 1 2 3\n# EOF\n",
        2,
        "after the exemplar",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a_s gauge\n# UNIT a_s seconds\n# EOF\n",
        2,
        "unit",
    ),
    // Values and timestamps.
    (
        Format::Text,
        "# TYPE a gauge\na one\n",
        2,
        "invalid number `one`",
    ),
    (Format::Text, "# TYPE a gauge\na 1e999\n", 2, "out of range"),
    (
        Format::Text,
        "# TYPE a gauge\na 0x10\n",
        2,
        "invalid number",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na 1 1.5\n",
        2,
        "invalid timestamp",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na 1 2 3\n",
        2,
        "unexpected text",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na 1_0\n# EOF\n",
        2,
        "invalid number",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a gauge\na 1 NaN\n# EOF\n",
        2,
        "invalid timestamp",
    ),
    // Names and labels.
    (Format::Text, "# TYPE 1a gauge\n", 1, "invalid metric name"),
    (
        Format::Text,
        "# TYPE a gauge\na{1x=\"1\"} 1\n",
        2,
        "invalid label name",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na{x:y=\"1\"} 1\n",
        2,
        "invalid label name",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",
        2,
        "appears twice",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na{x=1} 1\n",
        2,
        "expected `\"`",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na{,} 1\n",
        2,
        "expected a label name",
    ),
    // Types and families.
    (Format::Text, "a 1\n", 1, "no `# TYPE`"),
    (Format::Text, "# HELP a x\na 1\n", 2, "no `# TYPE`"),
    (Format::Text, "# HELP a x\n# HELP b y\n", 1, "no `# TYPE`"),
    (Format::Text, "# TYPE a untyped\n", 1, "not supported"),
    (
        Format::OpenMetrics,
        "# TYPE a info\n# EOF\n",
        1,
        "not supported",
    ),
    (Format::Text, "# TYPE a widget\n", 1, "unknown type"),
    (Format::Text, "# TYPE a gauge extra\n", 1, "unexpected text"),
    (
        Format::Text,
        "# TYPE a gauge\n# TYPE a gauge\n",
        2,
        "second `# TYPE`",
    ),
    (
        Format::Text,
        "# TYPE a gauge\na 1\n# HELP a late\n",
        3,
        "after its samples",
    ),
    (
        Format::Text,
        "# TYPE a gauge\nb 1\n",
        2,
        "not part of gauge family `a`",
    ),
    (
        Format::Text,
        "# TYPE a counter\na_created 1\n",
        2,
        "not part of",
    ),
    (
        Format::OpenMetrics,
        "# TYPE a counter\na 1\n# EOF\n",
        2,
        "not part of",
    ),
    (
        Format::Text,
        "# TYPE a histogram\na_bucket 1\n",
        2,
        "no `le` label",
    ),
    (
        Format::Text,
        "# TYPE a histogram\na_bucket{le=\"x\"} 1\n",
        2,
        "`le`: invalid number",
    ),
    (
        Format::Text,
        "# TYPE a summary\na 1\n",
        2,
        "no `quantile` label",
    ),
    (
        Format::Text,
        "# TYPE a gauge\n# TYPE b gauge\n# TYPE a gauge\n",
        3,
        "clashes",
    ),
    // Text: a counter `a` is written `a_total`, so a gauge `a_total` clashes.
    (
        Format::Text,
        "# TYPE a counter\n# TYPE a_total gauge\n",
        2,
        "clashes",
    ),
    // Garbage.
    (
        Format::Text,
        "# TYPE a gauge\na 1\n\u{feff}\n",
        3,
        "expected a metric name",
    ),
    (Format::Text, "\u{7f}\n", 1, "expected a metric name"),
];

#[test]
fn malformed_expositions_are_errors_on_their_line() {
    for &(format, input, line, message) in MALFORMED {
        match parse(input, format) {
            Ok(set) => panic!("{format:?} {input:?} parsed: {set:?}"),
            Err(e) => assert!(
                e.line == line && e.message.contains(message),
                "{format:?} {input:?}: got `{e}`, want line {line} with `{message}`"
            ),
        }
    }
}

#[test]
fn invalid_utf8_is_an_error_on_its_line() {
    let input = b"# TYPE a gauge\na{x=\"\xff\"} 1\n";
    for format in FORMATS {
        let err = parse(input, format).unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (2, "invalid UTF-8"));
    }
}
