//! The chart model every SVG is drawn from (series, marks, scales, a caption and axis names) and
//! its drawing with plotters: axis ranges, log or linear scales, ticks, legends, the "no data"
//! panel. Knows nothing of reports.

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use std::path::Path;
use std::path::PathBuf;

use plotters::drawing::DrawingAreaErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: {0}")]
    NoData(&'static str),
    #[error("drawing {chart}: {message}")]
    Draw { chart: String, message: String },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A drawing failure before it knows which chart it belongs to.
pub(super) struct DrawFailure(pub(super) String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawFailure {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawFailure(e.to_string())
    }
}

/// Every chart's size in pixels.
pub(super) const CHART_SIZE: (u32, u32) = (900, 560);
/// A ladder spanning two decades or more is drawn on a log axis, so 1, 10, 100, 1000 are evenly spaced.
pub(super) const LOG_X_RATIO: f64 = 100.0;

const FONT: &str = "sans-serif";
/// Latencies spanning one decade or more get a log axis: a p99.9 tail must not flatten the p50.
const LOG_Y_RATIO: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scale {
    Linear,
    Log,
}

#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) color: RGBColor,
    pub(super) mark: Mark,
    /// `(x, y)` in the chart's units; non-finite points, and non-positive ones on a log axis, are
    /// dropped when drawing.
    pub(super) points: Vec<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark {
    /// Measurements at a few steps: the dots are the data, the line guides the eye.
    LineAndDots,
    /// Measurements a model is compared with: dots only, so the model's line is the only line.
    Dots,
    /// A model, or a dense timeline where dots would bury the line.
    Line,
    /// A filled band from zero up to the points: one layer of a stack.
    Area,
}

pub(super) struct Chart {
    pub(super) caption: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) x_scale: Scale,
    pub(super) y_scale: Scale,
    pub(super) series: Vec<Series>,
    pub(super) legend: SeriesLabelPosition,
    /// The y values are counts (processes): ticks only at whole numbers.
    pub(super) whole: bool,
}

/// A latency chart in µs, or in ms when the slowest figure reaches 10 ms (ticks stay short).
pub(super) fn latency_chart(
    caption: &str,
    x_desc: &str,
    x_scale: Scale,
    series: &[Series],
) -> Chart {
    let max_us = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let (unit, divisor) = if max_us >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("µs", 1.0)
    };
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            points: s.points.iter().map(|&(x, y)| (x, y / divisor)).collect(),
            ..s.clone()
        })
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    Chart {
        caption: caption.to_owned(),
        x_desc: x_desc.to_owned(),
        y_desc: format!("latency ({unit})"),
        x_scale,
        y_scale: scale_for(&ys, LOG_Y_RATIO),
        series,
        legend: SeriesLabelPosition::UpperLeft,
        whole: false,
    }
}

/// Log when every usable value is positive and the largest is at least `ratio` times the smallest.
pub(super) fn scale_for(values: &[f64], ratio: f64) -> Scale {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if min > 0.0 && max / min >= ratio {
        Scale::Log
    } else {
        Scale::Linear
    }
}

/// The axis range that shows `values` with a margin; a sensible default when there are none.
pub(super) fn axis_range(values: impl Iterator<Item = f64>, scale: Scale) -> Range<f64> {
    let usable: Vec<f64> = values
        .filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0))
        .collect();
    let min = usable.iter().copied().fold(f64::INFINITY, f64::min);
    let max = usable.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match scale {
        _ if usable.is_empty() => match scale {
            Scale::Linear => 0.0..1.0,
            Scale::Log => 1.0..10.0,
        },
        Scale::Log => min / 1.5..max * 1.5,
        Scale::Linear => {
            // Counts, bytes and rates start at zero, so the eye reads proportions right.
            let lo = min.min(0.0);
            let span = (max - lo).max(max.abs() * 0.1).max(1.0);
            lo..max + span * 0.08
        }
    }
}

/// A short tick label: `1`, `2.5`, `20k`, `1.5M`.
pub(super) fn fmt_tick(v: f64) -> String {
    let abs = v.abs();
    let (scaled, suffix) = if abs >= 1e9 {
        (v / 1e9, "G")
    } else if abs >= 1e6 {
        (v / 1e6, "M")
    } else if abs >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let mut s = format!("{scaled:.2}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    if s == "-0" {
        s = "0".to_owned();
    }
    s.push_str(suffix);
    s
}

/// Draws into an SVG string of `size` pixels.
pub(super) fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), DrawFailure>,
) -> Result<String, DrawFailure> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

pub(super) fn draw_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    chart: &Chart,
) -> Result<(), DrawFailure> {
    let keep = |scale: Scale, v: f64| v.is_finite() && (scale == Scale::Linear || v > 0.0);
    let series: Vec<Series> = chart
        .series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| keep(chart.x_scale, x) && keep(chart.y_scale, y))
                .collect(),
            ..s.clone()
        })
        .collect();
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    if all().next().is_none() {
        // Nothing was measured (a load that never ran): an empty frame with made-up ticks
        // would look like a reading.
        return draw_no_data(area, chart);
    }
    let x = axis_range(all().map(|p| p.0), chart.x_scale);
    let y = axis_range(all().map(|p| p.1), chart.y_scale);
    match (chart.x_scale, chart.y_scale) {
        (Scale::Linear, Scale::Linear) => draw_on(area, chart, &series, x, y),
        (Scale::Log, Scale::Linear) => draw_on(area, chart, &series, x.log_scale(), y),
        (Scale::Linear, Scale::Log) => draw_on(area, chart, &series, x, y.log_scale()),
        (Scale::Log, Scale::Log) => draw_on(area, chart, &series, x.log_scale(), y.log_scale()),
    }
}

/// The panel's caption and `no data` where its chart would be.
pub(super) fn draw_no_data(
    area: &DrawingArea<SVGBackend, Shift>,
    chart: &Chart,
) -> Result<(), DrawFailure> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        chart.caption.clone(),
        (14, 14),
        (FONT, 22).into_font(),
    ))?;
    area.draw(&Text::new(
        format!("no data ({})", chart.y_desc),
        (w as i32 / 2 - 80, h as i32 / 2),
        (FONT, 18).into_font().color(&RGBColor(120, 120, 120)),
    ))?;
    Ok(())
}

pub(super) fn draw_on<X, Y>(
    area: &DrawingArea<SVGBackend, Shift>,
    chart: &Chart,
    series: &[Series],
    x: X,
    y: Y,
) -> Result<(), DrawFailure>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.caption, (FONT, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    let tick = |v: &f64| fmt_tick(*v);
    let y_tick = |v: &f64| y_tick_label(chart.whole, *v);
    ctx.configure_mesh()
        .x_desc(chart.x_desc.as_str())
        .y_desc(chart.y_desc.as_str())
        .x_label_formatter(&tick)
        .y_label_formatter(&y_tick)
        .x_labels(10)
        .y_labels(8)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()?;
    for s in series {
        let color = s.color;
        let dots = s.points.iter().map(|&p| Circle::new(p, 4, color.filled()));
        let legend_entry = match s.mark {
            Mark::Dots => ctx.draw_series(dots)?,
            Mark::Area => ctx.draw_series(std::iter::once(Polygon::new(
                area_outline(&s.points),
                color.mix(0.85).filled(),
            )))?,
            Mark::Line | Mark::LineAndDots => {
                let line = ShapeStyle::from(&color).stroke_width(2);
                if s.mark == Mark::LineAndDots {
                    ctx.draw_series(dots)?;
                }
                ctx.draw_series(LineSeries::new(s.points.iter().copied(), line))?
            }
        };
        legend_entry.label(s.name.as_str());
        match s.mark {
            Mark::Area => legend_entry.legend(move |(lx, ly)| {
                Rectangle::new([(lx, ly - 5), (lx + 24, ly + 5)], color.mix(0.85).filled())
            }),
            Mark::Dots => {
                legend_entry.legend(move |(lx, ly)| Circle::new((lx + 12, ly), 4, color.filled()))
            }
            Mark::Line | Mark::LineAndDots => legend_entry.legend(move |(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 24, ly)], color.stroke_width(2))
            }),
        };
    }
    ctx.configure_series_labels()
        .position(chart.legend.clone())
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .margin(12)
        .draw()?;
    Ok(())
}

/// A y-axis tick label: counts get labels only at whole numbers (0.2 processes is no reading).
fn y_tick_label(whole: bool, v: f64) -> String {
    if whole && v.fract() != 0.0 {
        String::new()
    } else {
        fmt_tick(v)
    }
}

/// The polygon of an area series: its points in x order, down to zero at both ends (plotters'
/// AreaSeries needs another feature).
fn area_outline(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut outline = points.to_vec();
    outline.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(first), Some(last)) = (outline.first().copied(), outline.last().copied()) {
        outline.insert(0, (first.0, 0.0));
        outline.push((last.0, 0.0));
    }
    outline
}

/// Writes `contents` to a temporary file beside `path`, flushes it, and renames it over `path`.
pub(super) fn write_atomically(path: &Path, contents: &str) -> Result<(), PlotError> {
    loadgen::output::write_file_atomically(path, contents.as_bytes()).map_err(|source| {
        PlotError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Draws each chart at `CHART_SIZE`, named by the matching entry of `names`.
pub(super) fn draw_named(
    charts: &[Chart],
    names: &[&'static str],
) -> Result<Vec<(&'static str, String)>, PlotError> {
    let mut drawn = Vec::with_capacity(charts.len());
    for (chart, name) in charts.iter().zip(names) {
        let svg =
            render(CHART_SIZE, |root| draw_chart(root, chart)).map_err(|e| PlotError::Draw {
                chart: (*name).to_owned(),
                message: e.0,
            })?;
        drawn.push((*name, svg));
    }
    Ok(drawn)
}

/// Writes each drawn chart into `dir` as `{stem}-{name}.svg`; returns the paths in order.
pub(super) fn write_named(
    dir: &Path,
    stem: &str,
    drawn: Vec<(&'static str, String)>,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = Vec::with_capacity(drawn.len());
    for (name, svg) in drawn {
        let path = dir.join(format!("{stem}-{name}.svg"));
        write_atomically(&path, &svg)?;
        written.push(path);
    }
    Ok(written)
}
