//! Bad files never fail a scrape (invariant 5): `muster scrape` skips them,
//! warns on stderr, counts them in `muster_scrape_errors_total`, and prints
//! the good metrics exactly. A missing directory is a clear error.

mod common;

use std::path::Path;

use common::{assert_same, muster, python_collect, python_parse, python_write, run_with_input};

/// Adds the five kinds of bad file to `dir`; returns their names.
fn add_bad_files(dir: &Path, spare: &Path) -> Vec<&'static str> {
    // Zero-length.
    std::fs::write(dir.join("counter_1.db"), b"").unwrap();
    // Garbage: deterministic pseudo-random bytes, with a `used` that is in range.
    let mut garbage = vec![0u8; 4096];
    let mut x: u32 = 0x9E37_79B9;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    garbage[..4].copy_from_slice(&4000i32.to_ne_bytes());
    std::fs::write(dir.join("histogram_2.db"), &garbage).unwrap();
    // Truncated: a real Python file cut short of what its header says is used.
    let source = std::fs::read_dir(spare)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("counter_")
        })
        .expect("a counter file in the spare directory");
    let bytes = std::fs::read(&source).unwrap();
    let used = i32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert!(
        used > 64,
        "the spare file has too few entries ({used} bytes)"
    );
    std::fs::write(dir.join("counter_4.db"), &bytes[..used - 13]).unwrap();
    // A foreign name (with perfectly valid contents).
    std::fs::write(dir.join("foo.db"), &bytes).unwrap();
    // A symlink to a file outside the directory.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("counter_3.db")).unwrap();
    vec![
        "counter_1.db",
        "histogram_2.db",
        "counter_4.db",
        "foo.db",
        "counter_3.db",
    ]
}

fn scrape_errors_total(text: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("muster_scrape_errors_total "))
        .unwrap_or_else(|| panic!("no muster_scrape_errors_total sample in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn bad_files_are_skipped_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    python_write(dir.path(), &["types", "hostile"]);
    // Computed before the bad files exist: Python's collector fails on them.
    let expected = python_collect(dir.path());
    let spare = tempfile::tempdir().unwrap();
    python_write(spare.path(), &["special"]);
    let bad = add_bad_files(dir.path(), spare.path());

    for format in ["text", "openmetrics"] {
        let out = run_with_input(
            muster()
                .args(["scrape", "--dir"])
                .arg(dir.path())
                .args(["--format", format]),
            b"",
            std::time::Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scrape with bad files failed ({}): {stderr}",
            out.status
        );
        let got = python_parse(format, &out.stdout, &[]);
        assert_same(
            &expected,
            &got,
            &format!("good metrics next to bad files ({format})"),
        );
        for name in &bad {
            let mentions = stderr.matches(name).count();
            assert_eq!(
                mentions, 1,
                "stderr should warn once about {name}, found {mentions} times:\n{stderr}"
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            scrape_errors_total(&text),
            bad.len() as f64,
            "muster_scrape_errors_total should count the {} bad files",
            bad.len()
        );
    }
    // The symlink target was not touched, and nothing of it leaked out.
    let text = String::from_utf8_lossy(&common::muster_scrape(dir.path(), "text")).into_owned();
    assert!(
        !text.contains("root:"),
        "symlinked /etc/passwd content leaked:\n{text}"
    );
}

#[test]
fn a_directory_of_only_bad_files_still_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let spare = tempfile::tempdir().unwrap();
    python_write(spare.path(), &["special"]);
    let bad = add_bad_files(dir.path(), spare.path());
    let out = common::muster_scrape(dir.path(), "openmetrics");
    let got = python_parse("openmetrics", &out, &[]);
    assert_same(&Vec::new(), &got, "only bad files");
    let text = common::muster_scrape(dir.path(), "text");
    assert_eq!(
        scrape_errors_total(&String::from_utf8_lossy(&text)),
        bad.len() as f64
    );
}

#[test]
fn missing_directory_is_a_clear_error() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-dir");
    let out = run_with_input(
        muster().args(["scrape", "--dir"]).arg(&missing),
        b"",
        std::time::Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scrape of a missing dir exited 0");
    assert!(out.stdout.is_empty(), "no exposition expected on error");
    assert!(
        stderr.contains(&*missing.to_string_lossy()) && stderr.contains("No such file"),
        "stderr should name the directory and the reason: {stderr}"
    );
    // A file where the directory should be.
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_with_input(
        muster().args(["scrape", "--dir"]).arg(&file),
        b"",
        std::time::Duration::from_secs(60),
    );
    assert!(
        !out.status.success(),
        "scrape of a regular file as --dir exited 0"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&*file.to_string_lossy()),
        "stderr should name the path: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
