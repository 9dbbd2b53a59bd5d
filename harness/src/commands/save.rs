//! Where a command's results go: the JSON report into the results directory (temp file + rename),
//! JUnit XML when `--junit` asked for it, and each path announced on stdout.

use std::path::{Path, PathBuf};

use crate::commands::outcome::SetupError;
use crate::render::junit;
use crate::report::check::CheckResult;
use crate::report::write::{write_atomic, write_report};

/// `--results-dir` and `--junit` of `check` and `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutput {
    /// Directory the JSON report is written into.
    pub results_dir: PathBuf,
    /// Where the check results go as JUnit XML, if anywhere.
    pub junit: Option<PathBuf>,
}

/// Where reports go without `--results-dir`: `results/` at the workspace root when the current
/// directory is inside this repository (so `cd harness && cargo run -p harness -- check` writes
/// where a run from the root does), else `results/` here.
pub fn default_results_dir() -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| workspace_root_above(&cwd))
        .map_or_else(|| PathBuf::from("results"), |root| root.join("results"))
}

/// The nearest directory at or above `dir` whose `Cargo.toml` declares a `[workspace]`.
pub fn workspace_root_above(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}

impl ReportOutput {
    /// Checks, before any server starts, that the report and the JUnit file can be written, so a
    /// run's results are never lost to a bad path after it ran.
    pub fn check_writable(&self) -> Result<(), SetupError> {
        check_results_dir(&self.results_dir)?;
        if let Some(junit) = &self.junit {
            if let Some(dir) = junit.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    SetupError(format!(
                        "--junit {}: cannot create {}: {e}",
                        junit.display(),
                        dir.display()
                    ))
                })?;
            }
            loadgen::output::probe_writable(junit).map_err(|e| {
                SetupError(format!(
                    "--junit {} cannot be written: {e}",
                    junit.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// Creates the results directory if needed and checks that a report can be written into it.
pub fn check_results_dir(dir: &Path) -> Result<(), SetupError> {
    let bad = |e: String| {
        SetupError(format!(
            "--results-dir {}: reports cannot be written there: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
    loadgen::output::probe_writable(&dir.join("report.json")).map_err(bad)
}

/// Writes a report into the results directory (temp file + rename) and says where it went.
pub fn save_report<T: serde::Serialize>(
    dir: &Path,
    kind: &str,
    started_at: &str,
    report: &T,
) -> Result<PathBuf, SetupError> {
    let path = write_report(dir, kind, started_at, report).map_err(|e| {
        SetupError(format!(
            "cannot write the report into {}: {e}",
            dir.display()
        ))
    })?;
    println!("report: {}", path.display());
    Ok(path)
}

/// Writes the check results as JUnit XML when `--junit` asked for it.
pub fn save_junit(
    path: Option<&Path>,
    suite: &str,
    started_at: &str,
    results: &[CheckResult],
) -> Result<(), SetupError> {
    let Some(path) = path else {
        return Ok(());
    };
    let xml = junit::to_junit_xml(suite, started_at, results);
    write_atomic(path, xml.as_bytes())
        .map_err(|e| SetupError(format!("cannot write {}: {e}", path.display())))?;
    println!("junit: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_resolve_to_the_workspace_root_from_any_directory_inside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        let member = root.join("harness").join("src");
        std::fs::create_dir_all(&member).expect("mkdir");
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"harness\"]\n",
        )
        .expect("root manifest");
        std::fs::write(
            root.join("harness/Cargo.toml"),
            "[package]\nname = \"harness\"\n",
        )
        .expect("member manifest");
        assert_eq!(workspace_root_above(&member), Some(root.clone()));
        assert_eq!(
            workspace_root_above(&root.join("harness")),
            Some(root.clone())
        );
        assert_eq!(workspace_root_above(&root), Some(root));
        assert_eq!(workspace_root_above(dir.path()), None);
    }
}
