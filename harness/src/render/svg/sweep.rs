//! The sweep's four charts (echo latency, first-echo latency, memory stacked by component with the
//! fitted total, throughput), each titled with the server, and a sweep step as a point of them.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::chart::{
    draw_named, latency_chart, scale_for, write_named, Chart, Mark, PlotError, Scale, Series,
    LOG_X_RATIO,
};
use crate::capacity::memory::Component;
use crate::capacity::LinearFit;
use crate::render::units::{bytes_unit, fmt_bytes};
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
    /// The reclaimable part of the slab rise (`SReclaimable`), drawn apart: `MemAvailable` counts
    /// part of it as available; NaN when not measured (before schema 3).
    pub sreclaimable_bytes: f64,
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

/// Suffixes of the four files [`write_sweep_svgs`] writes, in the order it returns them.
pub const SWEEP_CHARTS: [&str; 4] = ["echo-latency", "first-echo-latency", "memory", "throughput"];

/// Writes the sweep charts of `report` into `dir` as `{stem}-*.svg`.
pub fn sweep_svgs(report: &SweepReport, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, PlotError> {
    let server =
        super::capacity::chart_subject(report, &short_server_name(&report.server.description));
    let (points, models) = sweep_plot_data(report, &server);
    let mut written = write_sweep_svgs(dir, stem, &points, &models)?;
    written.extend(super::capacity::capacity_svgs(report, &server, dir, stem)?);
    Ok(written)
}

/// Every chart of a sweep (the four of [`SWEEP_CHARTS`], then the USL and CPU charts) as SVG
/// text with its name, for inlining, as the HTML report does.
pub fn sweep_svg_texts(report: &SweepReport) -> Result<Vec<(&'static str, String)>, PlotError> {
    let server =
        super::capacity::chart_subject(report, &short_server_name(&report.server.description));
    let (points, models) = sweep_plot_data(report, &server);
    let mut drawn = sweep_chart_texts(&points, &models)?;
    drawn.extend(super::capacity::capacity_svg_texts(report, &server)?);
    Ok(drawn)
}

/// The points and models that `report`'s charts are drawn from, titled with `server`.
fn sweep_plot_data<'a>(
    report: &'a SweepReport,
    server: &'a str,
) -> (Vec<SweepPoint>, SweepModels<'a>) {
    let points: Vec<_> = report.steps.iter().map(|s| s.plot_point()).collect();
    let models = SweepModels {
        server,
        pss_fit: report.capacity.memory_fit.as_ref(),
        total_fit: report.capacity.total_memory.as_ref().map(|m| &m.total_fit),
        validation: report
            .validation
            .as_ref()
            .and_then(|v| v.step.as_ref())
            .map(|s| s.plot_point()),
    };
    (points, models)
}
/// Writes `{stem}-echo-latency.svg`, `{stem}-first-echo-latency.svg`, `{stem}-memory.svg` and
/// `{stem}-throughput.svg` into `dir`, and returns their paths in that order.
pub fn write_sweep_svgs(
    dir: &Path,
    stem: &str,
    points: &[SweepPoint],
    models: &SweepModels,
) -> Result<Vec<PathBuf>, PlotError> {
    write_named(dir, stem, sweep_chart_texts(points, models)?)
}

/// The four sweep charts as SVG text, in [`SWEEP_CHARTS`] order, each with its name.
fn sweep_chart_texts(
    points: &[SweepPoint],
    models: &SweepModels,
) -> Result<Vec<(&'static str, String)>, PlotError> {
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

    draw_named(&charts, &SWEEP_CHARTS)
}

/// The stacked components of the total (top band first), the measured total, the reclaimable
/// slab apart, and the `MemAvailable` drop.
fn stacked_series(
    points: &[SweepPoint],
    stacked: &[(&SweepPoint, [f64; 6])],
    at: &dyn Fn(&SweepPoint, f64) -> (f64, f64),
) -> Vec<Series> {
    let mut series = Vec::new();
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
    if points.iter().any(|p| p.sreclaimable_bytes.is_finite()) {
        series.push(Series {
            name: "of the slab: reclaimable (SReclaimable)".to_owned(),
            color: RGBColor(0, 150, 150),
            mark: Mark::LineAndDots,
            points: points.iter().map(|p| at(p, p.sreclaimable_bytes)).collect(),
        });
    }
    series.push(Series {
        name: "measured MemAvailable drop (server's share)".to_owned(),
        color: RGBColor(140, 0, 140),
        mark: Mark::Dots,
        points: points.iter().map(|p| at(p, p.drop_bytes)).collect(),
    });
    series
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

pub(super) fn titled(what: &str, server: &str) -> String {
    if server.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {server}")
    }
}

/// Colours of the stacked components, in [`Component::ALL`] order.
pub(super) const COMPONENT_COLORS: [RGBColor; 6] = [
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
pub(super) fn memory_chart(points: &[SweepPoint], models: &SweepModels) -> Chart {
    let unit = memory_unit(points, models);
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
        series.extend(stacked_series(points, &stacked, &at));
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

/// The unit every figure of the memory chart is drawn in: the one its largest value reads best in.
fn memory_unit(points: &[SweepPoint], models: &SweepModels) -> (&'static str, f64) {
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
    bytes_unit(all_bytes.into_iter())
}

/// `total fit: 118.0 KiB per connection, intercept -7.8 MiB, R² = 0.997`.
pub(super) fn fit_legend(name: &str, fit: &LinearFit) -> String {
    format!(
        "{name}: {} per connection, intercept {}, R² = {:.3}",
        fmt_bytes(fit.slope),
        fmt_bytes(fit.intercept),
        fit.r_squared
    )
}

/// The fitted line from the smallest to the largest fitted `x` only: beyond them it is not a
/// measurement, and below the smallest a negative intercept would pull it under the chart.
pub(super) fn clipped_fit_line(fit: &LinearFit, xs: &[f64], y_divisor: f64) -> Vec<(f64, f64)> {
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
            sreclaimable_bytes: f(self.memory.and_then(|m| m.sreclaimable_bytes)),
        }
    }
}
