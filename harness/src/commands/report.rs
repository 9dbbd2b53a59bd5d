//! `harness report FILE`: prints a saved report of any kind again: its summary exactly as the
//! command that wrote it printed it, or its tables as Markdown or CSV (to paste into a PR or a
//! spreadsheet), or the JSON itself, or one self-contained HTML page.

use std::path::Path;

use crate::commands::outcome::{SetupError, Verdict};
use crate::render::{html, text};
use crate::report::AnyReport;

/// What `harness report --format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportFormat {
    /// The terminal text the command printed.
    #[default]
    Text,
    /// GitHub-flavoured Markdown tables.
    Markdown,
    /// The same tables as CSV.
    Csv,
    /// The report as it is stored.
    Json,
    /// One self-contained HTML page: charts inline, no external resources.
    Html,
}

pub fn execute(file: &Path, format: ReportFormat) -> Result<Verdict, SetupError> {
    let report = AnyReport::read(file).map_err(SetupError)?;
    let out = match (format, &report) {
        (ReportFormat::Text, AnyReport::Check(r)) => text::check_report_text(r),
        (ReportFormat::Text, AnyReport::Run(r)) => text::run_report_text(r),
        (ReportFormat::Text, AnyReport::Sweep(r)) => text::sweep_report_text(r),
        (ReportFormat::Markdown, r) => text::markdown(&text::report_tables(r)),
        (ReportFormat::Csv, r) => text::csv(&text::report_tables(r)),
        (ReportFormat::Html, r) => html::report_html(r),
        (ReportFormat::Json, _) => std::fs::read_to_string(file)
            .map_err(|e| SetupError(format!("cannot read {}: {e}", file.display())))?,
    };
    print!("{out}");
    Ok(Verdict::Passed)
}
