//! `promtool check metrics` accepts `muster scrape` text output.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{muster_scrape, output_text, promtool, python_write, run_with_input, rust_write};

/// promtool exits 1 when it cannot parse the input and 3 when it only has
/// lint findings; returns (exit code, findings).
fn check(exposition: &[u8]) -> (i32, String) {
    let out = run_with_input(
        Command::new(promtool()).args(["check", "metrics"]),
        exposition,
        Duration::from_secs(60),
    );
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// A realistic directory (a web app's metrics from Python and Rust workers,
/// many routes) must pass without a single finding.
#[test]
fn realistic_directory_passes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["realistic"]);
    let exposition = muster_scrape(dir.path(), "text");
    assert!(
        exposition.len() > 100_000,
        "expected a big exposition, got {} bytes",
        exposition.len()
    );
    let (code, findings) = check(&exposition);
    assert_eq!(
        code, 0,
        "promtool check metrics failed (exit {code}):\n{findings}"
    );
    assert!(findings.trim().is_empty(), "promtool findings: {findings}");
}

/// Everything the tests write, hostile labels and special values included,
/// must parse. The only findings allowed are naming lints caused by the
/// test's own metric names (e.g. `py_gauge_sum` "should not have _sum
/// suffix"), which say nothing about muster's output.
#[test]
fn every_scenario_parses() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile", "special", "negative"]);
    rust_write(dir.path(), "rust-0", 0);
    rust_write(dir.path(), "rust-1", 1);
    let exposition = muster_scrape(dir.path(), "text");
    let (code, findings) = check(&exposition);
    assert!(
        code == 0 || code == 3,
        "promtool could not parse the exposition (exit {code}):\n{findings}"
    );
    let naming_lints = [
        "metric name should not include type",
        "non-histogram and non-summary metrics should not have \"_sum\" suffix",
    ];
    let unexpected: Vec<&str> = findings
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !naming_lints.iter().any(|n| l.contains(n)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool findings beyond the test's own naming lints:\n{}",
        unexpected.join("\n")
    );
}
