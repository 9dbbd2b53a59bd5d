//! `loadgen`: a tokio load generator for echo servers that verifies every echoed byte and records
//! connect, first-echo and echo round-trip latency in HdrHistograms.
//!
//! The library is what the `loadgen` binary and the harness share: build a validated [`Config`],
//! call [`run`] (or [`run_async`] inside a runtime) and get a [`Report`], the serde struct that is
//! also the JSON format. Failed connections and bad echoes are counted in the report, never
//! returned as errors; [`Error`] is only for setup problems (bad config, limits, runtime).
//!
//! Code map, one folder per job, layers top to bottom (each imports only layers below it, and
//! only those its `//!` header lists; `ci/layers.py` checks that):
//!
//! - [`cli`]: clap types only, turned into a validated [`Config`]; printing, exit codes, `merge`.
//! - [`choose_engine`] (`engine_choice`): `--engine auto` decided by a probe of the server, for
//!   the CLI and library callers alike.
//! - [`workers`]: one run split over worker processes ([`run_auto`]), their shared barrier and
//!   the merge of their reports.
//! - `engine`: one run in this process: `runner` ([`run`], [`run_async`]), `sessions` (a run's
//!   sessions on either engine), `threads` (`--engine threads`: a thread per connection),
//!   `shards` (the tokio engine's event-loop threads), `start` (the `--start-at` wait and the
//!   barrier), `limits` (RLIMIT_NOFILE), `progress` (the live line on a TTY).
//! - `session`: one connection's life: connect, first echo, barrier, measured phase
//!   (`lifecycle`), or opened and closed on a `--stages` plan (`staged`), or the same on a
//!   blocking socket for the threads engine (`blocking`), over the echo loop and exactly-once
//!   counting (`echo`); `plan`, `failure`, `shared` (the run's state every session sees),
//!   `connect`, `pacer` (the `--rate` timerfd), [`payload`], `stats` (the shards sessions record
//!   into, `--hlog` intervals included).
//! - `report`: the serde types that are the JSON format (`schema`, `histogram`), the run's
//!   `checks`, schema `versions`, the `timeline` buckets, [`Report::merge`], [`identity`],
//!   `environment`, [`hlog`] (the `--hlog` interval log, its reading and merging) and [`output`]
//!   (text, `--json`, `--hgrm`, the one atomic write).
//! - `config`: the validated [`Config`] and [`Slo`], `--start-at` parsing and checks, `stages`
//!   (the `--stages` plan's arithmetic, [`Stages`]).
//! - `error` ([`Error`]), [`interrupt`] (Ctrl-C), [`echo_server`] (the tokio reference server)
//!   and [`target_probe`] (`--engine auto`'s look at the server: a process per connection or
//!   not) are leaves.

pub mod cli;
mod config;
pub mod echo_server;
mod engine;
mod engine_choice;
mod error;
pub mod interrupt;
mod report;
mod session;
pub mod target_probe;
pub mod workers;

pub use report::{hlog, identity, output};
pub use session::payload;

pub use config::stages::Stages;
pub use config::{Config, Engine, Slo};
pub use engine::runner::{preflight, run, run_async};
pub use engine_choice::{choose_engine, fork_server_engine};
pub use error::Error;
pub use report::{
    read_delay_is_loadgens, ConnectErrors, Counters, Environment, Errors, HistogramReport,
    Latencies, Mismatch, Parameters, PercentileValue, Report, SessionErrors, TimelinePoint,
    OLDEST_READABLE_SCHEMA_VERSION, READ_DELAY_WARN_FLOOR_US, SCHEMA_VERSION,
    SEND_LAG_WARN_FRACTION,
};
pub use session::uring::available as uring_available;
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
