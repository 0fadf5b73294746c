//! The chart description (see the README for the schema): parsing and checks.

use serde::Deserialize;
use serde_json::Value;

/// One chart of the spec, selected by its `kind` field.
pub enum Chart {
    /// `"kind": "lines"`.
    Lines(Lines),
    /// `"kind": "bars"`.
    Bars(Bars),
}

/// A line chart: one line with point markers per series.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lines {
    /// File name of the SVG, written into the output directory.
    pub file: String,
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic x axis.
    #[serde(default)]
    pub x_log: bool,
    /// Logarithmic y axis.
    #[serde(default)]
    pub y_log: bool,
    /// The lines.
    pub series: Vec<LineSeries>,
}

/// One line: a name for the legend and its `[x, y]` points.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSeries {
    /// Name in the legend.
    pub name: String,
    /// `[x, y]` pairs, drawn in this order.
    pub points: Vec<(f64, f64)>,
}

/// A grouped bar chart: one group per category, one bar per series in each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bars {
    /// File name of the SVG, written into the output directory.
    pub file: String,
    /// Title above the chart.
    pub title: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic y axis.
    #[serde(default)]
    pub y_log: bool,
    /// Group labels along the x axis.
    pub categories: Vec<String>,
    /// The bars of each group, in this order.
    pub series: Vec<BarSeries>,
}

/// One bar per category: a name for the legend and the values (`null`: no bar).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarSeries {
    /// Name in the legend.
    pub name: String,
    /// One value per category; `None` leaves the category without this bar.
    pub values: Vec<Option<f64>>,
}

impl Chart {
    /// The SVG file name.
    pub fn file(&self) -> &str {
        match self {
            Chart::Lines(c) => &c.file,
            Chart::Bars(c) => &c.file,
        }
    }
}

/// Parses and checks a whole spec. An error names the chart and the field.
pub fn parse(text: &str) -> Result<Vec<Chart>, String> {
    let values: Vec<Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON list of charts: {e}"))?;
    if values.is_empty() {
        return Err("the spec lists no charts".into());
    }
    let mut charts: Vec<Chart> = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        let name = match value.get("file").and_then(Value::as_str) {
            Some(file) => format!("chart {index} ({file:?})"),
            None => format!("chart {index}"),
        };
        let chart = parse_chart(value)
            .and_then(|chart| check(&chart).map(|()| chart))
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(first) = charts.iter().position(|c| c.file() == chart.file()) {
            return Err(format!(
                "{name}: field file: chart {first} writes the same file"
            ));
        }
        charts.push(chart);
    }
    Ok(charts)
}

/// Reads one chart's fields according to its `kind`.
fn parse_chart(mut value: Value) -> Result<Chart, String> {
    let object = value.as_object_mut().ok_or("not a JSON object")?;
    let kind = object.remove("kind");
    match kind.as_ref().and_then(Value::as_str) {
        Some("lines") => fields(value).map(Chart::Lines),
        Some("bars") => fields(value).map(Chart::Bars),
        _ => Err(format!(
            "field kind: expected \"lines\" or \"bars\", found {}",
            kind.map_or("nothing".into(), |k| k.to_string())
        )),
    }
}

/// Deserializes a chart's fields, naming the field that does not fit.
fn fields<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("field {path}: {}", e.inner())
        }
    })
}

/// The checks that the types alone do not make.
fn check(chart: &Chart) -> Result<(), String> {
    check_file(chart.file())?;
    match chart {
        Chart::Lines(c) => {
            if c.series.is_empty() {
                return Err("field series: no series".into());
            }
            for (s, series) in c.series.iter().enumerate() {
                if series.points.is_empty() {
                    return Err(format!("field series[{s}].points: no points"));
                }
                for (p, &(x, y)) in series.points.iter().enumerate() {
                    check_log(x, c.x_log, "x_log", &format!("series[{s}].points[{p}][0]"))?;
                    check_log(y, c.y_log, "y_log", &format!("series[{s}].points[{p}][1]"))?;
                }
            }
        }
        Chart::Bars(c) => {
            if c.categories.is_empty() {
                return Err("field categories: no categories".into());
            }
            if c.series.is_empty() {
                return Err("field series: no series".into());
            }
            for (s, series) in c.series.iter().enumerate() {
                if series.values.len() != c.categories.len() {
                    return Err(format!(
                        "field series[{s}].values: {} values for {} categories",
                        series.values.len(),
                        c.categories.len()
                    ));
                }
                if series.values.iter().all(Option::is_none) {
                    return Err(format!("field series[{s}].values: no values, only nulls"));
                }
                for (v, value) in series.values.iter().enumerate() {
                    if let Some(value) = *value {
                        check_log(value, c.y_log, "y_log", &format!("series[{s}].values[{v}]"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A file name without a directory part, ending in `.svg`.
fn check_file(file: &str) -> Result<(), String> {
    let plain = !file.contains(['/', '\\']) && !file.starts_with('.');
    if plain && file.len() > ".svg".len() && file.ends_with(".svg") {
        Ok(())
    } else {
        Err(format!(
            "field file: {file:?} is not a plain file name ending in .svg"
        ))
    }
}

/// A value on a logarithmic axis must be positive.
fn check_log(value: f64, log: bool, flag: &str, field: &str) -> Result<(), String> {
    if log && value <= 0.0 {
        Err(format!(
            "field {field}: {value} is not positive, but {flag} is true (logarithmic axis)"
        ))
    } else {
        Ok(())
    }
}
