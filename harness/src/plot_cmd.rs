//! `harness plot REPORT.json`: draws the SVGs of a saved report next to it (or into `--out-dir`).
//! A sweep report gets its four sweep charts, exactly as `harness sweep` drew them (the sweep draws
//! from its report through this same code); a run report gets its timeline: the server's children,
//! its memory, and loadgen's messages per second over the load.

use std::path::{Path, PathBuf};

use crate::plot::{self, PlotError, TimelinePoint};
use crate::report::{self, AnyReport, RunReport};
use crate::sweep_report::{self, SweepReport};

/// Writes the sweep charts of `report` into `dir` as `{stem}-*.svg`.
pub fn sweep_svgs(report: &SweepReport, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, PlotError> {
    let points: Vec<_> = report.steps.iter().map(|s| s.plot_point()).collect();
    plot::write_sweep_svgs(dir, stem, &points, report.capacity.memory_fit.as_ref())
}

/// A run's tree timeline joined with loadgen's per-second message counts: each sample gets the
/// rate of the loadgen second it falls in (both clocks start with the load, within microseconds of
/// each other).
pub fn run_timeline(report: &RunReport) -> Vec<TimelinePoint> {
    // The run's last second is partial: its count is divided by the part of it the run covered,
    // so the line does not dive at the end. A sliver under a tenth of a second is left out.
    let elapsed = report.load.get("elapsed_secs").and_then(|e| e.as_f64());
    let per_second: Vec<(u64, f64)> = report
        .load
        .get("timeline")
        .and_then(|t| t.as_array())
        .map(|points| {
            points
                .iter()
                .filter_map(|p| {
                    let second = p.get("second")?.as_u64()?;
                    let messages = p.get("messages")?.as_f64()?;
                    let covered = elapsed.map_or(1.0, |e| (e - second as f64).clamp(0.0, 1.0));
                    let rate = if covered >= 0.1 {
                        messages / covered
                    } else {
                        f64::NAN
                    };
                    Some((second, rate))
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

/// The file name without `.json`: the stem of the SVGs drawn from it.
pub fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into())
}

/// Draws the charts of the report at `path` into `out_dir` (default: the report's directory) and
/// returns the files written. Errors are one line, naming the file.
pub fn plot_report(path: &Path, out_dir: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let dir = match out_dir {
        Some(d) => d.to_path_buf(),
        None => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let stem = stem_of(path);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let drawn = if let Some(sweep) = sweep_report::read_if_sweep(path)? {
        sweep_svgs(&sweep, &dir, &stem)
    } else {
        match report::read_report(path)? {
            AnyReport::Run(run) => {
                plot::write_timeline_svg(&dir, &stem, &run_timeline(&run)).map(|p| vec![p])
            }
            AnyReport::Check(_) => {
                return Err(format!(
                    "{} is a check report: it has no load to plot (plot a sweep or run report)",
                    path.display()
                ))
            }
        }
    };
    drawn.map_err(|e| format!("cannot plot {}: {e}", path.display()))
}
