//! Schema versions: the version this loadgen writes, the oldest it reads, and the reader that
//! turns an older report into a current one.

use std::path::Path;

use super::schema::Report;
use crate::Error;

/// Version of the JSON format; bumped on any change. Version 2 added `interrupted`,
/// `counters.connections_not_started`, `connections_interrupted`, `sessions_completed`,
/// `errors.connect.run_deadline`, `identity` and `merge`; version 1 reports are still read (those
/// fields read as 0 or absent). Version 3 added `parameters.engine` (older reports read as
/// `"tokio"`, the only engine there was), `parameters.stages`, and the timeline's `closed` and
/// `stage` (absent: no stages, 0 closed). Version 4 added `latency.read_delay` (absent: null).
pub const SCHEMA_VERSION: u32 = 4;

/// The oldest `schema_version` [`Report::read_json`] and [`Report::merge`] still read.
pub const OLDEST_READABLE_SCHEMA_VERSION: u32 = 1;
impl Report {
    /// Reads a report written with `--json`.
    pub fn read_json(path: &Path) -> Result<Report, Error> {
        let file_err = |reason: String| Error::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| file_err(format!("not JSON: {e}")))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v)
                if (OLDEST_READABLE_SCHEMA_VERSION as u64..=SCHEMA_VERSION as u64).contains(&v) => {
            }
            Some(v) => {
                return Err(file_err(format!(
                    "schema_version {v} is not supported (this loadgen reads \
                     {OLDEST_READABLE_SCHEMA_VERSION} to {SCHEMA_VERSION})"
                )))
            }
            None => return Err(file_err("not a loadgen report (no schema_version)".into())),
        }
        let mut report: Report = serde_json::from_value(value)
            .map_err(|e| file_err(format!("not a loadgen report: {e}")))?;
        // Older versions only lack fields that read as their defaults: the report is now a
        // current one (which is what lets old and new reports merge).
        report.schema_version = SCHEMA_VERSION;
        Ok(report)
    }
}
