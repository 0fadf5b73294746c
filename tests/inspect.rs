//! `muster inspect` lists the same entries (key, value) Python's own reader
//! finds in each file.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{muster, python, python_write, run_ok};

const PY_READ: &str = r#"
import glob, json, os, sys
from prometheus_client.mmap_dict import MmapedDict
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.db'))):
    for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(f):
        print(json.dumps([os.path.basename(f), key, repr(value)]))
"#;

#[test]
fn inspect_lists_what_python_reads() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile"]);
    common::rust_write(dir.path(), "rust-0", 0);
    let expected: BTreeSet<(String, String, u64)> = String::from_utf8(run_ok(
        Command::new(python()).args(["-c", PY_READ]).arg(dir.path()),
        b"",
    ))
    .unwrap()
    .lines()
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let value: f64 = v[2].as_str().unwrap().parse().unwrap();
        (
            v[0].as_str().unwrap().to_owned(),
            v[1].as_str().unwrap().to_owned(),
            value,
        )
    })
    .filter(|(_, _, value)| !value.is_nan())
    .map(|(f, k, v)| (f, k, v.to_bits()))
    .collect();
    assert!(
        expected.len() > 100,
        "python read {} entries",
        expected.len()
    );

    let out = String::from_utf8(run_ok(muster().arg("inspect").arg(dir.path()), b"")).unwrap();
    let mut got = BTreeSet::new();
    let mut file = String::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("  ") {
            // offset=N value=V timestamp=T key=K (values compared bit for bit)
            let value = rest
                .split_once(" value=")
                .and_then(|(_, r)| r.split_once(' '))
                .map(|(v, _)| v)
                .unwrap_or_else(|| panic!("unexpected inspect line {line:?}"));
            let key = rest
                .split_once(" key=")
                .unwrap_or_else(|| panic!("no key in {line:?}"))
                .1;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|e| panic!("value {v:?} in {line:?}: {e}")),
            };
            if !value.is_nan() {
                got.insert((file.clone(), key.to_owned(), value.to_bits()));
            }
        } else {
            file = line
                .split_once(':')
                .unwrap_or_else(|| panic!("unexpected inspect line {line:?}"))
                .0
                .to_owned();
        }
    }
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "inspect differs from Python's reader\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
}

/// muster's own files: a native file lists its bucket entries, an exemplar
/// file each slot's exemplar.
#[test]
fn inspect_shows_native_buckets_and_exemplars() {
    use muster_metrics::{Counter, Histogram, NativeBuckets, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store.set_process_id("w0").unwrap();
    Histogram::builder("lat", "Latency.")
        .native(NativeBuckets::with_schema(0).unwrap())
        .store(&store)
        .build()
        .unwrap()
        .observe(3.0);
    Counter::new_in(&store, "jobs", "Jobs.")
        .unwrap()
        .inc_with_exemplar(&[("trace_id", "abc123")])
        .unwrap();
    let show = |name: &str| {
        String::from_utf8(run_ok(
            muster().arg("inspect").arg(dir.path().join(name)),
            b"",
        ))
        .unwrap()
    };
    let native = show("native_w0.muster");
    assert!(
        native.contains("value=1.0 ") && native.contains(r#""__index": "2""#),
        "{native}"
    );
    let exemplars = show("exemplar_w0.muster");
    assert!(
        exemplars.contains(r#"exemplar=[("trace_id", "abc123")] value=1.0"#)
            && exemplars.contains("jobs_total"),
        "{exemplars}"
    );
}
