//! The report of a run: these serde structs *are* the JSON format (`loadgen/schema.json` describes
//! them), and the text output is rendered from them too. Every histogram is carried both as a
//! percentile table and as HdrHistogram's V2-compressed encoding (base64), which is what lets
//! [`Report::merge`] combine reports from several processes or hosts exactly.
//!
//! The module is split along its seams: `schema` holds the serde types (the format itself),
//! `histogram` the histogram type and its HdrHistogram encoding, `checks` the pass/fail rules a
//! run is judged by, and `versions` the schema version and the reader that accepts older reports.
//!
//! The format: below everything that produces or prints it; it reads the `config` only to judge
//! a run by its thresholds and to name it.
//!
//! Layers it may import: `config`, `error`.
//! Crates it may import: `base64`, `hdrhistogram`, `serde`, `serde_json`.

mod checks;
pub(crate) mod environment;
mod histogram;
pub mod hlog;
pub mod identity;
pub(crate) mod merge;
pub mod output;
mod schema;
pub(crate) mod timeline;
mod versions;

pub use checks::{read_delay_is_loadgens, READ_DELAY_WARN_FLOOR_US, SEND_LAG_WARN_FRACTION};
pub use histogram::{decode_histogram, format_us, HistogramReport, PercentileValue};
pub use schema::{
    ConnectErrors, Counters, Environment, Errors, Identity, Latencies, MergeInfo, Mismatch,
    Parameters, Report, SessionErrors, TimelinePoint,
};
pub use versions::{OLDEST_READABLE_SCHEMA_VERSION, SCHEMA_VERSION};
