//! SVG charts of a sweep (latency, first-echo latency, memory stacked by component with the fitted
//! total, throughput against connections; every title names the server) and of a run's timeline (children, memory, throughput over time), and the
//! conversion of each report kind into the points they are drawn from.
//!
//! Drawn with plotters' SVG backend only: text goes into the file as `<text>` elements for the
//! viewer to render, so neither building nor drawing needs a system font. Every file is written to a
//! temporary name in the target directory and renamed into place, so a reader never sees half a chart.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

use crate::capacity::memory::Component;
use crate::capacity::LinearFit;
use crate::render::units::{bytes_unit, fmt_bytes};
use crate::report::run::RunReport;
use crate::report::sweep::{SweepReport, SweepStep};

/// One step of a sweep, as plotted. A figure that was not measured (a failed step) is NaN and is left
/// out of its chart rather than drawn as zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    /// Connections the step asked for.
    pub conns: u64,
    pub echo_p50_us: f64,
    pub echo_p99_us: f64,
    pub echo_p999_us: f64,
    pub first_echo_p50_us: f64,
    pub first_echo_p99_us: f64,
    pub total_pss_bytes: f64,
    /// Children alive when PSS was measured: the `x` of the memory fit.
    pub live_children: u64,
    pub messages_per_sec: f64,
    /// The server's named counters, user space and kernel (the total the model fits); NaN when
    /// the step did not measure the kernel's counters.
    pub total_bytes: f64,
    /// The total's components in [`Component::ALL`] order; `None` when not measured.
    pub components: Option<[f64; 6]>,
    /// The server's share of the `MemAvailable` drop (the cross-check); NaN when not measured.
    pub drop_bytes: f64,
}

/// What the memory chart draws beside the steps: the server's name for every title, the fits, and
/// the `--validate` step (drawn apart: it was not fitted).
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepModels<'a> {
    pub server: &'a str,
    /// Total PSS against live children (user space only).
    pub pss_fit: Option<&'a LinearFit>,
    /// The total (user space + kernel) against live children.
    pub total_fit: Option<&'a LinearFit>,
    pub validation: Option<SweepPoint>,
}

/// One sample of a run's process-tree timeline. NaN figures are left out, as in [`SweepPoint`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelinePoint {
    /// Seconds since the load started.
    pub t_secs: f64,
    pub children: u64,
    pub zombies: u64,
    pub total_pss_bytes: f64,
    pub messages_per_sec: f64,
}

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
struct DrawFailure(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawFailure {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawFailure(e.to_string())
    }
}

/// Suffixes of the four files [`write_sweep_svgs`] writes, in the order it returns them.
pub const SWEEP_CHARTS: [&str; 4] = ["echo-latency", "first-echo-latency", "memory", "throughput"];

/// Suffix of the file [`write_timeline_svg`] writes.
pub const TIMELINE_CHART: &str = "timeline";

const CHART_SIZE: (u32, u32) = (900, 560);
const TIMELINE_SIZE: (u32, u32) = (900, 1000);
const FONT: &str = "sans-serif";

/// A ladder spanning two decades or more is drawn on a log axis, so 1, 10, 100, 1000 are evenly spaced.
const LOG_X_RATIO: f64 = 100.0;
/// Latencies spanning one decade or more get a log axis: a p99.9 tail must not flatten the p50.
const LOG_Y_RATIO: f64 = 10.0;

/// Writes `{stem}-echo-latency.svg`, `{stem}-first-echo-latency.svg`, `{stem}-memory.svg` and
/// `{stem}-throughput.svg` into `dir`, and returns their paths in that order.
pub fn write_sweep_svgs(
    dir: &Path,
    stem: &str,
    points: &[SweepPoint],
    models: &SweepModels,
) -> Result<Vec<PathBuf>, PlotError> {
    if points.is_empty() {
        return Err(PlotError::NoData("the sweep has no steps"));
    }
    let conns: Vec<f64> = points.iter().map(|p| p.conns as f64).collect();
    let x_scale = scale_for(&conns, LOG_X_RATIO);
    let conns_desc = "concurrent connections";

    let latency_series = |name: &str, color: RGBColor, pick: fn(&SweepPoint) -> f64| Series {
        name: name.to_owned(),
        color,
        mark: Mark::LineAndDots,
        points: points.iter().map(|p| (p.conns as f64, pick(p))).collect(),
    };
    let echo = [
        latency_series("echo p50", BLUE, |p| p.echo_p50_us),
        latency_series("echo p99", RGBColor(230, 120, 0), |p| p.echo_p99_us),
        latency_series("echo p99.9", RED, |p| p.echo_p999_us),
    ];
    let first_echo = [
        latency_series("first-echo p50", BLUE, |p| p.first_echo_p50_us),
        latency_series("first-echo p99", RED, |p| p.first_echo_p99_us),
    ];

    let memory = memory_chart(points, models);

    let throughput = [Series {
        name: "messages/s (steady phase)".to_owned(),
        color: RGBColor(0, 140, 70),
        mark: Mark::LineAndDots,
        points: points
            .iter()
            .map(|p| (p.conns as f64, p.messages_per_sec))
            .collect(),
    }];

    let charts = [
        latency_chart(
            &titled("Echo latency by load", models.server),
            conns_desc,
            x_scale,
            &echo,
        ),
        latency_chart(
            &titled("First echo after connect (accept + fork)", models.server),
            conns_desc,
            x_scale,
            &first_echo,
        ),
        memory,
        Chart {
            caption: titled("Throughput by load", models.server),
            x_desc: conns_desc.to_owned(),
            y_desc: "messages per second".to_owned(),
            x_scale,
            y_scale: Scale::Linear,
            series: throughput.to_vec(),
            legend: SeriesLabelPosition::LowerRight,
            whole: false,
        },
    ];

    let mut written = Vec::with_capacity(charts.len());
    for (chart, suffix) in charts.iter().zip(SWEEP_CHARTS) {
        let svg =
            render(CHART_SIZE, |root| draw_chart(root, chart)).map_err(|e| PlotError::Draw {
                chart: suffix.to_owned(),
                message: e.0,
            })?;
        let path = dir.join(format!("{stem}-{suffix}.svg"));
        write_atomically(&path, &svg)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `{stem}-timeline.svg` into `dir`: three panels sharing the time axis (children and
/// zombies, total PSS, messages/s) and returns its path.
pub fn write_timeline_svg(
    dir: &Path,
    stem: &str,
    points: &[TimelinePoint],
) -> Result<PathBuf, PlotError> {
    if points.is_empty() {
        return Err(PlotError::NoData("the timeline has no samples"));
    }
    // Dots at every 100 ms sample would bury the line; a short timeline keeps them.
    let mark = if points.len() > 30 {
        Mark::Line
    } else {
        Mark::LineAndDots
    };
    let series = |name: &str, color: RGBColor, pick: &dyn Fn(&TimelinePoint) -> f64| Series {
        name: name.to_owned(),
        color,
        mark,
        points: points.iter().map(|p| (p.t_secs, pick(p))).collect(),
    };
    let pss_unit = bytes_unit(points.iter().map(|p| p.total_pss_bytes));
    let time_desc = "time since load start (s)";
    // Children and memory climb from the lower left; throughput sits high: legends go where lines aren't.
    let panel = |caption: &str, y_desc: String, series: Vec<Series>, legend| Chart {
        caption: caption.to_owned(),
        x_desc: time_desc.to_owned(),
        whole: y_desc == "processes",
        y_desc,
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series,
        legend,
    };
    let panels = [
        panel(
            "Server children",
            "processes".to_owned(),
            vec![
                series("live children", BLUE, &|p| p.children as f64),
                series("zombies", RED, &|p| p.zombies as f64),
            ],
            SeriesLabelPosition::UpperLeft,
        ),
        panel(
            "Server memory (parent + children)",
            format!("total PSS ({})", pss_unit.0),
            vec![series("total PSS", RGBColor(120, 60, 170), &|p| {
                p.total_pss_bytes / pss_unit.1
            })],
            SeriesLabelPosition::UpperLeft,
        ),
        panel(
            // loadgen's per-second buckets start at its first connect: second 0 holds the
            // connect phase (forks, first echoes), not steady echoing.
            "Throughput (second 0 includes the connect phase)",
            "messages per second".to_owned(),
            vec![series("messages/s", RGBColor(0, 140, 70), &|p| {
                p.messages_per_sec
            })],
            SeriesLabelPosition::LowerRight,
        ),
    ];
    let svg = render(TIMELINE_SIZE, |root| {
        for (area, chart) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
            draw_chart(area, chart)?;
        }
        Ok(())
    })
    .map_err(|e| PlotError::Draw {
        chart: TIMELINE_CHART.to_owned(),
        message: e.0,
    })?;
    let path = dir.join(format!("{stem}-{TIMELINE_CHART}.svg"));
    write_atomically(&path, &svg)?;
    Ok(path)
}

/// Writes the sweep charts of `report` into `dir` as `{stem}-*.svg`.
pub fn sweep_svgs(report: &SweepReport, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, PlotError> {
    let points: Vec<_> = report.steps.iter().map(|s| s.plot_point()).collect();
    let server = short_server_name(&report.server.description);
    let models = SweepModels {
        server: &server,
        pss_fit: report.capacity.memory_fit.as_ref(),
        total_fit: report.capacity.total_memory.as_ref().map(|m| &m.total_fit),
        validation: report
            .validation
            .as_ref()
            .and_then(|v| v.step.as_ref())
            .map(|s| s.plot_point()),
    };
    write_sweep_svgs(dir, stem, &points, &models)
}

/// The server as chart titles name it: `fork-echo-server --backlog 4096`, `socat TCP-LISTEN:...`,
/// without the harness's own `--port 0` and cut to a title's length.
pub fn short_server_name(description: &str) -> String {
    let name = description
        .replace(" (built in)", "")
        .replace(" --port 0", "");
    const MAX: usize = 60;
    if name.chars().count() > MAX {
        let cut: String = name.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        name
    }
}

fn titled(what: &str, server: &str) -> String {
    if server.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {server}")
    }
}

/// Colours of the stacked components, in [`Component::ALL`] order.
const COMPONENT_COLORS: [RGBColor; 6] = [
    RGBColor(110, 150, 220),
    RGBColor(240, 170, 80),
    RGBColor(200, 110, 110),
    RGBColor(120, 190, 120),
    RGBColor(170, 130, 200),
    RGBColor(190, 190, 190),
];

/// The memory chart, on linear axes so a straight fit is drawn straight. With the kernel's counters
/// (schema 2): the components stacked per step, the measured total as dots, the total's fit as a
/// line clipped to the fitted steps' range (a negative intercept stays in the legend instead of
/// pulling the line off the chart), PSS as dots for comparison, and the `--validate` step apart.
/// Without them (schema 1): total PSS and its fit.
fn memory_chart(points: &[SweepPoint], models: &SweepModels) -> Chart {
    let mut all_bytes: Vec<f64> = points
        .iter()
        .flat_map(|p| [p.total_pss_bytes, p.total_bytes])
        .collect();
    if let Some(v) = &models.validation {
        all_bytes.extend([v.total_pss_bytes, v.total_bytes]);
    }
    for p in points {
        if let Some(c) = p.components {
            all_bytes.push(c.iter().map(|v| v.max(0.0)).sum());
            all_bytes.push(p.drop_bytes);
        }
    }
    let unit = bytes_unit(all_bytes.into_iter());
    let live: Vec<f64> = points
        .iter()
        .filter(|p| p.total_bytes.is_finite() || p.total_pss_bytes.is_finite())
        .map(|p| p.live_children as f64)
        .collect();
    let at = |p: &SweepPoint, bytes: f64| (p.live_children as f64, bytes / unit.1);
    let mut series = Vec::new();
    let stacked: Vec<(&SweepPoint, [f64; 6])> = points
        .iter()
        .filter_map(|p| p.components.map(|c| (p, c)))
        .collect();
    let has_total = models.total_fit.is_some() || !stacked.is_empty();
    if !stacked.is_empty() {
        // Drawn top band first, so each lower band paints over the part of the one above it; the
        // rest is not part of the total and not stacked.
        for k in (0..Component::ALL.len()).rev() {
            if !Component::ALL[k].in_total() {
                continue;
            }
            series.push(Series {
                name: Component::ALL[k].label().to_owned(),
                color: COMPONENT_COLORS[k],
                mark: Mark::Area,
                points: stacked
                    .iter()
                    .map(|(p, c)| at(p, c[..=k].iter().map(|v| v.max(0.0)).sum()))
                    .collect(),
            });
        }
        series.push(Series {
            name: "measured total (sum of the bands)".to_owned(),
            color: BLACK,
            mark: Mark::Dots,
            points: points.iter().map(|p| at(p, p.total_bytes)).collect(),
        });
        series.push(Series {
            name: "measured MemAvailable drop (server's share)".to_owned(),
            color: RGBColor(140, 0, 140),
            mark: Mark::Dots,
            points: points.iter().map(|p| at(p, p.drop_bytes)).collect(),
        });
    }
    series.push(Series {
        name: "total PSS (user space only)".to_owned(),
        color: BLUE,
        mark: Mark::Dots,
        points: points.iter().map(|p| at(p, p.total_pss_bytes)).collect(),
    });
    let (fit, fit_name) = match (models.total_fit, models.pss_fit) {
        (Some(f), _) => (Some(f), "total fit"),
        (None, Some(f)) => (Some(f), "PSS fit"),
        (None, None) => (None, ""),
    };
    if let Some(fit) = fit {
        series.push(Series {
            name: fit_legend(fit_name, fit),
            color: RED,
            mark: Mark::Line,
            points: clipped_fit_line(fit, &live, unit.1),
        });
    }
    if let Some(v) = &models.validation {
        let y = if has_total {
            v.total_bytes
        } else {
            v.total_pss_bytes
        };
        series.push(Series {
            name: format!("validation step, not fitted ({} children)", v.live_children),
            color: RGBColor(230, 120, 0),
            mark: Mark::Dots,
            points: vec![at(v, y)],
        });
    }
    let caption = if has_total {
        "Memory by component (user space + kernel)"
    } else {
        "Server memory, PSS only (user space)"
    };
    Chart {
        caption: titled(caption, models.server),
        x_desc: "live connections (server children)".to_owned(),
        y_desc: format!("memory ({})", unit.0),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series,
        legend: SeriesLabelPosition::UpperLeft,
        whole: false,
    }
}

/// `total fit: 118.0 KiB per connection, intercept -7.8 MiB, R² = 0.997`.
fn fit_legend(name: &str, fit: &LinearFit) -> String {
    format!(
        "{name}: {} per connection, intercept {}, R² = {:.3}",
        fmt_bytes(fit.slope),
        fmt_bytes(fit.intercept),
        fit.r_squared
    )
}

/// The fitted line from the smallest to the largest fitted `x` only: beyond them it is not a
/// measurement, and below the smallest a negative intercept would pull it under the chart.
fn clipped_fit_line(fit: &LinearFit, xs: &[f64], y_divisor: f64) -> Vec<(f64, f64)> {
    let finite = xs.iter().copied().filter(|x| x.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    if lo > hi {
        return Vec::new();
    }
    [lo, hi]
        .iter()
        .map(|&x| (x, fit.predict(x) / y_divisor))
        .collect()
}

// Defined with the charts, not in `report::sweep`: the format knows nothing of how it is drawn.
impl SweepStep {
    /// This step as a point of the sweep charts; what was not measured is NaN (left out).
    pub fn plot_point(&self) -> SweepPoint {
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let burst = self.burst.as_ref();
        let steady = self.steady.as_ref();
        SweepPoint {
            conns: self.conns,
            echo_p50_us: f(steady.and_then(|s| s.echo_p50_us)),
            echo_p99_us: f(steady.and_then(|s| s.echo_p99_us)),
            echo_p999_us: f(steady.and_then(|s| s.echo_p999_us)),
            first_echo_p50_us: f(burst.and_then(|b| b.first_echo_p50_us)),
            first_echo_p99_us: f(burst.and_then(|b| b.first_echo_p99_us)),
            total_pss_bytes: f(self.tree.total_pss_kib.map(|k| k as f64 * 1024.0)),
            live_children: self.tree.peak_live_children,
            messages_per_sec: f(steady.map(|s| s.messages_per_sec)),
            total_bytes: f(self.memory.map(|m| m.server_total_bytes())),
            components: self.memory.map(|m| Component::ALL.map(|c| c.of(&m))),
            drop_bytes: f(self.memory.map(|m| m.server_drop_bytes())),
        }
    }
}

/// A run's tree timeline joined with loadgen's per-second message counts: each sample gets the
/// rate of the loadgen second it falls in (both clocks start with the load, within microseconds of
/// each other).
pub fn run_timeline(report: &RunReport) -> Vec<TimelinePoint> {
    // The run's last second is partial: its count is divided by the part of it the run covered,
    // so the line does not dive at the end. A sliver under a tenth of a second is left out.
    let per_second: Vec<(u64, f64)> = report
        .load
        .as_ref()
        .map(|load| {
            load.timeline
                .iter()
                .map(|p| {
                    let covered = (load.elapsed_secs - p.second as f64).clamp(0.0, 1.0);
                    let rate = if covered >= 0.1 {
                        p.messages as f64 / covered
                    } else {
                        f64::NAN
                    };
                    (p.second, rate)
                })
                .collect()
        })
        .unwrap_or_default();
    report
        .timeline
        .iter()
        .map(|s| {
            let second = s.t_secs.floor() as u64;
            let messages = per_second
                .iter()
                .find(|(sec, _)| *sec == second)
                .map_or(f64::NAN, |(_, m)| *m);
            TimelinePoint {
                t_secs: s.t_secs,
                children: s.live_children as u64,
                zombies: s.zombies as u64,
                total_pss_bytes: s.tree_pss_kib as f64 * 1024.0,
                messages_per_sec: messages,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Linear,
    Log,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    color: RGBColor,
    mark: Mark,
    /// `(x, y)` in the chart's units; non-finite points, and non-positive ones on a log axis, are
    /// dropped when drawing.
    points: Vec<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Measurements at a few steps: the dots are the data, the line guides the eye.
    LineAndDots,
    /// Measurements a model is compared with: dots only, so the model's line is the only line.
    Dots,
    /// A model, or a dense timeline where dots would bury the line.
    Line,
    /// A filled band from zero up to the points: one layer of a stack.
    Area,
}

struct Chart {
    caption: String,
    x_desc: String,
    y_desc: String,
    x_scale: Scale,
    y_scale: Scale,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
    /// The y values are counts (processes): ticks only at whole numbers.
    whole: bool,
}

/// A latency chart in µs, or in ms when the slowest figure reaches 10 ms (ticks stay short).
fn latency_chart(caption: &str, x_desc: &str, x_scale: Scale, series: &[Series]) -> Chart {
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
fn scale_for(values: &[f64], ratio: f64) -> Scale {
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
fn axis_range(values: impl Iterator<Item = f64>, scale: Scale) -> Range<f64> {
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
fn fmt_tick(v: f64) -> String {
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
fn render(
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

fn draw_chart(area: &DrawingArea<SVGBackend, Shift>, chart: &Chart) -> Result<(), DrawFailure> {
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
fn draw_no_data(area: &DrawingArea<SVGBackend, Shift>, chart: &Chart) -> Result<(), DrawFailure> {
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

fn draw_on<X, Y>(
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
    // Counts get labels only at whole numbers: 0.2 processes is no reading.
    let y_tick = |v: &f64| {
        if chart.whole && v.fract() != 0.0 {
            String::new()
        } else {
            fmt_tick(*v)
        }
    };
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
            Mark::Area => {
                // A polygon down to zero at both ends (plotters' AreaSeries needs another feature).
                let mut outline: Vec<(f64, f64)> = s.points.clone();
                outline.sort_by(|a, b| a.0.total_cmp(&b.0));
                if let (Some(first), Some(last)) =
                    (outline.first().copied(), outline.last().copied())
                {
                    outline.insert(0, (first.0, 0.0));
                    outline.push((last.0, 0.0));
                }
                ctx.draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.85).filled(),
                )))?
            }
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

/// Writes `contents` to a temporary file beside `path`, flushes it, and renames it over `path`.
fn write_atomically(path: &Path, contents: &str) -> Result<(), PlotError> {
    loadgen::output::write_file_atomically(path, contents.as_bytes()).map_err(|source| {
        PlotError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::render::units::{KIB, MIB};

    /// A ladder like the default sweep: memory grows by 150 KiB a child, latency rises past 1000.
    fn sweep() -> Vec<SweepPoint> {
        [1u64, 10, 100, 1000, 4000]
            .iter()
            .map(|&c| {
                let cf = c as f64;
                SweepPoint {
                    conns: c,
                    echo_p50_us: 40.0 + cf * 0.05,
                    echo_p99_us: 90.0 + cf * 0.5,
                    echo_p999_us: 200.0 + cf * 4.0,
                    first_echo_p50_us: 300.0 + cf * 2.0,
                    first_echo_p99_us: 900.0 + cf * 20.0,
                    total_pss_bytes: 2.0 * MIB + cf * 150.0 * KIB,
                    live_children: c,
                    messages_per_sec: 20_000.0 * cf.min(200.0) / (1.0 + cf / 2000.0),
                    total_bytes: f64::NAN,
                    components: None,
                    drop_bytes: f64::NAN,
                }
            })
            .collect()
    }

    /// The old (schema 1) chart input: PSS and its fit only.
    fn pss_only(fit: Option<&LinearFit>) -> SweepModels<'_> {
        SweepModels {
            server: "fork-echo-server",
            pss_fit: fit,
            ..SweepModels::default()
        }
    }

    fn fit() -> LinearFit {
        LinearFit {
            slope: 150.0 * KIB,
            intercept: 2.0 * MIB,
            r_squared: 0.9987,
            n: 5,
        }
    }

    /// Every piece of text in the SVG, after checking it parses as XML.
    fn texts(path: &Path) -> Vec<String> {
        let svg = fs::read_to_string(path).expect("read svg");
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
            .collect()
    }

    fn assert_has(texts: &[String], wanted: &[&str], path: &Path) {
        for w in wanted {
            assert!(
                texts.iter().any(|t| t == w),
                "{} lacks text {w:?}; has {texts:?}",
                path.display()
            );
        }
    }

    #[test]
    fn sweep_svgs_have_series_and_labelled_axes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_sweep_svgs(dir.path(), "sweep-x", &sweep(), &pss_only(Some(&fit())))
            .expect("plot");
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "sweep-x-echo-latency.svg",
                "sweep-x-first-echo-latency.svg",
                "sweep-x-memory.svg",
                "sweep-x-throughput.svg"
            ]
        );

        let t = texts(&paths[0]);
        assert_has(
            &t,
            &[
                "echo p50",
                "echo p99",
                "echo p99.9",
                "concurrent connections",
                "latency (ms)",
            ],
            &paths[0],
        );
        // Log x: the decades are ticks.
        assert_has(&t, &["1", "10", "100", "1k"], &paths[0]);

        let t = texts(&paths[1]);
        assert_has(
            &t,
            &["first-echo p50", "first-echo p99", "latency (ms)"],
            &paths[1],
        );

        let t = texts(&paths[2]);
        assert_has(
            &t,
            &[
                "total PSS (user space only)",
                "PSS fit: 150.0 KiB per connection, intercept 2.0 MiB, R² = 0.999",
                "memory (MiB)",
                "Server memory, PSS only (user space): fork-echo-server",
                "live connections (server children)",
            ],
            &paths[2],
        );

        // Measured PSS is drawn as dots (one per step, plus the legend's), the fit as a line.
        let pss_svg = fs::read_to_string(&paths[2]).expect("read");
        assert_eq!(pss_svg.matches("<circle").count(), sweep().len() + 1);

        let t = texts(&paths[3]);
        assert_has(
            &t,
            &["messages/s (steady phase)", "messages per second"],
            &paths[3],
        );

        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn small_linear_ladder_uses_linear_axes_and_microseconds() {
        let points: Vec<SweepPoint> = sweep()
            .into_iter()
            .take(3)
            .map(|mut p| {
                p.conns = p.conns.max(5) * 2; // 10, 20, 200 -> 10, 20, 200
                p
            })
            .collect();
        assert_eq!(scale_for(&[10.0, 20.0, 200.0], LOG_X_RATIO), Scale::Linear);
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_sweep_svgs(dir.path(), "s", &points, &pss_only(None)).expect("plot");
        let t = texts(&paths[0]);
        assert_has(&t, &["latency (µs)", "echo p99.9"], &paths[0]);
        // Without a fit there is no fit series.
        let t = texts(&paths[2]);
        assert!(!t.iter().any(|s| s.contains("fit:")), "{t:?}");
        assert_has(&t, &["total PSS (user space only)"], &paths[2]);
    }

    #[test]
    fn unmeasured_figures_are_left_out_not_drawn() {
        let mut points = sweep();
        points[2].echo_p99_us = f64::NAN;
        points[4].first_echo_p50_us = f64::NAN;
        points[4].first_echo_p99_us = f64::NAN;
        points[0].live_children = 0; // a zero on the ladder
        let dir = tempfile::tempdir().expect("tempdir");
        let paths =
            write_sweep_svgs(dir.path(), "s", &points, &pss_only(Some(&fit()))).expect("plot");
        for path in &paths {
            let svg = fs::read_to_string(path).expect("read");
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{}",
                path.display()
            );
            texts(path);
        }
    }

    /// A sweep with the kernel's counters: each step's components, and a total fit whose
    /// intercept is negative (as a wide ladder gives when the smallest steps are noisy).
    fn sweep_with_components() -> (Vec<SweepPoint>, LinearFit) {
        let points = sweep()
            .into_iter()
            .map(|mut p| {
                let n = p.live_children as f64;
                let c = [31.0, 50.0, 16.0, 27.0, 1.0, 5.0].map(|k| k * KIB * n);
                p.components = Some(c);
                p.total_bytes = c[..5].iter().sum();
                p.drop_bytes = p.total_bytes + c[5];
                p
            })
            .collect();
        let fit = LinearFit {
            slope: 125.0 * KIB,
            intercept: -7.8 * MIB,
            r_squared: 0.9967,
            n: 5,
        };
        (points, fit)
    }

    /// Every `(x, y)` of the chart's polylines (lines and fit).
    fn polyline_points(path: &Path) -> Vec<(f64, f64)> {
        let svg = fs::read_to_string(path).expect("read svg");
        let doc = roxmltree::Document::parse(&svg).expect("xml");
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter_map(|n| n.attribute("points"))
            .flat_map(|pts| {
                pts.split_whitespace()
                    .filter_map(|xy| {
                        let (x, y) = xy.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect::<Vec<(f64, f64)>>()
            })
            .collect()
    }

    #[test]
    fn memory_chart_stacks_components_and_clips_a_negative_intercept() {
        let (points, fit) = sweep_with_components();
        let validation = SweepPoint {
            live_children: 10_000,
            total_bytes: 125.0 * KIB * 10_000.0,
            ..points[4]
        };
        let models = SweepModels {
            server: "socat TCP-LISTEN:{port},fork PIPE",
            pss_fit: None,
            total_fit: Some(&fit),
            validation: Some(validation),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_sweep_svgs(dir.path(), "s", &points, &models).expect("plot");
        let t = texts(&paths[2]);
        assert_has(
            &t,
            &[
                "Memory by component (user space + kernel): socat TCP-LISTEN:{port},fork PIPE",
                "user space (private)",
                "page tables",
                "kernel stacks",
                "slab (task, files, sockets)",
                "socket buffers",
                "total fit: 125.0 KiB per connection, intercept -7.8 MiB, R² = 0.997",
                "validation step, not fitted (10000 children)",
                "memory (GiB)",
            ],
            &paths[2],
        );
        // Every chart names the server.
        for path in &paths {
            let t = texts(path);
            assert!(
                t.iter()
                    .any(|s| s.ends_with(": socat TCP-LISTEN:{port},fork PIPE")),
                "{}: {t:?}",
                path.display()
            );
        }
        // The rest is not stacked: five bands, drawn as polygons.
        let svg = fs::read_to_string(&paths[2]).expect("read");
        assert_eq!(svg.matches("<polygon").count(), 5, "{svg}");
        // The fit is one straight segment from the smallest to the largest fitted step, and no
        // line leaves the 900x560 chart.
        let line = clipped_fit_line(&fit, &[1.0, 10.0, 4000.0], MIB);
        assert_eq!(line.len(), 2);
        assert_eq!((line[0].0, line[1].0), (1.0, 4000.0));
        for (x, y) in polyline_points(&paths[2]) {
            assert!(
                (0.0..=900.0).contains(&x) && (0.0..=560.0).contains(&y),
                "({x}, {y})"
            );
        }
    }

    #[test]
    fn short_server_names_drop_the_harness_port() {
        assert_eq!(
            short_server_name("fork-echo-server (built in) --port 0 --backlog 4096"),
            "fork-echo-server --backlog 4096"
        );
        let long = format!("socat {}", "x".repeat(100));
        assert_eq!(short_server_name(&long).chars().count(), 60);
    }

    #[test]
    fn redrawing_replaces_the_files_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first =
            write_sweep_svgs(dir.path(), "s", &sweep(), &pss_only(Some(&fit()))).expect("plot");
        let before = fs::read_to_string(&first[2]).expect("read");
        fs::write(&first[2], "truncated <svg").expect("clobber");
        let second =
            write_sweep_svgs(dir.path(), "s", &sweep(), &pss_only(Some(&fit()))).expect("replot");
        assert_eq!(first, second);
        assert_eq!(fs::read_to_string(&second[2]).expect("read"), before);
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            write_sweep_svgs(dir.path(), "s", &[], &pss_only(None)),
            Err(PlotError::NoData(_))
        ));
        assert!(matches!(
            write_timeline_svg(dir.path(), "s", &[]),
            Err(PlotError::NoData(_))
        ));
    }

    #[test]
    fn unwritable_directory_is_a_write_error() {
        let err = write_sweep_svgs(
            Path::new("/nonexistent/dir"),
            "s",
            &sweep(),
            &pss_only(None),
        )
        .expect_err("cannot write");
        assert!(matches!(err, PlotError::Write { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("/nonexistent/dir/s-echo-latency.svg"),
            "{err}"
        );
    }

    #[test]
    fn timeline_has_three_panels() {
        let points: Vec<TimelinePoint> = (0..100)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                let children = (i * 12).min(1000) as u64;
                TimelinePoint {
                    t_secs: t,
                    children,
                    zombies: u64::from(i % 17 == 0),
                    total_pss_bytes: 2.0 * MIB + children as f64 * 150.0 * KIB,
                    messages_per_sec: if i == 0 { f64::NAN } else { 180_000.0 },
                }
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_timeline_svg(dir.path(), "run-x", &points).expect("plot");
        assert_eq!(path, dir.path().join("run-x-timeline.svg"));
        let t = texts(&path);
        assert_has(
            &t,
            &[
                "live children",
                "zombies",
                "total PSS",
                "messages/s",
                "total PSS (MiB)",
                "processes",
                "messages per second",
                "time since load start (s)",
            ],
            &path,
        );
    }

    #[test]
    fn a_failed_runs_timeline_says_no_data_and_counts_have_whole_ticks() {
        let flat: Vec<TimelinePoint> = (0..20)
            .map(|i| TimelinePoint {
                t_secs: f64::from(i),
                children: 0,
                zombies: 0,
                total_pss_bytes: f64::NAN,
                messages_per_sec: f64::NAN,
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_timeline_svg(dir.path(), "failed", &flat).expect("plot");
        let t = texts(&path);
        // Memory and throughput were never measured; zero children is a reading, in whole ticks.
        assert_eq!(
            t.iter().filter(|s| s.starts_with("no data")).count(),
            2,
            "{t:?}"
        );
        assert!(!t.iter().any(|s| s == "0.2"), "{t:?}");

        let few: Vec<TimelinePoint> = (0..20)
            .map(|i| TimelinePoint {
                // Whole seconds, so no time tick is a fraction either.
                t_secs: f64::from(i),
                children: (i % 2) as u64,
                zombies: 0,
                total_pss_bytes: MIB,
                messages_per_sec: 10.0,
            })
            .collect();
        let path = write_timeline_svg(dir.path(), "few", &few).expect("plot");
        let t = texts(&path);
        for fraction in ["0.2", "0.4", "0.5", "0.6", "0.8"] {
            assert!(!t.iter().any(|s| s == fraction), "{fraction} in {t:?}");
        }
        assert!(t
            .iter()
            .any(|s| s.contains("second 0 includes the connect phase")));
    }

    #[test]
    fn ticks_and_units_read_well() {
        assert_eq!(fmt_tick(1.0), "1");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(1000.0), "1k");
        assert_eq!(fmt_tick(1500.0), "1.5k");
        assert_eq!(fmt_tick(20_000.0), "20k");
        assert_eq!(fmt_tick(2_500_000.0), "2.5M");
        assert_eq!(fmt_bytes(153_600.0), "150.0 KiB");
        assert_eq!(bytes_unit([3.0 * MIB].into_iter()).0, "KiB");
        assert_eq!(bytes_unit([600.0 * MIB].into_iter()).0, "MiB");
        assert_eq!(scale_for(&[1.0, 10.0, 100.0], LOG_X_RATIO), Scale::Log);
        assert_eq!(scale_for(&[0.0, 10.0, 1000.0], LOG_X_RATIO), Scale::Linear);
    }
}
