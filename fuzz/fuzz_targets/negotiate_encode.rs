//! Content negotiation and every exposition: an arbitrary `Accept` header and
//! a metric set built from the bytes (names with dots, non-ASCII letters and
//! digits, names as written that differ from those shown, any floats).
//! Negotiation never panics and its choice's `Content-Type` negotiates back
//! to it; the body matches the content type: protobuf decodes back to one
//! `MetricFamily` per family, of its type, with its name as the escaping
//! shows it and each counter's and gauge's values in order; text is UTF-8,
//! OpenMetrics ends with `# EOF`, and with `underscores` muster's own parser
//! reads it back.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use muster_collect::{
    parse, Escaping, Exposition, Format, Labels, MediaType, MetricFamily, MetricKind, MetricSet,
    Sample, Utf8Names,
};
use muster_store::GaugeMode;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(accept_len) = u.int_in_range(0..=200usize) else {
        return;
    };
    let Ok(accept) = u.bytes(accept_len.min(u.len())) else {
        return;
    };
    let accept = String::from_utf8_lossy(accept);
    let exposition = Exposition::negotiate(Some(&accept));
    assert_eq!(
        Exposition::negotiate(Some(exposition.content_type())),
        exposition,
        "{accept:?}"
    );
    // The negotiated exposition, and one picked from the bytes, so every
    // format and scheme is reached whatever headers the fuzzer finds.
    let (Ok(media), Ok(escaping)) = (
        u.choose(&MediaType::BY_PREFERENCE),
        u.choose(&Escaping::ALL),
    ) else {
        return;
    };
    let picked = Exposition::new(*media, *escaping);
    let Ok(set) = metric_set(&mut u) else { return };
    for exposition in [exposition, picked] {
        check_body(&set, exposition);
    }
});

/// The body of `set` in `exposition` is what its content type says.
fn check_body(set: &MetricSet, exposition: Exposition) {
    let body = exposition.encode(set);
    match exposition.media {
        MediaType::Protobuf => check_protobuf(set, &body, exposition.escaping),
        media => {
            let text = std::str::from_utf8(&body).expect("text expositions are UTF-8");
            let om = matches!(media, MediaType::OpenMetrics001 | MediaType::OpenMetrics100);
            assert_eq!(om, text.ends_with("# EOF\n"), "{exposition:?}\n{text}");
            if exposition.escaping == Escaping::Underscores {
                let format = if om {
                    Format::OpenMetrics
                } else {
                    Format::Text
                };
                parse(text, format).unwrap_or_else(|e| panic!("{exposition:?}: {e}\n{text}"));
            }
        }
    }
}

fn check_protobuf(set: &MetricSet, mut body: &[u8], escaping: Escaping) {
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(pb::MetricFamily::decode_length_delimited(&mut body).expect("decodes"));
    }
    assert_eq!(families.len(), set.families.len());
    for (ours, got) in set.families.iter().zip(&families) {
        let (kind, suffix) = match ours.kind {
            MetricKind::Counter => (pb::MetricType::Counter, "_total"),
            MetricKind::Gauge(_) => (pb::MetricType::Gauge, ""),
            MetricKind::Histogram => (pb::MetricType::Histogram, ""),
            MetricKind::Summary => (pb::MetricType::Summary, ""),
        };
        assert_eq!(got.r#type, kind as i32, "{}", ours.name);
        let written = match (escaping, &ours.utf8_names) {
            (Escaping::Underscores, _) | (_, None) => ours.name.to_string(),
            (_, Some(names)) => names.family.as_deref().unwrap_or(&ours.name).to_owned(),
        };
        let expected_name = match escaping {
            Escaping::AllowUtf8 => format!("{written}{suffix}"),
            Escaping::Underscores => format!("{}{suffix}", ours.name),
            // The schemes that change legacy names are checked by unit tests.
            Escaping::Dots | Escaping::Values => got.name.clone(),
        };
        assert_eq!(got.name, expected_name);
        if matches!(ours.kind, MetricKind::Gauge(_)) {
            let values: Vec<u64> = got
                .metric
                .iter()
                .map(|m| m.gauge.as_ref().expect("a gauge").value.to_bits())
                .collect();
            let want: Vec<u64> = ours.samples.iter().map(|s| s.value.to_bits()).collect();
            assert_eq!(values, want, "{}", ours.name);
        }
    }
}

fn name(u: &mut Unstructured<'_>) -> Result<String> {
    let len = u.int_in_range(1..=6)?;
    let mut s = String::new();
    for _ in 0..len {
        s.push(*u.choose(&['a', 'b', '_', ':', '.', '0', 'é', '😀', 'Z'])?);
    }
    Ok(s)
}

/// The name Python's exposition shows for `name`.
fn shown(name: &str, metric: bool) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (metric && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn metric_set(u: &mut Unstructured<'_>) -> Result<MetricSet> {
    let mut families = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let written = name(u)?;
        let family = shown(&written, true);
        let kind = match u.int_in_range(0..=3)? {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge(GaugeMode::LiveSum),
            2 => MetricKind::Histogram,
            _ => MetricKind::Summary,
        };
        let label_written = name(u)?;
        let label = shown(&label_written, false);
        let mut samples = Vec::new();
        for _ in 0..u.int_in_range(1..=3)? {
            let value: String = u.arbitrary::<String>()?;
            let v = f64::from_bits(u.arbitrary()?);
            let mut pairs = vec![(label.clone(), value)];
            let mut push = |sample: String, extra: Option<(&str, &str)>, v: f64| {
                if let Some((n, x)) = extra {
                    pairs.push((n.to_owned(), x.to_owned()));
                }
                samples.push(Sample {
                    name: sample.into(),
                    labels: Arc::new(Labels::new(pairs.clone())),
                    value: v,
                    exemplar: None,
                    native: None,
                });
                if extra.is_some() {
                    pairs.pop();
                }
            };
            match kind {
                MetricKind::Counter => push(format!("{family}_total"), None, v),
                MetricKind::Gauge(_) => push(family.clone(), None, v),
                MetricKind::Histogram => {
                    push(format!("{family}_bucket"), Some(("le", "0.5")), v);
                    push(format!("{family}_bucket"), Some(("le", "+Inf")), v);
                    push(format!("{family}_count"), None, v);
                    push(format!("{family}_sum"), None, v);
                }
                MetricKind::Summary => {
                    push(family.clone(), Some(("quantile", "0.5")), v);
                    push(format!("{family}_count"), None, v);
                    push(format!("{family}_sum"), None, v);
                }
            }
        }
        let utf8_names = (written != family || label_written != label).then(|| {
            Arc::new(Utf8Names {
                family: (written != family).then(|| written.as_str().into()),
                labels: if label_written != label {
                    vec![(label.clone(), label_written.as_str().into())]
                } else {
                    Vec::new()
                },
            })
        });
        // Names that clash in text 0.0.4 (a counter `x` is `x_total`
        // there) would make two families of one name.
        let text_name = |name: &str, kind: MetricKind| match kind {
            MetricKind::Counter => format!("{name}_total"),
            _ => name.to_owned(),
        };
        let clash = families.iter().any(|f: &MetricFamily| {
            [f.name.to_string(), text_name(&f.name, f.kind)]
                .iter()
                .any(|n| *n == family || *n == text_name(&family, kind))
        });
        if clash {
            continue;
        }
        families.push(MetricFamily {
            name: family.into(),
            help: u.arbitrary::<String>()?.into(),
            kind,
            samples,
            utf8_names,
        });
    }
    Ok(MetricSet { families })
}
