//! `muster_collect::MultiprocessCollector` inside a user's
//! `prometheus_client::registry::Registry`: the crate's OpenMetrics encoder
//! must give the samples Python's MultiProcessCollector gives, despite that
//! crate's gaps (no Summary type: a summary `x` comes out as untyped families
//! `x_count` and `x_sum`, whose samples have the same names; bucket bounds
//! formatted its own way, compared as numbers with `--canonical-le`).

mod common;

use std::path::Path;

use common::{
    assert_same, python_collect, python_collect_meta, python_parse, python_write, rust_write,
};
use muster_collect::MultiprocessCollector;
use prometheus_client::registry::Registry;

fn encode_registry(dir: &Path) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(MultiprocessCollector::new(dir)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
    out
}

fn assert_bridge_matches_python(dir: &Path, context: &str) {
    let expected = python_collect(dir);
    assert!(expected.len() > 5, "{context}: nothing was written");
    let exposition = encode_registry(dir);
    assert!(exposition.ends_with("# EOF\n"), "{context}: no # EOF");
    let got = python_parse("openmetrics", exposition.as_bytes(), &["--canonical-le"]);
    assert_same(&expected, &got, &format!("{context}, registry bridge"));

    // Families: a summary `x` becomes untyped `x_count` and `x_sum`.
    let mut expected_meta: Vec<String> = Vec::new();
    for line in python_collect_meta(dir) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v[1] == "summary" {
            for suffix in ["_count", "_sum"] {
                let name = format!("{}{suffix}", v[0].as_str().unwrap());
                expected_meta.push(serde_json::json!([name, "unknown", v[2]]).to_string());
            }
        } else {
            expected_meta.push(line);
        }
    }
    expected_meta.sort();
    let got_meta = python_parse("openmetrics", exposition.as_bytes(), &["--meta"]);
    assert_same(
        &expected_meta,
        &got_meta,
        &format!("{context}, registry bridge families (name, type, help)"),
    );
}

#[test]
fn python_directory_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "realistic"]);
    assert_bridge_matches_python(dir.path(), "python types + realistic");
}

#[test]
fn hostile_label_values_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["hostile_labels"]);
    assert_bridge_matches_python(dir.path(), "python hostile label values");
}

/// HELP text with a backslash, a newline and quotes must be escaped: the
/// crate writes HELP verbatim, so a raw newline ends the line mid-text.
#[test]
fn hostile_help_text_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["hostile"]);
    assert_bridge_matches_python(dir.path(), "python hostile help and labels");
}

#[test]
fn rust_and_python_directory_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile"]);
    rust_write(dir.path(), "rust-0", 0);
    rust_write(dir.path(), "rust-1", 1);
    assert_bridge_matches_python(dir.path(), "mixed");
}

#[test]
fn special_values_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["special"]);
    assert_bridge_matches_python(dir.path(), "python special");
}

/// The registry's own metrics and ours live side by side.
#[test]
fn registry_keeps_its_own_metrics() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types"]);
    let mut registry = Registry::default();
    let own = prometheus_client::metrics::counter::Counter::<u64>::default();
    own.inc_by(7);
    registry.register("app_local", "A counter of this process only", own);
    registry.register_collector(Box::new(MultiprocessCollector::new(dir.path())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    let got = python_parse("openmetrics", out.as_bytes(), &["--canonical-le"]);
    let mut expected = python_collect(dir.path());
    expected.push(r#"["app_local_total",{},"7.0"]"#.to_owned());
    expected.sort();
    assert_same(&expected, &got, "registry with its own and merged metrics");
}
