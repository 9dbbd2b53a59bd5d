//! Several sweeps on one chart per question (`harness plot A.json B.json [C.json]`): throughput with
//! each server's USL fit, server CPU per message and per connection, and memory (the total of the
//! named counters, with each fitted line) against live connections, so the cost of the fork design shows
//! against another server in one picture.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::capacity::chart_subject;
use super::chart::{
    draw_chart, render, scale_for, write_atomically, Chart, Mark, PlotError, Scale, Series,
    CHART_SIZE, LOG_X_RATIO,
};
use super::sweep::short_server_name;
use crate::render::units::{bytes_unit, fmt_bytes};
use crate::report::sweep::SweepReport;

/// Suffixes of the files [`compare_svgs`] writes, in order.
pub const COMPARE_CHARTS: [&str; 3] = ["throughput", "cpu", "memory"];

const COLORS: [RGBColor; 4] = [
    RGBColor(0, 90, 180),
    RGBColor(210, 60, 0),
    RGBColor(0, 140, 70),
    RGBColor(130, 0, 150),
];

/// Writes `{stem}-throughput.svg`, `{stem}-cpu.svg` and `{stem}-memory.svg` into `dir`, one series
/// (or pair) per report.
pub fn compare_svgs(
    reports: &[SweepReport],
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    if reports.is_empty() {
        return Err(PlotError::NoData("no sweep to compare"));
    }
    let names: Vec<String> = reports
        .iter()
        .map(|r| program_name(&short_server_name(&r.server.description)))
        .collect();
    // The machine and date of the first: the reader is told when the others differ by the legend.
    let subject = chart_subject(&reports[0], &names.join(" vs "));
    let charts = [
        throughput_chart(reports, &names, &subject),
        cpu_chart(reports, &names, &subject),
        memory_chart(reports, &names, &subject),
    ];
    let mut written = Vec::new();
    for (chart, suffix) in charts.iter().zip(COMPARE_CHARTS) {
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

/// The program of a server's command line without its directory or flags (`c-fork-echo`,
/// `socat`): the legends of several servers stay short enough to read.
fn program_name(description: &str) -> String {
    let program = description.split_whitespace().next().unwrap_or(description);
    program.rsplit('/').next().unwrap_or(program).to_owned()
}

fn chart(caption: String, y_desc: &str, series: Vec<Series>, y_log: bool) -> Chart {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    Chart {
        caption,
        x_desc: "concurrent connections".to_owned(),
        y_desc: y_desc.to_owned(),
        x_scale: scale_for(&xs, LOG_X_RATIO),
        y_scale: if y_log {
            scale_for(&ys, 10.0)
        } else {
            Scale::Linear
        },
        series,
        legend: SeriesLabelPosition::UpperRight,
        whole: false,
    }
}

fn throughput_chart(reports: &[SweepReport], names: &[String], subject: &str) -> Chart {
    let mut series = Vec::new();
    for ((r, name), color) in reports.iter().zip(names).zip(COLORS.iter().cycle()) {
        let points = r.throughput_points();
        if let Some(t) = &r.capacity.throughput {
            let hi = points.iter().map(|p| p.0).fold(1.0, f64::max);
            series.push(Series {
                name: format!(
                    "{name}: USL (peak {} msg/s)",
                    t.usl
                        .max_throughput
                        .map_or("-".into(), |x| format!("{x:.0}"))
                ),
                color: *color,
                mark: Mark::Line,
                points: (0..60)
                    .map(|i| hi.powf(i as f64 / 59.0))
                    .map(|n| (n, t.usl.predict(n)))
                    .collect(),
            });
        }
        series.push(Series {
            name: format!("{name}: measured"),
            color: *color,
            mark: Mark::Dots,
            points,
        });
    }
    chart(
        format!("Throughput: {subject}"),
        "messages per second",
        series,
        false,
    )
}

fn cpu_chart(reports: &[SweepReport], names: &[String], subject: &str) -> Chart {
    let mut series = Vec::new();
    for ((r, name), color) in reports.iter().zip(names).zip(COLORS.iter().cycle()) {
        let fit = r.capacity.cpu.as_ref().map(|c| c.server);
        series.push(Series {
            name: format!(
                "{name}: server µs/message{}",
                fit.map_or(String::new(), |f| format!(" (fit {:.2})", f.us_per_message))
            ),
            color: *color,
            mark: Mark::LineAndDots,
            points: r
                .steps
                .iter()
                .filter_map(|s| {
                    let c = s.cpu?;
                    Some((c.accepted_conns as f64, c.server_us_per_message()?))
                })
                .collect(),
        });
        if let Some(f) = fit.filter(|f| f.us_per_conn > 0.0) {
            let xs: Vec<f64> = r
                .steps
                .iter()
                .filter_map(|s| s.cpu.map(|c| c.accepted_conns as f64))
                .collect();
            series.push(Series {
                name: format!("{name}: fitted µs/connection {:.0}", f.us_per_conn),
                color: *color,
                mark: Mark::Line,
                points: xs.iter().map(|&x| (x, f.us_per_conn)).collect(),
            });
        }
    }
    chart(format!("Server CPU: {subject}"), "CPU µs", series, true)
}

fn memory_chart(reports: &[SweepReport], names: &[String], subject: &str) -> Chart {
    let unit = bytes_unit(
        reports
            .iter()
            .flat_map(|r| r.steps.iter().filter_map(|s| s.memory))
            .map(|m| m.server_total_bytes()),
    );
    let mut series = Vec::new();
    for ((r, name), color) in reports.iter().zip(names).zip(COLORS.iter().cycle()) {
        let points: Vec<(f64, f64)> = r
            .steps
            .iter()
            .filter_map(|s| {
                let n = s.tree.peak_live_children as f64;
                Some((n, s.memory?.server_total_bytes() / unit.1))
            })
            .filter(|&(n, _)| n > 0.0)
            .collect();
        if let Some(f) = r.capacity.total_memory.as_ref().map(|m| m.total_fit) {
            let hi = points.iter().map(|p| p.0).fold(1.0, f64::max);
            series.push(Series {
                name: format!("{name}: fit {} per connection", fmt_bytes(f.slope)),
                color: *color,
                mark: Mark::Line,
                points: (0..40)
                    .map(|i| hi.powf(i as f64 / 39.0))
                    .map(|n| (n, f.predict(n) / unit.1))
                    .collect(),
            });
        }
        series.push(Series {
            name: format!("{name}: measured total"),
            color: *color,
            mark: Mark::Dots,
            points,
        });
    }
    let mut c = chart(
        format!("Memory: {subject}"),
        &format!("{} (user space + kernel)", unit.0),
        series,
        false,
    );
    c.legend = SeriesLabelPosition::UpperLeft;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sweeps_draw_one_chart_per_question_naming_both() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/baseline");
        let mut sweeps: Vec<SweepReport> = std::fs::read_dir(&dir)
            .expect("results/baseline")
            .filter_map(|e| {
                let path = e.ok()?.path();
                match crate::report::AnyReport::read(&path).ok()? {
                    crate::report::AnyReport::Sweep(s) => Some(*s),
                    _ => None,
                }
            })
            .take(2)
            .collect();
        assert!(!sweeps.is_empty(), "no sweep in {}", dir.display());
        let mut other = sweeps[0].clone();
        other.server.description = "socat TCP-LISTEN:0,fork PIPE".into();
        sweeps.truncate(1);
        sweeps.push(other);
        let out = tempfile::tempdir().expect("tempdir");
        let paths = compare_svgs(&sweeps, out.path(), "compare").expect("plot");
        assert_eq!(paths.len(), COMPARE_CHARTS.len());
        for path in &paths {
            let svg = std::fs::read_to_string(path).expect("svg");
            assert!(
                svg.contains("socat") && svg.contains(" vs "),
                "{}",
                path.display()
            );
        }
        assert!(compare_svgs(&[], out.path(), "x").is_err());
        assert_eq!(
            program_name("/tmp/c/c-fork-echo --port {port}"),
            "c-fork-echo"
        );
        assert_eq!(program_name("socat TCP-LISTEN:{port},fork PIPE"), "socat");
    }
}
