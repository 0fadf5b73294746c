//! Runs the real `bench-charts` binary on specs in a temporary directory.

use std::fs;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

/// The example spec shipped with the crate.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/example-spec.json");

/// Runs `bench-charts SPEC OUT_DIR`.
fn bench_charts(spec: &Path, out_dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bench-charts"))
        .arg(spec)
        .arg(out_dir)
        .output()
        .expect("run bench-charts")
}

/// The contents of an SVG's `<text>` elements, unescaped, joined by spaces (so that the
/// lines of a wrapped label read as the label).
fn texts(svg: &str) -> String {
    let texts = svg.split("<text").skip(1).map(|element| {
        let content = element.split_once('>').expect("<text ...>").1;
        let content = content.split_once("</text>").expect("</text>").0.trim();
        content
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    });
    texts.collect::<Vec<_>>().join(" ")
}

/// The strings of `value[key]`, or of `value[key][..][name]`.
fn strings<'v>(value: &'v Value, key: &str, name: Option<&str>) -> Vec<&'v str> {
    let items = value[key].as_array().into_iter().flatten();
    let items = items.map(|item| name.map_or(item, |name| &item[name]));
    items.filter_map(Value::as_str).collect()
}

/// Writes `spec` to a file in `dir` and runs the tool on it, out to `dir/out`.
fn run_spec(dir: &Path, spec: &str) -> Output {
    let path = dir.join("spec.json");
    fs::write(&path, spec).expect("write spec");
    bench_charts(&path, &dir.join("out"))
}

#[test]
fn example_spec_draws_every_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("charts/svg");
    let output = bench_charts(Path::new(EXAMPLE), &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let spec: Value = serde_json::from_str(&fs::read_to_string(EXAMPLE).expect("example"))
        .expect("example spec is JSON");
    let charts = spec.as_array().expect("a list of charts");
    assert_eq!(
        charts.len(),
        3,
        "the example has a line chart and two bar charts"
    );
    for chart in charts {
        let file = chart["file"].as_str().expect("file");
        let svg = fs::read_to_string(out.join(file)).expect("the chart's SVG is written");
        assert!(svg.starts_with("<svg"), "{file}: {}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"), "{file}");
        assert!(svg.contains(r#"width="800" height="450""#), "{file}");
        assert!(
            svg.contains(r##"fill="#FFFFFF""##),
            "{file}: white background"
        );
        let texts = texts(&svg);
        let mut expected = vec![chart["title"].as_str().expect("title")];
        expected.extend(strings(chart, "series", Some("name")));
        expected.extend(strings(chart, "categories", None));
        for label in ["x_label", "y_label"] {
            expected.extend(chart[label].as_str());
        }
        for text in expected {
            assert!(
                texts.contains(text),
                "{file}: no text {text:?} in {texts:?}"
            );
        }
    }
    // The bar charts label every bar with its value.
    let hot_path = texts(&fs::read_to_string(out.join("hot_path.svg")).expect("hot_path.svg"));
    for value in ["18.6", "83.9", "92.6", "1,364", "5,212"] {
        assert!(
            hot_path.contains(value),
            "no bar label {value} in {hot_path:?}"
        );
    }
}

#[test]
fn linear_axes_and_markup_in_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = r#"[{"kind": "lines", "file": "l.svg", "title": "<b> & 'c'",
        "x_label": "x", "y_label": "y",
        "series": [{"name": "a \"quoted\" name", "points": [[0, -1.5], [3, 2]]},
                   {"name": "single", "points": [[1, 1]]}]}]"#;
    let output = run_spec(dir.path(), spec);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = fs::read_to_string(dir.path().join("out/l.svg")).expect("l.svg");
    assert!(
        svg.contains("&lt;b&gt; &amp; &apos;c&apos;"),
        "title is escaped"
    );
    let texts = texts(&svg);
    for text in ["<b> & 'c'", "a \"quoted\" name", "single", "-1.5"] {
        assert!(texts.contains(text), "no text {text:?} in {texts:?}");
    }
}

#[test]
fn spec_errors_name_the_chart_and_the_field() {
    let lines = |fields: &str| {
        format!(
            r#"[{{"kind": "lines", "file": "l.svg", "title": "t", "x_label": "x",
                "y_label": "y", {fields}}}]"#
        )
    };
    let bars = |fields: &str| {
        format!(
            r#"[{{"kind": "bars", "file": "b.svg", "title": "t", "y_label": "y",
                "categories": ["one", "two"], {fields}}}]"#
        )
    };
    let good_series = r#""series": [{"name": "s", "points": [[1, 2]]}]"#;
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("[{".into(), vec!["not a JSON list of charts", "line 1"]),
        (
            r#"{"kind": "lines"}"#.into(),
            vec!["not a JSON list of charts"],
        ),
        ("[]".into(), vec!["no charts"]),
        ("[3]".into(), vec!["chart 0", "not a JSON object"]),
        (
            r#"[{"kind": "pie", "file": "p.svg"}]"#.into(),
            vec![r#"chart 0 ("p.svg")"#, "field kind", r#""pie""#],
        ),
        (
            r#"[{"file": "p.svg"}]"#.into(),
            vec!["field kind", "nothing"],
        ),
        (
            r#"[{"kind": "lines", "file": "l.svg", "x_label": "x", "y_label": "y", "series": []}]"#
                .into(),
            vec![r#"chart 0 ("l.svg")"#, "missing field `title`"],
        ),
        (
            lines(r#""series": [{"name": "s", "points": [[1, 2], [3, "4"]]}]"#),
            vec!["field series[0].points[1][1]", "invalid type"],
        ),
        (
            lines(r#""series": [{"name": "s"}]"#),
            vec!["field series[0]", "points"],
        ),
        (
            lines(&format!(r#""colour": "red", {good_series}"#)),
            vec!["unknown field `colour`"],
        ),
        (
            lines(r#""series": []"#),
            vec![r#"chart 0 ("l.svg")"#, "field series: no series"],
        ),
        (
            lines(r#""series": [{"name": "s", "points": [[1, 2]]}, {"name": "e", "points": []}]"#),
            vec!["field series[1].points: no points"],
        ),
        (
            lines(r#""x_log": true, "series": [{"name": "s", "points": [[1, 2], [0, 3]]}]"#),
            vec!["field series[0].points[1][0]", "not positive", "x_log"],
        ),
        (
            lines(r#""y_log": true, "series": [{"name": "s", "points": [[1, -2]]}]"#),
            vec!["field series[0].points[0][1]", "not positive", "y_log"],
        ),
        (
            bars(r#""y_log": true, "series": [{"name": "s", "values": [1, 0]}]"#),
            vec![r#"chart 0 ("b.svg")"#, "field series[0].values[1]", "y_log"],
        ),
        (
            bars(r#""series": [{"name": "s", "values": [1]}]"#),
            vec!["field series[0].values: 1 values for 2 categories"],
        ),
        (
            bars(
                r#""series": [{"name": "s", "values": [1, 2]}, {"name": "n", "values": [null, null]}]"#,
            ),
            vec!["field series[1].values: no values, only nulls"],
        ),
        (bars(r#""series": []"#), vec!["field series: no series"]),
        (
            r#"[{"kind": "bars", "file": "b.svg", "title": "t", "y_label": "y", "categories": [],
                 "series": [{"name": "s", "values": []}]}]"#
                .into(),
            vec!["field categories: no categories"],
        ),
        (
            lines(good_series).replace("l.svg", "../l.svg"),
            vec!["field file", "not a plain file name"],
        ),
        (
            lines(good_series).replace("l.svg", "l.png"),
            vec!["field file"],
        ),
        (
            // A good chart, then one for the same file: nothing is written.
            format!(
                "[{}, {}]",
                lines(good_series).trim_matches(['[', ']']),
                lines(good_series).trim_matches(['[', ']'])
            ),
            vec![
                r#"chart 1 ("l.svg")"#,
                "field file",
                "chart 0 writes the same file",
            ],
        ),
    ];
    for (spec, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = run_spec(dir.path(), &spec);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "spec {spec}\nstderr {stderr}"
        );
        assert!(stderr.starts_with("bench-charts: "), "{stderr}");
        assert!(
            stderr.contains("spec.json"),
            "names the spec file: {stderr}"
        );
        for text in expected {
            assert!(
                stderr.contains(text),
                "spec {spec}\nstderr lacks {text:?}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !dir.path().join("out").exists(),
            "nothing written for {spec}"
        );
    }
}

#[test]
fn missing_spec_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bench_charts(&dir.path().join("nope.json"), dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.json"),
        "{stderr}"
    );
}

#[test]
fn unwritable_out_dir_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory under a regular file cannot be made, whoever runs the test (even root).
    let file = dir.path().join("file");
    fs::write(&file, "").expect("write file");
    let output = bench_charts(Path::new(EXAMPLE), &file.join("out"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create OUT_DIR") && stderr.contains("file/out"),
        "{stderr}"
    );

    // OUT_DIR exists but a chart's path in it is a directory: the write fails.
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("scrape_latency.svg")).expect("mkdir");
    let output = bench_charts(Path::new(EXAMPLE), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"chart "scrape_latency.svg": cannot write"#),
        "{stderr}"
    );
}
