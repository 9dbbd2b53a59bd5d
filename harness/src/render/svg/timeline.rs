//! A run's timeline chart: three panels over the load's time (children and zombies, total PSS,
//! messages/s), and the conversion of a run report into its points.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::chart::{draw_chart, render, write_atomically, Chart, Mark, PlotError, Scale, Series};
use crate::render::units::bytes_unit;
use crate::report::run::RunReport;

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

/// Suffix of the file [`write_timeline_svg`] writes.
pub const TIMELINE_CHART: &str = "timeline";

const TIMELINE_SIZE: (u32, u32) = (900, 1000);

/// Writes `{stem}-timeline.svg` into `dir`: three panels sharing the time axis (children and
/// zombies, total PSS, messages/s) and returns its path.
pub fn write_timeline_svg(
    dir: &Path,
    stem: &str,
    points: &[TimelinePoint],
) -> Result<PathBuf, PlotError> {
    let svg = timeline_svg_text(points)?;
    let path = dir.join(format!("{stem}-{TIMELINE_CHART}.svg"));
    write_atomically(&path, &svg)?;
    Ok(path)
}

/// The timeline chart as SVG text (for inlining, as the HTML report does).
pub fn timeline_svg_text(points: &[TimelinePoint]) -> Result<String, PlotError> {
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
    Ok(svg)
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
