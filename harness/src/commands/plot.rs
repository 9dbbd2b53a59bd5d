//! `harness plot REPORT.json`: draws the SVGs of a saved report next to it (or into `--out-dir`).
//! A sweep report gets its four sweep charts, exactly as `harness sweep` drew them (the sweep draws
//! from its report through this same code); a run report gets its timeline: the server's children,
//! its memory, and loadgen's messages per second over the load. Two to four sweep reports are drawn
//! side by side, one chart per question (`compare-throughput.svg`, `compare-cpu.svg`,
//! `compare-memory.svg`).

use std::path::{Path, PathBuf};

use crate::commands::outcome::{SetupError, Verdict};
use crate::render::svg;
use crate::report::AnyReport;

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
        None => report_dir(path),
    };
    let stem = stem_of(path);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let drawn = match AnyReport::read(path)? {
        AnyReport::Sweep(sweep) => svg::sweep_svgs(&sweep, &dir, &stem),
        AnyReport::Run(run) => {
            svg::write_timeline_svg(&dir, &stem, &svg::run_timeline(&run)).map(|p| vec![p])
        }
        AnyReport::Check(_) => {
            return Err(format!(
                "{} is a check report: it has no load to plot (plot a sweep or run report)",
                path.display()
            ))
        }
    };
    drawn.map_err(|e| format!("cannot plot {}: {e}", path.display()))
}

/// Draws several sweep reports on one chart per question into `out_dir` (default: the first
/// report's directory) as `compare-*.svg`. Errors are one line, naming the file.
pub fn plot_comparison(paths: &[PathBuf], out_dir: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let mut reports = Vec::with_capacity(paths.len());
    for path in paths {
        match AnyReport::read(path)? {
            AnyReport::Sweep(sweep) => reports.push(*sweep),
            _ => {
                return Err(format!(
                    "{} is not a sweep report: only sweeps are drawn side by side",
                    path.display()
                ))
            }
        }
    }
    let dir = match out_dir {
        Some(d) => d.to_path_buf(),
        None => report_dir(&paths[0]),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    svg::compare_svgs(&reports, &dir, "compare")
        .map_err(|e| format!("cannot plot the comparison: {e}"))
}

fn report_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Draws the charts (of one report, or of several sweeps side by side) and names each file on
/// stdout.
pub fn execute(files: &[PathBuf], out_dir: Option<&Path>) -> Result<Verdict, SetupError> {
    let drawn = match files {
        [one] => plot_report(one, out_dir),
        many => plot_comparison(many, out_dir),
    };
    for svg in drawn.map_err(SetupError)? {
        println!("plot: {}", svg.display());
    }
    Ok(Verdict::Passed)
}
