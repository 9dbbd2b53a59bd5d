//! The harness: starts an echo server (the workspace's fork echo server by default), checks that it
//! is correct, counts and measures its child processes from /proc, loads it through `loadgen`, and
//! writes JSON reports. `main.rs` only dispatches the hidden server subcommand and `cli::main`.
//!
//! Seams for the sweep built on top: [`server::ServerProcess`] (start/stop a server, its pid and
//! address), [`sampler::Sampler`] (tree timeline), [`load::run_load`] (loadgen under the sampler),
//! [`report::write_report`] (atomic JSON), [`procfs`] (all /proc accounting).
//! The sweep adds the capacity model ([`capacity`]) and the SVG plots ([`plot`]).

pub mod capacity;
pub mod checks;
pub mod cli;
pub mod client;
pub mod compare;
pub mod junit;
pub mod load;
pub mod output;
pub mod plot;
pub mod plot_cmd;
pub mod procfs;
pub mod report;
pub mod run;
pub mod sampler;
pub mod server;
pub mod sweep;
pub mod sweep_progress;
pub mod sweep_report;
