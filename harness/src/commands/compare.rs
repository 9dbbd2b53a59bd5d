//! `harness compare BASE NEW`: reads two check or run reports, compares them against the
//! threshold, prints the table; a regression is a failed verdict (exit 1).

use std::path::Path;

use crate::commands::outcome::{SetupError, Verdict};
use crate::render::text;
use crate::report::compare::compare;
use crate::report::AnyReport;

/// Reads a report for `compare`, which takes check and run reports only.
fn read_comparable(file: &Path) -> Result<AnyReport, SetupError> {
    match AnyReport::read(file).map_err(SetupError)? {
        AnyReport::Sweep(_) => Err(SetupError(format!(
            "{} is a sweep report; compare takes check or run reports",
            file.display()
        ))),
        report => Ok(report),
    }
}

pub fn execute(base: &Path, new: &Path, max_regression_pct: f64) -> Result<Verdict, SetupError> {
    let base = read_comparable(base)?;
    let new = read_comparable(new)?;
    let comparison = compare(&base, &new, max_regression_pct);
    print!("{}", text::comparison_text(&comparison));
    Ok(Verdict::failed_if(comparison.has_regression()))
}
