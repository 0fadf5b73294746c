#![doc = include_str!("../README.md")]

mod draw;
mod spec;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Writes the SVG charts described by a JSON spec: OUT_DIR/<file> for each chart.
#[derive(Parser)]
#[command(version, after_long_help = include_str!("../README.md"))]
struct Args {
    /// The chart descriptions: a JSON list (schema below with --help).
    spec: PathBuf,
    /// Directory for the SVG files; created if missing.
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-charts: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and checks the whole spec and draws every chart before writing any file.
fn run(args: &Args) -> Result<(), String> {
    let spec = args.spec.display();
    let text = fs::read_to_string(&args.spec).map_err(|e| format!("cannot read {spec}: {e}"))?;
    let charts = spec::parse(&text).map_err(|e| format!("{spec}: {e}"))?;
    let mut svgs = Vec::with_capacity(charts.len());
    for chart in &charts {
        let svg = draw::render(chart)
            .map_err(|e| format!("{spec}: chart {:?}: drawing failed: {e}", chart.file()))?;
        svgs.push((chart.file(), svg));
    }
    let out = args.out_dir.display();
    fs::create_dir_all(&args.out_dir).map_err(|e| format!("cannot create OUT_DIR {out}: {e}"))?;
    for (file, svg) in svgs {
        let path = args.out_dir.join(file);
        fs::write(&path, svg)
            .map_err(|e| format!("chart {file:?}: cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
