//! `loadgen`: a tokio load generator for echo servers that verifies every echoed byte and records
//! connect, first-echo and echo round-trip latency in HdrHistograms.
//!
//! The library is what the `loadgen` binary and the harness share: build a validated [`Config`],
//! call [`run`] (or [`run_async`] inside a runtime) and get a [`Report`], the serde struct that is
//! also the JSON format. Failed connections and bad echoes are counted in the report, never
//! returned as errors; [`Error`] is only for setup problems (bad config, limits, runtime).

pub mod cli;
mod config;
pub mod echo_server;
mod engine;
mod error;
pub mod interrupt;
mod report;
mod session;
pub mod workers;

pub use report::{hlog, identity, output};
pub use session::payload;

pub use config::{Config, Slo};
pub use engine::runner::{preflight, run, run_async};
pub use engine::stages::Stages;
pub use error::Error;
pub use report::{
    ConnectErrors, Counters, Environment, Errors, HistogramReport, Latencies, Mismatch, Parameters,
    PercentileValue, Report, SessionErrors, TimelinePoint, OLDEST_READABLE_SCHEMA_VERSION,
    SCHEMA_VERSION, SEND_LAG_WARN_FRACTION,
};
pub use workers::{preflight_auto, run_auto};

/// Histogram range shared by every histogram loadgen writes, in microseconds: 1 us .. 60 s with
/// 3 significant digits. Using one range everywhere is what makes reports merge exactly.
pub const HIST_LOW_US: u64 = 1;
/// Upper bound of every histogram (60 s in microseconds); larger values saturate here.
pub const HIST_HIGH_US: u64 = 60_000_000;
/// Significant decimal digits of every histogram.
pub const HIST_SIGFIG: u8 = 3;

/// A fresh histogram with the shared range.
pub fn new_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
        .expect("constant histogram bounds are valid")
}
