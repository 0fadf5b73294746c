//! Files written by muster (the write_fixture example, run as separate
//! processes) are read by Python's MultiProcessCollector with the same result
//! as muster's own scrape; also a directory written by Rust and Python
//! processes together, with series fed by both.

mod common;

use common::{assert_matches_python, python_write, rust_write};

const BOTH: &[&str] = &["text", "openmetrics"];

#[test]
fn rust_processes_with_ids() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        rust_write(dir.path(), &format!("rust-{i}"), i);
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "counter_rust-0.db",
        "histogram_rust-2.db",
        "summary_rust-1.db",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing; files: {names:?}"
        );
    }
    for mode in muster_metrics::GaugeMode::ALL {
        let name = format!("gauge_{}_rust-0.db", mode.as_str());
        assert!(names.contains(&name), "{name} missing; files: {names:?}");
    }
    assert_matches_python(dir.path(), BOTH, "rust writers");
}

#[test]
fn rust_processes_with_pids() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        rust_write(dir.path(), "pid", i);
    }
    assert_matches_python(dir.path(), BOTH, "rust writers named by pid");
}

#[test]
fn mixed_python_and_rust_processes() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile", "special"]);
    for i in 0..2 {
        rust_write(dir.path(), &format!("rust-{i}"), i);
    }
    rust_write(dir.path(), "pid", 2);
    // Both kinds of writer fed the same series.
    let expected = common::python_collect(dir.path());
    let shared = expected
        .iter()
        .find(|s| s.starts_with(r#"["py_requests_total",{"code":"200","method":"GET"}"#))
        .expect("py_requests_total{GET,200} in the merged result");
    // 3 Python processes and 3 Rust processes each add 2.
    assert!(shared.ends_with(r#""12.0"]"#), "shared series: {shared}");
    assert_matches_python(dir.path(), BOTH, "python and rust writers");
}

/// Every key muster writes is byte-identical to the key Python's `mmap_key`
/// makes for the same metric, labels and help (so a Python process that
/// shares the directory finds and updates the same entries).
#[test]
fn rust_keys_are_byte_identical_to_pythons() {
    const CHECK: &str = r#"
import glob, json, os, sys
from prometheus_client.mmap_dict import MmapedDict, mmap_key
checked, bad = 0, []
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.db'))):
    for key, _, _, _ in MmapedDict.read_all_values_from_file(f):
        family, sample, labels, help_text = json.loads(key)
        again = mmap_key(family, sample, list(labels), list(labels.values()), help_text)
        checked += 1
        if again != key:
            bad.append([os.path.basename(f), key, again])
print(json.dumps({"checked": checked, "bad": bad[:10]}))
"#;
    let dir = tempfile::tempdir().unwrap();
    rust_write(dir.path(), "rust-0", 0);
    rust_write(dir.path(), "pid", 1);
    let out = common::run_ok(
        std::process::Command::new(common::python())
            .args(["-c", CHECK])
            .arg(dir.path()),
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["checked"].as_u64().unwrap() > 200,
        "too few keys checked: {v}"
    );
    assert_eq!(
        v["bad"],
        serde_json::json!([]),
        "keys differ from Python's (file, muster's key, Python's key)"
    );
}
