//! Directories written by the real Python prometheus_client (several
//! processes) merged by `muster scrape` give exactly the samples Python's
//! MultiProcessCollector gives, in both exposition formats, as read back by
//! prometheus_client's own parsers.

mod common;

use common::{assert_matches_python, python_write};

const BOTH: &[&str] = &["text", "openmetrics"];

#[test]
fn every_type_and_gauge_mode() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types"]);
    assert_matches_python(dir.path(), BOTH, "python types");
}

#[test]
fn hostile_labels_and_help() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["hostile"]);
    assert_matches_python(dir.path(), BOTH, "python hostile");
}

#[test]
fn realistic_web_app() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["realistic"]);
    assert_matches_python(dir.path(), BOTH, "python realistic");
}

#[test]
fn special_values() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["special"]);
    assert_matches_python(dir.path(), BOTH, "python special");
}

/// OpenMetrics forbids `_sum` on a histogram with negative bounds (and
/// Python's parser enforces it), so this one is compared in text only.
#[test]
fn negative_bucket_bounds_text() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["negative"]);
    assert_matches_python(dir.path(), &["text"], "python negative buckets");
}

#[test]
fn all_scenarios_in_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile", "realistic", "special"]);
    assert_matches_python(dir.path(), BOTH, "python all scenarios");
}

/// An empty directory is a valid, empty scrape in both formats.
#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let expected = common::python_collect(dir.path());
    assert!(expected.is_empty());
    for format in BOTH {
        let exposition = common::muster_scrape(dir.path(), format);
        let got = common::python_parse(format, &exposition, &[]);
        common::assert_same(&expected, &got, &format!("empty directory, {format}"));
    }
}
