//! Exposition text both ways. (a) Any bytes, parsed as text 0.0.4 and as
//! OpenMetrics: the parser must never panic, and whatever it accepts must
//! be a fixed point (encode it, parse that: the same set). (b) A metric set
//! built from the bytes, with hostile help and label values and any floats:
//! encoded in either format it must parse back unchanged. (c) That encoding
//! with a few bytes changed, near misses the parser has to get right, held
//! to (a): a cold run in CI reaches far more accepted inputs this way than
//! from bytes alone.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use muster_collect::{encode, parse, Format, Labels, MetricFamily, MetricKind, MetricSet, Sample};
use muster_store::{float_to_go_string, GaugeMode};

const FORMATS: [Format; 2] = [Format::Text, Format::OpenMetrics];

fuzz_target!(|data: &[u8]| {
    fixed_point(data);
    let mut u = Unstructured::new(data);
    let Ok(set) = metric_set(&mut u) else { return };
    let expected = canonical(&set);
    for format in FORMATS {
        let text = encode(&set, format);
        let parsed = parse(&text, format)
            .unwrap_or_else(|e| panic!("{format:?}: an encoded set fails: {e}\n{text}"));
        assert_eq!(canonical(&parsed), expected, "{format:?}\n{text}");
        if let Ok(edited) = edit(text.into_bytes(), &mut u) {
            fixed_point(&edited);
        }
    }
});

/// If `data` parses, encoding the result and parsing that gives it again.
fn fixed_point(data: &[u8]) {
    for format in FORMATS {
        if let Ok(first) = parse(data, format) {
            let text = encode(&first, format);
            let second = parse(&text, format)
                .unwrap_or_else(|e| panic!("{format:?}: the re-encoded set fails: {e}\n{text}"));
            assert_eq!(canonical(&second), canonical(&first), "{format:?}\n{text}");
        }
    }
}

/// `text` with up to four bytes inserted, removed or replaced, mostly by
/// bytes that mean something in an exposition.
fn edit(mut text: Vec<u8>, u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    for _ in 0..u.int_in_range(1..=4)? {
        let at = u.choose_index(text.len() + 1)?;
        let byte = if u.ratio(1, 4)? {
            u8::arbitrary(u)?
        } else {
            *u.choose(b"\"\\\n #{},=_ae0.+-lTt")?
        };
        match u.int_in_range(0..=2)? {
            0 => text.insert(at, byte),
            1 if at < text.len() => {
                text.remove(at);
            }
            _ if at < text.len() => text[at] = byte,
            _ => {}
        }
    }
    Ok(text)
}

/// One line per family and sample, floats in their canonical encoding (NaN
/// equals NaN).
fn canonical(set: &MetricSet) -> Vec<String> {
    let mut out = Vec::new();
    for f in &set.families {
        out.push(format!(
            "family {:?} {:?} help={:?}",
            f.name, f.kind, f.help
        ));
        for s in &f.samples {
            let value = float_to_go_string(s.value);
            out.push(format!("  {}{:?} {value}", s.name, s.labels.pairs()));
        }
    }
    out
}

/// Families as the collector builds them, with distinct names (also as
/// text 0.0.4 writes them: a counter `x` is `x_total` there). Gauges are
/// `GaugeMode::All`, the mode `parse` gives them.
fn metric_set(u: &mut Unstructured<'_>) -> Result<MetricSet> {
    let mut names = std::collections::HashSet::new();
    let mut families = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let family = family(u)?;
        let written = match family.kind {
            MetricKind::Counter => format!("{}_total", family.name),
            _ => family.name.to_string(),
        };
        if !names.contains(&*family.name) && !names.contains(&written) {
            names.insert(family.name.to_string());
            names.insert(written);
            families.push(family);
        }
    }
    Ok(MetricSet { families })
}

fn family(u: &mut Unstructured<'_>) -> Result<MetricFamily> {
    let name = metric_name(u)?;
    let help = hostile(u)?;
    let kind = *u.choose(&[
        MetricKind::Counter,
        MetricKind::Gauge(GaugeMode::All),
        MetricKind::Histogram,
        MetricKind::Summary,
    ])?;
    let mut samples = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let labels = label_set(u)?;
        match kind {
            MetricKind::Counter => samples.push(sample(format!("{name}_total"), &labels, None, u)?),
            MetricKind::Gauge(_) => samples.push(sample(name.clone(), &labels, None, u)?),
            MetricKind::Histogram | MetricKind::Summary => {
                let (suffix, label) = match kind {
                    MetricKind::Histogram => ("_bucket", "le"),
                    _ => ("", "quantile"),
                };
                for _ in 0..u.int_in_range(0..=3)? {
                    let bound = float_to_go_string(value(u)?);
                    let name = format!("{name}{suffix}");
                    samples.push(sample(name, &labels, Some((label, bound)), u)?);
                }
                samples.push(sample(format!("{name}_count"), &labels, None, u)?);
                samples.push(sample(format!("{name}_sum"), &labels, None, u)?);
            }
        }
    }
    Ok(MetricFamily {
        name: name.into(),
        help: help.into(),
        kind,
        samples,
        utf8_names: None,
    })
}

fn sample(
    name: String,
    labels: &[(String, String)],
    extra: Option<(&str, String)>,
    u: &mut Unstructured<'_>,
) -> Result<Sample> {
    let mut labels = labels.to_vec();
    if let Some((label, value)) = extra {
        labels.push((label.to_owned(), value));
    }
    Ok(Sample {
        name: name.into(),
        labels: Arc::new(Labels::new(labels)),
        value: value(u)?,
        exemplar: None,
        native: None,
    })
}

/// `[ab_:][ab_:0]{0,3}` and sometimes a suffix the formats give meaning to.
fn metric_name(u: &mut Unstructured<'_>) -> Result<String> {
    let mut name = String::from(*u.choose(&['a', 'b', '_', ':'])?);
    for _ in 0..u.int_in_range(0..=3)? {
        name.push(*u.choose(&['a', 'b', '_', ':', '0'])?);
    }
    name.push_str(u.choose(&[
        "", "", "", "_total", "_count", "_sum", "_bucket", "_created",
    ])?);
    Ok(name)
}

/// Distinct label names from `[ab_][ab_0]{0,2}` (never `le` or
/// `quantile`), with hostile values.
fn label_set(u: &mut Unstructured<'_>) -> Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let mut name = String::from(*u.choose(&['a', 'b', '_'])?);
        for _ in 0..u.int_in_range(0..=2)? {
            name.push(*u.choose(&['a', 'b', '_', '0'])?);
        }
        if pairs.iter().all(|(n, _)| *n != name) {
            pairs.push((name, hostile(u)?));
        }
    }
    Ok(pairs)
}

/// Up to 8 characters, mostly ones that need escaping or look like syntax.
fn hostile(u: &mut Unstructured<'_>) -> Result<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0..=8)? {
        if u.ratio(1, 4)? {
            s.push(char::arbitrary(u)?);
        } else {
            s.push(*u.choose(&[
                '"', '\\', '\n', ' ', '\t', '\r', 'n', '#', '{', '}', ',', '=', 'é', '\0',
            ])?);
        }
    }
    Ok(s)
}

/// Any f64, often a special one.
fn value(u: &mut Unstructured<'_>) -> Result<f64> {
    if u.ratio(1, 2)? {
        Ok(*u.choose(&[
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            0.0,
            1.0,
            1e6,
            0.1,
        ])?)
    } else {
        Ok(f64::from_bits(u64::arbitrary(u)?))
    }
}
