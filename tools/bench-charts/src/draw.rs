//! Drawing a chart as an SVG document with plotters.

use std::error::Error;
use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::spec::{Bars, Chart, Lines};

/// Width and height of every chart, in pixels.
const SIZE: (i32, i32) = (800, 450);
/// Series colours, in order, repeating after ten (matplotlib's "tab10"): distinct on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
/// Text colour.
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Grid line colour.
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
/// Space around the chart, in pixels.
const MARGIN: i32 = 12;
/// Width of the area left of the plot for tick labels and the y axis label.
const Y_AREA: i32 = 80;
/// Font sizes in plotters' unit (the SVG's font-size is this / 1.24).
const TITLE_SIZE: f64 = 26.0;
/// Legend, axis and category labels.
const TEXT_SIZE: f64 = 16.0;
/// Values written on bars and points.
const VALUE_SIZE: f64 = 14.0;
/// Height of a line of `TEXT_SIZE` text, in pixels.
const LINE_PX: i32 = 17;

/// A drawing result; plotters' errors are boxed.
type Drawn<T = ()> = Result<T, Box<dyn Error>>;
/// The whole SVG canvas.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws a chart and returns the SVG document.
pub fn render(chart: &Chart) -> Drawn<String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (SIZE.0 as u32, SIZE.1 as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        match chart {
            Chart::Lines(c) => {
                let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
                let top = header(&root, &c.title, &names, Marker::Line)?;
                lines(&root, c, top)?;
            }
            Chart::Bars(c) => {
                let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
                let top = header(&root, &c.title, &names, Marker::Bar)?;
                bars(&root, c, top)?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}

/// How the legend shows a series.
#[derive(Clone, Copy)]
enum Marker {
    /// A line through a point marker.
    Line,
    /// A filled square.
    Bar,
}

/// Draws the title and the legend (centred rows) and returns the height they take.
fn header(root: &Area, title: &str, names: &[&str], marker: Marker) -> Drawn<i32> {
    let centre_top = Pos::new(HPos::Center, VPos::Top);
    let title_style = ("sans-serif", TITLE_SIZE, FontStyle::Bold).into_font();
    root.draw_text(
        title,
        &title_style.color(&INK).pos(centre_top),
        (SIZE.0 / 2, MARGIN),
    )?;

    // Each item: a 22 px marker, 6 px, the name; 24 px between items. Rows are filled
    // greedily: (the series in the row, the row's width).
    let item_width = |name: &str| 28 + text_width(name, TEXT_SIZE);
    let mut rows: Vec<(Range<usize>, i32)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let width = item_width(name);
        match rows.last_mut() {
            Some((items, used)) if *used + 24 + width <= SIZE.0 - 2 * MARGIN => {
                items.end = i + 1;
                *used += 24 + width;
            }
            _ => rows.push((i..i + 1, width)),
        }
    }
    let first_row = MARGIN + 38;
    let left_centre = Pos::new(HPos::Left, VPos::Center);
    for (r, (items, used)) in rows.iter().enumerate() {
        let y = first_row + r as i32 * (LINE_PX + 5);
        let mut x = (SIZE.0 - used) / 2;
        for i in items.clone() {
            let color = PALETTE[i % PALETTE.len()];
            match marker {
                Marker::Line => {
                    root.draw(&PathElement::new(
                        [(x, y), (x + 22, y)],
                        color.stroke_width(2),
                    ))?;
                    root.draw(&Circle::new((x + 11, y), 4, color.filled()))?;
                }
                Marker::Bar => root.draw(&Rectangle::new(
                    [(x + 4, y - 7), (x + 18, y + 7)],
                    color.filled(),
                ))?,
            }
            root.draw_text(
                names[i],
                &text_style(TEXT_SIZE).pos(left_centre),
                (x + 28, y),
            )?;
            x += item_width(names[i]) + 24;
        }
    }
    Ok(first_row + rows.len() as i32 * (LINE_PX + 5))
}

/// Draws a line chart below `top`.
fn lines(root: &Area, c: &Lines, top: i32) -> Drawn {
    let points = || c.series.iter().flat_map(|s| s.points.iter());
    let x = fit(points().map(|p| p.0), c.x_log, false);
    let y = fit(points().map(|p| p.1), c.y_log, true);
    // plotters' ticks on a log axis crowd between powers of ten: use the points' x values.
    let log_x = || x.clone().log_scale().with_key_points(log_ticks(c, &x));
    match (c.x_log, c.y_log) {
        (false, false) => lines_on(root, c, top, x, y),
        (false, true) => lines_on(root, c, top, x, y.log_scale()),
        (true, false) => lines_on(root, c, top, log_x(), y),
        (true, true) => lines_on(root, c, top, log_x(), y.log_scale()),
    }
}

/// Ticks for a log x axis: the points' x values, less those whose label would crowd the
/// previous one.
fn log_ticks(c: &Lines, range: &Range<f64>) -> Vec<f64> {
    let mut xs: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let plot_px = f64::from(SIZE.0 - 2 * MARGIN - Y_AREA);
    let (lo, hi) = (range.start, range.end);
    let mut ticks = Vec::new();
    let mut free_from = f64::NEG_INFINITY; // pixel where the next label may begin
    for x in xs {
        let share = (x / lo).ln() / (hi / lo).ln();
        let half = f64::from(text_width(&number(x), TEXT_SIZE)) / 2.0 + 6.0;
        if share * plot_px - half >= free_from {
            ticks.push(x);
            free_from = share * plot_px + half;
        }
    }
    ticks
}

/// Draws a line chart on axes `x` and `y` (linear or logarithmic).
fn lines_on<X, Y>(root: &Area, c: &Lines, top: i32, x: X, y: Y) -> Drawn
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .margin(MARGIN)
        .margin_top(top)
        .x_label_area_size(2 * LINE_PX + 16)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .label_style(text_style(TEXT_SIZE))
        .axis_desc_style(text_style(TEXT_SIZE))
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .draw()?;

    let value_style = text_style(VALUE_SIZE).pos(Pos::new(HPos::Center, VPos::Bottom));
    // Boxes of the value labels drawn so far: a label that would overlap one is left out.
    let mut labels: Vec<[i32; 4]> = Vec::new();
    for (i, series) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points = series.points.iter().copied();
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        chart.draw_series(points.clone().map(|p| Circle::new(p, 4, color.filled())))?;
        for point in points {
            let text = number(point.1);
            let (px, py) = chart.backend_coord(&point);
            let half = text_width(&text, VALUE_SIZE) / 2;
            let [x0, y0, x1, y1] = [px - half, py - 7 - LINE_PX, px + half, py - 7];
            if labels
                .iter()
                .all(|b| x1 <= b[0] || b[2] <= x0 || y1 <= b[1] || b[3] <= y0)
            {
                labels.push([x0, y0, x1, y1]);
                root.draw_text(&text, &value_style, (px, py - 7))?;
            }
        }
    }
    Ok(())
}

/// Draws a grouped bar chart below `top`.
fn bars(root: &Area, c: &Bars, top: i32) -> Drawn {
    let values = c.series.iter().flat_map(|s| s.values.iter().flatten());
    let y = fit(values.copied(), c.y_log, true);
    if c.y_log {
        bars_on(root, c, top, y.start, y.log_scale())
    } else {
        bars_on(root, c, top, 0.0, y)
    }
}

/// Draws a grouped bar chart on axis `y` (linear or logarithmic); bars start at `base`.
fn bars_on<Y>(root: &Area, c: &Bars, top: i32, base: f64, y: Y) -> Drawn
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let groups = c.categories.len();
    let group_px = f64::from(SIZE.0 - 2 * MARGIN - Y_AREA) / groups as f64;
    let names: Vec<Vec<String>> = c
        .categories
        .iter()
        .map(|name| wrap(name, group_px * 0.95, TEXT_SIZE))
        .collect();
    let rows = names.iter().map(Vec::len).max().unwrap_or(0).max(1) as i32;
    let mut chart = ChartBuilder::on(root)
        .margin(MARGIN)
        .margin_top(top)
        .x_label_area_size(12 + rows * LINE_PX)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(0.0..groups as f64, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .label_style(text_style(TEXT_SIZE))
        .axis_desc_style(text_style(TEXT_SIZE))
        .y_label_formatter(&|v| number(*v))
        .y_desc(&c.y_label)
        .draw()?;

    let above = text_style(VALUE_SIZE).pos(Pos::new(HPos::Center, VPos::Bottom));
    let below = text_style(VALUE_SIZE).pos(Pos::new(HPos::Center, VPos::Top));
    let width = 0.8 / c.series.len() as f64;
    for (i, series) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let left = |group: usize| 0.1 + group as f64 + i as f64 * width;
        let bars = series.values.iter().enumerate();
        let bars = bars.filter_map(|(group, v)| v.map(|v| (left(group), v)));
        chart.draw_series(bars.clone().map(|(x, v)| {
            Rectangle::new(
                [(x + width * 0.05, base), (x + width * 0.95, v)],
                color.filled(),
            )
        }))?;
        for (x, v) in bars {
            let (px, py) = chart.backend_coord(&(x + width / 2.0, v));
            if v >= base {
                root.draw_text(&number(v), &above, (px, py - 3))?;
            } else {
                root.draw_text(&number(v), &below, (px, py + 3))?;
            }
        }
    }

    let bottom = chart.plotting_area().get_pixel_range().1.end;
    let centre_top = text_style(TEXT_SIZE).pos(Pos::new(HPos::Center, VPos::Top));
    for (group, lines) in names.iter().enumerate() {
        let (px, _) = chart.backend_coord(&(group as f64 + 0.5, base));
        for (row, line) in lines.iter().enumerate() {
            root.draw_text(line, &centre_top, (px, bottom + 8 + row as i32 * LINE_PX))?;
        }
    }
    Ok(())
}

/// The range an axis shows for `values` (at least one; positive if `log`): some room
/// around them, and from zero (linear) or a power of ten (log) if `from_zero`.
fn fit(values: impl Iterator<Item = f64>, log: bool, from_zero: bool) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if log {
        let (lo, hi) = (lo.log10(), hi.log10());
        let pad = ((hi - lo) * 0.08).max(0.15);
        let lo = if from_zero {
            (lo - pad).floor()
        } else {
            lo - pad
        };
        10f64.powf(lo)..10f64.powf(hi + pad)
    } else {
        let (lo, hi) = if from_zero {
            (lo.min(0.0), hi.max(0.0))
        } else {
            (lo, hi)
        };
        let pad = if hi > lo {
            (hi - lo) * 0.08
        } else {
            1f64.max(hi.abs()) * 0.5
        };
        let lo = if from_zero && lo == 0.0 {
            0.0
        } else {
            lo - pad
        };
        lo..hi + pad
    }
}

/// Splits `text` at spaces into lines at most `width` pixels wide (a longer word keeps a line of its own).
fn wrap(text: &str, width: f64, size: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if f64::from(text_width(&format!("{line} {word}"), size)) <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A generous estimate of the width of `text` in pixels (the browser picks the actual font).
fn text_width(text: &str, size: f64) -> i32 {
    (text.chars().count() as f64 * size * 0.5).ceil() as i32
}

/// Plain sans-serif text of `size`.
fn text_style(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

/// A value with three significant digits, thousands separated, without trailing zeros:
/// 1,364, 18.6, 0.052.
fn number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let mut text = format!("{:.digits$}", v.abs());
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    let (int, fraction) = text.split_at(text.find('.').unwrap_or(text.len()));
    let mut out = String::from(if v < 0.0 { "-" } else { "" });
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out + fraction
}
