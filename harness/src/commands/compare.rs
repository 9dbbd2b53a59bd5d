//! `harness compare BASE NEW`: reads two reports of the same kind, refuses different kinds and
//! (unless allowed) different parameters, naming each field, compares them against the threshold
//! and prints the table; a regression is a failed verdict (exit 1).

use std::path::Path;

use crate::commands::outcome::{SetupError, Verdict};
use crate::render::text;
use crate::report::compare::{compare, incomparable, parameter_differences};
use crate::report::AnyReport;

/// What `compare` was asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// How much worse a gated figure may get, in percent.
    pub max_regression_pct: f64,
    /// Compare runs made with different parameters anyway (each difference is still printed).
    pub allow_different_parameters: bool,
}

pub fn execute(base: &Path, new: &Path, opts: CompareOptions) -> Result<Verdict, SetupError> {
    let base = AnyReport::read(base).map_err(SetupError)?;
    let new = AnyReport::read(new).map_err(SetupError)?;
    if let Some(why) = incomparable(&base, &new) {
        return Err(SetupError(why));
    }
    let differences = parameter_differences(&base, &new);
    if !differences.is_empty() {
        if !opts.allow_different_parameters {
            return Err(SetupError(format!(
                "BASE and NEW ran with different parameters ({}); their figures are not \
                 comparable (--allow-different-parameters compares them anyway)",
                differences.join(", ")
            )));
        }
        for d in &differences {
            println!("warning: parameters differ: {d}");
        }
    }
    let comparison = compare(&base, &new, opts.max_regression_pct);
    print!("{}", text::comparison_text(&comparison));
    Ok(Verdict::failed_if(comparison.has_regression()))
}
