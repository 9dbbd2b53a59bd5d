//! The sweep's capacity charts beside the four of `sweep.rs`: throughput against concurrency with
//! the fitted Universal Scalability Law curve, and CPU per message and per connection against
//! concurrency with the fitted costs; and the title line every sweep chart carries (server,
//! machine, date).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::chart::{
    draw_named, scale_for, write_named, Chart, Mark, PlotError, Series, LOG_X_RATIO,
};
use crate::report::sweep::SweepReport;

/// Suffixes of the files [`capacity_svgs`] writes, in order.
pub const CAPACITY_CHARTS: [&str; 2] = ["usl", "cpu"];

/// `fork-echo-server · 2 cores, 23.5 GiB, Linux 6.18.44 · 2026-12-03`: what every chart of a sweep
/// is titled with, so a picture says what ran where and when.
pub fn chart_subject(report: &SweepReport, server: &str) -> String {
    let env = &report.environment;
    let memory = env.mem_total_kib.map_or(String::new(), |k| {
        format!(", {:.1} GiB", k as f64 / 1024.0 / 1024.0)
    });
    let date = report.started_at.get(..10).unwrap_or(&report.started_at);
    // The release without the build suffix (`6.18.44-fc-v1147` as `6.18.44`): titles stay on
    // the chart; the report keeps the whole string.
    let kernel = env.kernel.split('-').next().unwrap_or(&env.kernel);
    format!(
        "{server} · {} cores{memory}, Linux {kernel} · {date}",
        env.cpus
    )
}

/// The USL and CPU charts of `report` as SVG text, each with its [`CAPACITY_CHARTS`] name, titled
/// with `subject`; a model the report lacks is drawn as its measured points alone, or as "no data".
pub fn capacity_svg_texts(
    report: &SweepReport,
    subject: &str,
) -> Result<Vec<(&'static str, String)>, PlotError> {
    draw_named(
        &[usl_chart(report, subject), cpu_chart(report, subject)],
        &CAPACITY_CHARTS,
    )
}

/// Writes the charts of [`capacity_svg_texts`] into `dir` as `{stem}-usl.svg`, `{stem}-cpu.svg`.
pub fn capacity_svgs(
    report: &SweepReport,
    subject: &str,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    write_named(dir, stem, capacity_svg_texts(report, subject)?)
}

/// `count` points from `lo` to `hi`, evenly spaced on a log axis.
fn log_space(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let (a, b) = (lo.max(1.0).ln(), hi.max(lo.max(1.0)).ln());
    (0..count)
        .map(|i| (a + (b - a) * i as f64 / (count - 1) as f64).exp())
        .collect()
}

fn usl_chart(report: &SweepReport, subject: &str) -> Chart {
    let measured = report.throughput_points();
    let xs: Vec<f64> = measured.iter().map(|p| p.0).collect();
    let mut series = Vec::new();
    if let Some(t) = &report.capacity.throughput {
        let hi = xs.iter().copied().fold(1.0, f64::max);
        let u = t.usl;
        series.push(Series {
            name: format!(
                "USL fit: lambda {:.0}, sigma {:.3}, kappa {:.2e}",
                u.lambda, u.sigma, u.kappa
            ),
            color: RGBColor(0, 90, 180),
            mark: Mark::Line,
            points: log_space(1.0, hi, 80)
                .into_iter()
                .map(|n| (n, u.predict(n)))
                .collect(),
        });
    }
    series.push(Series {
        name: "measured messages/s (steady phase)".to_owned(),
        color: RGBColor(0, 140, 70),
        mark: Mark::Dots,
        points: measured,
    });
    Chart {
        caption: format!("Throughput and the USL: {subject}"),
        x_desc: "concurrent connections".to_owned(),
        y_desc: "messages per second".to_owned(),
        x_scale: scale_for(&xs, LOG_X_RATIO),
        y_scale: super::chart::Scale::Linear,
        series,
        legend: SeriesLabelPosition::LowerRight,
        whole: false,
    }
}

fn cpu_chart(report: &SweepReport, subject: &str) -> Chart {
    let steps: Vec<(f64, crate::capacity::cpu::StepCpu)> = report
        .steps
        .iter()
        .filter_map(|s| s.cpu.map(|c| (c.accepted_conns as f64, c)))
        .filter(|(n, _)| *n > 0.0)
        .collect();
    let xs: Vec<f64> = steps.iter().map(|p| p.0).collect();
    let per_step =
        |name: &str, color: RGBColor, f: &dyn Fn(&crate::capacity::cpu::StepCpu) -> Option<f64>| {
            Series {
                name: name.to_owned(),
                color,
                mark: Mark::LineAndDots,
                points: steps
                    .iter()
                    .filter_map(|(n, c)| Some((*n, f(c)?)))
                    .collect(),
            }
        };
    let mut series = vec![
        per_step(
            "server CPU µs per message (all CPU / echoes)",
            RGBColor(0, 90, 180),
            &|c| c.server_us_per_message(),
        ),
        per_step("loadgen CPU µs per message", RGBColor(230, 120, 0), &|c| {
            c.loadgen_us_per_message()
        }),
    ];
    if let Some(m) = &report.capacity.cpu {
        let b = m.server.us_per_message;
        // Each step's CPU less its messages at the fitted cost, per connection.
        series.push(per_step(
            "server CPU µs per connection (step less fitted message cost)",
            RGBColor(200, 0, 0),
            &|c| {
                let per = (c.server_cpu_secs * 1e6 - b * c.echoed_messages as f64)
                    / c.accepted_conns as f64;
                (per > 0.0).then_some(per)
            },
        ));
        let flat = |name: String, color: RGBColor, y: f64| Series {
            name,
            color,
            mark: Mark::Line,
            points: if y > 0.0 {
                xs.iter().map(|&x| (x, y)).collect()
            } else {
                Vec::new()
            },
        };
        series.push(flat(
            format!("fit: {:.2} µs per message", b),
            RGBColor(120, 160, 220),
            b,
        ));
        series.push(flat(
            format!("fit: {:.0} µs per connection", m.server.us_per_conn),
            RGBColor(240, 140, 140),
            m.server.us_per_conn,
        ));
    }
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    Chart {
        caption: format!("CPU per message and per connection: {subject}"),
        x_desc: "concurrent connections".to_owned(),
        y_desc: "CPU µs".to_owned(),
        x_scale: scale_for(&xs, LOG_X_RATIO),
        y_scale: scale_for(&ys, 10.0),
        series,
        legend: SeriesLabelPosition::UpperLeft,
        whole: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_space_spans_its_ends() {
        let v = log_space(1.0, 1000.0, 4);
        let want = [1.0, 10.0, 100.0, 1000.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-9 * b, "{v:?}");
        }
    }
}
