//! `harness report FILE`: prints the summary of a saved report of any kind again, exactly as the
//! command that wrote it printed it.

use std::path::Path;

use crate::commands::outcome::{SetupError, Verdict};
use crate::render::text;
use crate::report::AnyReport;

pub fn execute(file: &Path) -> Result<Verdict, SetupError> {
    match AnyReport::read(file).map_err(SetupError)? {
        AnyReport::Check(r) => print!("{}", text::check_report_text(&r)),
        AnyReport::Run(r) => print!("{}", text::run_report_text(&r)),
        AnyReport::Sweep(r) => print!("{}", text::sweep_report_text(&r)),
    }
    Ok(Verdict::Passed)
}
